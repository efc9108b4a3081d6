"""The leak scan reports what labkit makes, not whatever has "labkit" in
its name: the lab's own systemd service (labkit-jupyter.service) has a
cgroup on every v2 machine that runs it, and it is not a leftover."""

import os

import pytest

from labkit import leaks


def test_own_cgroup_names():
    assert leaks.own_cgroup("labkit")
    assert leaks.own_cgroup(leaks.HARNESS_PREFIX + "1a2b")
    assert not leaks.own_cgroup("labkit-jupyter.service")
    assert not leaks.own_cgroup("system.slice")


@pytest.mark.root
def test_a_service_cgroup_is_not_a_leak_but_a_harness_one_is():
    top = "/sys/fs/cgroup/unified" if os.path.ismount("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    service = os.path.join(top, "labkit-jupyter.service")
    harness = os.path.join(top, leaks.HARNESS_PREFIX + "leaktest")
    made = []
    try:
        for d in (service, harness):
            if not os.path.isdir(d):
                os.mkdir(d)
                made.append(d)
        found = leaks.leftovers()
        assert f"cgroup {harness}" in found
        assert not any(line.endswith("labkit-jupyter.service") for line in found)
    finally:
        for d in made:
            os.rmdir(d)


def test_the_suite_sees_a_process_it_left_whatever_its_name():
    """The end of the suite reports every process started during it and still
    running (tests/conftest.py), not only labkit's: a daemon a test forgot."""
    import subprocess
    from conftest import new_processes, processes
    before = processes()
    daemon = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        found = new_processes(before, grace=0)
        # (its command line may be empty for a moment: Popen returns while the exec completes)
        assert any(line.startswith(f"process {daemon.pid} started during the suite") for line in found), found
    finally:
        daemon.kill()
        daemon.wait()
    assert not any(f"process {daemon.pid} " in line for line in new_processes(before, grace=0))
