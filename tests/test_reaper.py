"""The reaper for real (labkit/runtime/servers/reaper.py): one labkit process waits
for every detached container — the inits are its children, no monitor stays
per container — and exit codes, logs, stop, rm, --rm and gc work as with a
monitor; it leaves when nothing of its own runs, refuses other users, passes
no descriptor of its own into a container, and a SIGKILL of it leaves
containers that `labkit gc` removes."""

import os
import signal
import subprocess
import sys
import time

import pytest
from proc_helper import ppid, wait_for

from labkit import home
from labkit.runtime import container as ct
from labkit.runtime.servers import reaper_client as reaper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def processes(match):
    """Pids of the live processes whose (pid, argv) ``match`` accepts."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if ct.start_time(pid) and match(pid, argv):
                out.append(int(pid))
        except OSError:
            pass
    return out


def reapers():
    """Pids of the reaper processes of this $LABKIT_HOME and namespaces."""
    return processes(lambda pid, argv: reaper.is_reaper(pid) and reaper.socket_path().encode() in argv)


def labkit_processes():
    """Processes running labkit's own code (`-m labkit`, a launcher, the
    reaper; a reaper's fork has its command line: its passing children too)."""
    return processes(lambda pid, argv: reaper.BOOT.encode() in argv or b"labkit" in argv
                     or any(a.endswith(b"/labkit") for a in argv[:2]))


@pytest.fixture
def named(labkit_cli):
    names = []
    yield names
    for name in names:
        labkit_cli("rm", "-f", name)
    assert wait_for(lambda: not reapers()), "the reaper stayed after its last container"


def test_one_reaper_is_the_parent_of_every_detached_init(rootfs, labkit_cli, named):
    for i in range(3):
        named.append(f"reaped{i}")
        r = labkit_cli("run", "-d", "--name", f"reaped{i}", "--", "sleep", "300")
        assert r.returncode == 0 and r.stdout.strip() == f"reaped{i}", r.stderr
    states = [ct.load(n) for n in named]
    [owner] = reapers()
    assert {s["monitor"] for s in states} == {owner} and all(s["reaper"] for s in states)
    assert all(ppid(s["pid"]) == owner and s["status"] == "running" for s in states)
    # No monitor stays per container: the reaper is labkit's only process.
    assert wait_for(lambda: labkit_processes() == [owner]), labkit_processes()
    assert labkit_cli("exec", "reaped1", "hostname").stdout.strip() == "reaped1"


def test_exit_code_logs_and_rm_as_with_a_monitor(rootfs, labkit_cli, named):
    named += ["exits7", "gone"]
    assert labkit_cli("run", "-d", "--name", "exits7", "--", "sh", "-c", "echo out; echo err >&2; exit 7").returncode == 0
    assert labkit_cli("run", "-d", "--rm", "--name", "gone", "--", "true").returncode == 0
    assert wait_for(lambda: ct.load("exits7")["status"] == "stopped")
    state = ct.load("exits7")
    assert state["exit_code"] == 7 and "stopped (7)" in labkit_cli("ps", "-a").stdout
    assert sorted(labkit_cli("logs", "exits7").stdout.split()) == ["err", "out"]
    assert wait_for(lambda: not os.path.exists(home.containers_dir("gone")))
    # Torn down by the reaper's finisher: no mount of the container left.
    with open("/proc/self/mountinfo") as f:
        assert home.containers_dir("exits7") not in f.read()


def test_stop_and_rm_f_of_an_adopted_container(rootfs, labkit_cli, named):
    named += ["stopme", "killme"]
    for name in named:
        assert labkit_cli("run", "-d", "--name", name, "--", "sleep", "300").returncode == 0
    [owner] = reapers()
    start = time.monotonic()
    assert labkit_cli("stop", "-t", "1", "stopme").returncode == 0
    assert time.monotonic() - start < 8
    state = ct.load("stopme")
    assert state["status"] == "stopped" and state["exit_code"] == 128 + signal.SIGKILL
    assert labkit_cli("rm", "-f", "killme").returncode == 0
    assert not os.path.exists(home.containers_dir("killme"))
    assert reapers() in ([owner], [])     # stop never kills the reaper itself


def test_the_reaper_leaves_when_its_last_container_is_gone(rootfs, labkit_cli, named):
    named.append("last")
    assert labkit_cli("run", "-d", "--rm", "--name", "last", "--", "sleep", "1").returncode == 0
    [owner] = reapers()
    assert wait_for(lambda: not ct.alive(owner, ct.start_time(owner)) and not reapers())
    assert not [n for n in os.listdir(reaper.run_dir()) if n.endswith(".sock")]


def test_a_user_namespace_container_is_adopted_too(rootfs, labkit_cli, named):
    # Its init is forked by an intermediate process (runtime/intermediate.py),
    # which leaves at once: the init is the reaper's child all the same.
    named.append("userns")
    r = labkit_cli("run", "-d", "--userns", "remap", "--name", "userns", "--", "sleep", "300")
    assert r.returncode == 0, r.stderr
    state = ct.load("userns")
    [owner] = reapers()
    assert ppid(state["pid"]) == owner
    assert wait_for(lambda: labkit_processes() == [owner]), labkit_processes()
    labkit_cli("stop", "-t", "0", "userns")
    assert ct.load("userns")["exit_code"] == 128 + signal.SIGKILL


def test_no_descriptor_of_the_reaper_reaches_the_container(rootfs, labkit_cli, named):
    named.append("fds")
    assert labkit_cli("run", "-d", "--name", "fds", "--", "sh", "-c", "ls /proc/self/fd; sleep 300").returncode == 0
    assert wait_for(lambda: labkit_cli("logs", "fds").stdout.split())
    # ls's own directory fd is 3; nothing else but stdio.
    assert labkit_cli("logs", "fds").stdout.split() == ["0", "1", "2", "3"]
    [owner] = reapers()
    fds = os.listdir(f"/proc/{ct.load('fds')['pid']}/fd")
    assert sorted(fds) == ["0", "1", "2"]
    own = {os.readlink(f"/proc/{owner}/fd/{fd}") for fd in os.listdir(f"/proc/{owner}/fd")}
    theirs = {os.readlink(f"/proc/{ct.load('fds')['pid']}/fd/{fd}") for fd in fds}
    assert not {x for x in own if x.startswith("socket:")} & theirs


def test_another_user_cannot_talk_to_the_reaper(rootfs, labkit_cli, named):
    named.append("mine")
    assert labkit_cli("run", "-d", "--name", "mine", "--", "sleep", "300").returncode == 0
    path = reaper.socket_path()
    script = (f"import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
              f"try:\n    s.connect({path!r}); print('connected')\nexcept OSError as e:\n    print(e.errno)")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", script],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "13", r.stdout + r.stderr        # EACCES: the socket is root's alone
    assert oct(os.stat(path).st_mode & 0o777) == "0o700"
    assert ct.load("mine")["status"] == "running"


def test_sigkill_of_the_reaper_then_gc(rootfs, labkit_cli, named):
    named.append("orphan")
    assert labkit_cli("run", "-d", "--name", "orphan", "--", "sleep", "300").returncode == 0
    state = ct.load("orphan")
    [owner] = reapers()
    os.kill(owner, signal.SIGKILL)
    assert wait_for(lambda: ct.load("orphan")["status"] == "dead")
    assert ct.alive(state["pid"], state["pid_start"])       # it runs on, unwatched ...
    r = labkit_cli("gc")
    assert "removed container orphan (dead)" in r.stdout
    assert wait_for(lambda: not ct.alive(state["pid"], state["pid_start"]))   # ... until gc
    # The next detached container gets a new reaper (the dead one's socket is replaced).
    named.append("after")
    assert labkit_cli("run", "-d", "--name", "after", "--", "sleep", "300").returncode == 0
    assert ppid(ct.load("after")["pid"]) in reapers()


def test_labkit_reaper_0_keeps_one_monitor_per_container(rootfs, labkit_cli, named):
    named.append("monitored")
    r = labkit_cli("run", "-d", "--name", "monitored", "--", "sleep", "300", env={"LABKIT_REAPER": "0"})
    assert r.returncode == 0
    state = ct.load("monitored")
    assert not state.get("reaper") and not reapers()
    assert ppid(state["pid"]) == state["monitor"] and ct.alive(state["monitor"], state["monitor_start"])


def test_many_at_once(rootfs, labkit_cli, named):
    names = [f"many{i}" for i in range(12)]
    named += names
    procs = [subprocess.Popen([sys.executable, "-m", "labkit", "run", "-d", "--name", n, "--", "sleep", "300"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                              env=dict(os.environ, PYTHONPATH=ROOT))
             for n in names]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(names), [e for _, e in results]
    owners = reapers()
    assert len(owners) == 1 and all(ppid(ct.load(n)["pid"]) == owners[0] for n in names)
