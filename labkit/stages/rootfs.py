"""Stage 1 — the root directory: chroot(2), then pivot_root(2).

Without a mount namespace the only way to change a process's root is
chroot(2). The container then shares the host's mount table: mounting /proc
inside the rootfs is a mount on the host (the monitor makes it, and removes
it afterwards), and through it `ps` shows every host process. With a mount
namespace the init walks a mount table and changes the root with
pivot_root(2) instead (labkit/linux/rootfs.py, which says why).
"""

import os

from labkit.linux import rootfs, syscalls
from labkit.errors import SetupError
from labkit.stages import Stage


def enter_cwd(cwd):
    """chdir to the process's working directory, once the root is the
    container's: a cwd that resolves outside it (through /proc/self/fd/N, say:
    runc's CVE-2024-21626) is refused, as runc 1.1.12 does."""
    try:
        os.chdir(cwd)
        inside = os.getcwd()   # ENOENT, or "(unreachable)/...", outside the root
    except OSError as e:
        raise SetupError(f"working directory {cwd!r}: {e.strerror} in the container",
                         "give a directory inside the container's root (-w, process.cwd)") from None
    if not inside.startswith("/"):
        raise SetupError(f"working directory {cwd!r} is outside the container's root",
                         "give a directory inside the container's root (-w, process.cwd)")


class RootStage(Stage):
    name = "rootfs"

    def prepare(self, c):
        cfg = c.config
        if cfg.pivot_root:
            # config.json brings its own table; `labkit run` gets the one
            # Docker would write for it, with other stages' binds (lxcfs).
            c.mounts = cfg.mounts if cfg.mounts is not None else \
                rootfs.default_mounts(proc=cfg.mount_proc, binds=c.binds, sys_rw=cfg.privileged)
        if not cfg.pivot_root and cfg.mount_proc:
            target = os.path.join(c.rootfs, "proc")
            os.makedirs(target, exist_ok=True)
            syscalls.mount("proc", target, "proc",
                           syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
            c.host_mounts.append(target)

    def child(self, c):
        cfg = c.config
        if cfg.pivot_root:
            rootfs.enter(c.rootfs, cfg, c.mounts, no_pivot=c.options.no_pivot,
                         before_pivot=c.before_pivot,
                         cgroups=c.cgroup.dirs if c.cgroup is not None else ())
        else:
            syscalls.chroot(c.rootfs)
        enter_cwd(cfg.cwd)

    def restore(self, c, state):
        c.host_mounts = list(state.get("host_mounts") or [])

    def teardown(self, c):
        while c.host_mounts:
            target = c.host_mounts.pop()
            try:
                syscalls.umount2(target, syscalls.MNT_DETACH)
            except OSError:
                pass  # already gone; `labkit gc` reports anything left
