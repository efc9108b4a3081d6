"""Every exercise's check, both ways, against the real system: it fails
(with a hint) before the reference solution, fails on a near miss, passes
after the solution, and fails again after reset — which leaves nothing."""

import glob
import os
import subprocess
import sys

import pytest

from labkit import containers, lab
from labkit.lab import cgroups as lab03, chroot as lab01, oci as lab05, unionfs as lab04

pytestmark = pytest.mark.root


def _bg(cmd, *argv):
    return " && ".join(lab.background(cmd, *argv))


# Near misses not yet kept beside their exercise (labkit/lab/*.py NEAR_MISSES).
NEAR_MISS = {
    "07.build": ("mkdir -p /tmp/lab07-build && printf 'FROM labkit/base\\n' > /tmp/lab07-build/Containerfile && "
                 "labkit build -t lab07/hello:v1 /tmp/lab07-build", "not 'hello lab'"),
    "07.push": ("mkdir -p /tmp/lab07-build && printf 'FROM labkit/base\\nCMD [\"echo\", \"hello lab\"]\\n' "
                "> /tmp/lab07-build/Containerfile && labkit build -t lab07/hello:v1 /tmp/lab07-build && "
                "labkit registry start && labkit tag lab07/hello:v1 127.0.0.1:5000/lab07/hello:v2 && "
                "labkit push 127.0.0.1:5000/lab07/hello:v2", "has no lab07/hello:v1"),
    "06.veth-pair": ("ip netns add lk-a; ip netns add lk-b", "lk-b has no address"),
    "06.publish": ("labkit run -d --name lab06-web --network labkit -- sh -c "
                   "'mkdir -p /www && echo lab06 > /www/index.html && exec httpd -f -p 80 -h /www'",
                   "nothing answers"),
    "06.by-name": ("labkit network create lab06-net; labkit run -d --name lab06-db --network lab06-net -- sleep 600",
                   "does not find `db`"),
    "09.no-raw": ("labkit run -d --name lab09-noraw --network labkit -- sleep 600", "still in its bounding set"),
    "08.replicas": ("labkit service create --name lab08-web --replicas 1 -p 8088:80 labkit/base sh -c "
                    "'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www'",
                    "1 replica(s) running, not 3"),
    "08.limits": ("labkit service create --name lab08-api --replicas 2 labkit/base sleep 600", "no memory limit"),
    "08.compose": ("mkdir -p /tmp/lab08-app && printf 'services:\\n  api:\\n    image: labkit/base\\n"
                   "    command: [sleep, \"600\"]\\n  front:\\n    image: labkit/base\\n    command: [sleep, \"600\"]\\n' "
                   "> /tmp/lab08-app/compose.yaml && labkit compose -f /tmp/lab08-app/compose.yaml up",
                   "1 replica(s) running, not 2"),
    "09.least-caps": ("labkit run -d --name lab09-caps --cap-drop ALL -- sleep 600", "no capability"),
    "09.no-new-privs": ("labkit run -d --name lab09-nnp -- sleep 600", "NoNewPrivs is 0"),
    "09.userns": ("labkit run -d --name lab09-remap -- sleep 600", "root inside is root outside"),
    "09.device-rule": ("labkit run -d --name lab09-disk --device-cgroup-rule 'b 7:* rw' -- sleep 600",
                       "for writing too"),
}


def labkit(*args):
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=120)


def _misses(ex):
    """{name: (commands, words)}: the module's near misses, else the one here."""
    if ex.near_misses:
        return ex.near_misses
    commands, word = NEAR_MISS[ex.id]
    return {"near miss": ([commands], word)}


def test_every_exercise_has_near_misses_alternatives_and_three_hints():
    for ex in lab.exercises():
        assert len(ex.hints) == 3 and ex.solution and ex.reset_commands
        assert lab.show_solution(ex.id).startswith("sudo ")
        assert _misses(ex), ex.id
    assert not set(NEAR_MISS) - {ex.id for ex in lab.exercises()}
    kept = [ex for ex in lab.exercises() if ex.alternatives or ex.near_misses]
    for ex in kept:    # an exercise with variants has them all: 2 correct others, named misses
        assert len(ex.alternatives) >= 2 and ex.near_misses and ex.id not in NEAR_MISS, ex.id


@pytest.mark.parametrize("exercise_id", sorted(ex.id for ex in lab.exercises()))
def test_the_check_tells_right_from_wrong(exercise_id, rootfs, monkeypatch):
    monkeypatch.setattr(lab01, "BREAKOUT_SECONDS", 3)    # the endless breakout's near miss
    if exercise_id.startswith(("06.", "08.", "09.no-raw")):   # bridges, veths and rules: in a namespace of the test's own
        from netns_helper import private_netns
        with private_netns():
            _every_way(exercise_id)
            from labkit.leaks import network_leftovers
            assert network_leftovers() == []
    else:
        _every_way(exercise_id)


def _every_way(exercise_id):
    """Before anything: ✗ with hint 1. Each near miss: ✗ saying its words.
    The reference, then each other correct solution: ✔. After each, and
    after the last reset, nothing of it is left."""
    ex = lab.get(exercise_id)
    out = []
    try:
        lab.reset(exercise_id)
        assert lab.check(exercise_id, out=out.append) is False
        assert ex.hints[0] in out[-1] and out[-1].startswith("✗")
        for name, (commands, word) in _misses(ex).items():
            lab.reset(exercise_id)
            lab._shell(commands)
            assert lab.check(exercise_id, out=out.append) is False and word in out[-1], (name, out[-1])
        ways = {"reference": None, **ex.alternatives}
        for name, commands in ways.items():
            if commands is None:
                lab.solve(exercise_id)
            else:
                lab.reset(exercise_id)
                lab._shell(commands)
            assert lab.check(exercise_id, out=out.append) is True, (name, out[-1])
    finally:
        lab.reset(exercise_id)
    assert lab.check(exercise_id, out=out.append) is False
    assert not [c for c in containers.all_ids() if c.startswith(("lab09-", "lab08-", "lab06-", "lab05-", "lab03-"))]
    assert not glob.glob("/tmp/lab0[1-5]*"), glob.glob("/tmp/lab0[1-5]*")
    assert not [p for argv in (("sleep", n) for n in ("1011", "1012", "1021", "1022", "1023", "1031"))
                for p in lab.find(*argv)] and not lab.find("sh", "-c", lab03.BUSY)
    assert not glob.glob("/sys/fs/cgroup/lab03*") and not glob.glob("/sys/fs/cgroup/*/lab03*")
    from labkit.leaks import image_leftovers
    assert image_leftovers() == []
    assert not [n for n in os.listdir("/run/netns") if n.startswith("lk-")] if os.path.isdir("/run/netns") else True


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


# 09.no-raw judged by the kernel, not by the command: other spellings and
# another way to the same capabilities pass; a container without a network,
# or with every capability dropped, does not, each with its reason.
OTHERS = "CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP"


@pytest.mark.parametrize("flags, word", [
    ("--network labkit --cap-drop net_raw", None),
    ("--cap-drop CAP_NET_RAW --network=labkit", None),
    ("--network labkit --cap-drop ALL " + " ".join(f"--cap-add {c}" for c in OTHERS.split()), None),
    ("--cap-drop NET_RAW", "no network but lo"),
    ("--network labkit --cap-drop ALL", "lost more than CAP_NET_RAW"),
])
def test_no_raw_is_judged_by_the_kernel(flags, word, rootfs):
    from netns_helper import private_netns
    with private_netns():
        out = []
        try:
            lab._shell([f"labkit run -d --name lab09-noraw {flags} -- sleep 600"])
            assert lab.check("09.no-raw", out=out.append) is (word is None), out[-1]
            assert word is None or word in out[-1], out[-1]
        finally:
            lab.reset("09.no-raw")
        from labkit.leaks import network_leftovers
        assert network_leftovers() == []


# 02's hazard, done on purpose: in a throwaway mount namespace (private from
# the host's), / is made shared, as systemd leaves it, and a new namespace
# that forgot `mount --make-rprivate /` mounts a proc of its own PID
# namespace: it propagates over /proc. The check sees it first and says how
# to recover; the exercise's reset recovers.
HAZARD = r"""
import subprocess, sys
from labkit import lab
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
