"""Stage 3 end to end, through `labkit run`: the limits are in the kernel's
files while the container runs, exec'd processes join its cgroup, the
cgroup goes when the container does (also after a SIGKILL of the runner and
`labkit gc`), bad limits are refused before anything exists, and --lxcfs
makes `free` tell the limit.

The same file runs on the host (v1 or hybrid) and inside user-mode Linux
(pure v2; tests/test_uml_v2.py)."""

import os
import re
import shutil
import signal
import subprocess

import pytest

from labkit import api, home
from labkit.linux import cgroups
from labkit.linux.cgroups import hierarchy, lxcfs
from labkit.linux.cgroups.resources import parse_cpus, shares_to_weight
import proc_helper
from labkit.runtime import container as ct

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
MiB = 1 << 20
needs_lxcfs = pytest.mark.skipif(not shutil.which("lxcfs") or not os.path.exists("/dev/fuse"),
                                 reason="lxcfs is not installed (or no /dev/fuse)")


def name(what):
    return f"cgrun-{what}-{os.getpid()}"


def read(path):
    with open(path) as f:
        return f.read().strip()


def mem_total(free_output):
    return int(re.search(r"^Mem:\s+(\d+)", free_output, re.M).group(1))


def host_total():
    with open("/proc/meminfo") as f:
        return int(re.search(r"MemTotal:\s+(\d+) kB", f.read()).group(1)) * 1024


def wait_for(predicate, timeout=10.0):
    assert proc_helper.wait_for(predicate, timeout), "timed out"


def state_or_none(cid):
    try:
        return ct.load(cid)
    except Exception:
        return None


@pytest.fixture
def gone():
    """Names given here must have no cgroup and no state after the test."""
    names = []
    yield names.append
    for cid in names:
        if state_or_none(cid) is not None:
            api.call(["rm", "-f", cid])
        m = cgroups.load(cid)
        if m is not None:
            m.destroy()
        assert m is None, f"cgroup of {cid} left behind"


def test_limits_are_in_the_cgroup_files_while_it_runs(rootfs, gone):
    cid = name("limits")
    gone(cid)
    layout = hierarchy.detect()
    has_cpuset = "cpuset" in (layout.v1 if layout.version == 1 else layout.v2_controllers)
    pin = str(min(os.sched_getaffinity(0)))
    extra = ["--cpu-shares", "512"] + (["--cpuset-cpus", pin] if has_cpuset else [])
    with api.Container("sleep 300", name=cid, memory="48m", cpus=0.25, pids=17, extra=extra) as c:
        m = cgroups.load(cid)
        assert m is not None and c.pid in m.pids()
        quota, period = parse_cpus(0.25)
        if m.version == 2:
            d = m.dirs[0]
            assert read(f"{d}/memory.max") == str(48 * MiB)
            assert read(f"{d}/cpu.max") == f"{quota} {period}"
            assert read(f"{d}/cpu.weight") == str(shares_to_weight(512))
            assert read(f"{d}/pids.max") == "17"
            if has_cpuset:
                assert read(f"{d}/cpuset.cpus") == pin
        else:
            assert int(read(f"{m.paths['memory']}/memory.limit_in_bytes")) == 48 * MiB
            assert int(read(f"{m.paths['cpu']}/cpu.cfs_quota_us")) == quota
            assert int(read(f"{m.paths['cpu']}/cpu.cfs_period_us")) == period
            assert int(read(f"{m.paths['cpu']}/cpu.shares")) == 512
            assert read(f"{m.paths['pids']}/pids.max") == "17"
            if has_cpuset:
                assert read(f"{m.paths['cpuset']}/cpuset.cpus") == pin
        # The same through the manager's counters, which the facts use.
        s = m.stats()
        assert s["memory_limit"] == 48 * MiB and s["pids_limit"] == 17
        assert 1 <= s["pids_current"] <= 17
        # The kernel applies them to the init: its cpuset is the pinned cpu.
        allowed = re.search(r"Cpus_allowed_list:\s+(\S+)", read(f"/proc/{c.pid}/status")).group(1)
        assert allowed == pin or not has_cpuset


def test_exec_joins_the_containers_cgroup(rootfs, gone):
    cid = name("exec")
    gone(cid)
    with api.Container("sleep 300", name=cid, memory="64m") as c:
        m = cgroups.load(cid)
        before = set(m.pids())
        proc = subprocess.Popen(api.labkit_argv("exec", cid, "sleep", "30"))
        try:
            def new_sleep():
                return [p for p in set(m.pids()) - before
                        if read(f"/proc/{p}/cmdline").split("\0")[0] == "sleep"]
            wait_for(new_sleep)
            pid = new_sleep()[0]
            assert f"/labkit/{cid}" in read(f"/proc/{pid}/cgroup")
            # Inside, in the container's cgroup namespace, that cgroup is "/".
            inside = c.exec("cat /proc/self/cgroup").stdout
            assert inside.strip() and all(line.endswith(":/") for line in inside.split()
                                          if "memory" in line or line.startswith("0::"))
        finally:
            proc.kill()
            proc.wait()


def test_oom_kill_through_the_cli(rootfs, labkit_cli, gone):
    cid = name("oom")
    gone(cid)
    # dd's buffer is one 48 MiB allocation, touched in one read(2) from
    # /dev/zero: over the 32 MiB limit at once, with nothing to reclaim (a
    # growing pipe buffer instead can crawl for a minute on a slow kernel).
    hog = "dd if=/dev/zero of=/dev/null bs=48M count=1"
    r = labkit_cli("run", "--rm", "--name", cid, "--memory", "32m", "--memory-swap", "32m", "--",
                   "sh", "-c", hog)
    assert r.returncode == 128 + signal.SIGKILL, r.stderr
    # The same command outside any cgroup limit completes.
    busybox = os.path.join(home.rootfs_dir(rootfs), "bin", "busybox")
    out = subprocess.run(f"{busybox} {hog}", shell=True, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_pids_limit_through_the_cli(rootfs, labkit_cli, gone):
    cid = name("pids")
    gone(cid)
    script = "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait"
    r = labkit_cli("run", "--rm", "--name", cid, "--pids-limit", "5", "--", "sh", "-c", script)
    assert r.returncode != 0 and "fork" in r.stderr.lower(), r.stderr     # EAGAIN at pids.max
    r = labkit_cli("run", "--rm", "--name", cid, "--pids-limit", "10", "--", "sh", "-c", script)
    assert r.returncode == 0 and r.stderr == "", r.stderr                # 1 + 8 fit in 10


@pytest.mark.parametrize("args, words", [
    (["--memory", "64X"], ["--memory 64X", "unit"]),
    (["--memory", "lots"], ["--memory lots"]),
    (["--cpus", "0"], ["--cpus 0"]),
    (["--pids-limit", "0"], ["pids"]),
    (["--cpuset-cpus", "zero"], ["cpuset"]),
])
def test_bad_limits_are_refused_before_anything_exists(rootfs, labkit_cli, args, words):
    cid = name("bad")
    r = labkit_cli("run", "--rm", "--name", cid, *args, "--", "true")
    err = r.stderr.strip()
    assert r.returncode != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("labkit: ") and all(w in err for w in words), err
    assert cgroups.load(cid) is None and state_or_none(cid) is None


def test_cgroup_removed_after_exit(rootfs, labkit_cli, gone):
    cid = name("exit")
    gone(cid)
    r = labkit_cli("run", "--rm", "--name", cid, "--memory", "64m", "--pids-limit", "10", "--",
                   "sh", "-c", "cat /proc/self/cgroup")
    assert r.returncode == 0 and r.stdout.strip()
    assert cgroups.load(cid) is None and state_or_none(cid) is None


def _kill_runner_then_gc(cid, labkit_cli, extra=()):
    proc = subprocess.Popen(api.labkit_argv("run", "--name", cid, "--memory", "64m", *extra,
                                            "--", "sleep", "300"), start_new_session=True)
    try:
        wait_for(lambda: (state_or_none(cid) or {}).get("status") == "running")
        init = ct.load(cid)["pid"]
        assert cgroups.load(cid) is not None
    finally:
        proc.send_signal(signal.SIGKILL)    # no teardown: the runner is gone at once
        proc.wait()
    wait_for(lambda: ct.start_time(init) is None)   # PDEATHSIG took the container with it
    assert cgroups.load(cid) is not None            # … but its cgroup is still there
    assert ct.load(cid)["status"] == "dead"
    r = labkit_cli("gc")
    assert r.returncode == 0 and cid in r.stdout, r.stdout + r.stderr
    assert cgroups.load(cid) is None and state_or_none(cid) is None


def test_sigkill_of_the_runner_then_gc_removes_the_cgroup(rootfs, labkit_cli, gone):
    cid = name("kill")
    gone(cid)
    _kill_runner_then_gc(cid, labkit_cli)


def lxcfs_daemons_of(cid):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = read(f"/proc/{pid}/cmdline").replace("\0", " ")
        except OSError:
            continue
        if "lxcfs" in cmd and f"/{cid}/" in cmd:
            found.append(pid)
    return found


def lxcfs_mounts():
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if " - fuse.lxcfs " in line]


@needs_lxcfs
def test_free_tells_the_limit_only_with_lxcfs(rootfs, labkit_cli, gone):
    cid = name("free")
    gone(cid)
    mounts_before = lxcfs_mounts()
    plain = labkit_cli("run", "--rm", "--memory", "48m", "--", "free", "-b")
    with_lxcfs = labkit_cli("run", "--rm", "--name", cid, "--memory", "48m", "--lxcfs", "--",
                            "sh", "-c", "free -b; busybox free -b")
    assert plain.returncode == 0 and with_lxcfs.returncode == 0, with_lxcfs.stderr
    assert mem_total(plain.stdout) == host_total() > 48 * MiB      # /proc/meminfo: the host's
    procps, busybox = re.findall(r"^Mem:\s+(\d+)", with_lxcfs.stdout, re.M)
    assert int(procps) == 48 * MiB                                   # lxcfs's meminfo
    assert int(busybox) == host_total()                              # sysinfo(2): no file helps
    # The lxcfs labkit started for it is gone with it; a shared one stays.
    assert lxcfs_mounts() == mounts_before and lxcfs_daemons_of(cid) == []


@needs_lxcfs
def test_lxcfs_needs_pid_and_mnt_namespaces(rootfs, labkit_cli):
    cid = name("lxns")
    for ns in ("net,uts", "pid", "mnt"):
        r = labkit_cli("run", "--rm", "--name", cid, "--ns", ns, "--lxcfs", "--", "true")
        err = r.stderr.strip()
        assert r.returncode != 0 and err.startswith("labkit: --lxcfs needs") and "\n" not in err, err
        assert state_or_none(cid) is None and lxcfs_daemons_of(cid) == []
    r = labkit_cli("run", "--rm", "--name", cid, "--no-proc", "--lxcfs", "--", "true")
    assert r.returncode != 0 and "/proc" in r.stderr


@needs_lxcfs
def test_a_shared_lxcfs_is_used_and_left_running(rootfs, labkit_cli, gone):
    """An lxcfs already serving /var/lib/lxcfs (the lxcfs service) is used
    by the container and not stopped when it exits."""
    if lxcfs.mounted():
        pytest.skip("an lxcfs serves /var/lib/lxcfs already")
    cid = name("shared")
    gone(cid)
    with lxcfs.Lxcfs() as shared:
        r = labkit_cli("run", "--rm", "--name", cid, "--memory", "40m", "--lxcfs", "--", "sh", "-c",
                       "free -b; grep -c ' /proc/meminfo .* fuse.lxcfs' /proc/self/mountinfo")
        assert r.returncode == 0, r.stderr
        assert mem_total(r.stdout) == 40 * MiB and r.stdout.split()[-1] == "1"
        assert not os.path.exists(home.containers_dir(cid))
        assert lxcfs.mounted() and shared._proc.poll() is None       # still serving
        assert lxcfs_daemons_of(cid) == []                          # none of its own
    assert not lxcfs.mounted()


@needs_lxcfs
def test_sigkill_of_the_runner_then_gc_ends_its_lxcfs(rootfs, labkit_cli, gone):
    if lxcfs.mounted():
        pytest.skip("an lxcfs serves /var/lib/lxcfs already: the container would share it")
    cid = name("lxkill")
    gone(cid)
    _kill_runner_then_gc(cid, labkit_cli, extra=["--lxcfs"])
    wait_for(lambda: lxcfs_daemons_of(cid) == [])
    assert not any(f"/{cid}/" in m for m in lxcfs_mounts())
