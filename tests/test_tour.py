"""`labkit tour`: every stage headless, one table, exit 0 only if every row
passes — the course's claims, checked end to end on this machine.

Each row is a fact of labkit/course/facts, and every one of them is also recorded
by a notebook, which tests/test_notebooks.py runs and asserts: running the
whole tour here would run each fact a second time (a minute of the suite).
So the tour's own code runs here end to end on the stages whose rows only
the tour has (oci: labkit-runtime beside runc) and on the shortest one, and
a static check proves that every other row is a notebook's fact. `make
vm-test` runs the whole tour in the classroom VM."""

import ast
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from labkit.course import tour

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The stages whose rows are not all a notebook's facts, and the shortest.
RUN_HERE = ["chroot", "oci"]


def labkit_tour(*layers):
    # In a network namespace of its own: network rows make bridges and rules.
    return subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -m labkit tour "$@"',
                           sys.executable, *layers], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=ROOT, COLUMNS="160"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_the_tour_runs_the_stages_asked_for(rootfs):
    r = labkit_tour(*RUN_HERE)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    rows = [line for line in r.stdout.splitlines()[1:] if line.rstrip().endswith(("pass", "FAIL"))]
    assert {line[:2] for line in rows} == {"1 ", "5 "}, rows       # chroot's rows and oci's, no other
    assert all(line.rstrip().endswith("pass") for line in rows)
    assert f"{len(rows)} passed, 0 failed" in r.stdout


def test_an_unknown_stage_is_named():
    r = subprocess.run([sys.executable, "-m", "labkit", "tour", "oci", "nope"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "labkit: labkit tour: no stage named 'nope' (the stages are " + " ".join(tour.LAYERS) + ")"]


def _notebook_code():
    code = []
    for path in glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")):
        with open(path) as f:
            code += ["".join(c["source"]) for c in json.load(f)["cells"] if c["cell_type"] == "code"]
    return "\n".join(code)


def test_every_other_row_is_a_notebooks_fact():
    """The facts a stage's all_facts() calls (the functions of its module)
    are called by a notebook too: the notebook tests run and assert them."""
    code = _notebook_code()
    for layer in tour.LAYERS:
        if layer in RUN_HERE:
            continue
        path = os.path.join(ROOT, "labkit", "course", "facts", f"{layer}.py")
        with open(path) as f:
            module = ast.parse(f.read())
        defined = {n.name for n in module.body if isinstance(n, ast.FunctionDef)}
        all_facts = next(n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "all_facts")
        cleanup = {id(n) for t in ast.walk(all_facts) if isinstance(t, ast.Try) for f in t.finalbody
                   for n in ast.walk(f)}              # what a finally: clause calls tidies up
        called = {n.func.id for n in ast.walk(all_facts) if isinstance(n, ast.Call)
                  and isinstance(n.func, ast.Name) and id(n) not in cleanup}
        facts = sorted((called & defined) - {"all_facts"})
        assert facts, f"{layer}: all_facts calls no fact of its module"
        missing = [name for name in facts if not re.search(rf"\.{re.escape(name)}\(", code)]
        assert not missing, f"{layer}: tour rows no notebook records: {missing} (run them in RUN_HERE)"
