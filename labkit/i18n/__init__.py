"""What a student reads from labkit, in their language: ``_(text)``.

The language is LABKIT_LANG (``es`` or ``en``), else the locale the way
gettext finds it (LANGUAGE, LC_ALL, LC_MESSAGES, LANG): ``es_ES.UTF-8``
gives Spanish. English is the source: a text with no translation is shown
as written. The translations are .po files, one per area, in
labkit/i18n/<lang>/ (see i18n/README.md for how to add or fix one).

Only messages meant for a student go through here (doctor, tour, the
exercises' checks and hints, the hint of an error, figure labels); the
start path of a container never imports this module.
"""

import glob
import os

LANGUAGES = ("en", "es")
_catalogs = {}


def lang():
    """``es`` or ``en``: LABKIT_LANG first, then the locale."""
    chosen = os.environ.get("LABKIT_LANG", "").strip().lower()
    if chosen:
        return chosen[:2] if chosen[:2] in LANGUAGES else "en"
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var, "")
        if value:
            # LANGUAGE is a list (es:en); the others one locale (es_ES.UTF-8).
            first = value.split(":")[0][:2].lower()
            return first if first in LANGUAGES else "en"
    return "en"


def catalog(language):
    """{English text: translation} for ``language``, read once."""
    if language not in _catalogs:
        from labkit.i18n import po
        found = {}
        for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__), language, "*.po"))):
            for entry in po.load(path):
                if entry.translated:
                    found[entry.msgid] = entry.msgstr
        _catalogs[language] = found
    return _catalogs[language]


def N_(text):
    """``text`` unchanged, marked for the translators: a table's English
    entry that ``_()`` looks up later, where it is shown."""
    return text


def _(text, **fields):
    """``text`` in the student's language, its {fields} filled in.

    The English text is the key, as in gettext: ``_("no container named
    {name}", name=n)``. Fill fields through here, not in an f-string first,
    or the text would never match its translation."""
    language = lang()
    if language != "en" and text:
        text = catalog(language).get(text, text)
    return text.format(**fields) if fields else text
