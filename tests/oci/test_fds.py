"""No file descriptor of the caller reaches a container (runc's CVE-2024-21626
class): not through `labkit run`, `labkit exec` or `labkit-runtime run`,
unless passed on purpose with --preserve-fds; and a working directory that
leads outside the root through one is refused."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABKIT = [sys.executable, "-m", "labkit"]
ENV = dict(os.environ, PYTHONPATH=ROOT)

pytestmark = pytest.mark.root


def with_fd(argv):
    """Run ``argv`` holding the host's /etc open as fd 7, as a shell's
    `exec 7</etc` leaves it."""
    return subprocess.run(["sh", "-c", 'exec 7</etc; exec "$@"', "sh", *argv], capture_output=True,
                          text=True, timeout=60, env=ENV, cwd="/")


LIST_FDS = "cd /proc/self/fd && echo *"   # the shell's glob holds one fd of its own


def bare_fds():
    """What LIST_FDS prints in a process that inherited nothing but stdio."""
    return subprocess.run(["sh", "-c", LIST_FDS], capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL).stdout.split()


def test_the_host_really_passes_fd_7_to_a_child():
    """The premise: without labkit in between, fd 7 is the host's /etc."""
    r = with_fd(["sh", "-c", "cat /proc/self/fd/7/hostname"])
    with open("/etc/hostname") as f:
        assert r.returncode == 0 and r.stdout == f.read()


def test_labkit_run_closes_every_inherited_fd(rootfs):
    r = with_fd([*LABKIT, "run", "--rm", "--", "sh", "-c", "test -e /proc/self/fd/7 && echo LEAK; " + LIST_FDS])
    assert r.returncode == 0, r.stderr
    assert "LEAK" not in r.stdout
    assert r.stdout.split() == bare_fds()


@pytest.mark.parametrize("ns", ["all", "none"])
def test_a_cwd_through_an_inherited_fd_is_refused(rootfs, ns):
    flag = ["--all"] if ns == "all" else ["--ns", "none"]
    r = with_fd([*LABKIT, "run", "--rm", *flag, "-w", "/proc/self/fd/7", "--", "cat", "hostname"])
    assert r.returncode == 125
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "working directory" in r.stderr


def test_labkit_exec_closes_every_inherited_fd(rootfs):
    name = "fds-exec"
    subprocess.run([*LABKIT, "run", "-d", "--name", name, "--", "sleep", "60"], check=True, env=ENV,
                   capture_output=True, timeout=60)
    try:
        r = with_fd([*LABKIT, "exec", name, "sh", "-c", LIST_FDS])
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == bare_fds()
    finally:
        subprocess.run([*LABKIT, "rm", "-f", name], env=ENV, capture_output=True, timeout=60)


def test_labkit_runtime_passes_only_preserved_fds(bundle):
    bundle.config["process"]["args"] = ["sh", "-c", LIST_FDS]
    bundle.write()
    runtime = [sys.executable, "-m", "labkit.cli.runtime"]
    plain = with_fd([*runtime, "run", "--bundle", bundle.path, "fds-1"])
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split() == bare_fds()
    # fd 3 is asked for: --preserve-fds 5 passes 3..7, of which the caller holds 7.
    kept = with_fd([*runtime, "run", "--preserve-fds", "5", "--bundle", bundle.path, "fds-2"])
    assert kept.returncode == 0, kept.stderr
    assert "7" in kept.stdout.split() and "7" not in plain.stdout.split()
    bad = with_fd([*runtime, "run", "--preserve-fds", "many", "--bundle", bundle.path, "fds-3"])
    assert bad.returncode != 0 and "--preserve-fds" in bad.stderr and "Traceback" not in bad.stderr
