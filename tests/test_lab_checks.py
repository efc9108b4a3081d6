"""Pieces of the exercises' checks on crafted inputs: no root needed. Each
one is a false negative or a false positive a student met, kept as a case
the old check got wrong."""

import subprocess

import pytest

from labkit.course import lab
from labkit.linux import mountinfo
from labkit.course.lab import chroot, security, services


@pytest.mark.parametrize("line, found", [
    ("sleep 1011", True), ("/bin/sleep 1011", True), ("/usr/bin/sleep 1011", True),
    ("busybox sleep 1011", True), ("/bin/busybox sleep 1011", True),
    ("sleep 10110", False), ("xsleep 1011", False), ("unshare --pid sleep 1011", False),
    ("sleep 1011 2", False), ("sh -c sleep 1011", False),
])
def test_a_process_is_found_by_what_it_runs_however_spelled(line, found):
    """The check's pattern, read by Python as find() does and by pgrep's
    extended regex as the reset's pkill does: both agree on every spelling."""
    import re
    pattern = lab.pattern("sleep", "1011")
    assert bool(re.fullmatch(pattern, line)) is found
    grep = subprocess.run(["grep", "-Eqx", pattern], input=line + "\n", text=True)
    assert (grep.returncode == 0) is found


def test_a_pattern_keeps_regex_characters_literal():
    import re
    pattern = lab.pattern("sh", "-c", "while :; do :; done # lab03 (x)+.*")
    assert re.fullmatch(pattern, "sh -c while :; do :; done # lab03 (x)+.*")
    assert not re.fullmatch(pattern, "sh -c while :; do :; done # lab03 xx")


HOST_ROOT_BTRFS = "29 1 0:31 /@ / rw,relatime shared:1 - btrfs /dev/vda2 rw,subvol=/@\n"


@pytest.mark.parametrize("line, shows", [
    ("50 40 0:31 / /old rw - btrfs /dev/vda2 rw", True),          # the whole filesystem: / is in it
    ("50 40 0:31 /@ /old rw - btrfs /dev/vda2 rw", True),         # the subvolume itself
    ("50 40 0:31 /@/var/lib/labkit /x rw - btrfs /dev/vda2 rw", False),   # a directory below /
    ("50 40 0:32 / /old rw - btrfs /dev/vdb rw", False),          # another filesystem
])
def test_the_hosts_root_is_found_on_a_btrfs_subvolume(line, shows):
    """01.pivot: on a host whose / is the subvolume /@, a mount of the whole
    filesystem (root "/") still shows the host's / below it; the old check
    looked for root == "/" only on the host's own terms."""
    host = mountinfo.parse(HOST_ROOT_BTRFS)[0]
    assert chroot.shows_host_root(mountinfo.parse(line)[0], host) is shows


def _caps(names):
    from labkit.linux.process import CAPABILITIES
    return "%016x" % sum(1 << CAPABILITIES.index(n) for n in names)


ALL_DEFAULT = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_SETUID"]


@pytest.mark.parametrize("eff, prm, bnd, done, words", [
    (["CAP_NET_BIND_SERVICE"],) * 3 + (True, "nothing else, in every set"),
    (["CAP_NET_BIND_SERVICE"], ["CAP_NET_BIND_SERVICE"], ALL_DEFAULT, False, "bounding set still has 3 more"),
    (["CAP_NET_BIND_SERVICE"], ALL_DEFAULT, ALL_DEFAULT, False, "still holds 3 more"),
    ([], [], ["CAP_NET_BIND_SERVICE"], False, "no capability at all"),
])
def test_least_caps_reads_every_set(eff, prm, bnd, done, words):
    """09.least-caps: CapEff alone passed an init whose bounding set still
    held Docker's defaults, which a setuid-root program gets back."""
    status = {"CapEff": [_caps(eff)], "CapPrm": [_caps(prm)], "CapBnd": [_caps(bnd)]}
    ok, why = security.least_caps_verdict(status)
    assert ok is done and words in why, why


def test_replicas_are_judged_on_enough_requests(monkeypatch):
    """08.replicas: a balancer that is not strictly round robin (random, or
    IPVS's weights) lets the third replica answer only at the 8th request;
    6 requests failed it."""
    running = [{"container": f"lab08-web.{i}", "task": "t"} for i in (1, 2, 3)]
    spec = {"ports": [{"host_port": 8088}]}
    answers = iter(["lab08-web.1.t", "lab08-web.2.t"] * 3 + ["lab08-web.1.t", "lab08-web.3.t"] + [None] * 40)
    monkeypatch.setattr(services, "_service", lambda name, want, label=None: ((spec, running), None))
    import labkit.course.facts.services as svcf
    monkeypatch.setattr(svcf, "get", lambda port, timeout=2: next(answers))
    ok, why = services._replicas()
    assert ok and "within 8 requests" in why, why
    answers = iter(["lab08-web.1.t", "lab08-web.2.t"] * 40)
    ok, why = services._replicas()
    assert not ok and "2 replica(s) in 30 requests" in why, why


@pytest.mark.parametrize("error, words", [
    (subprocess.TimeoutExpired(["labkit", "exec", "x"], 60), "gave up on `labkit exec x` after 60 s"),
    (FileNotFoundError(2, "No such file or directory", "/usr/sbin/nft"), "needs /usr/sbin/nft"),
    (PermissionError(13, "Permission denied"), "could not finish: PermissionError"),
])
def test_a_check_that_cannot_finish_says_why_in_one_line(error, words):
    def broken():
        raise error
    ex = lab.Exercise("00.x", "t", "g", ["a", "b", "c"], broken, ["true"], ["true"])
    done, seen = ex.check()
    assert done is False and words in seen and "\n" not in seen, seen


def test_what_a_check_prints_reads_as_rows():
    """JupyterLab breaks an output line anywhere, mid-word too: every hint
    and a long ✗ come wrapped at lab.WIDTH, on spaces."""
    out = []
    for ex in lab.exercises():
        for n in (1, 2, 3):
            lab.hint(ex.id, n, out=out.append)
    long = "✗ 00.x: " + " ".join(["word"] * 60) + "\n  hint 1: " + "more " * 40
    out.append(lab.wrap(long))
    lines = [line for text in out for line in text.split("\n")]
    assert all(len(line) <= lab.WIDTH or " " not in line.strip() for line in lines), max(lines, key=len)
    assert " ".join(lab.wrap(long).split()) == " ".join(long.split())


def test_an_instructor_reads_every_way():
    """`labkit lab variants ID`: the reference, the other correct solutions
    and the near misses the tests run, with their commands (no root)."""
    import sys
    for ex in lab.exercises():
        r = subprocess.run([sys.executable, "-m", "labkit", "lab", "variants", ex.id], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("another correct solution,") == len(ex.alternatives) >= 2
        assert r.stdout.count("near miss,") == len(ex.near_misses) >= 2
        assert all(f"    {c}" in r.stdout for c in ex.solution)
    bad = subprocess.run([sys.executable, "-m", "labkit", "lab", "variants", "09.nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and "labkit lab list" in bad.stderr and "Traceback" not in bad.stderr


def test_a_start_lines_log_leaves_out_nohups_own_note(tmp_path):
    """A cell's `nohup setsid -f CMD >LOG 2>&1` has a terminal for its input:
    nohup notes it gave CMD /dev/null instead. A ✗ shows what CMD said."""
    log = tmp_path / "start.log"
    log.write_text("nohup: ignoring input\nchroot: cannot change root directory to 'x': No such file or directory\n")
    assert lab.log_tail(str(log)) == ["chroot: cannot change root directory to 'x': No such file or directory"]
    log.write_text("nohup: ignoring input\n")
    assert lab.log_tail(str(log)) is None
    log.write_text("nohup: failed to run command 'chrot': No such file or directory\n")
    assert lab.log_tail(str(log)) == ["nohup: failed to run command 'chrot': No such file or directory"]


def test_a_check_waits_for_a_process_on_its_way_and_only_then():
    """A start line's process may still be exec'ing its command when the
    check runs (setsid -f returns at the fork): the check waits for one whose
    command line holds the command further on, and not when there is none."""
    import time
    on_its_way = subprocess.Popen(["sh", "-c", "sleep 0.3; exec sleep 1099"])
    try:
        pid, why = lab.started("sleep", "1099")
        assert pid == on_its_way.pid and why is None
    finally:
        on_its_way.kill()
        on_its_way.wait()
    t0 = time.monotonic()
    pid, why = lab.started("sleep", "1099")
    assert pid is None and "no process runs `sleep 1099`" in why and time.monotonic() - t0 < 0.5
