"""`free` in a memory-limited cgroup with its own PID namespace: the host's
total without lxcfs, the limit with lxcfs's meminfo bound over /proc/meminfo."""

import os
import shutil

import pytest

from labkit.linux.cgroups import lxcfs
import workloads

pytestmark = [pytest.mark.usefixtures("real"),
              pytest.mark.skipif(not shutil.which("lxcfs"), reason="lxcfs is not installed"),
              pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")]


def test_free_tells_the_limit_only_with_lxcfs():
    was_mounted = lxcfs.mounted()
    f = workloads.free_inside("64m")
    assert f["inside_without_lxcfs"] == f["host_total"]   # /proc/meminfo is the host's
    assert f["inside_with_lxcfs"] == f["limit_bytes"] < f["host_total"]
    targets = [t for _, t in f["bind_mounts"]]
    assert "/proc/meminfo" in targets and all(t.startswith("/proc/") for t in targets)
    assert lxcfs.mounted() == was_mounted                   # stopped only if we started it
