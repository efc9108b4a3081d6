"""Run pytest inside user-mode Linux: a real kernel with cgroup v2 only.

    python tests/uml/harness.py tests/cgroups -q      # from the repo root

The UML kernel (Debian's user-mode-linux) boots with the host's root
filesystem as its root (hostfs), so it sees this repo and this interpreter
at the same paths. Its init (labkit/course/uml writes it) mounts proc, sysfs,
cgroup2 on /sys/fs/cgroup and tmpfs on /tmp and /run, loads overlay.ko and
fuse.ko; the lines added here run `python -m pytest ARGS` with the
interpreter that runs this harness and write the exit code and the output
into a directory the host reads; then it halts. Writes outside the tmpfs
mounts land on the host.
"""

import os
import shlex
import signal
import sys
import threading
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)

from labkit.course import uml  # noqa: E402  (the booting: labkit/uml)

LINUX_UML = uml.LINUX_UML


@dataclass
class Result:
    exit_code: int            # pytest's, or None if it never finished
    output: str               # pytest's stdout and stderr
    boot_seconds: float       # from starting linux.uml to its init running
    total_seconds: float      # from starting linux.uml to its exit
    console: str              # the kernel's console, for when things go wrong


def available():
    return uml.available()


def _body(pytest_args, cwd, env):
    """The init's lines after the kernel's filesystems: the environment, a
    LABKIT_HOME of its own, then pytest with its output in $OUT."""
    python = sys.executable
    q = shlex.quote
    lines = [f"export {k}={q(v)}" for k, v in env.items()]
    # labkit's state inside: a LABKIT_HOME of its own on this kernel's tmpfs.
    # hostfs shares files with the host, and a `labkit gc` in here cannot see
    # the host's processes: it would take the host's containers for dead.
    # The host's built root filesystems are used where they are.
    host_home = env.get("LABKIT_HOME", "/var/lib/labkit")
    lines += [
        "mkdir -p /run/labkit/rootfs",
        f'for r in {q(host_home)}/rootfs/*; do [ -d "$r" ] && ln -s "$r" /run/labkit/rootfs/; done',
        "export LABKIT_HOME=/run/labkit",
        f"cd {q(cwd)}",
        f"{q(python)} -m pytest -p no:cacheprovider {' '.join(q(a) for a in pytest_args)} "
        '> "$OUT/output" 2>&1',
        'echo $? > "$OUT/exit_code"',
    ]
    return lines


def _keep(pytest_args, cwd, env):
    python = sys.executable
    return ([cwd, sys.prefix, os.path.dirname(python)] +
            [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] +
            [a for a in pytest_args if os.path.exists(a)])


def _env_for_tests():
    keep = ("PYTHONPATH", "LABKIT_HOME", "LANG", "LC_ALL", "CI")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    # The interpreter must find labkit even without an editable install.
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if REPO not in paths:
        env["PYTHONPATH"] = os.pathsep.join([REPO] + paths)
    env["LABKIT_IN_UML"] = "1"
    env["HOME"] = "/root"
    return env


def run_pytest(pytest_args, timeout=240, mem="1G", cwd=REPO, started=None):
    """Boot UML, run pytest with `pytest_args` inside it, return a Result.
    Paths in `pytest_args` are the host's (the same inside)."""
    env = _env_for_tests()
    r = uml.boot(_body(list(pytest_args), cwd, env), keep=_keep(list(pytest_args), cwd, env),
                 timeout=timeout, mem=mem, started=started)
    code = r.files.get("exit_code")
    return Result(exit_code=int(code) if code and code.strip() else None,
                  output=r.files.get("output", ""), boot_seconds=r.boot_seconds,
                  total_seconds=r.total_seconds, console=r.console)


class Background:
    """run_pytest in a thread of this process. User-mode Linux is one host
    CPU's work for a minute or more, most of it waiting on nothing the host's
    tests do: the suite starts it early and goes on with its other tests on
    the other core. result() waits for it; cancel() kills the kernel and its
    processes (a suite interrupted before it asked for the result)."""

    def __init__(self, pytest_args, timeout):
        self._kernel = []
        self._lock = threading.Lock()
        self._cancelled = False
        self._outcome = None
        self._thread = threading.Thread(target=self._run, args=(list(pytest_args), timeout),
                                        name="user-mode Linux", daemon=True)
        self._thread.start()

    def _run(self, pytest_args, timeout):
        try:
            self._outcome = run_pytest(pytest_args, timeout=timeout, started=self._started)
        except BaseException as e:       # raised again in the thread that asks
            self._outcome = e

    def _started(self, kernel):
        with self._lock:
            self._kernel.append(kernel)
            if self._cancelled:
                _kill(kernel)

    def result(self):
        self._thread.join()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    def cancel(self):
        with self._lock:
            self._cancelled = True
            for kernel in self._kernel:
                _kill(kernel)
        self._thread.join(timeout=60)


def _kill(kernel):
    """UML runs its processes as host processes of the kernel's group."""
    try:
        os.killpg(kernel.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv):
    r = run_pytest(argv or ["tests/cgroups"])
    sys.stdout.write(r.output)
    if r.exit_code is None:
        sys.stdout.write("user-mode Linux did not finish the run; its console ends with:\n")
        sys.stdout.write(r.console[-3000:])
    print(f"uml: boot {r.boot_seconds} s, total {r.total_seconds} s, pytest exit {r.exit_code}")
    return 1 if r.exit_code is None else r.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
