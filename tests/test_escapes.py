"""The escape battery: each way out of a container, blocked by default and
possible only with the guard that stops it turned off on purpose. Runs on
this host (cgroup v1 or hybrid) and again in user-mode Linux (cgroup v2, its
device rules a BPF program): tests/test_uml_v2.py boots it there."""

import os

import pytest

from labkit.course.facts import security

pytestmark = pytest.mark.root

ESCAPES = ["mount", "proc_sys", "userns_seccomp", "device_cgroup", "release_agent", "leaked_fd", "cwd_outside"]


@pytest.mark.parametrize("name", ESCAPES)
def test_blocked_by_default_possible_with_the_guard_off(name, rootfs):
    f = getattr(security, name)()
    assert f["ok"], f
    if name == "release_agent":
        v1 = os.path.exists(security.FREEZER_AGENT)
        assert f["applies"] is v1, f
        if v1:
            assert f["outside"].endswith(os.uname().nodename)
    elif f["outside"] is not None:
        assert f["inside"] != f["outside"]


def test_the_default_keeps_dockers_guards_and_privileged_none(rootfs):
    f = security.side_by_side()
    assert f["ok"], f
    assert f["inside"]["caps"] == "00000000a80425fb"
    priv = f["columns"]["labkit run --privileged"]
    assert priv["open_disk"] == "yes" or priv["mknod"] == "yes"


def test_release_agent_is_set_back_on_the_host(rootfs):
    if not os.path.exists(security.FREEZER_AGENT):
        pytest.skip("no cgroup v1 freezer hierarchy: nothing to set back")
    before = open(security.FREEZER_AGENT).read()
    security.release_agent()
    assert open(security.FREEZER_AGENT).read() == before
    assert not os.path.exists("/sys/fs/cgroup/freezer/lab-escape")
