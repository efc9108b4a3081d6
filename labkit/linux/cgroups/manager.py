"""One Manager for a container's cgroup, whatever the hierarchy below it.

`create()` looks at what is mounted and builds labkit/<id> in the v1
hierarchies it needs, or in the v2 tree; callers then only add pids, read
stats and destroy, never asking which version it is.
"""

import errno
import os
import time
from labkit.startpath import signal

from labkit.linux import mountinfo
from labkit.linux.cgroups import fs, hierarchy, v1, v2
from labkit.linux.cgroups.hierarchy import KNOWN
from labkit.linux.cgroups.resources import Resources
from labkit.errors import Conflict, LabkitError, Unsupported

PARENT = "labkit"
# Joined whenever present, for statistics and to find every process to kill
# (and v1's freezer, for pause: v2 freezes any cgroup with cgroup.freeze).
_STATS_V1 = ("memory", "cpu", "cpuacct", "pids", "freezer")
_STATS_V2 = ("memory", "cpu", "pids")
# A cgroup name: a letter or digit, then up to 127 of these (no re: the
# start path does not import it).
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ALNUM | frozenset("_.-")


class Manager:
    """labkit/<cid> in one or more hierarchies.

    ``paths`` maps each joined controller to its cgroup directory (on v2
    they all share one directory)."""

    def __init__(self, cid, paths, version, plain_files=False, made=()):
        self.id = cid
        self.paths = dict(paths)
        self.version = version
        # Parents this manager made on the way down (a cgroupsPath's
        # /libpod_parent): removed with it once empty, and only those.
        self.made = list(made)
        # A fake tree of ordinary files (unit tests): rmdir must empty it first.
        self._plain_files = plain_files

    def __repr__(self):
        return f"<cgroup {self.id} v{self.version} {sorted(set(self.paths.values()))}>"

    @property
    def dirs(self):
        return sorted(set(self.paths.values()))

    @property
    def path(self):
        """The directory for the memory controller (or any): for display."""
        return self.paths.get("memory") or self.dirs[0]

    def add(self, pid):
        """Move process `pid` (all its threads) into this cgroup."""
        for d in self.dirs:
            try:
                fs.write(os.path.join(d, "cgroup.procs"), pid, "process")
            except LabkitError as e:
                raise LabkitError(f"cannot add process {pid} to cgroup {self.id}: {e.message}",
                                  "is the process still alive?") from None

    def pids(self):
        found = set()
        for d in self.dirs:
            found.update(fs.procs(d))
        return sorted(found)

    def _freezer(self):
        return self.paths.get("freezer") if self.version == 1 else self.dirs[0]

    def freeze(self, frozen=True, timeout=10.0):
        """pause (frozen) or resume: every process of the cgroup stops being
        scheduled, or goes on. Returns once the kernel says it is done."""
        path = self._freezer()
        if path is None:
            raise Unsupported("this container has no freezer cgroup", "mount the v1 freezer hierarchy")
        (v1 if self.version == 1 else v2).freeze(path, frozen, timeout)

    def frozen(self):
        path = self._freezer()
        return path is not None and (v1 if self.version == 1 else v2).frozen(path)

    def update(self, resources):
        """New limits on a running container (runc update)."""
        r = Resources.from_dict(resources)
        if self.version == 1:
            for ctl, setter in v1.SETTERS.items():
                if ctl in self.paths and ctl != "devices":
                    setter(self.paths[ctl], r)
            if "cpuset" in self.paths and (r.cpuset_cpus or r.cpuset_mems):
                v1.set_cpuset(self.paths["cpuset"], r, os.path.dirname(self.paths["cpuset"]))
        else:
            r.devices = None          # as runc: update leaves the device rules alone
            v2.apply(self.dirs[0], r)

    def stats(self):
        if self.version == 2:
            return v2.stats(self.dirs[0])
        return v1.stats(self.paths)

    def destroy(self, timeout=10.0):
        """Kill what is left inside, remove the cgroup and, when empty, the
        `labkit` parent. Safe to call twice."""
        if self.frozen():         # a frozen task takes no SIGKILL before it is thawed (v1)
            try:
                self.freeze(False, timeout=2.0)
            except LabkitError:
                pass
        for d in self.dirs:
            _remove(d, timeout, self._plain_files)
        for d in sorted(self.made, key=len, reverse=True):   # deepest first
            try:
                os.rmdir(d)
            except OSError:
                pass        # not empty (another container under it), or gone already
        for d in self.dirs:
            _remove_parents(os.path.dirname(d), self._plain_files)


def _remove_parents(d, plain_files=False):
    """The empty directories from ``d`` up to the `labkit` parent, and then
    the parent itself: everything under it is labkit's, also what a relative
    cgroupsPath nests there (labkit/cg-rel/inner), which the process that
    made it — OCI create, not delete — is gone to remember."""
    parts = d.split(os.sep)
    if PARENT not in parts:
        return
    top = os.sep.join(parts[:len(parts) - parts[::-1].index(PARENT)])
    while d.startswith(top + os.sep):
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass            # gone already
        except OSError:
            return          # not empty: another container under it
        d = os.path.dirname(d)
    _remove_parent(top, plain_files)


def _remove(path, timeout, plain_files=False):
    """Empty and rmdir one cgroup directory, children first."""
    try:
        # scandir: a cgroup holds dozens of files, and the directory entry
        # says which are directories without a stat(2) each.
        children = [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return
    for child in children:
        _remove(child, timeout, plain_files)
    if plain_files:
        # A fake tree: its cgroup.procs lists no real members, never kill them.
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
    else:
        _kill_all(path, timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            # EBUSY: a killed process has not left the cgroup yet.
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise LabkitError(f"cannot remove cgroup {path}: {os.strerror(e.errno)}",
                                  "see which processes are left in its cgroup.procs") from None
            time.sleep(0.01)


def _kill_all(path, timeout):
    """SIGKILL every process in the cgroup until none is left.

    First stop new forks: pids.max 0 makes fork(2) fail inside, so a fork
    bomb cannot outrun the killing; v2's cgroup.kill kills the whole
    subtree in one write. An empty cgroup (the usual end of a container)
    needs none of it."""
    if not fs.procs(path):
        return
    for name, value in (("pids.max", 0), ("cgroup.kill", 1)):
        control = os.path.join(path, name)
        if os.path.exists(control):
            try:
                fs.write(control, value)
            except LabkitError:
                pass
    deadline = time.monotonic() + timeout
    while True:
        left = fs.procs(path)
        if not left:
            return
        if time.monotonic() > deadline:
            raise LabkitError(f"processes {left} survive SIGKILL in cgroup {path}",
                              "they may be stuck in the kernel (D state); try again later")
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


def _remove_parent(parent, plain_files=False):
    if os.path.basename(parent) != PARENT or not os.path.isdir(parent):
        return
    if any(e.is_dir(follow_symlinks=False) for e in os.scandir(parent)):
        return
    if plain_files:
        for name in os.listdir(parent):
            os.unlink(os.path.join(parent, name))
    try:
        os.rmdir(parent)
    except OSError:
        pass        # another container appeared meanwhile, or gone already


def check_id(cid):
    if not isinstance(cid, str) or not 1 <= len(cid) <= 128 or cid[0] not in _ALNUM \
            or not _ID_CHARS.issuperset(cid):
        raise LabkitError(f"container id {cid!r} cannot name a cgroup",
                          "use letters, digits, '.', '_' and '-' (at most 128)")


def _is_plain(root):
    """Whether `root` is an ordinary directory (a test's fake tree) rather
    than a mounted cgroup filesystem."""
    if root is None:
        return False
    v1_map, v1_mounts, v2 = hierarchy.hierarchies(mountinfo.read())
    real = os.path.realpath(root)
    mounts = list(v1_mounts) + ([v2] if v2 else [])
    return not any(real == m or real.startswith(m.rstrip("/") + "/") or
                   m.startswith(real.rstrip("/") + "/") for m in mounts)


def relative_path(cid, path=None):
    """A container's cgroup below each hierarchy's root: labkit/<id> by
    default; an absolute cgroupsPath (/libpod_parent/libpod-ID) as it is,
    a relative one under labkit/ (the runtime spec leaves relative paths to
    the runtime)."""
    if not path:
        return f"{PARENT}/{cid}"
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise LabkitError(f"cgroupsPath {path!r} is not a cgroup path", "write it as /parent/name, with no '..'")
    return "/".join(parts) if path.startswith("/") else "/".join([PARENT] + parts)


def _plan(layout, r, extra, rel):
    """Which controllers to join, and where. Raises before anything exists."""
    for ctl in extra:
        if ctl not in KNOWN:
            raise LabkitError(f"unknown cgroup controller '{ctl}'",
                              "labkit knows " + ", ".join(KNOWN))
    required = list(dict.fromkeys(r.controllers() + list(extra)))
    if layout.version == 1:
        for ctl in required:
            if ctl not in layout.v1:
                raise Unsupported(
                    f"cgroup controller '{ctl}' is not mounted on this host",
                    "v1 hierarchies here: " + (", ".join(sorted(layout.v1)) or "none"))
        joined = list(dict.fromkeys(required + [c for c in _STATS_V1 if c in layout.v1]))
        return {c: os.path.join(layout.v1[c], rel) for c in joined}
    available = layout.v2_controllers
    for ctl in required:
        if ctl in ("cpuacct", "devices"):
            continue            # v2 accounts cpu in cpu.stat, always; devices are a BPF program
        if ctl not in available:
            raise Unsupported(
                f"cgroup controller '{ctl}' is not available in the cgroup v2 tree {layout.v2}",
                "its cgroup.controllers lists: " + (" ".join(available) or "nothing"))
    joined = [c for c in dict.fromkeys(required + list(_STATS_V2)) if c in available]
    return {c: os.path.join(layout.v2, rel) for c in joined}


def create(cid, resources=None, root=None, controllers=(), path=None):
    """Create labkit/<cid> (or the container's cgroupsPath, ``path``) with
    `resources` (a Resources or a dict) applied.

    On any failure everything this call made is removed again and a
    LabkitError names the file and the value the kernel refused."""
    check_id(cid)
    r = Resources.from_dict(resources or {})
    layout = hierarchy.detect(root)
    if layout.version is None:
        raise Unsupported("no cgroup filesystem is mounted",
                          "mount cgroup2 on /sys/fs/cgroup (or the v1 hierarchies)")
    paths = _plan(layout, r, controllers, relative_path(cid, path))
    plain = _is_plain(root)
    for d in set(paths.values()):
        if os.path.exists(d):
            raise Conflict(f"cgroup {d} exists already",
                           f"another container uses the id {cid}; `labkit gc` removes stale ones")
    m = Manager(cid, paths, layout.version, plain_files=plain)
    try:
        if layout.version == 1:
            _create_v1(paths, r, plain, m.made)
        else:
            _create_v2(layout, paths, r, plain, m.made)
    except BaseException:
        m.destroy(timeout=2.0)
        raise
    return m


def _mkdir(path, plain=False):
    """mkdir a cgroup. In a fake tree of plain files (tests), give the new
    directory the parent's interface files, empty, as the kernel would."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    if plain:
        parent = os.path.dirname(path)
        for name in os.listdir(parent):
            if os.path.isfile(os.path.join(parent, name)):
                open(os.path.join(path, name), "w").close()


def _parents(path, made, plain, each=None):
    """mkdir every missing level above ``path``, top first; ``each(dir)``
    for every level made (a v1 cpuset's cpus and mems). Levels other than
    the `labkit` parent (which gc owns) are noted in ``made``."""
    missing = []
    parent = os.path.dirname(path)
    while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for d in reversed(missing):
        _mkdir(d, plain)
        if each is not None:
            each(d)
        if os.path.basename(d) != PARENT:
            made.append(d)


def _create_v1(paths, r, plain, made):
    for ctl, path in paths.items():
        if os.path.isdir(path):
            continue            # a hierarchy with several controllers
        each = (lambda d: v1.inherit_cpuset(d, os.path.dirname(d))) if ctl == "cpuset" else None
        _parents(path, made, plain, each)
        if ctl == "cpuset":     # a parent that was there already may be an empty cpuset too
            v1.inherit_cpuset(os.path.dirname(path), os.path.dirname(os.path.dirname(path)))
        _mkdir(path, plain)
    # Several controllers may share one hierarchy (cpu,cpuacct): each setter
    # writes only its own files.
    for ctl, setter in v1.SETTERS.items():
        if ctl in paths:
            setter(paths[ctl], r)
    if "cpuset" in paths:
        v1.set_cpuset(paths["cpuset"], r, os.path.dirname(paths["cpuset"]))


def _create_v2(layout, paths, r, plain, made):
    path = next(iter(paths.values()))
    # A controller reaches the container's cgroup only if enabled on every level above.
    wanted = [c for c in paths if c != "cpuacct"]
    _parents(path, made, plain)
    level = layout.v2
    for part in os.path.relpath(os.path.dirname(path), layout.v2).split("/"):
        v2.enable(level, wanted)
        level = os.path.join(level, part)
    v2.enable(level, wanted)
    _mkdir(path, plain)
    v2.apply(path, r)


def load(cid, root=None, path=None, made=()):
    """The Manager of an existing labkit/<cid> (or cgroupsPath ``path``; with
    the parents that ``made`` lists) for `labkit rm`, exec, or delete."""
    check_id(cid)
    layout = hierarchy.detect(root)
    rel = relative_path(cid, path)
    if layout.version == 1:
        paths = {c: os.path.join(m, rel) for c, m in layout.v1.items()}
    elif layout.version == 2:
        paths = {c: os.path.join(layout.v2, rel) for c in layout.v2_controllers}
    else:
        paths = {}
    paths = {c: p for c, p in paths.items() if os.path.isdir(p)}
    if not paths:
        return None
    return Manager(cid, paths, layout.version, plain_files=_is_plain(root), made=made)


def gc(keep_ids=(), root=None, timeout=10.0):
    """Remove every labkit/<id> cgroup whose id is not in `keep_ids`, killing
    its processes, in every hierarchy mounted. Returns the ids removed."""
    layout = hierarchy.detect(root)
    plain = _is_plain(root)
    keep = set(keep_ids)
    bases = list(layout.v1_mounts) + ([layout.v2] if layout.v2 else [])
    removed = set()
    for base in bases:
        parent = os.path.join(base, PARENT)
        if not os.path.isdir(parent):
            continue
        for name in sorted(os.listdir(parent)):
            path = os.path.join(parent, name)
            if os.path.isdir(path) and name not in keep:
                _remove(path, timeout, plain)
                removed.add(name)
        _remove_parent(parent, plain)
    return sorted(removed)
