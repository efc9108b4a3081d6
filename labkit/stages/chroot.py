"""Stage 1 — the root directory: chroot(2), then pivot_root(2).

Without a mount namespace the only way to change a process's root is
chroot(2). The container then shares the host's mount table: mounting /proc
inside the rootfs is a mount on the host (the parent makes it, and removes it
afterwards), and through it `ps` shows every host process. With a mount
namespace the root is changed with pivot_root(2) instead (labkit/rootfs.py).
"""

import os

from .. import rootfs, syscalls
from . import Stage


class RootStage(Stage):
    name = "chroot"

    def prepare(self, c):
        cfg = c.config
        if not cfg.pivot_root and cfg.mount_proc:
            target = os.path.join(c.rootfs, "proc")
            os.makedirs(target, exist_ok=True)
            syscalls.mount("proc", target, "proc",
                           syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
            c.host_mounts.append(target)

    def child(self, c):
        cfg = c.config
        if cfg.mounts is not None:
            # An OCI config.json: its own list of mounts, devices and paths.
            from ..oci import rootfs as oci_rootfs
            oci_rootfs.enter(c.rootfs, cfg, before_pivot=getattr(c, "before_pivot", None),
                             before_cgroups=c.await_attach)
        elif cfg.pivot_root:
            # c.binds: files other stages want bound over the new root's
            # (lxcfs's /proc/meminfo …). Only rootfs.enter knows the moment
            # between "/proc is mounted" and "the old root is gone".
            rootfs.enter(c.rootfs, proc=cfg.mount_proc, readonly=cfg.readonly_rootfs,
                         binds=getattr(c, "binds", ()))
        else:
            os.chroot(c.rootfs)
        os.chdir(cfg.cwd)

    def teardown(self, c):
        while c.host_mounts:
            target = c.host_mounts.pop()
            try:
                syscalls.umount2(target, syscalls.MNT_DETACH)
            except OSError:
                pass  # already gone; `labkit gc` reports anything left
