"""The manager on fake cgroup trees of plain files: no root needed."""

import os

import pytest

from labkit.linux import cgroups
from labkit.linux.cgroups import hierarchy
from labkit.errors import Conflict, LabkitError, Unsupported

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
PURE_V2 = "21 19 0:19 / /sys/fs/cgroup rw,relatime - cgroup2 none rw,nsdelegate\n"


def read(root, *parts):
    with open(os.path.join(root, *parts)) as f:
        return f.read()


def test_mountinfo_hybrid_and_v2():
    v1, mounts, v2 = hierarchy.parse_mountinfo(HYBRID)
    assert v1 == {"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
                  "memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}
    assert "/sys/fs/cgroup/systemd" in mounts and v2 == "/sys/fs/cgroup/unified"
    assert hierarchy.Layout(v1=v1, v2=v2).mode == "hybrid"
    v1, mounts, v2 = hierarchy.parse_mountinfo(PURE_V2)
    assert (v1, v2) == ({}, "/sys/fs/cgroup")
    assert hierarchy.Layout(v1=v1, v2=v2).mode == "v2"


def test_v1_limits_written_in_units_of_v1(fake_v1):
    assert cgroups.mode(fake_v1) == "v1"
    m = cgroups.create("c1", {"memory": "64m", "cpus": 0.5, "cpu_weight": 100, "pids": 20,
                              "cpuset_cpus": "1"}, root=fake_v1)
    assert read(fake_v1, "memory/labkit/c1/memory.limit_in_bytes") == str(64 << 20)
    assert read(fake_v1, "cpu,cpuacct/labkit/c1/cpu.cfs_quota_us") == "50000"
    assert read(fake_v1, "cpu,cpuacct/labkit/c1/cpu.cfs_period_us") == "100000"
    assert read(fake_v1, "cpu,cpuacct/labkit/c1/cpu.shares") == str(
        cgroups.resources.weight_to_shares(100))
    assert read(fake_v1, "pids/labkit/c1/pids.max") == "20"
    assert read(fake_v1, "cpuset/labkit/c1/cpuset.cpus") == "1"
    # The intermediate cpuset got its parent's cpus, or no task could join.
    assert read(fake_v1, "cpuset/labkit/cpuset.cpus") == "0-3"
    m.add(1234)
    assert read(fake_v1, "memory/labkit/c1/cgroup.procs") == "1234"
    m.destroy()
    m.destroy()                                  # idempotent
    assert not any(os.path.exists(os.path.join(fake_v1, h, "labkit")) for h in os.listdir(fake_v1))


def test_v2_enables_controllers_and_converts(fake_v2):
    assert cgroups.mode(fake_v2) == "v2"
    m = cgroups.create("c2", {"memory": "64m", "memory_swap": "64m", "cpus": 0.5,
                              "cpu_shares": 768, "pids": 7}, root=fake_v2)
    assert set(read(fake_v2, "cgroup.subtree_control").split()) == {"+cpu", "+memory", "+pids"}
    assert set(read(fake_v2, "labkit/cgroup.subtree_control").split()) == {"+cpu", "+memory", "+pids"}
    assert read(fake_v2, "labkit/c2/memory.max") == str(64 << 20)
    assert read(fake_v2, "labkit/c2/memory.swap.max") == "0"
    assert read(fake_v2, "labkit/c2/cpu.max") == "50000 100000"
    assert read(fake_v2, "labkit/c2/cpu.weight") == str(cgroups.resources.shares_to_weight(768))
    assert read(fake_v2, "labkit/c2/pids.max") == "7"
    assert cgroups.gc([], root=fake_v2) == ["c2"]
    assert not os.path.exists(os.path.join(fake_v2, "labkit"))


def test_missing_controller_creates_nothing(fake_v2, fake_v1):
    with pytest.raises(Unsupported, match="'cpuset' is not available.*cpu io memory pids"):
        cgroups.create("c3", {"cpuset_cpus": "0"}, root=fake_v2)
    assert not os.path.exists(os.path.join(fake_v2, "labkit"))
    # A v1 host where the pids hierarchy is not mounted.
    os.rename(os.path.join(fake_v1, "pids"), os.path.join(fake_v1, "other"))
    with pytest.raises(Unsupported, match="'pids' is not mounted"):
        cgroups.create("c3", {"pids": 5, "memory": "1m"}, root=fake_v1)
    assert not any(os.path.exists(os.path.join(fake_v1, h, "labkit")) for h in os.listdir(fake_v1))


def test_unknown_controller_creates_nothing(fake_v1):
    with pytest.raises(LabkitError, match="unknown cgroup controller 'bogus'"):
        cgroups.create("c4", {"memory": "1m"}, root=fake_v1, controllers=["bogus"])
    assert not any(os.path.exists(os.path.join(fake_v1, h, "labkit")) for h in os.listdir(fake_v1))


def test_missing_file_midway_undoes_everything(fake_v2):
    # The kernel offers no cpu.weight here: the error names the file, and
    # the memory limit already written is removed with its cgroup.
    os.unlink(os.path.join(fake_v2, "cpu.weight"))
    with pytest.raises(Unsupported, match="cpu.weight does not exist"):
        cgroups.create("c5", {"memory": "8m", "cpu_weight": 50}, root=fake_v2)
    assert not os.path.exists(os.path.join(fake_v2, "labkit"))


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "x" * 200])
def test_id_cannot_escape_the_tree(fake_v2, bad):
    with pytest.raises(LabkitError):
        cgroups.create(bad, {"pids": 3}, root=fake_v2)
    assert not os.path.exists(os.path.join(fake_v2, "labkit"))


def test_existing_id_is_a_conflict_and_is_kept(fake_v2):
    m = cgroups.create("same", {"pids": 3}, root=fake_v2)
    with pytest.raises(Conflict):
        cgroups.create("same", {"pids": 4}, root=fake_v2)
    assert read(fake_v2, "labkit/same/pids.max") == "3"
    assert cgroups.load("same", root=fake_v2).dirs == m.dirs
    m.destroy()
    assert cgroups.load("same", root=fake_v2) is None


def test_gc_keeps_what_it_is_told(fake_v1):
    for cid in ("keep", "drop1", "drop2"):
        cgroups.create(cid, {"memory": "4m"}, root=fake_v1)
    assert cgroups.gc(["keep"], root=fake_v1) == ["drop1", "drop2"]
    assert os.path.isdir(os.path.join(fake_v1, "memory", "labkit", "keep"))
    assert cgroups.gc([], root=fake_v1) == ["keep"]
    assert not os.path.exists(os.path.join(fake_v1, "memory", "labkit"))
