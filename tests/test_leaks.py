"""The leak scan reports what labkit makes, not whatever has "labkit" in
its name: the lab's own systemd service (labkit-jupyter.service) has a
cgroup on every v2 machine that runs it, and it is not a leftover."""

import os

import pytest

from labkit.course import leaks
from labkit.linux.cgroups import hierarchy


def test_own_cgroup_names():
    assert leaks.own_cgroup("labkit")
    assert leaks.own_cgroup(leaks.HARNESS_PREFIX + "1a2b")
    assert leaks.own_cgroup(leaks.CLIENT_PREFIX + "dockerd-42")
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
    from proc_helper import new_processes, processes
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


def test_a_process_of_someone_elses_is_not_the_suites(tmp_path):
    """A process someone else started during the suite (a shell opened on
    the machine, a service's job) is not a leak: its parent was there before
    the suite and is none of its ancestors. Here the "someone" is a shell
    that was running at the start and forks once the start is taken."""
    import subprocess
    from proc_helper import new_processes, processes, wait_for
    go = tmp_path / "go"
    someone = subprocess.Popen(["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; sleep 61 & wait"])
    try:
        before = processes()
        go.touch()

        def its_child():
            r = subprocess.run(["pgrep", "-P", str(someone.pid), "-x", "sleep"], capture_output=True, text=True)
            return [int(p) for p in r.stdout.split()]
        assert wait_for(lambda: its_child() and "sleep 61" in open(f"/proc/{its_child()[0]}/cmdline").read()
                        .replace("\0", " "))
        child = its_child()[0]
        assert not any(f"process {child} " in line for line in new_processes(before, grace=0))
    finally:
        subprocess.run(["pkill", "-P", str(someone.pid)])
        someone.kill()
        someone.wait()


def test_the_registry_service_is_not_a_leak_but_a_registry_left_running_is(tmp_path, monkeypatch):
    """The classroom VM's labkit-registry service runs `labkit registry start
    --foreground`, which marks its state: the scan after the suite in the VM
    must not count it; a registry a test started and left must be counted."""
    import json
    from labkit.containers import start_time
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    (tmp_path / "registry").mkdir()
    state = {"pid": os.getpid(), "pid_start": start_time(os.getpid()), "address": "127.0.0.1:5000"}
    for service, counted in ((True, False), (False, True)):
        (tmp_path / "registry" / "state.json").write_text(json.dumps(dict(state, service=service)))
        found = [f for f in leaks.image_leftovers() if f.startswith("registry pid")]
        assert bool(found) is counted, found


@pytest.mark.root
def test_an_engines_cgroup_parent_below_the_suites_own_cgroup_is_a_leak():
    """dockerd puts its relative --cgroup-parent below its own cgroup, which
    is the suite's (not always a hierarchy's top: a machine may place the
    suite in a cgroup of its own): left there, the leak check names it."""
    made = []
    try:
        for own in hierarchy.own_dirs():
            d = os.path.join(own, leaks.CLIENT_PREFIX + "leaktest")
            if os.path.isdir(own) and not os.path.isdir(d):
                os.mkdir(d)
                made.append(d)
        assert made
        found = leaks.leftovers()
        assert all(f"cgroup {d}" in found for d in made), (made, found)
    finally:
        for d in made:
            os.rmdir(d)
