"""The Python API the notebooks use: each call starts `labkit` as a fresh
process, exactly as a student would type it.

Why not fork the Jupyter kernel? The kernel is multithreaded; a fork copies
only the calling thread, and running Python set-up code in the child can
deadlock on a lock another thread held. A fresh `python -m labkit` process is
single-threaded, so the runner can fork safely there.

Interrupting a cell (KeyboardInterrupt) sends SIGINT to that process, which
forwards it to the container, kills it after a grace period and tears down
its mounts and cgroups; only if that takes too long is it killed, and
`labkit gc` collects the rest.
"""

import os
import shlex
import signal
import subprocess
import sys


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


def call(args, input=None, timeout=120, check=False):
    """Run `labkit ARGS...` and capture its output (text)."""
    argv = labkit_argv(*args)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:   # KeyboardInterrupt, timeout: stop it the clean way first
        _interrupt(proc)
        raise
    result = Result(argv, proc.returncode, out, err)
    if check and result.returncode != 0:
        raise RuntimeError(f"{result.command} exited {result.returncode}: {err.strip()}")
    return result


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
        from .runtime import container
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
