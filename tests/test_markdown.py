"""A lint of the course's Markdown: every notebook's Markdown cells (English
and Spanish), the README and docs/. Fences open and close on lines of their
own, relative links lead to files that exist, headings are headings. No
root needed."""

import glob
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^\s*```")
FENCE_LINE = re.compile(r"^\s*```[\w+-]*\s*$")       # ``` or ```sh, nothing after
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def documents():
    """(name, directory links are relative to, [Markdown texts])."""
    for path in sorted(glob.glob(os.path.join(ROOT, "notebooks", "**", "*.ipynb"), recursive=True)):
        cells = json.load(open(path, encoding="utf-8"))["cells"]
        yield (os.path.relpath(path, ROOT), os.path.dirname(path),
               ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"])
    for path in sorted(glob.glob(os.path.join(ROOT, "*.md")) + glob.glob(os.path.join(ROOT, "docs", "**", "*.md"),
                                                                       recursive=True)
                       + glob.glob(os.path.join(ROOT, "notebooks", "**", "*.md"), recursive=True)):
        yield os.path.relpath(path, ROOT), os.path.dirname(path), [open(path, encoding="utf-8").read()]


DOCUMENTS = list(documents())


def problems(text, base):
    found, inside = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            if not FENCE_LINE.match(line) or (inside and line.strip() != "```"):
                found.append(f"line {n}: a fence with text after it: {line.strip()[:50]!r}")
            inside = not inside
            continue
        if inside:
            continue
        if re.match(r"#{1,6}[^# ]", line):
            found.append(f"line {n}: a heading without a space after its #: {line[:40]!r}")
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = os.path.normpath(os.path.join(base, target.split("#", 1)[0]))
            if not os.path.exists(path):
                found.append(f"line {n}: a link to {target}, which is not there")
    if inside:
        found.append("a fence opened and never closed")
    return found


@pytest.mark.parametrize("name, base, texts", DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_markdown_is_well_formed(name, base, texts):
    found = [f"cell {i}: {p}" if name.endswith(".ipynb") else p
             for i, text in enumerate(texts) for p in problems(text, base)]
    assert not found, "\n".join(found)


def test_the_lint_finds_what_it_is_for():
    bad = "```sh\nls\n``` With docker\n[x](no/such/file.md)\n##Heading\n```\nopen"
    found = problems(bad, ROOT)
    assert len(found) == 4 and "fence with text" in found[0] and "no/such/file.md" in found[1]
    assert "heading" in found[2] and "never closed" in found[3]


def test_notebooks_open_with_their_title():
    for name, _base, texts in DOCUMENTS:
        if name.endswith(".ipynb"):
            assert texts and texts[0].startswith("# "), name
