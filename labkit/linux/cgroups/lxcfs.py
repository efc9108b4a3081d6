"""A truthful `free` in a container: lxcfs.

/proc/meminfo is not namespaced: in a container it shows the host's memory
even under a 64 MiB limit. lxcfs is a FUSE filesystem whose proc/meminfo
(cpuinfo, stat, uptime, swaps, diskstats) is computed from the cgroup limits
of the process that reads it; bind-mounted over the container's /proc files,
procps `free` tells the container's truth. lxcfs looks up the memory cgroup
of the reader's PID-namespace init, so the container needs its own PID
namespace. (busybox `free` reads sysinfo(2), which no file can change.)
"""

import os
import shutil
import subprocess
import tempfile
import time

from labkit.linux import mountinfo
from labkit.errors import LabkitError, NotFound

LXCFS_DIR = "/var/lib/lxcfs"
PROC_FILES = ("meminfo", "cpuinfo", "stat", "uptime", "swaps", "diskstats")


def mounted(path=LXCFS_DIR):
    return any(m.mount_point == path and m.fstype == "fuse.lxcfs" for m in mountinfo.read())


def bind_mounts(path=LXCFS_DIR):
    """(source, target) pairs to bind inside the container's root."""
    return [(os.path.join(path, "proc", name), f"/proc/{name}") for name in PROC_FILES
            if os.path.exists(os.path.join(path, "proc", name))]


class Lxcfs:
    """Start lxcfs on `path`, or reuse one already serving there; stop() only
    stops what start() started.

        with Lxcfs() as lx:
            lx.bind_mounts()
    """

    def __init__(self, path=LXCFS_DIR, rundir=None):
        self.path = path
        self.started = False
        self._proc = None
        # Its pid file and log; a temp dir unless the caller gives one (a
        # container's state dir, which `labkit gc` removes after a crash).
        self._rundir_given = rundir
        self._rundir = None

    def start(self, timeout=10.0):
        if mounted(self.path):
            return self
        binary = shutil.which("lxcfs")
        if binary is None:
            raise NotFound("lxcfs is not installed", "apt-get install lxcfs")
        os.makedirs(self.path, exist_ok=True)
        if self._rundir_given:
            os.makedirs(self._rundir_given, exist_ok=True)
            self._rundir = self._rundir_given
        else:
            self._rundir = tempfile.mkdtemp(prefix="lxcfs-")
        log = open(os.path.join(self._rundir, "log"), "w+")
        # -f: stay a child of ours, so stop() can end exactly this one.
        self._proc = subprocess.Popen(
            [binary, "-f", "-p", os.path.join(self._rundir, "pid"), self.path],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self.started = True
        deadline = time.monotonic() + timeout
        while not mounted(self.path):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                why = log.read().strip().splitlines()[-1:] or ["no output"]
                self.stop()
                raise LabkitError(f"lxcfs did not mount {self.path}: {why[0]}",
                                  "is the fuse module loaded (/dev/fuse)?")
            time.sleep(0.02)
        log.close()
        return self

    def stop(self, timeout=10.0):
        if not self.started:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if mounted(self.path):
            from labkit.linux import syscalls
            syscalls.umount2(self.path, syscalls.MNT_DETACH)
        shutil.rmtree(self._rundir, ignore_errors=True)
        self.started = False

    def bind_mounts(self):
        return bind_mounts(self.path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

