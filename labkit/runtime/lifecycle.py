"""stop, rm and gc: the end of a container's life, and what is left after
a crash.

A container normally cleans up after itself: its monitor (the `labkit run`
process) tears the stages down when the command exits, on an error, and on
SIGINT or SIGTERM; a detached one's reaper does (runtime/servers/reaper.py). Only
SIGKILL of the monitor, or a reboot, skips that; the container's init dies
with its monitor (PR_SET_PDEATHSIG), goes on running if its reaper is killed
(it is marked dead), and `labkit gc` removes the rest: mounts under $LABKIT_HOME, cgroups named labkit, network endpoints
(their links, firewall rules and hosts entries), state directories.
"""

import os
import shutil
import signal
import time

from labkit import home
from labkit.linux import mountinfo, syscalls
from labkit.errors import Conflict, NotFound
from labkit.containers import ACTIVE, CREATING, DEAD, STOPPED
from labkit.runtime import container as ct


def _kill(pid, started, sig):
    if ct.alive(pid, started):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop(cid, timeout=10):
    """SIGTERM to the container's init, SIGKILL after ``timeout`` seconds;
    returns once its monitor has cleaned up (as `docker stop` does)."""
    state = ct.load(cid)
    if state["status"] not in (*ACTIVE, DEAD):
        return state
    monitor = (state.get("monitor"), state.get("monitor_start"))
    _kill(state.get("pid"), state.get("pid_start"), signal.SIGTERM)
    gone = lambda: not ct.alive(*monitor) or _ended(cid)   # noqa: E731
    if not _wait_until(gone, timeout):
        _kill(state.get("pid"), state.get("pid_start"), signal.SIGKILL)
        if not _wait_until(gone, 5) and not state.get("reaper"):
            _kill(*monitor, signal.SIGKILL)   # never the reaper: it waits for every other container too
    if ct.load(cid)["status"] == DEAD:
        collect(cid)
    return ct.load(cid) if os.path.isdir(home.containers_dir(cid)) else None


def _ended(cid):
    """Torn down and saved as stopped (or forgotten, with --rm): what the
    reaper's finisher leaves, while the reaper itself lives on."""
    try:
        return ct.load(cid)["status"] == STOPPED
    except NotFound:
        return True


def remove(cid, force=False):
    state = ct.load(cid)
    if state["status"] in ACTIVE:
        if not force:
            raise Conflict(f"container '{cid}' is running",
                           f"stop it first with `labkit stop {cid}`, or use `labkit rm -f {cid}`")
        stop(cid, timeout=0)
    collect(cid)


def _mounts_under(prefix):
    """Mount points below ``prefix`` in this mount namespace, deepest first."""
    below = prefix.rstrip("/") + "/"
    points = [m.mount_point for m in mountinfo.read()
              if m.mount_point == prefix or m.mount_point.startswith(below)]
    return sorted(points, key=len, reverse=True)


def _unmount_all(prefix, keep=()):
    done = []
    for point in _mounts_under(prefix):
        if point in keep:
            continue
        try:
            syscalls.umount2(point, syscalls.MNT_DETACH)
            done.append(point)
        except OSError:
            pass
    return done


def collect(cid):
    """Remove whatever a stopped or dead container left: its processes, its
    mounts on the host, its cgroup, its state directory."""
    state = ct.load(cid)
    if ct.alive(state.get("pid"), state.get("pid_start")) and \
            "pid" not in (state.get("config") or {}).get("namespaces", ["pid"]):
        ct.kill_session(state["pid"])
    _kill(state.get("pid"), state.get("pid_start"), signal.SIGKILL)
    # Not OCI create cleaning up after itself (its own monitor), nor the reaper.
    if state.get("monitor") != os.getpid() and not state.get("reaper"):
        _kill(state.get("monitor"), state.get("monitor_start"), signal.SIGKILL)
    report = []
    for point in state.get("host_mounts") or []:
        report += _unmount_all(point)
    report += _unmount_all(home.containers_dir(cid))
    if state.get("cgroup"):
        try:
            from labkit.linux import cgroups
            # Its own cgroup only (a cgroupsPath of its own, or labkit/<id>): the
            # others are other containers', of this home or another's.
            manager = cgroups.load(cid, path=(state.get("config") or {}).get("cgroup_path"),
                                   made=state.get("cgroup_made") or ())
            if manager is not None:
                manager.destroy()
        except ImportError:
            pass
    if (state.get("config") or {}).get("network"):
        from labkit.networks import endpoints
        report += [f"disconnected {cid} from network {n}" for n in endpoints.release(cid)]
    shutil.rmtree(home.containers_dir(cid), ignore_errors=True)
    return report


def gc():
    """Clean up after every container whose monitor is gone."""
    lines = []
    live, keep_mounts = [], set()
    for cid in ct.all_ids():
        state = ct.load(cid)
        st = state["status"]
        fresh = st == CREATING and time.time() - os.stat(home.containers_dir(cid)).st_mtime < 30
        if st in ACTIVE or fresh:
            live.append(cid)
            keep_mounts.update(state.get("host_mounts") or [])
            continue
        for line in collect(cid):
            lines.append(line if line.startswith("disconnected") else f"unmounted {line}")
        lines.append(f"removed container {cid} ({st})")
    # Mounts under $LABKIT_HOME that no live container owns (a chroot's /proc).
    for prefix in (home.rootfs_dir(), home.containers_dir()):
        live_prefixes = [home.containers_dir(c) for c in live]
        keep = set(keep_mounts)
        keep.update(p for p in _mounts_under(prefix)
                    if any(p.startswith(lp + "/") or p == lp for lp in live_prefixes))
        for point in _unmount_all(prefix, keep=keep):
            lines.append(f"unmounted {point}")
    from labkit.networks import endpoints
    lines += endpoints.gc()   # endpoints of processes gone (OCI hooks' too)
    try:
        from labkit.linux import cgroups
        # Not the cgroups of another home's containers (home.ROOTS), live or not: that home's gc.
        for path in cgroups.gc(keep_ids=set(live) | home.others()) or []:
            lines.append(f"removed cgroup {path}")
    except ImportError:
        pass
    if not lines:
        lines.append("nothing to clean")
    return lines

