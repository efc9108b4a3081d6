"""The fork server for real (labkit/runtime/servers/forkserver.py): a notebook's
labkit calls forked from one warm single-threaded process instead of a new
interpreter each — the same results as a fresh `labkit`, and the same
cleanup: a call interrupted or timed out stops and removes its container; a
caller that exits, or is SIGKILLed, leaves nothing (the server removes the
containers started through it and exits)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from proc_helper import ppid, wait_for

from labkit import api, home
from labkit.course import leaks
from labkit.runtime.servers import forkserver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def servers():
    """Pids of the fork servers running now (by their name)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == forkserver.NAME:
                    found.append(int(pid))
        except OSError:
            pass
    return found


def kernel(code):
    """A caller of labkit.api with the fork server on, as a Jupyter kernel
    would be: a Python process of its own (the test's process stays out)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, LABKIT_FORKSERVER="1", PYTHONPATH=ROOT))


@pytest.fixture
def server(rootfs, monkeypatch):
    monkeypatch.setenv("LABKIT_FORKSERVER", "1")
    monkeypatch.setattr(api, "_server", None)
    before = set(servers())
    yield
    if api._server is not None:
        api._server.close()
    assert wait_for(lambda: set(servers()) <= before)


def test_same_results_as_a_fresh_labkit(server, monkeypatch):
    cmd = "echo pid $$; hostname; cat; echo oops >&2; exit 3"
    warm = api.run(cmd, input="from stdin\n", hostname="box", extra=["-i"])
    assert api._server is not None and api._server.alive()
    monkeypatch.setenv("LABKIT_FORKSERVER", "0")
    cold = api.run(cmd, input="from stdin\n", hostname="box", extra=["-i"])
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr) \
        == (3, "pid 1\nbox\nfrom stdin\n", "oops\n")
    assert warm.command == cold.command


def test_the_command_is_a_child_of_the_server(server):
    """A foreground `labkit run` is a fork of the server (no new interpreter);
    a detached one is handed to the reaper as from a shell."""
    import threading
    from labkit import containers
    done = []
    t = threading.Thread(target=lambda: done.append(api.run("sleep 3", name="fs-child")))
    t.start()
    try:
        assert wait_for(lambda: containers.load("fs-child").get("status") == "running"
                        if os.path.exists(home.containers_dir("fs-child")) else False)
        monitor = ppid(containers.load("fs-child")["pid"])
        assert ppid(monitor) == api._server.pid
        with open(f"/proc/{monitor}/comm") as f:
            assert f.read().strip() == "labkit run"
    finally:
        t.join(timeout=30)
    assert done and done[0].returncode == 0
    with api.Container("sleep 300") as c:
        assert c.exec("echo $((6 * 7))").stdout == "42\n"


def test_a_bad_command_line_answers_as_the_cli_does(server, monkeypatch):
    warm = api.call(["run", "--bogus", "--", "true"])
    monkeypatch.setenv("LABKIT_FORKSERVER", "0")
    cold = api.call(["run", "--bogus", "--", "true"])
    assert warm.returncode == cold.returncode != 0 and warm.stderr == cold.stderr
    assert "Traceback" not in warm.stderr


def test_timeout_stops_and_removes_the_container(server):
    before = set(leaks.leftovers())
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        api.run("sleep 300", name="fs-timeout", timeout=2)
    assert time.monotonic() - t0 < 15
    assert wait_for(lambda: not os.path.exists(home.containers_dir("fs-timeout")))
    assert wait_for(lambda: set(leaks.leftovers()) <= before), sorted(set(leaks.leftovers()) - before)


def test_an_interrupted_call_stops_its_container():
    """KeyboardInterrupt in the caller (a cell interrupted) while a container runs."""
    p = kernel("""
        import signal
        from labkit import api
        def interrupt(*_):
            raise KeyboardInterrupt
        signal.signal(signal.SIGALRM, interrupt)
        signal.alarm(3)
        try:
            api.run("sleep 300", name="fs-interrupted")
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and "interrupted" in out, (out, err)
    assert not os.path.exists(home.containers_dir("fs-interrupted"))


@pytest.mark.parametrize("how", ["exit", "SIGKILL"])
def test_the_callers_end_removes_what_it_started(rootfs, how):
    """A kernel that exits, or is killed, with a detached container and a
    foreground one running: the server removes both and leaves."""
    before = set(leaks.leftovers())
    p = kernel("""
        import sys, threading, time
        from labkit import api
        api.Container("sleep 300", name="fs-detached").start()
        threading.Thread(target=api.run, args=("sleep 300",), kwargs={"name": "fs-foreground"}, daemon=True).start()
        print(api._server.pid, flush=True)
        time.sleep(300 if sys.argv[-1] == "SIGKILL" else 2)
    """.replace("sys.argv[-1]", repr(how)))
    pid = int(p.stdout.readline())
    assert wait_for(lambda: os.path.exists(home.containers_dir("fs-foreground")))
    assert wait_for(lambda: os.path.exists(home.containers_dir("fs-detached")))
    if how == "SIGKILL":
        assert wait_for(lambda: all(_status(n) == "running" for n in ("fs-detached", "fs-foreground")))
        p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=40), "the fork server stayed"
    for name in ("fs-detached", "fs-foreground"):
        assert not os.path.exists(home.containers_dir(name)), name
    assert wait_for(lambda: set(leaks.leftovers()) <= before), sorted(set(leaks.leftovers()) - before)


def test_off_outside_a_kernel_and_in_another_namespace(rootfs, monkeypatch):
    monkeypatch.delenv("LABKIT_FORKSERVER", raising=False)
    monkeypatch.setattr(api, "_server", None)
    # A process that imported ipykernel (a test runner with nbclient: jupyter_client
    # imports it to find the kernel spec) is no kernel: no server for its calls.
    import ipykernel.kernelapp  # noqa: F401
    assert api._forkserver() is None
    monkeypatch.setenv("LABKIT_FORKSERVER", "1")
    server = api._forkserver()
    try:
        from netns_helper import private_netns
        with private_netns():            # a fresh process runs where the caller now is
            assert api._forkserver() is None
        assert api._forkserver() is server
    finally:
        server.close()
        monkeypatch.setattr(api, "_server", None)


def _status(name):
    from labkit.containers import load
    try:
        return load(name)["status"]
    except Exception:        # not written yet
        return None
