"""The messages labkit shows a student, gathered for translators.

A message is the English text of a ``_("...")`` call anywhere in labkit/,
the hint of a LabkitError given as a plain string (errors.po: the CLI shows
it translated), or an exercise's title, goal or hint as a student reads it
(lab.check and lab.hint pass them through ``_``). Each lands in labkit/i18n/<lang>/<area>.po, the
area named after the module it comes from (labkit/course/lab/cgroups.py:
lab-cgroups.po), with its file and line as a comment.

    python -m labkit.course.translation.messages extract es [AREA...]   # add new messages, drop gone ones
    python -m labkit.course.translation.messages check es [AREA...]     # what is untranslated or broken (exit 1)
"""

import ast
import glob
import os
import re
import string
import sys

from labkit.i18n import po
from labkit.course.translation import words
from labkit import home

PACKAGE = os.path.join(home.source_tree(), "labkit")
HERE = os.path.join(PACKAGE, "i18n")        # the catalogs: labkit/i18n/<lang>/*.po


# Folders that only group a layer's packages: an area is named without them
# (labkit/course/lab/cgroups.py: lab-cgroups).
GROUPS = ("course", "linux", "cli")


def _area(path):
    rel = os.path.relpath(path, PACKAGE)[:-3].split(os.sep)
    if rel[0] in GROUPS and len(rel) > 1:
        rel = rel[1:]
    return "-".join(rel).replace("-__init__", "")


def _literal(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def found():
    """[(msgid, area, where)] in source order, each msgid once: the literal
    texts of ``_(...)`` calls, then every exercise's title, goal and hints as
    the student reads them (built from constants, some of them)."""
    seen, out = set(), []

    def add(text, area, where):
        if text and text not in seen:
            seen.add(text)
            out.append((text, area, where))

    trees = {}
    for path in sorted(glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True)):
        if not path.startswith(HERE + os.sep):
            trees[path] = ast.parse(open(path, encoding="utf-8").read(), path)
    errors = _error_classes(trees.values())
    for path, tree in trees.items():
        where = os.path.relpath(path, os.path.dirname(PACKAGE))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in ("_", "N_") and node.args:
                add(_literal(node.args[0]), _area(path), f"{where}:{node.lineno}")
            elif name in errors:
                # An error's hint (its second argument) is shown translated;
                # one built with an f-string stays English.
                hint = node.args[1] if len(node.args) > 1 else next(
                    (k.value for k in node.keywords if k.arg == "hint"), None)
                add(_literal(hint) if hint is not None else None, "errors", f"{where}:{node.lineno}")
    from labkit.course import lab
    for ex in lab.exercises():
        area = "lab-" + ex.module
        for part, text in [("title", ex.title), ("goal", ex.goal)] + [(f"hint {n}", h) for n, h in enumerate(ex.hints, 1)]:
            add(text, area, f"{ex.id} {part}")
    return out


def _error_classes(trees):
    """LabkitError and every class derived from it, by name."""
    names, grew = {"LabkitError"}, True
    while grew:
        grew = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names and any(
                        getattr(b, "id", getattr(b, "attr", None)) in names for b in node.bases):
                    names.add(node.name)
                    grew = True
    return names


def _po_files(lang):
    return sorted(glob.glob(os.path.join(HERE, lang, "*.po")))


def _existing(lang):
    have = {}
    for path in _po_files(lang):
        for e in po.load(path):
            have[e.msgid] = e
    return have


def extract(lang, only=()):
    """Each area's .po from the messages in labkit now (``only``: those areas)."""
    have = _existing(lang)
    areas = {}
    for msgid, area, where in found():
        old = have.get(msgid)
        areas.setdefault(area, []).append(po.Entry(msgid, old.msgstr if old else "", None, [where],
                                                   old.fuzzy if old else False))
    os.makedirs(os.path.join(HERE, lang), exist_ok=True)
    for path in _po_files(lang):
        if os.path.basename(path)[:-3] not in areas and not only:
            os.unlink(path)
    for area, entries in areas.items():
        if not only or area in only:
            po.save(os.path.join(HERE, lang, area + ".po"), entries, lang)


def _fields(text):
    try:
        return sorted({name for _, name, _, _ in string.Formatter().parse(text) if name is not None})
    except ValueError as e:
        return [f"<unreadable: {e}>"]


def check(lang, only=()):
    problems = []
    have = _existing(lang)
    wanted = found()
    for msgid, area, where in wanted:
        if only and area not in only:
            continue
        e = have.get(msgid)
        if e is None or not e.translated:
            problems.append(f"labkit/i18n/{lang}/{area}.po: not translated: {msgid[:70]!r} ({where})")
        elif _fields(e.msgid) != _fields(e.msgstr):
            problems.append(f"labkit/i18n/{lang}/{area}.po: the fields {_fields(e.msgstr)} of the translation "
                            f"differ from the English {_fields(e.msgid)}: {msgid[:60]!r}")
        elif words.problems(lang, e.msgstr):
            word, fix = words.problems(lang, e.msgstr)[0]
            problems.append(f"labkit/i18n/{lang}/{area}.po: {word!r}: write {fix} (the glossary): {msgid[:60]!r}")
        elif re.findall(r"`[^`]+`", e.msgid) != re.findall(r"`[^`]+`", e.msgstr):
            problems.append(f"labkit/i18n/{lang}/{area}.po: the `commands` of the translation differ from "
                            f"the English: {msgid[:60]!r}")
    gone = set() if only else set(have) - {m for m, _, _ in wanted}
    problems += [f"labkit/i18n/{lang}: {m[:70]!r} is no longer in labkit (run extract)" for m in sorted(gone)]
    return problems


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("extract", "check"):
        print(__doc__.strip().split("\n\n")[2], file=sys.stderr)
        return 2
    if argv[0] == "extract":
        extract(argv[1], argv[2:])
        return 0
    problems = check(argv[1], argv[2:])
    print("\n".join(problems) or f"every message has its {argv[1]} translation")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
