"""Real cgroups on the running kernel, as root. The same cases run on the
host (v1 or hybrid) and inside user-mode Linux (v2): see tests/test_uml_v2.py."""

import os
import signal
import subprocess
import sys
import time
import types

import pytest

from labkit.linux import cgroups
from labkit.linux.cgroups import hierarchy
from labkit.errors import LabkitError
from labkit.runtime.config import ContainerConfig
from labkit.stages.cgroups import CgroupsStage
import workloads

pytestmark = pytest.mark.usefixtures("real")
CID = f"t{os.getpid()}"


def proc_cgroup(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def show(facts):
    """Print the measured facts (pytest -s shows them; CI logs keep them)."""
    print({k: v for k, v in facts.items() if k != "series"})


def sleeper():
    return subprocess.Popen(["sleep", "60"])


def test_mode_matches_mountinfo():
    with open("/proc/self/mountinfo") as f:
        types_ = [line.split(" - ")[1].split()[0] for line in f if " - " in line]
    v1_controllers = hierarchy.detect().v1
    expected = ("hybrid" if v1_controllers and "cgroup2" in types_ else
                "v1" if v1_controllers else "v2")
    assert cgroups.mode() == expected


def test_limits_hold_in_the_kernel_and_destroy_kills_and_removes():
    m = cgroups.create(CID, {"memory": "64m", "pids": 10, "cpus": 0.5})
    p = sleeper()
    try:
        m.add(p.pid)
        assert m.pids() == [p.pid]
        assert f"/labkit/{CID}" in proc_cgroup(p.pid)
        s = m.stats()
        assert s["memory_limit"] == 64 << 20
        assert s["pids_limit"] == 10 and s["pids_current"] == 1
        assert s["cpu_usage_usec"] is not None
    finally:
        m.destroy()
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert all(not os.path.exists(d) for d in m.dirs)
    m.destroy()                                       # idempotent


def test_oom_kill_at_the_memory_limit():
    f = workloads.memory_oom("32m")
    show(f)
    assert f["killed_by"] == "SIGKILL"
    assert f["oom_kills"] >= 1
    assert f["memory_peak"] is None or f["memory_peak"] <= f["limit_bytes"]
    # It got close to the limit before dying, and never past it.
    assert f["limit_bytes"] // 2 <= f["allocated_mib"] << 20 <= f["limit_bytes"]


def test_fork_bomb_stops_at_pids_max_and_host_still_forks():
    f = workloads.fork_bomb(limit=12)
    show(f)
    assert f["pids_current"] == f["pids_limit"] == 12
    assert f["forks_refused"] > 0
    assert f["host_can_fork"]


def test_cpu_quota_half_a_core():
    f = workloads.cpu_quota(0.5, seconds=2.0)
    show(f)
    assert abs(f["percent_of_one_core"] - 50) <= 10, f
    assert f["nr_throttled"] > 0


def test_cpu_shares_one_to_three_on_one_cpu():
    f = workloads.cpu_shares((256, 768), seconds=3.0)
    show(f)
    assert abs(f["fractions"][1] - 0.75) <= 0.10, f
    assert f["percent_of_one_core"] > 80        # the cpu was busy all along


def test_sampler_reads_at_least_10_hz():
    m = cgroups.create(CID, {"pids": 5})
    try:
        t0 = time.monotonic()
        series = cgroups.sample(m, until=lambda: time.monotonic() - t0 > 1.0, hz=20)
    finally:
        m.destroy()
    n = len(series["t"])
    assert n / series["t"][-1] >= 10
    assert series["t"] == sorted(series["t"]) and len(series["pids_current"]) == n


def assert_nothing_created():
    for base in list(hierarchy.detect().v1_mounts) + [hierarchy.detect().v2]:
        if base:
            assert not os.path.exists(os.path.join(base, "labkit")), base


def test_limit_refused_by_kernel_names_file_and_value():
    # A cfs period under 1 ms: the kernel says EINVAL (v1 and v2 alike).
    with pytest.raises(LabkitError) as e:
        cgroups.create(CID, {"memory": "16m", "cpu_quota": 50, "cpu_period": 100})
    msg = str(e.value)
    assert "refused by the kernel" in msg and "100" in msg
    assert "cpu.cfs_period_us" in msg or "cpu.max" in msg
    assert_nothing_created()


def test_memory_swap_below_memory_refused():
    with pytest.raises(LabkitError, match="memory|swap"):
        cgroups.create(CID, {"memory": "64m", "memory_swap": "32m"})
    assert_nothing_created()


def test_unknown_controller_refused_before_anything():
    with pytest.raises(LabkitError, match="unknown cgroup controller 'blkioo'"):
        cgroups.create(CID, {"pids": 3}, controllers=["blkioo"])
    assert_nothing_created()


def test_gc_removes_all_but_kept_and_kills_their_processes():
    a, b = cgroups.create(CID + "a", {"pids": 5}), cgroups.create(CID + "b", {"pids": 5})
    pa, pb = sleeper(), sleeper()
    try:
        a.add(pa.pid)
        b.add(pb.pid)
        assert cgroups.gc([a.id]) == [b.id]
        assert pb.wait(timeout=10) == -signal.SIGKILL
        assert pa.poll() is None and a.pids() == [pa.pid]
        assert cgroups.gc([]) == [a.id]
        assert pa.wait(timeout=10) == -signal.SIGKILL
    finally:
        for p in (pa, pb):
            if p.poll() is None:
                p.kill()
            p.wait()
    assert_nothing_created()


RUNNER = """
import subprocess, sys
from labkit.linux import cgroups
m = cgroups.create(sys.argv[1], {"memory": "32m", "pids": 8})
child = subprocess.Popen(["sleep", "60"])
m.add(child.pid)
print(child.pid, flush=True)
sys.stdin.read()
"""


def test_gc_after_the_runner_is_sigkilled():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, CID], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env)
    child = int(runner.stdout.readline())
    runner.kill()                                      # no teardown ran
    runner.wait()
    m = cgroups.load(CID)
    assert m is not None and m.pids() == [child]
    assert cgroups.gc([]) == [CID]
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
        try:
            os.waitpid(child, os.WNOHANG)              # reaped by init, not by us
        except ChildProcessError:
            pass
        time.sleep(0.02)
    assert_nothing_created()


def test_stage_prepare_attach_teardown(tmp_path):
    stage = CgroupsStage()
    assert not stage.wanted(ContainerConfig(id=CID, args=["true"], rootfs="/"))
    config = ContainerConfig(id=CID, args=["true"], rootfs="/", resources={"memory": "48m"})
    assert stage.wanted(config)
    c = types.SimpleNamespace(config=config, state_dir=str(tmp_path), rootfs="/")
    stage.prepare(c)
    p = sleeper()
    try:
        stage.attach(c, p.pid)
        assert c.cgroup.pids() == [p.pid]
        assert c.cgroup.stats()["memory_limit"] == 48 << 20
    finally:
        stage.teardown(c)
        stage.teardown(c)
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert_nothing_created()
