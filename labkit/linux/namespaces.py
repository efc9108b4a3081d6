"""Namespaces (namespaces(7)): names, clone flags, inodes, and joining.

A namespace is identified by the inode of /proc/PID/ns/<name>: two processes
are in the same namespace exactly when those inodes are equal. That is what
`lsns` prints and what labkit's facts compare, inside against outside.
"""

import os

from labkit.linux import syscalls
from labkit.errors import LabkitError

# The namespaces of namespaces(7), by the names /proc/PID/ns uses.
NAMESPACES = ("pid", "net", "ipc", "mnt", "uts", "user", "cgroup", "time")
# `--all`: the five of the seed text (PID, NET, IPC, MNT, UTS) plus CGROUP.
# USER and TIME stay opt-in, as with docker (userns-remap is off by default).
DEFAULT_NAMESPACES = ("pid", "net", "ipc", "mnt", "uts", "cgroup")

FLAGS = {
    "pid": syscalls.CLONE_NEWPID, "net": syscalls.CLONE_NEWNET,
    "ipc": syscalls.CLONE_NEWIPC, "mnt": syscalls.CLONE_NEWNS,
    "uts": syscalls.CLONE_NEWUTS, "user": syscalls.CLONE_NEWUSER,
    "cgroup": syscalls.CLONE_NEWCGROUP, "time": syscalls.CLONE_NEWTIME,
}
# Aliases students type, from unshare(1)'s option names and the seed text.
ALIASES = {"mount": "mnt", "ns": "mnt", "network": "net", "uts": "uts",
           "hostname": "uts", "process": "pid", "users": "user"}
# setns(2) order for joining: the user namespace first (it grants the
# capabilities for the rest), the mount namespace last but one (it changes the
# root), pid and time last (they only apply to children forked afterwards).
JOIN_ORDER = ("user", "cgroup", "ipc", "uts", "net", "mnt", "pid", "time")


def parse(text):
    """'pid,net,UTS' -> frozenset({'pid','net','uts'}); 'none' -> empty."""
    names = set()
    for raw in text.replace(" ", ",").split(","):
        name = raw.strip().lower()
        if not name or name == "none":
            continue
        if name == "all":
            names.update(NAMESPACES)
            continue
        name = ALIASES.get(name, name)
        if name not in FLAGS:
            raise LabkitError(f"unknown namespace '{raw.strip()}'",
                              "choose from " + ", ".join(NAMESPACES) + ", or 'all'/'none'")
        names.add(name)
    return frozenset(names)


def flags(names):
    value = 0
    for name in names:
        value |= FLAGS[name]
    return value


def available():
    """The namespace types this kernel has (those /proc/self/ns shows)."""
    have = set(os.listdir("/proc/self/ns"))
    return [n for n in NAMESPACES if n in have]


def inode(pid, name):
    """The inode number of /proc/PID/ns/NAME (the namespace's identity)."""
    return os.stat(f"/proc/{pid}/ns/{name}").st_ino


def inodes(pid="self"):
    return {name: inode(pid, name) for name in available()}


def join(pid, names):
    """setns(2) into the given namespaces of ``pid``, and its root.

    The caller must fork afterwards for the pid and time namespaces to apply.
    The root directory is taken from /proc/PID/root, so this works for a
    container with its own mount namespace and for a chroot alike.
    """
    fds = {}
    try:
        for name in JOIN_ORDER:
            if name in names:
                fds[name] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY)
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
        fds["root"] = root
        for name in JOIN_ORDER:
            if name in fds:
                syscalls.setns(fds[name], FLAGS[name])
        os.fchdir(root)
        syscalls.chroot(".")
    finally:
        for fd in fds.values():
            os.close(fd)
