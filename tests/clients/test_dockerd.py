"""Docker's own engine, measured where the course says what Docker does.

dockerd (Debian's docker.io 20.10, unpacked by `provision.sh --test-tools`,
never installed as a service) runs with private state in a temp dir, in a
network namespace of its own (its docker0, its iptables rules and its
containers' traffic stay there, and go with it), under a cgroup parent of its
own, removed afterwards. Its image is labkit's base rootfs, imported.

Notebook 06 says: Docker's default bridge resolves no container names; a
user-defined network does, through the embedded DNS server at 127.0.0.11.

And Docker's engine drives labkit-runtime as it drives runc (daemon.json's
"runtimes"): the same `docker run` under `--runtime labkit` and `--runtime
runc` gives the same output and exit code, case by case.
"""

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from labkit.course import leaks
from labkit.course.conformance.clients import labkit_runtime
from labkit.linux import syscalls
from labkit.linux.cgroups import hierarchy

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="dockerd runs as root")]

DOCKER = Path(os.environ.get("LABKIT_CACHE", "/var/cache/labkit")) / "docker.io/usr"
TINI = DOCKER.parent.parent / "tini/usr/bin/tini-static"
IMAGE = "labkit-base"


class Docker:
    """dockerd with private state, and its client pointed at it."""

    def __init__(self, rootfs):
        self.top = tempfile.mkdtemp(prefix="lab-dockerd-")
        # A name the suite's leak check knows (labkit/course/leaks.py); dockerd makes
        # it below its own cgroup, which is this process's, in every hierarchy.
        self.parent = f"{leaks.CLIENT_PREFIX}dockerd-{os.getpid()}"
        # dockerd makes /run/docker/plugins whatever its exec root: removed
        # afterwards unless it was there before.
        self.run_docker = None if os.path.exists("/run/docker") else "/run/docker"
        self.sock = f"unix://{self.top}/docker.sock"
        self.env = dict(os.environ, PATH=f"{DOCKER}/sbin:{DOCKER}/bin:" + os.environ.get("PATH", ""))
        self.log = open(os.path.join(self.top, "dockerd.log"), "w")
        # Nameserver 127.0.0.1: a container that asks the daemon's DNS asks
        # its own loopback, never an address outside (the host's resolv.conf).
        self.proc = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
             str(DOCKER / "sbin/dockerd"), "--data-root", f"{self.top}/data", "--exec-root", f"{self.top}/exec",
             "--pidfile", f"{self.top}/dockerd.pid", "-H", self.sock, "--dns", "127.0.0.1",
             # its identity key, else written to /etc/docker/key.json
             "--config-file", self.config(),
             "--cgroup-parent", self.parent, "--userland-proxy=false"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
            # If the test's process dies (even SIGKILL), dockerd is told to stop.
            preexec_fn=lambda: syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGTERM))
        deadline = time.monotonic() + 60
        while self("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                pytest.fail("dockerd did not start: " + self.log_tail())
            time.sleep(0.2)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        self("import", "-", IMAGE, stdin=tar.stdout)
        tar.stdout.close()
        assert tar.wait() == 0

    def config(self):
        import json
        path = os.path.join(self.top, "daemon.json")
        with open(path, "w") as f:
            json.dump({"deprecated-key-path": f"{self.top}/key.json",
                       "runtimes": {"labkit": {"path": labkit_runtime()}},
                       # docker.io's docker-init is Debian's tini-static
                       "init-path": str(TINI)}, f)
        return path

    def __call__(self, *args, check=True, stdin=subprocess.DEVNULL, timeout=120):
        r = subprocess.run([str(DOCKER / "bin/docker"), "-H", self.sock, *args], env=self.env, stdin=stdin,
                           capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"
        return r

    def log_tail(self):
        with open(os.path.join(self.top, "dockerd.log")) as f:
            return f.read()[-3000:]

    def close(self):
        if self.proc.poll() is None:
            ids = self("ps", "-aq", check=False).stdout.split()
            if ids:
                self("rm", "-f", *ids, check=False)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        # What dockerd mounted under its state (overlay2, its netns files),
        # deepest first, then the state; its cgroup parent in every hierarchy.
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(self.top + "/")]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        subprocess.run(["rm", "-rf", self.top])
        if self.run_docker:
            subprocess.run(["rm", "-rf", self.run_docker])
        for own in hierarchy.own_dirs():
            for here, _, _ in os.walk(os.path.join(own, self.parent), topdown=False):
                os.rmdir(here)


@pytest.fixture(scope="module")
def docker(rootfs):
    from labkit.images import builder
    if not (DOCKER / "sbin/dockerd").exists():
        pytest.fail(f"dockerd is missing in {DOCKER}: `make test` unpacks it (provision.sh --test-tools)",
                    pytrace=False)
    d = Docker(builder.resolve(rootfs))
    try:
        yield d
    finally:
        d.close()


def address(docker, name):
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).stdout.strip()


def test_the_default_bridge_resolves_no_names_a_user_network_does(docker):
    """Two containers on Docker's default bridge: the second cannot look the
    first up by name (no embedded DNS there: its resolv.conf is the daemon's,
    its /etc/hosts holds only itself). On a network made with `docker network
    create` the same lookup is answered by 127.0.0.11 with the container's address."""
    docker("run", "-d", "--name", "lab-alpha", IMAGE, "sleep", "300")
    seen = docker("run", "--rm", IMAGE, "sh", "-c",
                  "cat /etc/resolv.conf; grep -c lab-alpha /etc/hosts; timeout 10 nslookup lab-alpha", check=False)
    assert "127.0.0.11" not in seen.stdout and "nameserver 127.0.0.1" in seen.stdout, seen.stdout
    assert seen.returncode != 0 and address(docker, "lab-alpha") not in seen.stdout, seen.stdout
    assert "\n0\n" in seen.stdout, seen.stdout          # grep -c: lab-alpha is not in /etc/hosts either

    docker("network", "create", "lab-net")
    try:
        docker("run", "-d", "--net", "lab-net", "--name", "lab-beta", IMAGE, "sleep", "300")
        seen = docker("run", "--rm", "--net", "lab-net", IMAGE, "sh", "-c",
                      "cat /etc/resolv.conf; timeout 10 nslookup lab-beta")
        assert "nameserver 127.0.0.11" in seen.stdout and "Server:\t\t127.0.0.11" in seen.stdout, seen.stdout
        assert f"Address: {address(docker, 'lab-beta')}" in seen.stdout, seen.stdout
    finally:
        docker("rm", "-f", "lab-alpha", "lab-beta", check=False)
        docker("network", "rm", "lab-net", check=False)


# A container's own limits, on cgroup v2 (its namespace's root) or v1.
MEMORY = "/sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
PIDS = "/sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"

# (name, docker run's options, the command): each case's output and exit code
# must be the same under labkit-runtime as under runc.
CASES = [
    ("exit code", [], ["sh", "-c", "echo out; echo err >&2; exit 7"]),
    ("capabilities", [], ["sh", "-c", "grep -E '^Cap(Eff|Bnd)' /proc/self/status"]),
    ("cap-drop ALL", ["--cap-drop", "ALL"], ["sh", "-c", "grep CapEff /proc/self/status"]),
    ("cap-add", ["--cap-add", "SYS_ADMIN"], ["sh", "-c", "grep CapEff /proc/self/status"]),
    ("user", ["--user", "1000:1000"], ["id"]),
    ("env and workdir", ["-e", "LAB=1", "-w", "/tmp"], ["sh", "-c", "echo $LAB; pwd"]),
    ("hostname", ["-h", "box"], ["hostname"]),
    ("memory limit", ["--memory", "64m"], ["sh", "-c", f"cat {MEMORY}"]),
    ("pids limit", ["--pids-limit", "20"], ["sh", "-c", f"cat {PIDS}"]),
    ("read-only", ["--read-only"], ["sh", "-c", "touch /x 2>&1; echo $?"]),
    ("tmpfs", ["--read-only", "--tmpfs", "/scratch"], ["sh", "-c", "touch /scratch/x && echo written"]),
    ("device", ["--device", "/dev/full"], ["sh", "-c", "ls -l /dev/full | cut -c1; echo x > /dev/full; echo $?"]),
    ("pid 1", [], ["sh", "-c", "echo $$; ps -o pid= | wc -l"]),
    ("no network", ["--network", "none"], ["sh", "-c", "ls /sys/class/net"]),
    ("masked paths", [], ["sh", "-c", "cat /proc/kcore 2>&1 | wc -c; ls /proc/acpi 2>&1 | wc -l"]),
    ("sysctl", ["--sysctl", "net.ipv4.ip_forward=1"], ["cat", "/proc/sys/net/ipv4/ip_forward"]),
    # PID 1 is docker-init (tini), the command its child (the pids between
    # differ: runc's own setup forks inside the new PID namespace).
    ("init", ["--init"], ["sh", "-c", "ps -o comm= -p 1; echo parent $PPID"]),
    ("oom kill", ["--memory", "32m", "--memory-swap", "32m"],
     ["sh", "-c", "a=x; while true; do a=$a$a; done"]),
]


@pytest.mark.parametrize("name, options, cmd", CASES, ids=[c[0] for c in CASES])
def test_docker_runs_labkit_runtime_as_it_runs_runc(docker, name, options, cmd):
    seen = {}
    for runtime in ("runc", "labkit"):
        r = docker("run", "--rm", "--runtime", runtime, *options, IMAGE, *cmd, check=False)
        seen[runtime] = (r.returncode, r.stdout, r.stderr if r.returncode else "")
    assert seen["labkit"] == seen["runc"], seen


def test_docker_runs_a_terminal_container_on_labkit_runtime(docker):
    """`docker run -t`: the runtime makes the pty in the container's devpts and
    sends its master to containerd's shim through the console socket."""
    seen = {}
    for runtime in ("runc", "labkit"):
        r = docker("run", "--rm", "-t", "--runtime", runtime, IMAGE, "sh", "-c", "tty; stty size", check=False)
        seen[runtime] = (r.returncode, r.stdout.replace("\r", ""))
    assert seen["labkit"] == seen["runc"] and seen["runc"][1].startswith("/dev/pts/"), seen


def test_docker_update_and_a_detached_container_on_labkit_runtime(docker):
    """`docker update` sends every field, 0 meaning "leave it"; stop is SIGTERM."""
    for runtime in ("runc", "labkit"):
        name = f"lab-upd-{runtime}"
        docker("run", "-d", "--name", name, "--runtime", runtime, "--memory", "64m", IMAGE, "sleep", "300")
        try:
            # The runtime that made it is the one asked for: its own state is
            # in the root dockerd gives every runtime (runc cannot read labkit's).
            cid = docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
            binary = labkit_runtime() if runtime == "labkit" else "runc"
            state = subprocess.run([binary, "--root", f"{docker.top}/exec/runtime-runc/moby", "state", cid],
                                   capture_output=True, text=True)
            assert state.returncode == 0 and '"running"' in state.stdout, (runtime, state.stderr)
            docker("update", "--memory", "96m", "--memory-swap", "-1", name)
            limit = docker("exec", name, "sh", "-c", f"cat {MEMORY}").stdout.strip()
            assert limit == str(96 << 20), (runtime, limit)
            docker("update", "--pids-limit", "30", name)
            pids = docker("exec", name, "sh", "-c", f"cat {PIDS}").stdout.strip()
            limit = docker("exec", name, "sh", "-c", f"cat {MEMORY}").stdout.strip()
            assert (pids, limit) == ("30", str(96 << 20)), runtime
            assert docker("stop", "-t", "2", name).returncode == 0
            assert docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "137"
        finally:
            docker("rm", "-f", name, check=False)



def test_docker_restarts_execs_and_reads_stats_of_labkit_runtime_containers(docker):
    """--restart on-failure (dockerd creates and starts the container again
    through the runtime), exec with and without a terminal, stats from the
    container's cgroup: the same under both runtimes."""
    seen = {}
    for runtime in ("runc", "labkit"):
        flaky, steady = f"lab-restart-{runtime}", f"lab-exec-{runtime}"
        try:
            docker("run", "-d", "--name", flaky, "--runtime", runtime, "--restart", "on-failure:2",
                   IMAGE, "sh", "-c", "exit 3")
            docker("run", "-d", "--name", steady, "--runtime", runtime, IMAGE, "sleep", "300")
            deadline = time.monotonic() + 60
            while docker("inspect", "-f", "{{.State.Running}}", flaky).stdout.strip() != "false" or \
                    docker("inspect", "-f", "{{.RestartCount}}", flaky).stdout.strip() != "2":
                assert time.monotonic() < deadline, f"{runtime}: not restarted twice"
                time.sleep(0.2)
            plain = docker("exec", steady, "sh", "-c", "echo exec; tty; exit 4", check=False)
            term = docker("exec", "-t", steady, "tty", check=False)
            stats = docker("stats", "--no-stream", "--format", "{{.PIDs}}", steady).stdout.strip()
            seen[runtime] = (docker("inspect", "-f", "{{.State.ExitCode}}", flaky).stdout.strip(),
                             plain.returncode, plain.stdout, term.returncode, term.stdout.startswith("/dev/pts/"),
                             stats)
        finally:
            docker("rm", "-f", flaky, steady, check=False)
    assert seen["labkit"] == seen["runc"], seen
