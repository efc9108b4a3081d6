"""Run only inside user-mode Linux (tests/test_uml_v2.py passes it by name):
proves the cgroup cases next to it met a pure cgroup v2 kernel."""

import os

from labkit.linux import cgroups
from labkit.linux.cgroups import hierarchy


def test_mode_is_v2():
    assert os.environ.get("LABKIT_IN_UML") == "1"
    assert cgroups.mode() == "v2"
    layout = hierarchy.detect()
    assert layout.v1 == {} and layout.v2 == "/sys/fs/cgroup"
    assert {"memory", "cpu", "pids"} <= set(layout.v2_controllers)
