"""Every shell block of the notebooks' text, run as a student types it in
the VM's root shell: one bash per notebook, the blocks in order, `set -e`
so that any failing line fails the test. Where the notebook has a "Your
turn" cell, `labkit lab solve ID` stands in for the student's work (the
blocks after it look at what the exercise made); every exercise of the
notebook is reset at the end, whatever happened."""

import glob
import os
import re
import subprocess
import tempfile

import nbformat
import pytest

from labkit import containers

pytestmark = pytest.mark.root

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NOTEBOOKS = os.path.join(ROOT, "notebooks")
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def script_of(path):
    """The notebook's shell blocks in order, with a solve at each exercise,
    and the resets of its exercises (the trap runs them on any exit)."""
    nb = nbformat.read(path, as_version=4)
    parts, exercises = [], []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.extend(BLOCK.findall(cell.source))
        turn = cell.metadata.get("labkit", {}).get("your_turn")
        if turn:
            exercises.append(turn)
            parts.append(f"labkit lab solve {turn} >/dev/null")
    reset = "; ".join(f"labkit lab reset {e} >/dev/null 2>&1" for e in exercises) or "true"
    return f"trap '{reset}' EXIT\nset -e -x\n" + "\n".join(parts), len(parts) - len(exercises)


def _netns_notebooks():
    found = set()
    for path in glob.glob(os.path.join(HERE, "notebook_facts_*.py")):
        scope = {}
        exec(open(path).read(), scope)
        found.update(scope.get("NETNS", ()))
    return found


def names():
    return sorted(os.path.basename(p)[:-6] for p in glob.glob(os.path.join(NOTEBOOKS, "*.ipynb"))
                  if BLOCK.search(open(p).read().replace("\\n", "\n")))


@pytest.mark.parametrize("name", names())
def test_every_shell_block_runs(name, rootfs):
    script, blocks = script_of(os.path.join(NOTEBOOKS, name + ".ipynb"))
    assert blocks > 0
    env = dict(os.environ, PATH=os.path.join(ROOT, ".venv", "bin") + ":" + os.environ["PATH"])
    env.pop("ROOTFS", None)               # the notebook's own blocks must define it
    before = set(containers.all_ids())
    with tempfile.TemporaryDirectory(prefix="labkit-shell-") as cwd:
        def run():
            return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=900, stdin=subprocess.DEVNULL)
        if name in _netns_notebooks():
            from netns_helper import private_netns
            with private_netns():
                r = run()
        else:
            r = run()
    tail = "\n".join((r.stdout + "\n" + r.stderr).splitlines()[-40:])
    assert r.returncode == 0, f"{name}: a shell block failed:\n{tail}"
    assert not glob.glob("/tmp/lab0[0-9]*"), glob.glob("/tmp/lab0[0-9]*")
    left = set(containers.all_ids()) - before
    assert not left, f"{name}: the shell blocks leave containers behind: {sorted(left)}"
