"""LABKIT_TRACE=1: the syscall layer writes each call to stderr, in order."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "labkit-trace["


def python(code, trace):
    env = dict(os.environ, PYTHONPATH=ROOT, LABKIT_TRACE=trace)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30)


def calls(stderr):
    """The traced lines, without their 'labkit-trace[PID]: ' prefix."""
    return [line.split("]: ", 1)[1] for line in stderr.splitlines() if line.startswith(PREFIX)]


def test_a_failed_call_shows_its_errno_and_still_raises():
    r = python("from labkit.linux import syscalls\n"
               "try:\n    syscalls.chroot('/no/such/dir')\nexcept FileNotFoundError:\n    print('raised')",
               trace="1")
    assert r.stdout == "raised\n"
    assert calls(r.stderr) == ['chroot("/no/such/dir") = -1 ENOENT']


def test_off_the_calls_are_not_even_wrapped():
    code = "from labkit.linux import syscalls; print(hasattr(syscalls.mount, '__wrapped__'))"
    assert python(code, trace="").stdout == "False\n"
    assert python(code, trace="0").stdout == "False\n"       # only "1" turns it on
    assert python(code, trace="1").stdout == "True\n"


@pytest.mark.root
def test_run_traces_the_start_in_order(rootfs, labkit_cli):
    r = labkit_cli("run", "--rm", "--all", "--", "true", env={"LABKIT_TRACE": "1"})
    assert r.returncode == 0, r.stderr
    seen = calls(r.stderr)
    wanted = [
        lambda c: c.startswith("unshare(") and "CLONE_NEWNS" in c,
        lambda c: c.startswith('mount(none, "/", none, ') and "MS_REC|MS_PRIVATE" in c,
        lambda c: c.startswith('pivot_root(".", ".")'),
        lambda c: c.startswith('umount2(".", MNT_DETACH)'),
        lambda c: c.startswith("execve("),
    ]
    at, found = 0, []
    for want in wanted:
        at = next((i for i in range(at, len(seen)) if want(seen[i])), None)
        assert at is not None, f"after {found}, not found in:\n" + "\n".join(seen)
        found.append(seen[at])
    assert all(c.endswith(" = 0") for c in found[:-1]), found
    assert found[-1].endswith("...")                            # written before the exec


@pytest.mark.root
def test_run_without_trace_prints_none(rootfs, labkit_cli):
    r = labkit_cli("run", "--rm", "--all", "--", "true", env={"LABKIT_TRACE": ""})
    assert r.returncode == 0, r.stderr
    assert PREFIX not in r.stderr


@pytest.mark.root
def test_a_limit_is_traced_as_the_write_to_its_file(rootfs, labkit_cli):
    """A cgroup limit is no system call of its own: the trace shows the
    write(2) of the value into the limit's file, then the init's pid into
    cgroup.procs, all before the container's command is exec'd."""
    r = labkit_cli("run", "--rm", "--memory", "64m", "--", "true", env={"LABKIT_TRACE": "1"})
    assert r.returncode == 0, r.stderr
    seen = calls(r.stderr)
    limit = [i for i, c in enumerate(seen) if c.startswith("write(") and
             ('/memory.limit_in_bytes", "67108864") = 0' in c or '/memory.max", "67108864") = 0' in c)]
    procs = [i for i, c in enumerate(seen) if c.startswith("write(") and '/cgroup.procs", "' in c]
    execve = [i for i, c in enumerate(seen) if c.startswith("execve(")]
    assert limit and procs and execve, "\n".join(seen)
    assert limit[0] < procs[0] < execve[-1]
