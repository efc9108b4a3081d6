import os

import pytest

from labkit.linux.cgroups import hierarchy

# Inside the UML harness `-p no:cacheprovider` etc. are given; nothing here
# depends on where the suite runs: the same cases meet v1 and v2.


def labkit_cgroups():
    """Every `labkit` directory in every cgroup hierarchy mounted."""
    layout = hierarchy.detect()
    bases = list(layout.v1_mounts) + ([layout.v2] if layout.v2 else [])
    return [os.path.join(b, "labkit") for b in bases
            if os.path.exists(os.path.join(b, "labkit"))]


@pytest.fixture
def real():
    """Tests that create real cgroups: root only, and nothing may be left."""
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    if hierarchy.detect().version is None:
        pytest.skip("no cgroup filesystem mounted")
    before = labkit_cgroups()
    assert before == [], f"labkit cgroups left by someone else: {before}"
    yield
    left = labkit_cgroups()
    if left:
        from labkit.linux import cgroups
        cgroups.gc([])
    assert left == [], f"test left cgroups behind: {left}"


def _touch(path, content=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(content)


V1_FILES = {
    "memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.usage_in_bytes",
               "memory.max_usage_in_bytes", "memory.oom_control"],
    "cpu,cpuacct": ["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.stat",
                    "cpuacct.usage"],
    "pids": ["pids.max", "pids.current", "pids.events"],
    "cpuset": ["cpuset.cpus", "cpuset.mems"],
}


@pytest.fixture
def fake_v1(tmp_path):
    """A v1 layout of plain files, as youki's tests do: no root needed."""
    root = tmp_path / "cgroup"
    for hier, files in V1_FILES.items():
        for name in files + ["cgroup.procs"]:
            _touch(str(root / hier / name))
    _touch(str(root / "cpuset" / "cpuset.cpus"), "0-3\n")
    _touch(str(root / "cpuset" / "cpuset.mems"), "0\n")
    return str(root)


@pytest.fixture
def fake_v2(tmp_path):
    root = tmp_path / "cgroup2"
    _touch(str(root / "cgroup.controllers"), "cpu io memory pids\n")
    for name in ["cgroup.subtree_control", "cgroup.procs", "memory.max", "memory.swap.max",
                 "cpu.max", "cpu.weight", "pids.max", "memory.events", "cpu.stat"]:
        _touch(str(root / name))
    return str(root)
