"""Stage 3, the other half of cgroups: a /proc that tells the container's truth.

A memory limit holds (the OOM killer sees to it), yet `free` in the container
shows the host's memory: /proc/meminfo is not namespaced. lxcfs is a FUSE
filesystem whose proc/meminfo, cpuinfo, stat, uptime, swaps and diskstats
are computed from the cgroup of the process that reads them; bound over the
container's /proc files, procps `free` shows the limit. (busybox `free` asks
sysinfo(2), which no file can change.)

Which lxcfs, and who stops it:

  * an lxcfs already serving /var/lib/lxcfs (Debian's lxcfs.service) is
    shared by every container and never stopped by labkit;
  * otherwise the container gets its own, mounted at <state_dir>/lxcfs and
    started by prepare() (~20 ms). Its teardown stops it. If the runner is
    SIGKILLed instead, `labkit gc` unmounts everything under the dead
    container's state dir, and an lxcfs whose mount is gone exits by itself.
    One per container, so no container can stop another's.

lxcfs finds the reader's cgroup through the init of the reader's PID
namespace, so the container needs its own PID namespace; and the binds are
made inside its mount namespace, on top of its fresh /proc (labkit/linux/rootfs.py).
"""

import os

from labkit.stages import Stage
from labkit.errors import LabkitError


def check(config):
    """What --lxcfs needs, checked before anything is created."""
    missing = [n for n in ("pid", "mnt") if n not in config.namespaces]
    if missing:
        raise LabkitError(f"--lxcfs needs the {' and '.join(missing)} namespace"
                          f"{'s' if len(missing) > 1 else ''}",
                          "lxcfs answers per PID namespace and its files go over the container's "
                          "own /proc: add pid,mnt to --ns (the default has both)")
    if not config.mount_proc:
        raise LabkitError("--lxcfs needs /proc mounted in the container",
                          "drop --no-proc: lxcfs's files are bound over the container's /proc files")


class LxcfsStage(Stage):
    name = "lxcfs"

    def wanted(self, config, options=None):
        return bool(config.lxcfs)

    def prepare(self, c):
        from labkit.linux.cgroups import lxcfs
        check(c.config)
        if lxcfs.mounted(lxcfs.LXCFS_DIR):
            c.lxcfs = None                       # shared: not ours to stop
            path = lxcfs.LXCFS_DIR
        else:
            c.lxcfs = lxcfs.Lxcfs(os.path.join(c.state_dir, "lxcfs"),
                                  rundir=os.path.join(c.state_dir, "lxcfs.run")).start()
            path = c.lxcfs.path
        binds = lxcfs.bind_mounts(path)
        if not binds:
            raise LabkitError(f"lxcfs at {path} offers no proc files",
                              "is it an lxcfs mount? see `labkit doctor`")
        # The rootfs stage binds these over <root>/proc/... once /proc is mounted.
        c.binds += binds

    def teardown(self, c):
        lx = c.lxcfs
        if lx is not None:
            lx.stop()
            try:
                os.rmdir(lx.path)
            except OSError:
                pass
            c.lxcfs = None
