"""Setting up a container's root filesystem, from inside its mount namespace.

The phases follow what runc's rootfs_linux.go does, in the same order:

  1. stop mount propagation, so nothing done here reaches the host;
  2. make the new root a mount point (pivot_root(2) requires one);
  3. mount /proc, a read-only /sys and a minimal /dev inside it, then any
     bind mounts other stages asked for over files there;
  4. pivot_root into it and detach the old root.

Why pivot_root and not chroot? chroot(2) only changes how *this process*
resolves "/": the host's root is still mounted in its namespace, and a
process that keeps CAP_SYS_CHROOT walks back out (stages/chroot.py shows the
breakout). pivot_root(2) moves the whole mount namespace onto the new root;
once the old root is unmounted there is no path left to the host's files.
"""

import errno
import os

from . import syscalls as sc

# The devices every container gets (the OCI runtime spec's default devices).
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEVICE_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
                "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
                "ptmx": "pts/ptmx"}
_DEV_FLAGS = sc.MS_NOSUID | sc.MS_NOEXEC | sc.MS_NODEV


def make_private():
    """Phase 1: MS_REC|MS_PRIVATE on / — mounts made from now on stay in
    this namespace, and the host's new mounts no longer arrive here."""
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)


def bind_self(root):
    """Phase 2: bind-mount the root onto itself so that it is a mount point."""
    sc.mount(root, root, None, sc.MS_BIND | sc.MS_REC)


def mount_proc(root):
    target = os.path.join(root, "proc")
    os.makedirs(target, exist_ok=True)
    sc.mount("proc", target, "proc", _DEV_FLAGS)


def mount_sys(root):
    """A read-only sysfs. sysfs can only be mounted by a process that owns the
    network namespace; without one (a user namespace and the host's network)
    the host's /sys is bind-mounted read-only instead, as runc does."""
    target = os.path.join(root, "sys")
    os.makedirs(target, exist_ok=True)
    try:
        sc.mount("sysfs", target, "sysfs", _DEV_FLAGS | sc.MS_RDONLY)
    except OSError as e:
        if e.errno != errno.EPERM:
            raise
        sc.mount("/sys", target, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _DEV_FLAGS)


def mount_dev(root):
    """A tmpfs /dev holding only the default devices, bind-mounted from the
    host's (mknod is not allowed in a user namespace; a bind mount is), a
    private devpts for terminals and a /dev/shm for POSIX shared memory."""
    dev = os.path.join(root, "dev")
    os.makedirs(dev, exist_ok=True)
    sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k")
    for name in DEVICES:
        target = os.path.join(dev, name)
        open(target, "w").close()
        sc.mount("/dev/" + name, target, None, sc.MS_BIND)
    os.mkdir(os.path.join(dev, "pts"))
    # newinstance: the container's ptys are its own, not the host's.
    sc.mount("devpts", os.path.join(dev, "pts"), "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620")
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    sc.mount("shm", os.path.join(dev, "shm"), "tmpfs", _DEV_FLAGS, "mode=1777,size=65536k")
    for name, target in DEVICE_LINKS.items():
        os.symlink(target, os.path.join(dev, name))


def bind_over(root, binds):
    """Phase 3, last: bind-mount each (source on the host, path inside the
    root) pair, e.g. another stage's /proc/meminfo over the one just mounted.
    It must happen after /proc, /sys and /dev are mounted (or the new mount
    would cover the bind) and before the pivot (which detaches the old root,
    the only place the sources can be reached from)."""
    top = os.path.realpath(root)
    for source, target in binds:
        dest = os.path.join(top, target.lstrip("/"))
        if not os.path.realpath(dest).startswith(top.rstrip("/") + "/"):
            raise ValueError(f"bind mount target {target!r} leads outside the root {root}")
        sc.mount(source, dest, None, sc.MS_BIND)


def pivot(root):
    """Phase 4: pivot_root(".", ".") stacks the old root on top of the new one
    at the same place; unmounting "." (lazily, MNT_DETACH) then drops the old
    root and with it every path back to the host's files. This avoids
    needing a put_old directory inside the container (pivot_root(2), NOTES)."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def remount_readonly():
    sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


def enter(root, proc=True, readonly=False, binds=()):
    """All four phases, for a process already in its own mount namespace.
    ``binds``: (source, target inside the root) pairs for bind_over()."""
    make_private()
    bind_self(root)
    if proc:
        mount_proc(root)
    mount_sys(root)
    mount_dev(root)
    bind_over(root, binds)
    pivot(root)
    if readonly:
        remount_readonly()
