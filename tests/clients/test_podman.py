"""podman drives labkit-runtime exactly as it drives runc: the same
`podman run` cases under both, with their exit codes, output and effects
compared. podman (4.3, with conmon) runs with private state in a temp dir,
the cgroupfs manager, no network, on a copy of labkit's base rootfs, and is
cleaned up after. labkit-runtime's create leaves the init to conmon, which
reaps it: that is how podman learns every exit code below."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABKIT_RUNTIME = os.path.join(os.path.dirname(sys.executable), "labkit-runtime")

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="podman here runs as root")]


class Podman:
    def __init__(self, top, rootfs):
        self.top, self.rootfs = top, rootfs
        self.conf = os.path.join(top, "containers.conf")
        with open(self.conf, "w") as f:
            f.write("[containers]\ndefault_ulimits = []\n"
                    "[engine]\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n"
                    f"runtime_supports_json = [\"labkit-runtime\", \"runc\"]\n"
                    "[engine.runtimes]\n"
                    f"labkit-runtime = [\"{LABKIT_RUNTIME}\"]\n")

    def argv(self, runtime, *args):
        return ["podman", "--root", os.path.join(self.top, "root"), "--runroot", os.path.join(self.top, "run"),
                "--tmpdir", os.path.join(self.top, "tmp"), "--storage-driver", "vfs",
                "--runtime", runtime, *args]

    def __call__(self, runtime, *args, input=None, timeout=120):
        env = dict(os.environ, CONTAINERS_CONF=self.conf, PYTHONPATH=ROOT)
        return subprocess.run(self.argv(runtime, *args), capture_output=True, text=True, input=input,
                              timeout=timeout, env=env)

    def run(self, runtime, *args, cmd=()):
        return self(runtime, "run", "--rm", "--network", "none", *args, "--rootfs", self.rootfs, *cmd)


@pytest.fixture(scope="module")
def podman(rootfs):
    if not shutil.which("podman") or not shutil.which("conmon"):
        pytest.fail("podman and conmon are missing: `make test` installs them (provision.sh --test-tools)")
    from labkit import builder
    top = tempfile.mkdtemp(prefix="lab-podman-")
    copy = os.path.join(top, "rootfs")
    builder.full_copy(builder.resolve(rootfs), copy)
    p = Podman(top, copy)
    yield p
    for runtime in (LABKIT_RUNTIME, "runc"):
        p(runtime, "rm", "-af", "-t", "0")
    _unmount_below(top)
    shutil.rmtree(top, ignore_errors=True)
    _remove_libpod_parent()


def _unmount_below(top):
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(top)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _remove_libpod_parent():
    """podman's /libpod_parent in every hierarchy, once empty (runc leaves it)."""
    from labkit.cgroups import hierarchy
    layout = hierarchy.detect()
    for base in list(layout.v1_mounts) + ([layout.v2] if layout.v2 else []):
        path = os.path.join(base, "libpod_parent")
        if os.path.isdir(path):
            for child in os.listdir(path):
                if os.path.isdir(os.path.join(path, child)):
                    try:
                        os.rmdir(os.path.join(path, child))
                    except OSError:
                        pass
            try:
                os.rmdir(path)
            except OSError:
                pass


# name: (podman run options, the command), compared on exit code and stdout.
CASES = {
    "echo": ([], ["echo", "hi"]),
    "exit-3": ([], ["sh", "-c", "exit 3"]),
    "not-found-127": ([], ["nosuchcmd"]),
    "not-executable-126": ([], ["/etc"]),
    "killed-137": ([], ["sh", "-c", "kill -9 $$"]),
    "stderr": ([], ["sh", "-c", "echo to-stderr >&2; echo to-stdout"]),
    "read-only": (["--read-only"], ["sh", "-c", "touch /x 2>/dev/null && echo wrote || echo refused"]),
    "user": (["--user", "1000:1000"], ["sh", "-c", "id -u; id -g"]),
    "cap-drop": (["--cap-drop", "ALL"], ["sh", "-c", "grep CapEff /proc/self/status"]),
    "default-caps": ([], ["sh", "-c", "grep CapEff /proc/self/status"]),
    "seccomp": ([], ["sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true 2>/dev/null || echo refused"]),
    "memory": (["--memory", "64m"], ["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                                                  "/sys/fs/cgroup/memory.max 2>/dev/null"]),
    "pids": (["--pids-limit", "20"], ["sh", "-c", "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max "
                                                 "2>/dev/null"]),
    "tmpfs": (["--tmpfs", "/scratch:size=1m"], ["sh", "-c", "touch /scratch/x && grep ' /scratch ' /proc/mounts "
                                                          "| cut -d' ' -f3"]),
    "env-and-workdir": (["-e", "LAB=1", "-w", "/tmp"], ["sh", "-c", "echo $LAB; pwd"]),
    "hostname": (["--hostname", "lab-pod"], ["hostname"]),
    "pid1": ([], ["sh", "-c", "echo $$"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_podman_run_is_the_same_as_under_runc(podman, name):
    options, cmd = CASES[name]
    mine = podman.run(LABKIT_RUNTIME, *options, cmd=cmd)
    runc = podman.run("runc", *options, cmd=cmd)
    assert mine.returncode == runc.returncode, (mine.stderr, runc.stderr)
    assert mine.stdout == runc.stdout, (mine.stderr, runc.stderr)
    if name == "stderr":
        assert mine.stderr == runc.stderr == "to-stderr\n"


def test_a_volume(podman, tmp_path):
    (tmp_path / "f").write_text("from the host\n")
    for runtime in (LABKIT_RUNTIME, "runc"):
        r = podman.run(runtime, "-v", f"{tmp_path}:/data", cmd=["sh", "-c", "cat /data/f; echo new > /data/g"])
        assert r.returncode == 0 and r.stdout == "from the host\n", r.stderr
        assert (tmp_path / "g").read_text() == "new\n"
        (tmp_path / "g").unlink()


@pytest.mark.parametrize("runtime", [LABKIT_RUNTIME, "runc"], ids=["labkit", "runc"])
def test_detached_ps_exec_stop_rm(podman, runtime):
    name = "lab-pod-" + ("l" if runtime != "runc" else "r")
    r = podman(runtime, "run", "-d", "--name", name, "--network", "none", "--rootfs", podman.rootfs, "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        ps = podman(runtime, "ps", "--format", "{{.Names}} {{.Status}}")
        assert any(line.startswith(name + " Up") for line in ps.stdout.splitlines()), ps.stdout
        ex = podman(runtime, "exec", name, "sh", "-c", "echo in-$(hostname | cut -c1-3); exit 4")
        assert ex.returncode == 4 and ex.stdout.startswith("in-"), ex.stderr
        tty = podman(runtime, "exec", "-t", name, "sh", "-c", "tty")
        assert tty.returncode == 0 and "/dev/pts/" in tty.stdout, tty.stderr
        stop = podman(runtime, "stop", "-t", "1", name)
        assert stop.returncode == 0, stop.stderr
        status = podman(runtime, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
        assert status.stdout.split()[0] == "exited", status.stdout
    finally:
        assert podman(runtime, "rm", "-f", name).returncode == 0
