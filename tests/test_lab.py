"""Every exercise's check, both ways, against the real system: it fails
(with a hint) before the reference solution, fails on a near miss, passes
after the solution, and fails again after reset — which leaves nothing.
Each verdict is asked again in Spanish: the same, said in Spanish."""

import glob
import os
import subprocess
import sys

import pytest

from labkit import containers
from labkit.course import lab
from labkit.i18n import catalog
from labkit.course.lab import cgroups as lab03, chroot as lab01, oci as lab05

pytestmark = pytest.mark.root




def flat(text):
    """``text`` with its wrapping undone: lab.check wraps what it prints."""
    return " ".join(text.split())


def labkit(*args):
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=120)


def test_every_exercise_has_near_misses_alternatives_and_three_hints():
    """Each exercise keeps, beside it, at least two other correct solutions
    and named near misses (labkit/course/lab/*.py ALTERNATIVES, NEAR_MISSES)."""
    for ex in lab.exercises():
        assert len(ex.hints) == 3 and ex.solution and ex.reset_commands
        assert lab.show_solution(ex.id).startswith("sudo ")
        assert len(ex.alternatives) >= 2 and len(ex.near_misses) >= 2, ex.id
        for name, (commands, words) in ex.near_misses.items():
            assert commands and words, (ex.id, name)


def ways():
    """Every way through every exercise, one test each: each near miss (✗
    saying its words), the reference (first as received: ✗ with hint 1; then
    ✔) and each other correct solution (✔). Ids: EXERCISE/KIND/NAME."""
    for ex in sorted(lab.exercises(), key=lambda e: e.id):
        yield from ((ex.id, "miss", name) for name in ex.near_misses)
        yield ex.id, "reference", ""
        yield from ((ex.id, "other", name) for name in ex.alternatives)


WAYS = list(ways())


@pytest.mark.parametrize("exercise_id, kind, name", WAYS, ids=["/".join(w).rstrip("/") for w in WAYS])
def test_the_check_tells_right_from_wrong(exercise_id, kind, name, rootfs, monkeypatch):
    monkeypatch.setattr(lab01, "BREAKOUT_SECONDS", 1)    # the endless breakout's near miss
    if exercise_id.startswith(("06.", "08.", "09.no-raw")):   # bridges, veths and rules: in a namespace of the test's own
        from netns_helper import private_netns
        with private_netns():
            _one_way(exercise_id, kind, name)
            from labkit.course.leaks import network_leftovers
            assert network_leftovers() == []
    else:
        _one_way(exercise_id, kind, name)


def _one_way(exercise_id, kind, name):
    """The way's commands from a reset state, its check, then the reset,
    which must leave nothing of it, whatever way the student took."""
    ex = lab.get(exercise_id)
    out = []
    try:
        lab.reset(exercise_id)
        if kind == "reference":      # as received, before the student did anything
            assert lab.check(exercise_id, out=out.append) is False
            assert flat(ex.hints[0]) in flat(out[-1]) and out[-1].startswith("✗"), out[-1]
            assert flat(catalog("es")[ex.hints[0]]) in flat(_in_spanish(exercise_id, out[-1]))
        if kind == "miss":
            commands, word = ex.near_misses[name]
            lab._shell(commands)
            assert lab.check(exercise_id, out=out.append) is False and flat(word) in flat(out[-1]), out[-1]
        else:
            lab._shell(ex.solution if kind == "reference" else ex.alternatives[name])
            assert lab.check(exercise_id, out=out.append) is True, out[-1]
        _in_spanish(exercise_id, out[-1])
    finally:
        lab.reset(exercise_id)
    _nothing_left(exercise_id, name or kind)


def _in_spanish(exercise_id, english):
    """The same check again as a Spanish student's notebook runs it
    (LABKIT_LANG=es): the same verdict, its reason said in Spanish."""
    out = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LABKIT_LANG", "es")
        lab.check(exercise_id, out=out.append)
    assert out[-1][:1] == english[:1] and out[-1] != english, (english, out[-1])
    return out[-1]


def _nothing_left(exercise_id, way):
    where = f"{exercise_id}, {way}"
    assert not [c for c in containers.all_ids() if c.startswith(("lab09-", "lab08-", "lab06-", "lab05-", "lab03"))], where
    assert not glob.glob("/tmp/lab0[1-5]*"), (where, glob.glob("/tmp/lab0[1-5]*"))
    assert not [p for argv in (("sleep", n) for n in ("1011", "1012", "1021", "1022", "1023", "1031"))
                for p in lab.find(*argv)] and not lab.find("sh", "-c", lab03.BUSY), where
    assert not glob.glob("/sys/fs/cgroup/lab03*") and not glob.glob("/sys/fs/cgroup/*/lab03*"), where
    from labkit.course.leaks import image_leftovers
    assert image_leftovers() == [], where
    assert not ([n for n in os.listdir("/run/netns") if n.startswith("lk-")] if os.path.isdir("/run/netns") else []), where


def test_the_lab_command(rootfs):
    listing = labkit("lab", "list")
    assert listing.returncode == 0 and len(listing.stdout.splitlines()) == len(lab.exercises())
    assert labkit("lab", "check", "09.userns").returncode == 1
    assert "--userns" in labkit("lab", "hint", "09.userns", "2").stdout
    try:
        assert labkit("lab", "solve", "09.userns").returncode == 0
        done = labkit("lab", "check", "09.userns")
        assert done.returncode == 0 and done.stdout.startswith("✔")
    finally:
        assert labkit("lab", "reset", "09.userns").returncode == 0
    bad = labkit("lab", "check", "09.nope")
    assert bad.returncode != 0 and "labkit lab list" in bad.stderr and "Traceback" not in bad.stderr
    assert labkit("lab", "hint", "09.userns", "7").returncode != 0


def test_the_python_solution_of_02(rootfs):
    """notebooks/solutions/02-mycontainer.py, the script notebook 02 asks
    for, passes 02.pid-alone's check, as the unshare(1) solution does."""
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "notebooks", "solutions", "02-mycontainer.py")
    try:
        lab.reset("02.pid-alone")
        lab._shell([" && ".join(lab.background(f"{sys.executable} {script}", "sleep", "1021"))])
        assert lab.check("02.pid-alone", out=lambda s: None) is True
    finally:
        lab.reset("02.pid-alone")
    assert not lab.find("sleep", "1021")


# 02's hazard, done on purpose: in a throwaway mount namespace (private from
# the host's), / is made shared, as systemd leaves it, and a new namespace
# that forgot `mount --make-rprivate /` mounts a proc of its own PID
# namespace: it propagates over /proc. The check sees it first and says how
# to recover; the exercise's reset recovers.
HAZARD = r"""
import subprocess, sys
from labkit.course import lab
subprocess.run(["mount", "--make-rshared", "/"], check=True)
subprocess.run(["unshare", "--pid", "--fork", "--mount", "--propagation", "unchanged",
                "mount", "-t", "proc", "proc", "/proc"], check=True)
out = []
print(lab.proc_is_the_hosts(), lab.check("02.pid-alone", out=out.append))
print(out[-1].replace("\n", " "))
lab.reset("02.pid-alone")
print(lab.proc_is_the_hosts(), lab.check("02.pid-alone", out=out.append))
print(out[-1].replace("\n", " "))
"""


def test_a_proc_mounted_over_the_hosts_is_caught_and_undone(rootfs):
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", HAZARD],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    caught, hazard, recovered, after = r.stdout.splitlines()
    hazard, after = flat(hazard), flat(after)
    assert caught == "False False" and "/proc is not the host's any more" in hazard
    assert "sudo umount /proc" in hazard and "mount --make-rprivate /" in hazard
    assert recovered == "True False" and "no process runs `sleep 1021`" in after
    assert lab.proc_is_the_hosts()


def test_without_the_detach_dotdot_reaches_the_host(rootfs):
    """Notebook 01's claim and 01.pivot's ✗: after `pivot_root . .` with no
    detach, / inside is the rootfs, and /.. is the host's /."""
    commands, _ = lab.get("01.pivot").near_misses["no detach of the old root"]
    try:
        lab.reset("01.pivot")
        lab._shell(commands)
        pid = lab.find("sleep", "1012")[0]
        ls = lambda path: subprocess.run(["nsenter", "-t", str(pid), "-m", "-r", "-w", "ls", "-a", path],
                                         capture_output=True, text=True).stdout.split()
        assert set(ls("/")) == set(os.listdir(lab.env()["ROOTFS"])) | {".", ".."}
        assert set(ls("/..")) == set(os.listdir("/")) | {".", ".."}
    finally:
        lab.reset("01.pivot")


@pytest.mark.parametrize("exercise_id, commands, said", [
    ("01.chroot", ["mkdir -p /tmp/lab01 && setsid -w chrot $ROOTFS sleep 1011 >/tmp/lab01/chroot.log 2>&1 || true"],
     "chrot"),
    ("05.memory", lab05.solution("mem", 'c["linux"]["namespaces"] = []')[:-1] + [
        lab05.solution("mem", "pass")[-1] + " || true"], "a mount namespace is required"),
])
def test_a_start_line_that_fails_says_why_in_the_check(exercise_id, commands, said, rootfs):
    """No silent failure: the start line the task gives keeps what it
    printed in the exercise's log, and the ✗ shows its last lines."""
    out = []
    try:
        lab.reset(exercise_id)
        lab._shell(commands)
        assert lab.check(exercise_id, out=out.append) is False
        shown = flat(out[-1])
        assert f"your start line printed (the end of {lab.get(exercise_id).log})" in shown and said in shown, shown
    finally:
        lab.reset(exercise_id)
    assert not os.path.exists(lab.get(exercise_id).log)
