"""User-mode Linux: a second, real kernel, run as a process of this one.

    result = uml.boot(["uname -r > $OUT/release"])      # lines of the init script
    result.files["release"], result.boot_seconds

Debian's user-mode-linux is a Linux kernel built to run as an ordinary
program. It boots with the host's root filesystem as its own (hostfs), so
it sees the same files at the same paths; its init (a shell script written
here) mounts proc, sysfs, cgroup2 on /sys/fs/cgroup and tmpfs on /tmp and
/run, loads overlay.ko and fuse.ko, runs the caller's lines with $OUT set to
a directory the host reads back, and halts. Writes outside the tmpfs
mounts land on the host.

The tests run a whole pytest in it (a pure cgroup v2 kernel:
tests/uml/harness.py); notebook 02 boots it beside a container, to show
what a kernel of one's own is.
"""

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time

LINUX_UML = "/usr/bin/linux.uml"
UML_MODULES = "/usr/lib/uml/modules"
HERE = os.path.dirname(os.path.abspath(__file__))
# Where the host's /tmp stays visible inside, once a tmpfs covers /tmp.
HOST_TMP = "/mnt"
# Modules the labs need that Debian's UML kernel builds as modules:
# overlayfs (union filesystem) and fuse (lxcfs).
MODULES = ("kernel/fs/overlayfs/overlay.ko", "kernel/fs/fuse/fuse.ko")


class Result:
    """What a boot left: the files the init wrote into $OUT, the timings
    (boot_seconds: from starting linux.uml to its init running; None if it
    never ran) and the kernel's console, for when things go wrong."""

    def __init__(self, files, boot_seconds, total_seconds, console):
        self.files, self.boot_seconds = files, boot_seconds
        self.total_seconds, self.console = total_seconds, console


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


def modules():
    releases = sorted(os.listdir(UML_MODULES)) if os.path.isdir(UML_MODULES) else []
    return [os.path.join(UML_MODULES, r, m) for r in releases[-1:] for m in MODULES
            if os.path.exists(os.path.join(UML_MODULES, r, m))]


def under_tmp(paths):
    """The paths that a tmpfs on /tmp would hide: they are bound back."""
    out = []
    for p in paths:
        p = os.path.realpath(p)
        if p.startswith("/tmp/") and not any(p.startswith(q + "/") or p == q for q in out):
            out.append(p)
    return out


def init_script(out, body, keep=()):
    """The init: the kernel's filesystems, the host's paths under /tmp that
    ``keep`` names bound back, the modules, then ``body`` (shell lines, with
    $OUT the directory ``out``), then halt."""
    q = shlex.quote
    lines = [
        "#!/bin/sh",
        "# init of a user-mode Linux boot (written by labkit/course/uml)",
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"export OUT={q(out)}",
        'date +%s.%N > "$OUT/.booted"',
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "mount -t cgroup2 none /sys/fs/cgroup",
        "mount -t devtmpfs devtmpfs /dev 2>/dev/null",
        "mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm",
        f"mount --bind /tmp {HOST_TMP}",
        "mount -t tmpfs tmpfs /tmp",
        "mount -t tmpfs tmpfs /run",
    ]
    for p in under_tmp([out] + list(keep)):
        lines.append(f"mkdir -p {q(p)} && mount --bind {q(HOST_TMP + p[len('/tmp'):])} {q(p)}")
    for module in modules():
        lines.append(f"insmod {q(module)}")
    lines += list(body)
    lines += ["sync", "halt -f", "echo o > /proc/sysrq-trigger"]
    return "\n".join(lines) + "\n"


def boot(body, keep=(), timeout=240, mem="1G", started=None):
    """Boot UML with an init running ``body``; a Result. ``started`` is
    called with the kernel's Popen as soon as it runs (to end it from
    another thread: os.killpg of its pid, the group of all its processes)."""
    if not available():
        raise FileNotFoundError(f"{LINUX_UML} is missing: apt-get install user-mode-linux")
    workdir = tempfile.mkdtemp(prefix="labkit-uml-")
    out = os.path.join(workdir, "out")
    os.mkdir(out)
    try:
        init = os.path.join(workdir, "init.sh")
        with open(init, "w") as f:
            f.write(init_script(out, body, keep))
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
            if started:
                started(uml)
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
        files = {}
        for name in os.listdir(out):
            with open(os.path.join(out, name), errors="replace") as f:
                files[name] = f.read()
        booted = files.pop(".booted", None)
        with open(console_path, errors="replace") as f:
            console_text = f.read()
        return Result(files, round(float(booted) - start, 2) if booted else None, round(total, 2), console_text)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
