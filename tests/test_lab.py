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


# A near miss per exercise: a container that runs, but not as asked.
NEAR_MISS = {
    "01.chroot": (_bg("sleep 1011", "sleep", "1011"), "was not chrooted"),
    "01.breakout": ("mkdir -p /tmp/lab01 && printf 'import os\\nos.makedirs(\"x\", exist_ok=True)\\n"
                    "os.chroot(\"x\")\\nos.chdir(\"/\")\\nos.chroot(\".\")\\n' > /tmp/lab01/breakout.py",
                    "still the chroot's"),
    "01.pivot": (lab01.PIVOT_SCRIPT.replace("busybox umount -l .", "true") + "\n" +
                 _bg(f"sh {lab01.PIVOT} $ROOTFS sleep 1012", "sleep", "1012"), "is still mounted in its namespace"),
    "02.pid-alone": (_bg("unshare --pid --fork sleep 1021", "sleep", "1021"), "its /proc is the host's"),
    "02.hostname": (_bg("unshare --uts sleep 1022", "sleep", "1022"), "not 'lab02'"),
    "02.loopback": (_bg("unshare --net sleep 1023", "sleep", "1023"), "lo starts down"),
    "03.memory": (lab03.MEMORY + "mkdir -p $CG && " + _bg('sh -c "echo \\$\\$ > $CG/cgroup.procs && exec sleep 1031"',
                                                          "sleep", "1031"), "has no memory limit"),
    "03.cpu": (lab03.CPU + "mkdir -p $CG && " + _bg(f'sh -c "echo \\$\\$ > $CG/cgroup.procs && exec sh -c \'{lab03.BUSY}\'"',
                                                    "sh", "-c", lab03.BUSY), "has no CPU quota"),
    "03.free": ("labkit run -d --name lab03-free --memory 128m -- sleep 600", "is the host's"),
    "04.overlay": (f"{lab04.SETUP} && {lab04.MOUNT} && echo mine > {lab04.LOWER}/note.txt", "written to the lower layer"),
    "04.whiteout": (f"{lab04.SETUP} && {lab04.MOUNT} && echo mine > {lab04.MERGED}/hello.txt", "is still there"),
    "04.opaque": (f"{lab04.SETUP} && {lab04.MOUNT} && rm {lab04.MERGED}/d/a.conf", "no trusted.overlay.opaque"),
    "05.no-net": (" && ".join(lab05.solution("hostnet", "pass")), "has a network namespace of its own"),
    "05.memory": (" && ".join(lab05.solution("mem", "pass")), "not 48 MiB"),
    "05.mount": (f"mkdir -p {lab05.SHARE} && echo hi > {lab05.SHARE}/hello && " +
                 " && ".join(lab05.solution("data", lab05.EDIT_MOUNT.replace('"rbind", "ro"', '"rbind"'))),
                 "is writable"),
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


def test_every_exercise_has_a_near_miss_and_three_hints():
    assert {ex.id for ex in lab.exercises()} == set(NEAR_MISS)
    for ex in lab.exercises():
        assert len(ex.hints) == 3 and ex.solution and ex.reset_commands
        assert lab.show_solution(ex.id).startswith("sudo ")


@pytest.mark.parametrize("exercise_id", sorted(NEAR_MISS))
def test_the_check_tells_right_from_wrong(exercise_id, rootfs):
    if exercise_id.startswith(("06.", "08.", "09.no-raw")):   # bridges, veths and rules: in a namespace of the test's own
        from netns_helper import private_netns
        with private_netns():
            _both_ways(exercise_id)
            from labkit.leaks import network_leftovers
            assert network_leftovers() == []
    else:
        _both_ways(exercise_id)


def _both_ways(exercise_id):
    ex = lab.get(exercise_id)
    out = []
    try:
        lab.reset(exercise_id)
        assert lab.check(exercise_id, out=out.append) is False
        assert ex.hints[0] in out[-1] and out[-1].startswith("✗")
        miss, word = NEAR_MISS[exercise_id]
        lab._shell([miss])
        assert lab.check(exercise_id, out=out.append) is False and word in out[-1], out[-1]
        lab.solve(exercise_id)
        assert lab.check(exercise_id, out=out.append) is True, out[-1]
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
