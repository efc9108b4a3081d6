"""The notebooks in another language, from one source of truth.

The English notebooks in notebooks/ are the source. A translation is one
.po file per notebook in i18n/<lang>/ (msgctxt: the cell's id, msgid: the
English cell, msgstr: the translated cell); ``build`` writes
notebooks/<lang>/ from the two. Code cells stay as they are, except their
comments and the texts they print; each translated notebook starts by
setting LABKIT_LANG, so that checks, hints and figures speak its language.

    python -m labkit.course.translation.notebooks extract es [NAME...]  # new or changed cells into the .po files
    python -m labkit.course.translation.notebooks build es              # notebooks/es/*.ipynb
    python -m labkit.course.translation.notebooks check es [NAME...]    # what is missing or differs (exit 1)

``check`` is what tests/test_i18n.py runs: every markdown cell translated
from the English cell as it is now, the same commands, code, links, seed
quotes and headings on both sides, and the built notebooks up to date.
"""

import copy
import io
import json
import os
import re
import sys
import tokenize

from labkit.i18n import po
from labkit.course.translation import words
from labkit import home
from labkit.course.chapters import CHAPTERS, WELCOME

ROOT = home.source_tree()
NOTEBOOKS = os.path.join(ROOT, "notebooks")


def sources():
    """The English notebooks, in course order (labkit/course/chapters.py)."""
    return [os.path.join(NOTEBOOKS, name + ".ipynb") for name in [WELCOME] + [c.notebook for c in CHAPTERS]]


def po_path(lang, notebook):
    return os.path.join(ROOT, "i18n", lang, os.path.basename(notebook)[:-6] + ".po")


def out_path(lang, notebook):
    return os.path.join(NOTEBOOKS, lang, os.path.basename(notebook))


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _text(cell):
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def _lines(text):
    return text.splitlines(keepends=True)


def _dumps(nb):
    # As nbformat writes a notebook, so that a built one diffs cleanly.
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def extract(lang, names=()):
    """Bring each .po in line with its English notebook: a new cell gets an
    empty entry, a changed one keeps its old translation marked fuzzy (the
    English it was made from in a comment), a removed one goes."""
    for nb_path in sources():
        if names and os.path.basename(nb_path)[:-6] not in names:
            continue
        path = po_path(lang, nb_path)
        old = {e.msgctxt: e for e in po.load(path)} if os.path.exists(path) else {}
        entries = []
        for cell in _read(nb_path)["cells"]:
            text, cid = _text(cell), cell["id"]
            was = old.get(cid)
            if cell["cell_type"] == "code" and not (was or _translatable_code(text)):
                continue
            if was and was.msgid == text:
                entries.append(was)
            elif was:
                entries.append(po.Entry(text, was.msgstr, cid, [f"{cell['cell_type']} cell; the English changed"], True))
            else:
                entries.append(po.Entry(text, "", cid, [f"{cell['cell_type']} cell"]))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        po.save(path, entries, lang)


def _translatable_code(text):
    """A code cell has something to translate: a comment or a print."""
    return "#" in text or "print(" in text


def _translations(lang, nb_path):
    path = po_path(lang, nb_path)
    return {e.msgctxt: e for e in po.load(path)} if os.path.exists(path) else {}


SETUP = "%env LABKIT_LANG={lang}\n"


def translated(lang, nb_path):
    """The notebook in ``lang``: each cell's translation where there is one."""
    nb = _read(nb_path)
    done = _translations(lang, nb_path)
    out = copy.deepcopy(nb)
    first_code = True
    for cell in out["cells"]:
        entry = done.get(cell["id"])
        text = entry.msgstr if entry and entry.translated and entry.msgid == _text(cell) else _text(cell)
        if cell["cell_type"] == "code" and first_code:
            text, first_code = SETUP.format(lang=lang) + text, False
        cell["source"] = _lines(text)
    out["metadata"].setdefault("labkit", {})["lang"] = lang
    return out


def build(lang):
    for nb_path in sources():
        path = out_path(lang, nb_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(_dumps(translated(lang, nb_path)))


# --- what must stay the same on both sides ---------------------------------

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
SEED = re.compile(r"^> \*[^*].*\*$", re.M)
HEADING = re.compile(r"^(#+) ", re.M)


def _shell_code(text):
    """Shell lines without their comments: what a student types."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#(?![!{]).*$", "", line).rstrip()
        if line:
            out.append(line)
    return out


def markdown_parts(text):
    """What a translation of a markdown cell must keep: the code blocks (their
    comments aside), the inline code, the links, the seed's quotes and the
    heading levels."""
    blocks = [(lang, _shell_code(body)) for lang, body in FENCE.findall(text)]
    prose = FENCE.sub("", text)
    return {"code blocks": blocks, "inline code": sorted(set(INLINE.findall(prose))),
            "links": sorted(LINK.findall(prose)), "seed quotes": SEED.findall(prose),
            "headings": [len(h) for h in HEADING.findall(prose)]}


def _fstring_fields(token):
    body = re.sub(r"^[a-zA-Z]*", "", token)
    return tuple(re.findall(r"\{([^{}]*)\}", body)) if re.match(r"^[rbuRBU]*[fF]", token) else ()


FIGURE_TEXT = ("set_title", "set_xlabel", "set_ylabel", "suptitle")   # matplotlib's, on an axes or figure


def _shows_text(tokens, prev):
    """The call about to open shows its string arguments to the student:
    print(...), a figure of labkit.course.notebook.plots (a title), or a title or
    axis label of a figure drawn in the cell."""
    if prev is None or prev.type != tokenize.NAME:
        return False
    if prev.string == "print" or tokens[-3:-1] == [(tokenize.NAME, "plots"), (tokenize.OP, ".")]:
        return True
    return prev.string in FIGURE_TEXT and tokens[-2:-1] == [(tokenize.OP, ".")]


def code_skeleton(text):
    """A code cell as tokens, without comments and with the texts it shows
    (the string arguments of print, of plots' figures, of a figure's titles
    and axis labels) reduced to their {fields}: two cells with the same
    skeleton run the same code. IPython's !shell and %magic lines are
    compared as shell lines."""
    shell, python = [], []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(("!", "%")):
            shell.extend(_shell_code(s))
            python.append(re.match(r"\s*", line).group(0) + "pass")
        else:
            python.append(line)
    tokens, depth, in_print = [], 0, []
    prev = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO("\n".join(python) + "\n").readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL):
                continue
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
                if tok.string == "(" and _shows_text(tokens, prev):
                    in_print.append(depth)
            elif tok.type == tokenize.OP and tok.string in ")]}":
                if in_print and in_print[-1] == depth:
                    in_print.pop()
                depth -= 1
            if tok.type == tokenize.STRING and in_print and in_print[-1] == depth:
                tokens.append(("print text", _fstring_fields(tok.string)))
            else:
                tokens.append((tok.type, tok.string))
            prev = tok
    except (tokenize.TokenError, IndentationError, SyntaxError) as e:
        tokens.append(("unreadable", str(e)))
    return {"shell": shell, "python": tokens}


def check(lang, names=()):
    """Every problem of the ``lang`` notebooks (``names``: those only), one
    line each (empty: none)."""
    problems = []
    for nb_path in sources():
        if names and os.path.basename(nb_path)[:-6] not in names:
            continue
        name = os.path.basename(nb_path)
        cells = {c["id"]: c for c in _read(nb_path)["cells"]}
        done = _translations(lang, nb_path)
        where = os.path.relpath(po_path(lang, nb_path), ROOT)
        for cid in sorted(set(done) - set(cells)):
            problems.append(f"{where}: cell {cid} is no longer in {name} (run extract)")
        for cid, cell in cells.items():
            entry, text = done.get(cid), _text(cell)
            if entry is None or not entry.translated:
                if cell["cell_type"] == "markdown":
                    problems.append(f"{where}: cell {cid} is not translated")
                continue
            if entry.msgid != text:
                problems.append(f"{where}: cell {cid} was translated from an older English text (run extract)")
                continue
            for word, fix in words.problems(lang, entry.msgstr):
                problems.append(f"{where}: cell {cid}: {word!r}: write {fix} (i18n/README.md, the glossary)")
            parts = markdown_parts if cell["cell_type"] == "markdown" else code_skeleton
            en, other = parts(text), parts(entry.msgstr)
            for key in en:
                # A translation may add a link (to notebooks/es/lecturas), never drop one.
                if key == "links" and set(en[key]) <= set(other[key]):
                    continue
                if en[key] != other[key]:
                    problems.append(f"{where}: cell {cid}: the {key} differ from the English: "
                                    f"{_difference(en[key], other[key])}")
        built = out_path(lang, nb_path)
        want = _dumps(translated(lang, nb_path))
        if not os.path.exists(built) or open(built, encoding="utf-8").read() != want:
            problems.append(f"{os.path.relpath(built, ROOT)} is not built from its sources (run build)")
    return problems


def _difference(en, other):
    if isinstance(en, list) and all(isinstance(x, str) for x in en + other):
        missing = [x for x in en if x not in other]
        extra = [x for x in other if x not in en]
        return f"missing {missing}, not in the English {extra}"
    for a, b in zip(en, other):
        if a != b:
            return f"English {a!r}, translation {b!r}"
    return f"English has {len(en)}, translation {len(other)}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("extract", "build", "check"):
        print(__doc__.strip().split("\n\n")[2], file=sys.stderr)
        return 2
    action, lang, names = argv[0], argv[1], argv[2:]
    if action == "extract":
        extract(lang, names)
    elif action == "build":
        build(lang)
    else:
        problems = check(lang, names)
        print("\n".join(problems) or f"the {lang} notebooks match their sources")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
