"""Every path into labkit/ that a student, a translator or a contributor
reads names a file that exists: the notebooks' "read next" lines, the
lecturas, the README and docs, the translations' source references (`#.
labkit/...:LINE`) and the code's own comments. A file that moves takes its
readers along (no root needed)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# labkit/… as a path of this checkout: not inside another path
# (/var/lib/labkit/…, $LABKIT_HOME/…), a .py file or a folder. Cgroups are
# called labkit/NAME too: a folder with a "-" in its name is one of them
# (labkit/cg-trace/), and so is any folder the tests make.
PATH = re.compile(r"(?<![\w/.$~-])labkit/(?:(?:[\w-]+/)*[\w-]+\.py\b|(?:\w+/)+)")
READ = (".py", ".ipynb", ".md", ".po", ".pot", ".txt", ".sh", ".toml", ".cfg", ".yaml", ".yml")
SKIP = {".git", ".venv", "__pycache__", "node_modules", ".pytest_cache"}
TESTS = os.path.join(ROOT, "tests") + os.sep


def references():
    """(file, line number, path) of every labkit/ path in the checkout's text."""
    found = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP and not d.startswith(".")]
        for name in files:
            if not name.endswith(READ) and name not in ("Makefile", "Vagrantfile"):
                continue
            path = os.path.join(top, name)
            with open(path, encoding="utf-8", errors="replace") as f:
                for n, line in enumerate(f, 1):
                    found += [(os.path.relpath(path, ROOT), n, m.group(0)) for m in PATH.finditer(line)
                              if m.group(0).endswith(".py") or not path.startswith(TESTS)]
    return found


def test_every_path_into_labkit_exists():
    refs = references()
    assert len(refs) > 100      # the notebooks alone point to the source that many times
    missing = sorted({f"{where}:{n}: {path}" for where, n, path in refs
                      if not os.path.exists(os.path.join(ROOT, path))})
    assert missing == []


def test_the_pattern_finds_paths_and_leaves_the_rest():
    text = ("read labkit/linux/rootfs.py next; (labkit/course/facts/) and `labkit/stages/`; "
            "not /var/lib/labkit/rootfs/base, $LABKIT_HOME/labkit/x.py, the image labkit/base "
            "nor the cgroup labkit/cg-trace/")
    assert PATH.findall(text) == ["labkit/linux/rootfs.py", "labkit/course/facts/", "labkit/stages/"]


def test_the_course_map_names_every_notebook_and_module():
    """labkit/course/chapters.py is the one list of chapters: each has its
    notebook in both languages, its facts and its exercises, and no notebook
    is left out of it."""
    from labkit.course.chapters import CHAPTERS, WELCOME
    notebooks = sorted(n[:-6] for n in os.listdir(os.path.join(ROOT, "notebooks")) if n.endswith(".ipynb"))
    assert notebooks == sorted([WELCOME] + [c.notebook for c in CHAPTERS])
    for c in CHAPTERS:
        assert c.notebook.startswith(c.number + "-")
        assert os.path.isfile(os.path.join(ROOT, "notebooks", "es", c.notebook + ".ipynb")), c
        for part in ("facts", "lab"):
            assert os.path.isfile(os.path.join(ROOT, "labkit", "course", part, c.name + ".py")), (c, part)
