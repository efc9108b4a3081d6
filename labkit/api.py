"""The Python API the notebooks use: each call runs `labkit ARGS` exactly as
a student would type it, in a process of its own.

Why not fork the Jupyter kernel? The kernel is multithreaded; a fork copies
only the calling thread, and running Python set-up code in the child can
deadlock on a lock another thread held. So, as root, the first call spawns
a fork server (labkit/runtime/servers/forkserver.py): one single-threaded process
per kernel with labkit's start path imported, which forks a child per call
— no interpreter to start, no imports to repeat. Elsewhere (a script, a
test: LABKIT_FORKSERVER=1 turns it on there too), without root, or with
LABKIT_FORKSERVER=0, each call starts `labkit` as a fresh process.

Interrupting a cell (KeyboardInterrupt) sends the command SIGINT, which
`labkit run` handles as a Ctrl-C: it stops the container and tears down its
mounts and cgroups; only if that takes too long is it killed, and `labkit
gc` collects the rest. When the kernel goes, its fork server removes every
container started through it.
"""

import os
import shlex
import signal
import subprocess
import sys
import threading


class Result:
    def __init__(self, args, returncode, stdout, stderr):
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr

    @property
    def ok(self):
        return self.returncode == 0

    @property
    def command(self):
        """The command line a student would type for this call."""
        args = self.args[3:] if self.args[1:3] == ["-m", "labkit"] else self.args[1:]
        return "labkit " + " ".join(shlex.quote(a) for a in args)

    def __repr__(self):
        return f"Result(returncode={self.returncode}, stdout={self.stdout!r}, stderr={self.stderr!r})"


def labkit_argv(*args):
    """`labkit ARGS`: the venv's lean launcher next to this interpreter when
    provisioning wrote one (it starts ~10 ms faster), else `python -m labkit`."""
    launcher = os.path.join(os.path.dirname(sys.executable), "labkit")
    if os.access(launcher, os.X_OK):
        return [launcher, *args]
    return [sys.executable, "-m", "labkit", *args]


# What a container's start imports, imported once in the fork server.
WARM = ("labkit.cli.main", "labkit.runtime.runner", "labkit.runtime.monitor", "labkit.runtime.init",
        "labkit.stages.namespaces", "labkit.stages.rootfs", "labkit.stages.cgroups", "labkit.stages.unionfs",
        "labkit.stages.seccomp", "labkit.images.builder", "labkit.linux.netdevice")
_server = None
_server_lock = threading.Lock()


def _namespaces():
    """The network and mount namespaces of the calling thread: where a
    command's links and mounts go (a test's thread may have unshared its own)."""
    return tuple(os.stat(f"/proc/thread-self/ns/{ns}").st_ino for ns in ("net", "mnt"))


def _in_a_kernel():
    """Whether this process is a running Jupyter kernel: not only one that
    imported ipykernel (jupyter_client does, to find its kernel spec: a
    script or a test runner that starts kernels is not one)."""
    app = sys.modules.get("ipykernel.kernelapp")
    return app is not None and app.IPKernelApp.initialized()


def _forkserver():
    """This process's fork server (started now if it has none), or None: in
    a Jupyter kernel (LABKIT_FORKSERVER=1 anywhere, =0 never), as root, and
    from the namespaces it was started in (elsewhere a fresh process runs
    where the caller is)."""
    global _server
    wanted = os.environ.get("LABKIT_FORKSERVER")
    if wanted == "0" or (wanted != "1" and not _in_a_kernel()) or os.geteuid() != 0:
        return None
    with _server_lock:
        if _server is False:            # it could not start here: never again in this process
            return None
        if _server is None or not _server.alive():
            from labkit.runtime.servers.forkserver import Client
            try:
                _server = Client("labkit.cli.main:main", WARM)
            except OSError as e:
                print(f"labkit: {e}; each call starts `labkit` afresh", file=sys.stderr)
                _server = False
                return None
            _server.namespaces = _namespaces()
        return _server if _server.namespaces == _namespaces() else None


def call(args, input=None, timeout=120, check=False):
    """Run `labkit ARGS...` and capture its output (text)."""
    argv = labkit_argv(*args)
    server = _forkserver()
    if server is not None:
        try:
            code, out, err = server.call(list(args), input=input, timeout=timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired(argv, timeout) from None
        result = Result(argv, code, out, err)
    else:
        result = _spawned(argv, input, timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{result.command} exited {result.returncode}: {result.stderr.strip()}")
    return result


def _spawned(argv, input, timeout):
    """`labkit ARGS` as a fresh process."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:   # KeyboardInterrupt, timeout: stop it the clean way first
        _interrupt(proc)
        raise
    return Result(argv, proc.returncode, out, err)


def _interrupt(proc):
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        subprocess.run(labkit_argv("gc"), capture_output=True)
    except ProcessLookupError:
        pass


def command(cmd):
    """A string runs under sh -c; a list runs as is."""
    return ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)


def run_args(cmd, ns=None, hostname=None, rootfs=None, name=None, memory=None, cpus=None,
             pids=None, layers=(), lxcfs=False, detach=False, remove=True, env=(), extra=(),
             privileged=False, network=None, publish=(), aliases=(), ip=None):
    """The argv of `labkit run` for these options. ``privileged``: no guard
    (every capability, nothing masked), for a lesson that needs one off.
    ``network``, ``publish``, ``aliases``, ``ip``: --network, -p, --network-alias, --ip."""
    args = ["run"]
    if ns is not None:
        args += ["--ns", ns if isinstance(ns, str) else (",".join(ns) or "none")]
    for flag, value in (("--hostname", hostname), ("--rootfs", rootfs), ("--name", name),
                        ("--memory", memory), ("--cpus", cpus), ("--pids-limit", pids),
                        ("--network", network), ("--ip", ip)):
        if value is not None:
            args += [flag, str(value)]
    for layer in layers:
        args += ["--layer", str(layer)]
    for item in env:
        args += ["-e", item]
    for port in publish:
        args += ["-p", port]
    for alias in aliases:
        args += ["--network-alias", alias]
    if lxcfs:
        args.append("--lxcfs")
    if privileged:
        args.append("--privileged")
    if detach:
        args.append("-d")
    elif remove:
        args.append("--rm")
    return args + list(extra) + ["--"] + command(cmd)


def run(cmd, input=None, timeout=120, check=False, **options):
    """Run ``cmd`` in a new container and wait for it."""
    return call(run_args(cmd, **options), input=input, timeout=timeout, check=check)


def host(cmd, timeout=60):
    """Run a shell command on the host (outside), for comparisons."""
    out = subprocess.run(command(cmd), capture_output=True, text=True, timeout=timeout)
    return Result(command(cmd), out.returncode, out.stdout, out.stderr)


class Container:
    """A detached container, as a context manager that always removes it:

        with api.Container("sleep 300", ns="pid,net") as c:
            c.exec("ps -e")
    """

    def __init__(self, cmd="sleep 3600", **options):
        self.cmd, self.options = cmd, options
        self.id = None

    def start(self):
        result = call(run_args(self.cmd, detach=True, **self.options), check=True)
        self.id = result.stdout.strip().splitlines()[-1]
        return self

    @property
    def state(self):
        from labkit.runtime import container
        return container.load(self.id)

    @property
    def pid(self):
        return self.state["pid"]

    def exec(self, cmd, input=None, timeout=60):
        argv = ["exec"] + (["-i"] if input is not None else []) + [self.id, "--"] + command(cmd)
        return call(argv, input=input, timeout=timeout)

    def remove(self):
        if self.id:
            call(["rm", "-f", self.id])
            self.id = None

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.remove()
            raise

    def __exit__(self, *exc):
        self.remove()
