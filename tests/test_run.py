"""The runner for real: exit status, output and signals pass through; -d,
exec, stop and rm behave as docker's; nothing is left after an interrupt,
and `labkit gc` collects what a SIGKILL of the runner left."""

import os
import signal
import subprocess
import sys
import time

import pexpect
import pytest

from labkit import api
from labkit.linux import namespaces
from labkit.runtime import container as ct
from proc_helper import cmdline, in_pidns_of, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_exit_code_and_streams_pass_through(rootfs):
    r = api.run("echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")


def test_stdin_only_with_i(rootfs, labkit_cli):
    r = labkit_cli("run", "--rm", "-i", "--", "cat", input="hello\n")
    assert r.stdout == "hello\n"
    r = labkit_cli("run", "--rm", "--", "cat", input="hello\n")
    assert r.stdout == "" and r.returncode == 0   # like docker run without -i


def test_killed_by_signal_is_128_plus_n(rootfs):
    with api.Container("sleep 300", name="sigtest") as c:
        argv = api.labkit_argv("exec", c.id, "sleep", "300")
        running = len(in_pidns_of(c.pid))
        proc = subprocess.Popen(argv)
        assert wait_for(lambda: len(in_pidns_of(c.pid)) > running)   # the exec's process is inside
        proc.send_signal(signal.SIGTERM)   # forwarded; sleep dies of it
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM


def test_detach_exec_stop_rm(rootfs, labkit_cli):
    r = labkit_cli("run", "-d", "--name", "lifecycle", "--", "sleep", "300")
    assert r.returncode == 0 and r.stdout.strip() == "lifecycle"
    try:
        state = ct.load("lifecycle")
        assert state["status"] == "running"
        assert "lifecycle" in labkit_cli("ps").stdout
        r = labkit_cli("exec", "lifecycle", "sh", "-c", "echo $$; hostname")
        pid, hostname = r.stdout.split()
        assert pid != "1" and hostname == "lifecycle"
        start = time.monotonic()
        assert labkit_cli("stop", "-t", "1", "lifecycle").returncode == 0
        assert time.monotonic() - start < 8
        state = ct.load("lifecycle")
        assert state["status"] == "stopped" and state["exit_code"] == 128 + signal.SIGKILL
        assert not ct.alive(state["pid"], state["pid_start"])
        assert "lifecycle" not in labkit_cli("ps").stdout
        assert "lifecycle" in labkit_cli("ps", "-a").stdout
    finally:
        labkit_cli("rm", "-f", "lifecycle")
    assert "lifecycle" not in ct.all_ids()


def test_rm_refuses_a_running_container(rootfs, labkit_cli):
    with api.Container("sleep 300", name="busy"):
        r = labkit_cli("rm", "busy")
        assert r.returncode != 0 and "is running" in r.stderr and "rm -f busy" in r.stderr
        assert ct.load("busy")["status"] == "running"


def test_interrupt_cleans_up(rootfs):
    """SIGINT to `labkit run` (a notebook's interrupt): the container is
    stopped and its state, mounts and cgroup are gone."""
    proc = subprocess.Popen(api.labkit_argv("run", "--name", "interrupted", "--pids-limit", "20",
                                            "--", "sleep", "300"))
    _wait_running("interrupted")
    pid = ct.load("interrupted")["pid"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 128 + signal.SIGKILL   # PID 1 ignores SIGINT: killed after the grace
    assert ct.start_time(pid) is None
    assert ct.load("interrupted")["status"] == "stopped"
    api.call(["rm", "interrupted"], check=True)


def test_sigkill_of_the_runner_then_gc(rootfs, labkit_cli):
    proc = subprocess.Popen(api.labkit_argv("run", "--name", "orphan", "--pids-limit", "20",
                                            "--memory", "64m", "--", "sleep", "300"))
    _wait_running("orphan")
    pid = ct.load("orphan")["pid"]
    proc.kill()
    proc.wait()
    # The container's init dies with its runner (PR_SET_PDEATHSIG) ...
    assert wait_for(lambda: ct.start_time(pid) is None, timeout=5)
    # ... and the rest is what gc is for.
    assert ct.load("orphan")["status"] == "dead"
    r = labkit_cli("gc")
    assert r.returncode == 0 and "removed container orphan" in r.stdout
    assert "orphan" not in ct.all_ids()
    from labkit.linux import cgroups
    assert cgroups.load("orphan") is None


def _sleep_300_in_a_container():
    ours = os.readlink("/proc/self/ns/pid")
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            if cmdline(p) == "sleep 300" and os.readlink(f"/proc/{p}/ns/pid") != ours:
                return True
        except OSError:
            continue
    return False


def test_tty_window_size_and_job_control(rootfs):
    child = pexpect.spawn(sys.executable, ["-m", "labkit", "run", "--rm", "-it", "--", "/bin/sh"],
                          dimensions=(33, 111), encoding="utf-8", timeout=20)
    try:
        child.sendline("stty size; tty")
        child.expect(r"33 111")
        child.expect(r"/dev/pts/\d+")
        child.sendline("sleep 300")
        assert wait_for(_sleep_300_in_a_container)   # the shell's foreground job runs
        child.sendcontrol("c")     # to the foreground job, not to the shell
        child.sendline("echo alive-$((40+2))")
        child.expect("alive-42")
        child.sendline("exit 5")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 5


def test_user_namespace_maps_root(rootfs):
    r = api.run("id -u; cat /proc/self/uid_map", ns="user,mnt,pid")
    uid, inside, outside, size = r.stdout.split()
    assert (uid, inside) == ("0", "0") and int(outside) > 0 and int(size) > 0


def test_each_namespace_alone(rootfs):
    for name in namespaces.available():
        chosen = {name} if name != "user" else {"user", "mnt", "pid"}
        r = api.run("true", ns=",".join(chosen))
        assert r.returncode == 0, (name, r.stderr)


def _wait_running(cid, timeout=10):
    def running():
        try:
            return ct.load(cid)["status"] == "running"
        except Exception:       # not there yet
            return False
    assert wait_for(running, timeout), f"{cid} did not start"


def test_what_a_test_starts_can_be_interrupted():
    """However the suite was started (in the background SIGINT arrives
    ignored, and an ignored signal stays ignored in every child), the
    processes a test starts take Ctrl-C as a terminal's do (tests/conftest.py):
    else the test below waits in vain for its cell's KeyboardInterrupt."""
    r = subprocess.run([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT).__name__)"],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "default_int_handler", r.stdout + r.stderr


def test_notebook_interrupt_through_the_api(rootfs, tmp_path):
    """KeyboardInterrupt in a notebook cell (here: SIGINT to a Python process
    blocked in api.run) stops the container and cleans it up."""
    script = tmp_path / "cell.py"
    script.write_text("from labkit import api\n"
                      "print('started', flush=True)\n"
                      "api.run('sleep 300', name='cell-interrupted')\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__))))
    assert proc.stdout.readline().strip() == "started"
    _wait_running("cell-interrupted")
    pid = ct.load("cell-interrupted")["pid"]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode != 0                     # the cell raised KeyboardInterrupt
    assert ct.start_time(pid) is None               # the container is gone ...
    assert "cell-interrupted" not in ct.all_ids()   # ... and so is its state (--rm)


def test_without_pid_namespace_children_die_with_the_container(rootfs):
    """No PID namespace: the kernel does not kill the init's children when it
    exits; labkit kills the init's session."""
    with api.Container("sleep 3011 & sleep 3012 & wait", ns="net,mnt", name="nopidns"):
        def kids():
            return [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).startswith("sleep 301")]
        assert wait_for(lambda: len(kids()) == 2), kids()
        kids = kids()
    assert all(ct.start_time(p) is None for p in kids)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""
