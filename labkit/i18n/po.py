"""GNU gettext .po files, read and written without the gettext tools.

One entry is an optional ``msgctxt`` (here: a notebook cell's id), the
English ``msgid`` and its translation ``msgstr``. An empty msgstr, or one
marked ``#, fuzzy``, is not a translation yet. The same files open in any
.po editor (poedit, Lokalize) and in msgmerge.
"""

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


class Entry:
    def __init__(self, msgid, msgstr="", msgctxt=None, comments=(), fuzzy=False):
        self.msgid, self.msgstr, self.msgctxt = msgid, msgstr, msgctxt
        self.comments = list(comments)   # "#." lines: a note for the translator
        self.fuzzy = fuzzy

    @property
    def translated(self):
        return bool(self.msgstr) and not self.fuzzy


def _unquote(text, where):
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"{where}: expected a quoted string, got {text[:40]!r}")
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        c = body[i]
        if c == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                raise ValueError(f"{where}: unknown escape in {text[:40]!r}")
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse(text, name="<po>"):
    """The entries of a .po file's text (the header, msgid "", left out)."""
    entries, cur, field, comments, fuzzy = [], {}, None, [], False

    def flush():
        nonlocal cur, field, comments, fuzzy
        if "msgid" in cur:
            if cur["msgid"]:
                entries.append(Entry(cur["msgid"], cur.get("msgstr", ""), cur.get("msgctxt"), comments, fuzzy))
        cur, field, comments, fuzzy = {}, None, [], False

    for n, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{n}"
        line = line.strip()
        if not line:
            flush()
        elif line.startswith("#"):
            if "msgid" in cur:
                flush()
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            elif line.startswith("#."):
                comments.append(line[2:].strip())
        elif line.startswith('"'):
            if field is None:
                raise ValueError(f"{where}: a string continues no msgid or msgstr")
            cur[field] += _unquote(line, where)
        else:
            key, _, rest = line.partition(" ")
            if key not in ("msgctxt", "msgid", "msgstr"):
                raise ValueError(f"{where}: unknown keyword {key!r}")
            if key in cur or (key == "msgctxt" and "msgid" in cur):
                flush()
            field = key
            cur[key] = _unquote(rest.strip(), where)
    flush()
    return entries


def load(path):
    with open(path, encoding="utf-8") as f:
        return parse(f.read(), path)


def _quote(text):
    """A string as .po lines: one per line of the text, so that a diff of a
    translation shows the lines that changed."""
    def q(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n") + '"'
    if "\n" not in text.rstrip("\n"):
        return q(text)
    return '""\n' + "\n".join(q(part) for part in text.splitlines(keepends=True))


HEADER = ('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
          '"Language: {lang}\\n"\n"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n')


def dump(entries, lang):
    parts = [HEADER.format(lang=lang)]
    for e in entries:
        lines = [f"#. {c}" for c in e.comments]
        if e.fuzzy:
            lines.append("#, fuzzy")
        if e.msgctxt is not None:
            lines.append("msgctxt " + _quote(e.msgctxt))
        lines += ["msgid " + _quote(e.msgid), "msgstr " + _quote(e.msgstr)]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def save(path, entries, lang):
    with open(path, "w", encoding="utf-8") as f:
        f.write(dump(entries, lang))
