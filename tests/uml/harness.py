"""Run pytest inside user-mode Linux: a real kernel with cgroup v2 only.

    python tests/uml/harness.py tests/cgroups -q      # from the repo root

The UML kernel (Debian's user-mode-linux) boots with the host's root
filesystem as its root (hostfs), so it sees this repo and this interpreter
at the same paths. Its init (a shell script written here) mounts proc,
sysfs, cgroup2 on /sys/fs/cgroup and tmpfs on /tmp and /run, loads
overlay.ko and fuse.ko, runs `python -m pytest ARGS` with the interpreter that runs this
harness, writes the exit code and the output into a directory the host
reads, and halts. Writes outside the tmpfs mounts land on the host.
"""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

LINUX_UML = "/usr/bin/linux.uml"
UML_MODULES = "/usr/lib/uml/modules"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# Where the host's /tmp stays visible inside, once a tmpfs covers /tmp.
HOST_TMP = "/mnt"


@dataclass
class Result:
    exit_code: int            # pytest's, or None if it never finished
    output: str               # pytest's stdout and stderr
    boot_seconds: float       # from starting linux.uml to its init running
    total_seconds: float      # from starting linux.uml to its exit
    console: str              # the kernel's console, for when things go wrong


def available():
    return os.access(LINUX_UML, os.X_OK)


def _shim(workdir):
    """Build the LD_PRELOAD shim that lets UML 6.1 set FPU state on CPUs
    with a large XSAVE area (see xstate_shim.c); None without a compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    out = os.path.join(workdir, "xstate_shim.so")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", out,
                    os.path.join(HERE, "xstate_shim.c"), "-ldl"], check=True)
    return out


# Modules the labs need that Debian's UML kernel builds as modules:
# overlayfs (union filesystem) and fuse (lxcfs).
MODULES = ("kernel/fs/overlayfs/overlay.ko", "kernel/fs/fuse/fuse.ko")


def _modules():
    releases = sorted(os.listdir(UML_MODULES)) if os.path.isdir(UML_MODULES) else []
    return [os.path.join(UML_MODULES, r, m) for r in releases[-1:] for m in MODULES
            if os.path.exists(os.path.join(UML_MODULES, r, m))]


def _under_tmp(paths):
    """The paths that a tmpfs on /tmp would hide: they are bound back."""
    out = []
    for p in paths:
        p = os.path.realpath(p)
        if p.startswith("/tmp/") and not any(p.startswith(q + "/") or p == q for q in out):
            out.append(p)
    return out


def _init_script(workdir, pytest_args, cwd, env):
    python = sys.executable
    keep = _under_tmp([workdir, cwd, sys.prefix, os.path.dirname(python)] +
                      [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] +
                      [a for a in pytest_args if os.path.exists(a)])
    q = shlex.quote
    lines = [
        "#!/bin/sh",
        "# init of a user-mode Linux test run (written by tests/uml/harness.py)",
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"date +%s.%N > {q(workdir)}/booted",
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "mount -t cgroup2 none /sys/fs/cgroup",
        "mount -t devtmpfs devtmpfs /dev 2>/dev/null",
        "mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm",
        f"mount --bind /tmp {HOST_TMP}",
        "mount -t tmpfs tmpfs /tmp",
        "mount -t tmpfs tmpfs /run",
    ]
    for p in keep:
        lines.append(f"mkdir -p {q(p)} && mount --bind {q(HOST_TMP + p[len('/tmp'):])} {q(p)}")
    for module in _modules():
        lines.append(f"insmod {q(module)}")
    for k, v in env.items():
        lines.append(f"export {k}={q(v)}")
    # labkit's state inside: a LABKIT_HOME of its own on this kernel's tmpfs.
    # hostfs shares files with the host, and a `labkit gc` in here cannot see
    # the host's processes: it would take the host's containers for dead.
    # The host's built root filesystems are used where they are.
    host_home = env.get("LABKIT_HOME", "/var/lib/labkit")
    lines += [
        "mkdir -p /run/labkit/rootfs",
        f'for r in {q(host_home)}/rootfs/*; do [ -d "$r" ] && ln -s "$r" /run/labkit/rootfs/; done',
        "export LABKIT_HOME=/run/labkit",
    ]
    lines += [
        f"cd {q(cwd)}",
        f"{q(python)} -m pytest -p no:cacheprovider {' '.join(q(a) for a in pytest_args)} "
        f"> {q(workdir)}/output 2>&1",
        f"echo $? > {q(workdir)}/exit_code",
        "sync",
        "halt -f",
        "echo o > /proc/sysrq-trigger",
    ]
    return "\n".join(lines) + "\n"


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


def run_pytest(pytest_args, timeout=240, mem="1G", cwd=REPO):
    """Boot UML, run pytest with `pytest_args` inside it, return a Result.
    Paths in `pytest_args` are the host's (the same inside)."""
    if not available():
        raise FileNotFoundError(f"{LINUX_UML} is missing: apt-get install user-mode-linux")
    workdir = tempfile.mkdtemp(prefix="labkit-uml-")
    try:
        init = os.path.join(workdir, "init.sh")
        with open(init, "w") as f:
            f.write(_init_script(workdir, list(pytest_args), cwd, _env_for_tests()))
        os.chmod(init, 0o755)
        env = dict(os.environ)
        shim = _shim(workdir)
        if shim:
            env["LD_PRELOAD"] = shim
        cmd = [LINUX_UML, f"mem={mem}", "root=/dev/root", "rootfstype=hostfs", "rootflags=/",
               "rw", "quiet", f"init={init}", "con=null", "con0=fd:0,fd:1",
               f"uml_dir={workdir}", f"umid=labkit-{os.getpid()}"]
        console_path = os.path.join(workdir, "console")
        start = time.time()
        with open(console_path, "wb") as console:
            uml = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                uml.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            finally:
                # UML runs its processes as host processes of its own group.
                try:
                    os.killpg(uml.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                uml.wait()
        total = time.time() - start

        def read(name):
            try:
                with open(os.path.join(workdir, name), errors="replace") as f:
                    return f.read()
            except FileNotFoundError:
                return None
        code = read("exit_code")
        booted = read("booted")
        return Result(
            exit_code=int(code) if code and code.strip() else None,
            output=read("output") or "",
            boot_seconds=round(float(booted) - start, 2) if booted else None,
            total_seconds=round(total, 2),
            console=read("console") or "")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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
