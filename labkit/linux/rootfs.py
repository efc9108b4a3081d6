"""Setting up a container's root filesystem, from inside its mount namespace.

The phases follow what runc's rootfs_linux.go does, in the same order:

  1. stop mount propagation, so nothing done here reaches the host;
  2. make the new root a mount point (pivot_root(2) requires one);
  3. walk the mount table: /proc, a read-only /sys, a tmpfs /dev with its
     devpts and shm, then whatever else the table lists (bind mounts of
     host files, cgroups); then the device nodes;
  4. pivot_root into it and detach the old root;
  5. sysctls, read-only paths, masked paths, and the root read-only if asked.

One table for every container: `labkit run` gets default_mounts() (what
Docker would write into config.json for it), labkit-runtime the `mounts` of
config.json (labkit/oci/convert.py turns its options into mount(2) flags).

Why pivot_root and not chroot? chroot(2) only changes how *this process*
resolves "/": the host's root is still mounted in its namespace, and a
process that keeps CAP_SYS_CHROOT walks back out (labkit/course/facts/breakout.py
shows the breakout). pivot_root(2) moves the whole mount namespace onto the
new root; once the old root is unmounted there is no path left to the host's files.

Every destination is resolved *inside* the root: a `..` or a symlink in the
rootfs that points out of it is followed as if the root were `/`
(secure_join), so that an untrusted bundle never mounts over a host path.
"""

import errno
import os
import stat

from labkit.linux import mountinfo
from labkit.linux import syscalls as sc

# The devices every container gets (the OCI runtime spec's default devices),
# bind-mounted from the host's: mknod is not allowed in a user namespace, a bind is.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEVICE_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
                "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
                "ptmx": "pts/ptmx"}
_DEV_FLAGS = sc.MS_NOSUID | sc.MS_NOEXEC | sc.MS_NODEV


def make_private(propagation=None):
    """Phase 1: MS_REC|MS_PRIVATE on / — mounts made from now on stay in
    this namespace, and the host's new mounts no longer arrive here.
    config.json's rootfsPropagation may ask for another (rslave: the host's
    new mounts still arrive, none goes back)."""
    sc.mount(None, "/", None, propagation or (sc.MS_REC | sc.MS_PRIVATE))


def bind_self(root):
    """Phase 2: bind-mount the root onto itself so that it is a mount point."""
    sc.mount(root, root, None, sc.MS_BIND | sc.MS_REC)


def mount_entry(destination, fstype, flags, data="", source=None):
    """One row of the mount table, in the shape oci/convert.py makes."""
    return {"destination": destination, "type": fstype, "source": source or fstype,
            "flags": flags, "propagation": [], "data": data, "bind": fstype == "bind"}


def default_mounts(proc=True, binds=(), sys_rw=False):
    """`labkit run`'s table: a fresh /proc; a read-only sysfs; a tmpfs /dev
    (the default devices are bound into it), a private devpts instance
    (newinstance: the container's ptys are its own, not the host's) and a
    /dev/shm for POSIX shared memory. ``binds``: (host file, path inside)
    pairs bound over the others, e.g. lxcfs's /proc/meminfo: after /proc is
    mounted (or /proc would cover them) and before the pivot (which detaches
    the old root, the only place their sources can be reached from).
    ``sys_rw``: a writable /sys, for a privileged container only."""
    table = [mount_entry("/proc", "proc", _DEV_FLAGS)] if proc else []
    table += [
        mount_entry("/sys", "sysfs", _DEV_FLAGS | (0 if sys_rw else sc.MS_RDONLY)),
        mount_entry("/dev", "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k"),
        mount_entry("/dev/pts", "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620"),
        mount_entry("/dev/shm", "tmpfs", _DEV_FLAGS, "mode=1777,size=65536k", source="shm"),
    ]
    table += [mount_entry(target, "bind", sc.MS_BIND, source=source) for source, target in binds]
    return table


# OCI mount options (the fstab(5)/mount(8) words) -> (set, clear) of mount(2)
# flags. Anything else is filesystem data ("mode=755", "size=64k").
MOUNT_FLAGS = {
    "defaults": (0, 0), "rw": (0, sc.MS_RDONLY), "ro": (sc.MS_RDONLY, 0),
    "suid": (0, sc.MS_NOSUID), "nosuid": (sc.MS_NOSUID, 0),
    "dev": (0, sc.MS_NODEV), "nodev": (sc.MS_NODEV, 0),
    "exec": (0, sc.MS_NOEXEC), "noexec": (sc.MS_NOEXEC, 0),
    "sync": (sc.MS_SYNCHRONOUS, 0), "async": (0, sc.MS_SYNCHRONOUS), "dirsync": (sc.MS_DIRSYNC, 0),
    "remount": (sc.MS_REMOUNT, 0), "mand": (sc.MS_MANDLOCK, 0), "nomand": (0, sc.MS_MANDLOCK),
    "atime": (0, sc.MS_NOATIME), "noatime": (sc.MS_NOATIME, 0),
    "diratime": (0, sc.MS_NODIRATIME), "nodiratime": (sc.MS_NODIRATIME, 0),
    "lazytime": (sc.MS_LAZYTIME, 0), "nolazytime": (0, sc.MS_LAZYTIME),
    "relatime": (sc.MS_RELATIME, 0), "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0), "nostrictatime": (0, sc.MS_STRICTATIME),
    "bind": (sc.MS_BIND, 0), "rbind": (sc.MS_BIND | sc.MS_REC, 0),
    "silent": (sc.MS_SILENT, 0), "loud": (0, sc.MS_SILENT),
    "iversion": (sc.MS_I_VERSION, 0), "noiversion": (0, sc.MS_I_VERSION),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, 0), "symfollow": (0, sc.MS_NOSYMFOLLOW),
    "acl": (sc.MS_POSIXACL, 0), "noacl": (0, sc.MS_POSIXACL),
}
# Recursive attributes (runc's r-options): one mount_setattr(2) with
# AT_RECURSIVE after the mount, for it and every mount below it.
# option -> (bits set, bits cleared); the atime ones are a mode, set whole.
_ATIME = sc.MOUNT_ATTR__ATIME
RECURSIVE = {
    "rro": (sc.MOUNT_ATTR_RDONLY, 0), "rrw": (0, sc.MOUNT_ATTR_RDONLY),
    "rnosuid": (sc.MOUNT_ATTR_NOSUID, 0), "rsuid": (0, sc.MOUNT_ATTR_NOSUID),
    "rnodev": (sc.MOUNT_ATTR_NODEV, 0), "rdev": (0, sc.MOUNT_ATTR_NODEV),
    "rnoexec": (sc.MOUNT_ATTR_NOEXEC, 0), "rexec": (0, sc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (sc.MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, sc.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (sc.MOUNT_ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, sc.MOUNT_ATTR_NOSYMFOLLOW),
    "rnoatime": (sc.MOUNT_ATTR_NOATIME, _ATIME), "ratime": (sc.MOUNT_ATTR_RELATIME, _ATIME),
    "rrelatime": (sc.MOUNT_ATTR_RELATIME, _ATIME), "rnorelatime": (sc.MOUNT_ATTR_STRICTATIME, _ATIME),
    "rstrictatime": (sc.MOUNT_ATTR_STRICTATIME, _ATIME), "rnostrictatime": (sc.MOUNT_ATTR_RELATIME, _ATIME),
}


def recursive_attrs(options):
    """OCI options -> (attr_set, attr_clr) for mount_setattr(2); (0, 0)
    when none is recursive. As runc, every option adds its bits: rro with
    rrw sets and clears RDONLY, and the kernel (clear, then set) makes it ro."""
    set_, clr = 0, 0
    for opt in options or ():
        if opt in RECURSIVE:
            set_, clr = set_ | RECURSIVE[opt][0], clr | RECURSIVE[opt][1]
    return set_, clr


# runc's tmpcopyup: a tmpfs that starts with what the directory it covers held.
COPYUP = "tmpcopyup"

# Propagation options: each is a separate mount(2) call after the mount.
PROPAGATION = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# Filesystem types labkit mounts itself; "bind" (or a bind option) binds a host path.
FS_TYPES = ("proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "bind", "none")
# statvfs f_flag bits that are also mount(2) flags: kept on a remount, which
# must not clear a flag the kernel locked (a user namespace's mount).
_KEEP = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_NOATIME | sc.MS_NODIRATIME


def parse_options(options):
    """OCI options -> (flags, propagation flags list, data string)."""
    flags, prop, data = 0, [], []
    for opt in options or ():
        if opt in MOUNT_FLAGS:
            on, off = MOUNT_FLAGS[opt]
            flags = (flags | on) & ~off
        elif opt in PROPAGATION:
            prop.append(PROPAGATION[opt])
        elif opt not in RECURSIVE and opt != COPYUP:
            data.append(opt)
    return flags, prop, ",".join(data)


def secure_join(root, path):
    """``path`` inside ``root``, following symlinks as if ``root`` were /.

    A ``..`` never climbs above root, and a symlink's absolute target starts
    again at root: the result is always root or below it."""
    root = root.rstrip("/") or "/"
    parts = [p for p in path.split("/") if p and p != "."]
    resolved = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(40, f"too many symlinks resolving {path} in {root}")
            try:
                target = os.readlink(candidate)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                # No longer a symlink: the tree is changing under us. Go on
                # with what is there; open_in_root checks each step again.
                resolved.append(part)
                continue
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


_O_PATH = os.O_PATH | os.O_CLOEXEC
_NO_LINKS = sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_NO_MAGICLINKS | sc.RESOLVE_BENEATH


class Changed(OSError):
    """A path inside the root changed while it was being opened: a symlink
    where the resolved path had a directory."""

    def __str__(self):
        return self.strerror


def _step(dirfd, name, make=None):
    """One component below ``dirfd``, never through a symlink, made first
    (``make``: "dir" or "file") if it is missing."""
    try:
        return _open_below(dirfd, name)
    except OSError as e:
        if e.errno != errno.ENOENT or not make:
            raise
    try:
        if make == "file":
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644, dir_fd=dirfd))
        else:
            os.mkdir(name, 0o755, dir_fd=dirfd)
    except FileExistsError:
        pass                        # made meanwhile: what it is, _open_below checks
    return _open_below(dirfd, name)


def _open_below(dirfd, name):
    """openat2 with RESOLVE_NO_SYMLINKS, or (before Linux 5.6)
    O_PATH|O_NOFOLLOW and a look at what was opened."""
    try:
        return sc.openat2(dirfd, name, _O_PATH, _NO_LINKS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Changed(errno.ELOOP, f"{name!r} became a symlink while the container was being made")
        if e.errno != errno.ENOSYS:
            raise
    fd = os.open(name, _O_PATH | os.O_NOFOLLOW, dir_fd=dirfd)
    if stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)
        raise Changed(errno.ELOOP, f"{name!r} became a symlink while the container was being made")
    return fd


def open_in_root(root, path, make=None):
    """An O_PATH descriptor of ``path`` inside ``root``, where nothing in the
    tree can redirect it out, however the tree changes meanwhile (a volume
    shared with a running container can: CVE-2021-30465).

    The kernel resolves it with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS):
    a symlink's absolute target and .. start again at root. Where the path
    does not exist yet (``make``: "dir" or "file" creates it) or the kernel
    has no openat2, it is resolved once as the tree stands (secure_join), then
    walked one component at a time from root's descriptor, each opened with
    no symlink followed and created in its parent's descriptor if missing: a
    component swapped for a symlink in between stops the walk (Changed).
    Mount onto ``/proc/self/fd/N`` of the result, never onto the path."""
    root_fd = os.open(root, _O_PATH | os.O_DIRECTORY)
    try:
        try:
            return sc.openat2(root_fd, path.lstrip("/") or ".", _O_PATH,
                              sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOSYS) or (e.errno == errno.ENOENT and not make):
                raise
        parts = [p for p in os.path.relpath(secure_join(root, path), root).split("/") if p != "."]
        fd = os.dup(root_fd)
        try:
            for i, name in enumerate(parts):
                last = i == len(parts) - 1
                nxt = _step(fd, name, make and ("file" if make == "file" and last else "dir"))
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd
    finally:
        os.close(root_fd)


def fd_path(fd):
    """The path that names what ``fd`` is open on, for calls that take a
    path (mount(2)): /proc/self/fd/N, followed by the kernel to that very
    file, not re-resolved by name."""
    return f"/proc/self/fd/{fd}"


def _remount_bind(dest, flags):
    keep = os.statvfs(dest).f_flag & _KEEP
    sc.mount(None, dest, None, sc.MS_BIND | sc.MS_REMOUNT | keep | (flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)))


def _is_cgroup(m):
    """A `cgroup` mount: a hierarchy, not a bind of one."""
    return m["type"] in ("cgroup", "cgroup2") and not m.get("bind")


def mounts_cgroups(mounts):
    """Whether the table (or None) has a `cgroup` mount."""
    return any(_is_cgroup(m) for m in mounts or ())


def mount_one(root, m, cgroupns, joined=()):
    """One entry of config.mounts (already converted: flags, data, bind).
    ``joined``: as for mount_cgroups. The target is opened inside the root
    and mounted through its descriptor (open_in_root); what follows the first
    mount (a remount, recursive attributes, propagation) opens it again, to
    get the new mount rather than the directory under it."""
    flags, fstype = m["flags"], m["type"]
    is_file = bool(m.get("bind")) and not os.path.isdir(m["source"])
    fds = [open_in_root(root, m["destination"], make="file" if is_file else "dir")]

    def again():
        fds.append(open_in_root(root, m["destination"]))
        return fd_path(fds[-1])
    dest = fd_path(fds[0])
    try:
        if _is_cgroup(m):
            mount_cgroups(dest, flags, cgroupns, joined, again)
            return
        if m.get("bind"):
            sc.mount(m["source"], dest, None, sc.MS_BIND | (flags & sc.MS_REC))
            if flags & ~(sc.MS_BIND | sc.MS_REC):
                _remount_bind(again(), flags)
        elif m.get("copyup") and fstype == "tmpfs":
            _tmpfs_copyup(m["source"] or fstype, dest, flags, m["data"] or None)
        else:
            try:
                sc.mount(m["source"] or fstype, dest, fstype, flags, m["data"] or None)
            except OSError as e:
                # sysfs needs the network namespace's owner: in a user namespace
                # with the host's network, bind the host's /sys read-only (as runc).
                if fstype != "sysfs" or e.errno != errno.EPERM:
                    raise
                sc.mount("/sys", dest, None, sc.MS_BIND | sc.MS_REC)
                _remount_bind(again(), flags | sc.MS_RDONLY)
        attr_set, attr_clr = m.get("recursive") or (0, 0)
        propagation = m.get("propagation", ())
        if attr_set or attr_clr or propagation:
            dest = again()
        if attr_set or attr_clr:
            sc.mount_setattr(sc.AT_FDCWD, attr_set, flags=sc.AT_RECURSIVE, path=dest, attr_clr=attr_clr)
        for p in propagation:
            sc.mount(None, dest, None, p)
    finally:
        for fd in fds:
            os.close(fd)


def _tmpfs_copyup(source, dest, flags, data):
    """A tmpfs mounted aside, the directory's contents copied into it, then
    moved over the directory (runc's order: the copy never sees the tmpfs
    over its own source)."""
    import tempfile
    from labkit.linux.files import full_copy
    aside = tempfile.mkdtemp(prefix="labkit-copyup-")
    try:
        sc.mount(source, aside, "tmpfs", flags, data)
        try:
            full_copy(dest, aside)
            sc.mount(aside, dest, None, sc.MS_MOVE)
        except BaseException:
            sc.umount2(aside, sc.MNT_DETACH)
            raise
    finally:
        os.rmdir(aside)


def _cgroup_mounts():
    """(mount point, root inside the hierarchy, fstype, super options) of each
    cgroup hierarchy under /sys/fs/cgroup, as this process sees them."""
    return [(m.mount_point, m.root, m.fstype, m.super_options) for m in mountinfo.read()
            if m.fstype in ("cgroup", "cgroup2") and m.mount_point.startswith("/sys/fs/cgroup")]


def _bind_source(point, mroot, own_path, joined):
    """The directory of hierarchy ``point`` to bind for the container: the
    one of ``joined`` inside it, else the process's own cgroup there."""
    inside = [d for d in joined if d.startswith(point.rstrip("/") + "/")]
    if inside:
        return inside[0]
    rel = os.path.relpath(own_path, mroot) if own_path.startswith(mroot) else "."
    return os.path.normpath(os.path.join(point, rel))


def mount_cgroups(dest, flags, cgroupns, joined=(), again=None):
    """A `cgroup` mount: the container's own cgroup directories, never the
    host's whole tree. On cgroup v2 (and with a cgroup namespace) cgroup2 is
    mounted itself, its root being the container's cgroup; on v1 and hybrid
    hosts a tmpfs holds one directory per hierarchy with the container's
    cgroup of that hierarchy bound onto it (mounted fresh with a cgroup
    namespace, which the kernel roots at the container's cgroup).

    ``joined``: the cgroup directories the monitor is moving this process
    into. Without a cgroup namespace they are bound as they are, so the init
    need not wait for the move (the slowest step of a start: a write to
    cgroup.procs waits for an RCU grace period) and mounts meanwhile; in a
    hierarchy where it joins none, its cgroup is the one it was forked in.

    ``again``: a callable that names ``dest`` once more after the first
    mount, for what goes onto or into that mount (mount_one's; by default
    ``dest`` itself)."""
    from labkit.linux.cgroups.hierarchy import own_paths
    again = again or (lambda: dest)
    mounts = _cgroup_mounts()
    ro = flags & sc.MS_RDONLY
    plain = flags & ~sc.MS_RDONLY
    if len(mounts) == 1 and mounts[0][0] == "/sys/fs/cgroup":   # pure v2
        if cgroupns:
            sc.mount("cgroup2", dest, "cgroup2", flags)
            return
        source = _bind_source("/sys/fs/cgroup", "/", own_paths().get("", "/"), joined)
        sc.mount(source, dest, None, sc.MS_BIND)
        _remount_bind(again(), flags)
        return
    sc.mount("tmpfs", dest, "tmpfs", plain & (sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC), "mode=755")
    # A fresh tmpfs of this mount namespace's own: nothing else writes in it.
    dest = again()
    own = own_paths()
    for point, mroot, fstype, opts in mounts:
        if point == "/sys/fs/cgroup":
            continue
        name = os.path.basename(point)
        target = os.path.join(dest, name)
        os.mkdir(target, 0o555)
        supers = [o for o in opts.split(",") if o not in ("rw", "ro")]
        if cgroupns:
            if fstype == "cgroup2":
                sc.mount("cgroup2", target, "cgroup2", plain)
            else:
                sc.mount("cgroup", target, "cgroup", plain, ",".join(supers))
            if ro:
                _remount_bind(target, sc.MS_RDONLY)
            continue
        if fstype == "cgroup2":
            path = own.get("", "/")
        else:   # the hierarchy whose controllers (or name=) are among the super options
            path = next((p for k, p in own.items() if k and set(k.split(",")) <= set(supers)), "/")
        sc.mount(_bind_source(point, mroot, path, joined), target, None, sc.MS_BIND)
        _remount_bind(target, plain | ro)
    _link_aliases(dest)
    if ro:
        _remount_bind(dest, sc.MS_RDONLY)


def _link_aliases(dest):
    """The host's aliases of its hierarchies (cpu -> cpu,cpuacct on some hosts)."""
    for entry in os.listdir("/sys/fs/cgroup"):
        link = os.path.join("/sys/fs/cgroup", entry)
        if os.path.islink(link) and not os.path.lexists(os.path.join(dest, entry)):
            os.symlink(os.readlink(link), os.path.join(dest, entry))


def make_devices(root, devices, userns, defaults=True):
    """The default devices (null, zero, ...) and links in a tmpfs /dev, then
    config's linux.devices: mknod(2), or — in a user namespace, where mknod of
    a device is refused — a bind mount of the host's node of the same path."""
    dev = secure_join(root, "/dev")
    given = {os.path.normpath(d["path"]) for d in devices}
    for name in DEVICES if defaults else ():
        target = os.path.join(dev, name)
        # A default the config also lists (dockerd's --device /dev/full) is made
        # once, as the config says: never bound here, then unlinked (EBUSY).
        if "/dev/" + name not in given and not os.path.lexists(target):
            open(target, "w").close()
            sc.mount("/dev/" + name, target, None, sc.MS_BIND)
    for name, link in DEVICE_LINKS.items() if defaults else ():
        if not os.path.lexists(os.path.join(dev, name)):
            os.symlink(link, os.path.join(dev, name))
    for d in devices:
        target = secure_join(root, d["path"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.ismount(target):      # a bind of a node of the image's own /dev
            sc.umount2(target, sc.MNT_DETACH)
        if os.path.lexists(target):
            os.unlink(target)
        kind = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}[d["type"]]
        if userns and d["type"] != "p":
            open(target, "w").close()
            sc.mount(d["path"], target, None, sc.MS_BIND)
            continue
        os.mknod(target, kind | (d.get("fileMode") or 0o666), os.makedev(d.get("major", 0), d.get("minor", 0)))
        os.chmod(target, d.get("fileMode") or 0o666)
        os.chown(target, d.get("uid") or 0, d.get("gid") or 0)


def write_sysctl(sysctl):
    """net.ipv4.ip_forward=1 -> /proc/sys/net/ipv4/ip_forward, in the container's
    namespaces (the keys were checked: no '/' and no '..')."""
    for key, value in sysctl.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(str(value))


def readonly_path(path):
    """Bind the path onto itself, then remount that bind read-only."""
    if not os.path.lexists(path):
        return
    sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    _remount_bind(path, sc.MS_RDONLY)


def mask_path(path):
    """A file reads as /dev/null; a directory as an empty read-only tmpfs."""
    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
    else:
        sc.mount("/dev/null", path, None, sc.MS_BIND)


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


def enter(root, cfg, mounts, no_pivot=False, before_pivot=(), cgroups=()):
    """Every phase, for a process already in its own mount namespace: the
    table ``mounts``; from ``cfg`` (a ContainerConfig) its devices, sysctls,
    read-only and masked paths and read-only root. ``cgroups``: the cgroup
    directories the process is being moved into (mount_cgroups). ``before_pivot``:
    callables run once everything is mounted (createContainer hooks, which
    may still see the host's files)."""
    make_private(cfg.rootfs_propagation)
    bind_self(root)
    cgroupns = "cgroup" in cfg.namespaces
    has_dev = False
    for m in mounts:
        mount_one(root, m, cgroupns, cgroups)
        if m["destination"].rstrip("/") == "/dev" and not m.get("bind"):
            has_dev = True
    if has_dev or cfg.devices:
        make_devices(root, cfg.devices, "user" in cfg.namespaces, defaults=has_dev)
    for callback in before_pivot:
        callback()
    if no_pivot:
        # pivot_root cannot leave a ramfs root: move the new root over / instead.
        os.chdir(root)
        sc.mount(root, "/", None, sc.MS_MOVE)
        sc.chroot(".")
        os.chdir("/")
    else:
        pivot(root)
    if cfg.sysctl:
        write_sysctl(cfg.sysctl)
    for path in cfg.readonly_paths:
        readonly_path(path)
    for path in cfg.masked_paths:
        mask_path(path)
    if cfg.readonly_rootfs:
        remount_readonly()
