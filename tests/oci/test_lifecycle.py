"""The runtime spec's lifecycle through labkit-runtime: create -> created (the
process waits before exec), start -> running, kill, delete; the illegal
transitions; nothing left after delete; `labkit gc` after a SIGKILL."""

import json
import os
import signal
import subprocess
import sys

import pytest

from labkit import home
from labkit.runtime import container as ct

from .conftest import ROOT, cgroup_dirs
from proc_helper import wait_for


def _cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[0].decode()


def _wait(predicate, timeout=10):
    assert wait_for(predicate, timeout), "timed out"


def test_create_waits_until_start(bundle):
    bundle.config["process"]["args"] = ["/bin/sh", "-c", "echo started; exec sleep 300"]
    r = bundle.create("lc1")
    assert r.returncode == 0, r.stderr
    st = bundle.state("lc1")
    assert st["status"] == "created" and st["id"] == "lc1" and st["bundle"] == bundle.path
    assert set(st) == {"ociVersion", "id", "status", "pid", "bundle", "annotations"}
    pid = st["pid"]
    assert os.path.exists(f"/proc/{pid}")
    # Blocked in open(exec.fifo, O_WRONLY), in the pipe code's wait for a
    # reader (fs/pipe.c: wait_for_partner): waiting for `start`.
    _wait(lambda: open(f"/proc/{pid}/wchan").read() == "wait_for_partner")
    # Still the runtime's own init, not the user's program: nothing was printed.
    assert "python" in _cmdline(pid) and bundle.output("lc1") == ""
    assert bundle.runtime("start", "lc1").returncode == 0
    _wait(lambda: bundle.output("lc1") == "started\n")
    st = bundle.state("lc1")
    assert st["status"] == "running" and st["pid"] == pid
    _wait(lambda: _cmdline(pid).endswith("sleep"))

    r = bundle.runtime("start", "lc1")   # start twice
    assert r.returncode != 0 and "lc1" in r.stderr
    r = bundle.runtime("delete", "lc1")   # running, no --force
    assert r.returncode != 0 and "not stopped" in r.stderr
    assert bundle.runtime("kill", "lc1", "KILL").returncode == 0
    _wait(lambda: bundle.state("lc1")["status"] == "stopped")
    r = bundle.runtime("kill", "lc1")   # kill of a stopped container
    assert r.returncode != 0 and "not running" in r.stderr
    assert bundle.runtime("delete", "lc1").returncode == 0
    assert not os.path.exists(home.containers_dir("lc1"))
    r = bundle.runtime("state", "lc1")
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_kill_signal_names(bundle):
    bundle.config["process"]["args"] = ["/bin/sh", "-c", "trap 'exit 7' USR1; while :; do sleep 0.05; done"]
    assert bundle.create("lc2").returncode == 0
    assert bundle.runtime("start", "lc2").returncode == 0
    pid = bundle.state("lc2")["pid"]
    assert bundle.runtime("kill", "lc2", "SIGUSR1").returncode == 0
    _wait(lambda: not ct.alive(pid, ct.start_time(pid)) or bundle.state("lc2")["status"] == "stopped")
    r = bundle.runtime("kill", "lc2", "NOSUCHSIG")
    assert r.returncode != 0


def test_create_twice_and_delete_created(bundle):
    assert bundle.create("lc3").returncode == 0
    r = bundle.create("lc3")
    assert r.returncode != 0 and "exists" in r.stderr
    assert bundle.state("lc3")["status"] == "created"
    assert bundle.runtime("delete", "lc3").returncode == 0   # as runc: a created container may be deleted
    assert not os.path.exists(home.containers_dir("lc3"))


def test_run_exit_code_and_output(bundle):
    bundle.config["process"]["args"] = ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]
    bundle.write()
    r = bundle.runtime("run", "lc4")
    assert (r.returncode, r.stdout) == (3, "out\n") and "err\n" in r.stderr
    assert not os.path.exists(home.containers_dir("lc4"))   # run removes what it made


def test_run_detached_then_list(bundle):
    bundle.config["process"]["args"] = ["sleep", "300"]
    bundle.write()
    bundle.ids.append("lc5")
    r = bundle.detached("run", "-d", "--pid-file", "p", "lc5")
    assert r.returncode == 0, r.stderr
    st = bundle.state("lc5")
    assert st["status"] == "running"
    with open(os.path.join(bundle.path, "p")) as f:
        assert int(f.read()) == st["pid"]
    listed = json.loads(bundle.runtime("list", "--format", "json").stdout)
    assert any(s["id"] == "lc5" and s["status"] == "running" for s in listed)
    assert "lc5" in bundle.runtime("list", "-q").stdout.split()
    r = bundle.runtime("exec", "lc5", "cat", "/proc/1/cmdline")
    assert r.returncode == 0 and r.stdout.startswith("sleep")
    assert bundle.runtime("delete", "-f", "lc5").returncode == 0
    assert not os.path.exists(home.containers_dir("lc5"))


def test_cgroup_made_and_removed(bundle):
    bundle.config["linux"]["resources"]["memory"] = {"limit": 64 << 20}
    bundle.config["linux"]["resources"]["pids"] = {"limit": 20}
    bundle.config["process"]["args"] = ["sleep", "300"]
    assert bundle.create("lc6").returncode == 0
    dirs = cgroup_dirs("lc6")
    assert any("/memory/" in d for d in dirs) or any("unified" not in d for d in dirs)
    pid = bundle.state("lc6")["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        assert "labkit/lc6" in f.read()
    for d in dirs:
        if os.path.exists(os.path.join(d, "memory.limit_in_bytes")):
            with open(os.path.join(d, "memory.limit_in_bytes")) as f:
                assert int(f.read()) == 64 << 20
    assert bundle.runtime("delete", "--force", "lc6").returncode == 0
    assert cgroup_dirs("lc6") == []
    assert not os.path.exists(home.containers_dir("lc6"))


def test_create_leaves_no_labkit_process_and_gc_waits_for_the_init(bundle, labkit_cli):
    """runc's contract: after create only the container's init is left (no
    monitor); gc keeps it while it lives and cleans up once it is gone."""
    bundle.config["process"]["args"] = ["sleep", "300"]
    bundle.config["linux"]["resources"]["pids"] = {"limit": 20}
    assert bundle.create("lc7").returncode == 0
    with open(os.path.join(home.containers_dir("lc7"), "state.json")) as f:
        saved = json.load(f)
    assert saved["monitor"] is None and ct.alive(saved["pid"], saved["pid_start"])
    assert "lc7" not in labkit_cli("gc").stdout                      # alive: kept
    assert bundle.state("lc7")["status"] == "created"
    os.kill(saved["pid"], signal.SIGKILL)
    _wait(lambda: not ct.alive(saved["pid"], saved["pid_start"]))
    assert bundle.state("lc7")["status"] == "stopped"
    r = labkit_cli("gc")
    assert r.returncode == 0 and "lc7" in r.stdout
    assert not os.path.exists(home.containers_dir("lc7"))
    assert cgroup_dirs("lc7") == []


def test_root_option_keeps_state_there(bundle, tmp_path):
    root = str(tmp_path / "state")
    bundle.write()
    bundle.ids.append("lc8")
    r = bundle.detached("--root", root, "create", "lc8")
    assert r.returncode == 0, r.stderr
    assert os.path.isdir(os.path.join(root, "lc8")) and not os.path.exists(home.containers_dir("lc8"))
    assert bundle.runtime("--root", root, "delete", "lc8").returncode == 0
    assert not os.path.exists(os.path.join(root, "lc8"))


SUBREAPER = r"""
import ctypes, json, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)          # PR_SET_CHILD_SUBREAPER, as conmon and the shim
runtime, bundle, cid, pid_file = sys.argv[1:5]
# Files, not pipes: the init keeps the caller's stdio (runc's pass-through).
with open(pid_file + ".err", "w+") as err:
    r = subprocess.run([sys.executable, "-m", "labkit.cli.runtime", "create", "--bundle", bundle,
                        "--pid-file", pid_file, cid], stdout=err, stderr=err)
    if r.returncode:
        err.seek(0); print(json.dumps({"error": err.read()})); sys.exit(0)
pid = int(open(pid_file).read())
with open(f"/proc/{pid}/stat") as f:
    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
subprocess.run([sys.executable, "-m", "labkit.cli.runtime", "start", cid], check=True)
_, status = os.waitpid(pid, 0)                 # the exit code: the caller's to collect
print(json.dumps({"me": os.getpid(), "ppid": ppid, "code": os.waitstatus_to_exitcode(status)}))
"""


@pytest.mark.parametrize("userns", [False, True], ids=["plain", "userns"])
def test_the_init_is_the_callers_child_after_create(bundle, userns):
    """No runtime process between a subreaper caller and the init: the caller
    reaps it and learns its exit code, as conmon and containerd's shim do."""
    bundle.config["process"]["args"] = ["sh", "-c", "exit 7"]
    if userns:
        bundle.config["linux"]["namespaces"].append({"type": "user"})
        bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        bundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.write()
    cid = "lc-reap-" + ("u" if userns else "p")
    bundle.ids.append(cid)
    r = subprocess.run([sys.executable, "-c", SUBREAPER, "labkit", bundle.path, cid,
                        os.path.join(bundle.path, "pid")], capture_output=True, text=True, timeout=60,
                       cwd=bundle.path, env=dict(os.environ, PYTHONPATH=ROOT))
    seen = json.loads(r.stdout)
    assert "error" not in seen, seen
    assert seen["ppid"] == seen["me"] and seen["code"] == 7
    assert bundle.state(cid)["status"] == "stopped"
    assert bundle.runtime("delete", cid).returncode == 0


EXEC_SUBREAPER = r"""
import ctypes, json, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
cid, pid_file = sys.argv[1:3]
with open(pid_file + ".err", "w+") as err:
    r = subprocess.run([sys.executable, "-m", "labkit.cli.runtime", "exec", "-d", "--pid-file", pid_file,
                        cid, "sh", "-c", "sleep 0.2; exit 5"], stdout=err, stderr=err)
    if r.returncode:
        err.seek(0); print(json.dumps({"error": err.read()})); sys.exit(0)
pid = int(open(pid_file).read())
with open(f"/proc/{pid}/stat") as f:
    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
_, status = os.waitpid(pid, 0)
print(json.dumps({"me": os.getpid(), "ppid": ppid, "code": os.waitstatus_to_exitcode(status)}))
"""


def test_exec_detach_leaves_the_process_to_the_caller(bundle):
    bundle.config["process"]["args"] = ["sleep", "300"]
    assert bundle.create("lc-exd").returncode == 0
    assert bundle.runtime("start", "lc-exd").returncode == 0
    r = subprocess.run([sys.executable, "-c", EXEC_SUBREAPER, "lc-exd", os.path.join(bundle.path, "xpid")],
                       capture_output=True, text=True, timeout=60, cwd=bundle.path,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    seen = json.loads(r.stdout)
    assert "error" not in seen, seen
    assert seen["ppid"] == seen["me"] and seen["code"] == 5
    assert bundle.runtime("delete", "-f", "lc-exd").returncode == 0


class ConsoleSocket:
    """A unix socket that receives a pty master (SCM_RIGHTS), as conmon's
    and runc's recvtty do, and reads what the container writes to it."""

    def __init__(self, path):
        import socket
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.server.settimeout(30)

    def read_all(self):
        import socket
        conn, _ = self.server.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1, 1)
        conn.close()
        out = b""
        while True:
            try:
                chunk = os.read(fds[0], 4096)
            except OSError:            # EIO: every process holding the slave is gone
                break
            if not chunk:
                break
            out += chunk
        os.close(fds[0])
        return out.decode(errors="replace")

    def close(self):
        self.server.close()
        os.unlink(self.path)


@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detached"])
def test_exec_with_a_console_socket_gets_a_pty_of_the_containers_own(bundle, tmp_path, detach):
    import threading
    bundle.config["process"]["args"] = ["sleep", "300"]
    cid = f"lc-tty-{int(detach)}"
    assert bundle.create(cid).returncode == 0
    assert bundle.runtime("start", cid).returncode == 0
    sock = ConsoleSocket(str(tmp_path / "console.sock"))
    seen = {}
    reader = threading.Thread(target=lambda: seen.update(out=sock.read_all()))
    reader.start()
    try:
        flags = ["-d"] if detach else []
        r = bundle.runtime("exec", "-t", *flags, "--console-socket", sock.path, cid,
                           "sh", "-c", "t=$(tty); echo tty=$t; ls $t >/dev/null && echo inside=yes")
        assert r.returncode == 0, r.stderr
        reader.join(30)
    finally:
        sock.close()
        bundle.runtime("delete", "-f", cid)
    assert "tty=/dev/pts/" in seen["out"] and "inside=yes" in seen["out"], seen


@pytest.mark.parametrize("command", ["run", "create"])
def test_a_terminal_container_sends_its_pty_to_the_console_socket(bundle, tmp_path, command):
    """process.terminal: the init makes the pty in the container's devpts,
    after the pivot, and sends the master to --console-socket (conmon's and
    containerd's shim's way); nothing of labkit is imported once the root is
    the container's."""
    import threading
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["args"] = ["sh", "-c", "t=$(tty); echo tty=$t; ls $t >/dev/null && echo inside=yes"]
    cid = f"lc-term-{command}"
    sock = ConsoleSocket(str(tmp_path / "console.sock"))
    seen = {}
    reader = threading.Thread(target=lambda: seen.update(out=sock.read_all()))
    reader.start()
    try:
        if command == "create":
            r = bundle.create(cid, "--console-socket", sock.path)
            assert r.returncode == 0, r.stderr
            assert bundle.runtime("start", cid).returncode == 0
        else:
            bundle.write()
            bundle.ids.append(cid)
            r = bundle.detached("run", "-d", "--console-socket", sock.path, cid)
            assert r.returncode == 0, r.stderr
        reader.join(30)
    finally:
        sock.close()
        bundle.runtime("delete", "-f", cid)
    assert "tty=/dev/pts/" in seen.get("out", "") and "inside=yes" in seen["out"], seen


def test_exec_console_socket_without_a_terminal_is_one_line(bundle, tmp_path):
    bundle.config["process"]["args"] = ["sleep", "300"]
    assert bundle.create("lc-tty-bad").returncode == 0
    assert bundle.runtime("start", "lc-tty-bad").returncode == 0
    try:
        r = bundle.runtime("exec", "--console-socket", str(tmp_path / "s"), "lc-tty-bad", "true")
        assert r.returncode != 0 and "needs a terminal" in r.stderr and "Traceback" not in r.stderr
    finally:
        bundle.runtime("delete", "-f", "lc-tty-bad")


def test_an_oom_score_it_may_not_set_fails_create_as_under_runc(bundle, tmp_path):
    """oomScoreAdj below the caller's own needs CAP_SYS_RESOURCE (proc(5)).
    Without it, runc's `create` fails; labkit-runtime's must too, saying why,
    rather than return and leave a process that dies after `start` (what a
    CRI pod sandbox, oomScoreAdj -998, met before). The caller is made to
    lack the capability (setpriv drops it from the bounding set)."""
    import shutil
    bundle.config["process"]["oomScoreAdj"] = -998
    bundle.config["process"]["args"] = ["/bin/sleep", "30"]
    bundle.write()
    drop = ["setpriv", "--bounding-set", "-sys_resource", "--inh-caps", "-sys_resource"]
    results = {}
    for name, argv in (("labkit", [sys.executable, "-m", "labkit.cli.runtime"]), ("runc", [shutil.which("runc")])):
        root = str(tmp_path / f"state-{name}")
        try:
            with open(tmp_path / f"{name}.out", "w") as out, open(tmp_path / f"{name}.err", "w+") as err:
                r = subprocess.run([*drop, *argv, "--root", root, "create", "--bundle", bundle.path, "lc-oom"],
                                   stdout=out, stderr=err, timeout=60, cwd=bundle.path,
                                   env=dict(os.environ, PYTHONPATH=ROOT))
                err.seek(0)
                results[name] = (r.returncode, err.read())
            listed = subprocess.run([*argv, "--root", root, "list", "-q"], capture_output=True, text=True,
                                    env=dict(os.environ, PYTHONPATH=ROOT)).stdout.split()
            results[name] += (listed,)
        finally:
            subprocess.run([*argv, "--root", root, "delete", "-f", "lc-oom"], capture_output=True,
                           env=dict(os.environ, PYTHONPATH=ROOT))
    assert results["runc"][0] != 0, results["runc"]        # the relation holds on this kernel
    code, err, listed = results["labkit"]
    assert code != 0 and "oomScoreAdj" in err and "CAP_SYS_RESOURCE" in err, (code, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert listed == [], listed                            # nothing left to start
