"""podman drives labkit-runtime exactly as it drives runc: the same
`podman run` cases under both, with their exit codes, output and effects
compared. podman (4.3, with conmon) runs with private state in a temp dir,
the cgroupfs manager, no network, on a copy of labkit's base rootfs, and is
cleaned up after. labkit-runtime's create leaves the init to conmon, which
reaps it: that is how podman learns every exit code below."""

import os
import shutil
import tempfile

import pytest

from labkit.course.conformance.clients import LABKIT_RUNTIME, Podman

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="podman here runs as root")]


@pytest.fixture(scope="module")
def podman(rootfs):
    if not shutil.which("podman") or not shutil.which("conmon"):
        pytest.fail("podman and conmon are missing: `make test` installs them (provision.sh --test-tools)")
    from labkit.images import builder
    from labkit.linux import files
    top = tempfile.mkdtemp(prefix="lab-podman-")
    copy = os.path.join(top, "rootfs")
    files.full_copy(builder.resolve(rootfs), copy)
    p = Podman(copy, top=top)
    yield p
    p.close()


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
