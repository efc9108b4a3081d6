"""Idmapped mounts: a view of a directory in which its files' owners are
shifted, so that root in a user namespace owns its rootfs.

In a user namespace, root inside is an unprivileged uid outside (100000,
say: user_namespaces(7)). The base rootfs on disk belongs to uid 0, which
that namespace does not map: inside, every file shows as nobody (65534) and
root may not write one. Docker's userns-remap answers by copying the image
with chowned files; since Linux 5.12 a mount can do the shifting instead
(mount_setattr(2), MOUNT_ATTR_IDMAP): through an idmapped mount, a file of
uid 0 on disk shows as uid 100000, which is root inside. Nothing on disk
changes, and the same base serves every container.

    fd = open_tree(base, OPEN_TREE_CLONE)         # a detached bind of base
    mount_setattr(fd, MOUNT_ATTR_IDMAP, userns)   # shifted by userns's maps
    move_mount(fd, target)                        # attached at target

The union filesystem stacks such views as its lower layers (overlayfs takes
idmapped layers since 5.19). The id maps come from a user namespace: a child
that exists only to hold one (userns_fd()).
"""

import os

from labkit.linux import syscalls as sc


def userns_fd(uid_map, gid_map):
    """A file descriptor of a new user namespace with these maps ("0 100000
    65536\\n" lines): a child unshares it and waits, this process writes its
    maps and opens /proc/CHILD/ns/user, then the child exits. The namespace
    lives as long as the descriptor."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    pid = sc.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(done_w)
            sc.unshare(sc.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)          # until the parent has what it needs
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError("the helper for the id maps died before its user namespace existed")
        for name, text in (("uid_map", uid_map), ("gid_map", gid_map)):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)


def bind(source, target, ns_fd):
    """Mount at ``target`` a read-only view of ``source`` shifted by the user
    namespace ``ns_fd``. Read-only: it is a lower layer, and a view of the
    shared base that could be written would be the base itself."""
    fd = sc.open_tree(source, sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC)
    try:
        sc.mount_setattr(fd, sc.MOUNT_ATTR_IDMAP | sc.MOUNT_ATTR_RDONLY, ns_fd)
        sc.move_mount(fd, target)
    finally:
        os.close(fd)
