"""Every notebook, English and Spanish, executed end to end with nbclient,
once, each exercise checked as received and then solved — and the facts it
recorded asserted as relations.

The expectations per notebook are the facts' names: each must be recorded
and hold (its ``ok``), plus a few relations checked here across facts."""

import glob
import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

from labkit import i18n
from labkit.course import lab
from labkit.course.notebook import facts_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the notebooks need root")

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOKS = os.path.join(os.path.dirname(HERE), "notebooks")

# Facts each notebook must record (and that must hold where they carry "ok").
EXPECTED = {
    "00-welcome": ["doctor_ok", "seed_namespaces_available", "cgroup_mode", "first_container_pid"],
    "01-chroot": ["chroot_ls_root", "chroot_ps_sees_host", "chroot_hostname_shared",
                  "chroot_network_shared", "chroot_proc_root_escape", "chroot_breakout",
                  "pivot_root_breakout_fails", "chroot_visible_shares", "chroot_mounts_left"],
    "02-namespaces": ["pid_is_one", "pid_needs_own_proc", "uts_hostname", "uts_same_kernel", "vm_beside_container", "net_only_lo", "ipc_private",
                      "mnt_private", "user_root_unprivileged", "exec_joins", "shell_ps", "shell_hostname",
                      "shell_ip", "ns_inode_grid", "namespaces_left"],
}


def execute(path, solve_all=True):
    """One run in one kernel, as a student goes through it: each "Your turn"
    cell runs as received; at its check cell (the next one) the check runs
    (it must say ✗ with its first hint), then the reference solution
    (lab.solve), then the check again (✔), and the rest of the notebook goes
    on from the solved state, so a solution that got in the way of a later
    fact would show. Returns the facts and the check cells' outputs, as
    received and as solved.

    Once, not twice (received, then solved): the second run repeated every
    fact, about half the suite's time, and proved only what the leak check
    proves at the end (each fact removes what it made). A translation runs
    the same way: its code is the English notebook's (tests/test_i18n.py
    proves it); what it adds is its own words: the prints, the figures'
    labels, the checks and hints in its language. So a translation
    (``solve_all`` False) solves only its first exercise, for its ✔ in its
    language: each solution is the English run's to prove, and solving them
    all again was a tenth of the suite's time."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": NOTEBOOKS}})
    received, solved = {}, {}
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
            m = CHECK.match(cell.source.strip()) if cell.cell_type == "code" else None
            if m:
                received[m.group(1)] = _stdout(cell)
                if solve_all or not solved:
                    solve = nbformat.v4.new_code_cell(f"from labkit.course import lab\nlab.solve({m.group(1)!r})")
                    client.execute_cell(solve, index)
                    client.execute_cell(cell, index)
                    solved[m.group(1)] = _stdout(cell)
        facts = facts_of(nb)
        # Run All is done, its clean-up too: a student going back to an
        # exercise cell can run it again, without an error.
        for index, cell in enumerate(nb.cells):
            if cell.metadata.get("labkit", {}).get("your_turn") or cell.source.startswith("%%writefile"):
                client.execute_cell(cell, index)
    return [facts], [received, solved]


CHECK = re.compile(r'^lab\.check\("([^"]+)"\);?$')


def _stdout(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")


def check_outputs(nb):
    """{exercise id: what its check cell printed}."""
    found = {}
    for cell in nb.cells:
        m = CHECK.match(cell.source.strip()) if cell.cell_type == "code" else None
        if m:
            found[m.group(1)] = _stdout(cell)
    return found


def exercise_cells(nb):
    return [c.metadata["labkit"]["your_turn"] for c in nb.cells if c.metadata.get("labkit", {}).get("your_turn")]


def notebook_names():
    return sorted(os.path.basename(p)[:-6] for p in glob.glob(os.path.join(NOTEBOOKS, "*.ipynb")))


def translated_names():
    """The Spanish twins (notebooks/es, built from i18n/es: tests/test_i18n.py
    checks they match the English), run as the English ones: same facts,
    same exercises, the checks and hints in Spanish."""
    return sorted("es/" + os.path.basename(p)[:-6] for p in glob.glob(os.path.join(NOTEBOOKS, "es", "*.ipynb")))


def test_every_notebook_has_expectations():
    assert set(notebook_names()) <= set(EXPECTED) | set(_extra_expectations())


def _registered():
    """Notebooks of later stages register their facts in
    tests/notebook_facts_*.py: EXPECTED = {notebook: [fact names]},
    check_relations(facts) for relations across facts, and NETNS: the
    notebooks that run in a network namespace of the test's own (they make
    bridges and firewall rules)."""
    expected, relations = {}, {}
    for path in sorted(glob.glob(os.path.join(HERE, "notebook_facts_*.py"))):
        scope = {}
        exec(open(path).read(), scope)
        expected.update(scope["EXPECTED"])
        _NETNS.update(scope.get("NETNS", ()))
        if "check_relations" in scope:
            for name in scope["EXPECTED"]:
                relations[name] = scope["check_relations"]
    return expected, relations


_NETNS = set()


def _extra_expectations():
    return _registered()[0]


@pytest.mark.parametrize("path", notebook_names() + translated_names())
def test_notebook(path, rootfs):
    name = os.path.basename(path)
    expected = dict(EXPECTED, **_extra_expectations())[name]
    def run():
        try:
            return execute(os.path.join(NOTEBOOKS, path + ".ipynb"), solve_all=not path.startswith("es/"))
        except BaseException:
            # A notebook that failed half way never reached its clean-up cells:
            # what its exercises made must not pass the next notebook's checks.
            _reset(name)
            raise
    if name in _NETNS:   # the kernel, and all it starts, in a network namespace of this test's own
        from netns_helper import private_netns
        with private_netns():
            runs, checks = run()
            _reset(name)
    else:
        runs, checks = run()
        _reset(name)
    _checks_both_ways(name, checks, "es" if path.startswith("es/") else "en")
    for n, facts in enumerate(runs, 1):
        missing = [f for f in expected if f not in facts]
        assert not missing, f"run {n}: facts not recorded: {missing}"
        failed = [k for k, v in facts.items() if isinstance(v, dict) and v.get("ok") is False]
        # What each side saw, so that a failure far away (a slow VM) says why.
        assert not failed, f"run {n}: facts that do not hold: " + "; ".join(
            f"{k} (inside: {facts[k].get('inside')!r}, outside: {facts[k].get('outside')!r})"
            for k in failed)
    check = RELATIONS.get(name) or _registered()[1].get(name)
    if check:
        for facts in runs:
            check(facts)


def _reset(name):
    """What the exercise cells, run again after Run All, started or wrote."""
    for ex in lab.exercises():
        if ex.notebook == name[:2]:
            lab.reset(ex.id)


def _checks_both_ways(name, checks, language="en"):
    """As received, each check says ✗ with its first hint (in the notebook's
    language); with the reference solutions in, ✔ (in a translation, the
    first one). Every exercise of the notebook has its cells."""
    mine = [ex for ex in lab.exercises() if ex.notebook == name[:2]]
    assert set(checks[0]) == {ex.id for ex in mine}, (sorted(checks[0]), [ex.id for ex in mine])
    assert set(checks[1]) == ({ex.id for ex in mine} if language == "en" else set(list(checks[0])[:1]))
    words = i18n.catalog(language) if language != "en" else {}
    for ex in mine:
        student = checks[0][ex.id]
        hint = words.get(ex.hints[0], ex.hints[0])
        assert student.startswith(f"✗ {ex.id}") and " ".join(hint.split()) in " ".join(student.split()), student
    for exercise_id, solved in checks[1].items():
        assert solved.startswith(f"✔ {exercise_id}"), solved


def test_every_exercise_has_its_cells():
    """A "Your turn" cell and a check cell per exercise, in its own notebook."""
    for path in notebook_names() + translated_names():
        name = os.path.basename(path)
        nb = nbformat.read(os.path.join(NOTEBOOKS, path + ".ipynb"), as_version=4)
        mine = sorted(ex.id for ex in lab.exercises() if ex.notebook == name[:2])
        assert sorted(exercise_cells(nb)) == mine == sorted(check_outputs(nb)), name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name} has outputs"


def _welcome(f):
    assert f["doctor_ok"] is True
    assert set(f["seed_namespaces_available"]) >= {"pid", "net", "ipc", "mnt", "uts"}
    assert f["cgroup_mode"] in ("v1", "hybrid", "v2")


def _chroot(f):
    assert f["chroot_ps_sees_host"]["shell_pid"] != 1
    assert f["chroot_mounts_left"] == []
    shares = f["chroot_visible_shares"]
    assert shares["processes (ps -e)"] > 0.8 and shares["files in / (same inode)"] == 0


def _namespaces(f):
    assert f["pid_is_one"]["ps_inside"] < f["pid_is_one"]["ps_outside"]
    assert f["uts_hostname"]["inside"] != f["uts_hostname"]["outside"]
    assert f["net_only_lo"]["inside"] == ["lo"]
    assert "sh" in f["shell_ps"] and len(f["shell_ps"]) <= 3
    grid = f["ns_inode_grid"]
    # The grid: for each container configuration, exactly its namespaces differ.
    for row in grid:
        assert sorted(row["differ"]) == sorted(row["chosen"]), row


RELATIONS = {"00-welcome": _welcome, "01-chroot": _chroot, "02-namespaces": _namespaces}
