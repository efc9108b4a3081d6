"""overlayfs: read-only lower layers, a writable upper, and the merged view.

    mount -t overlay overlay \\
        -o lowerdir=TOP:...:BOTTOM,upperdir=UPPER,workdir=WORK  MERGED

A container's root is the merged view: reads fall through to the highest
layer that has the file; the first write *copies the file up* into the upper
dir; a delete leaves a *whiteout* (a 0/0 character device) in the upper; a
directory that replaces a lower one is marked *opaque* (xattr
``trusted.overlay.opaque=y``) so the lower one's entries stay hidden. The
lower layers are never written, so any number of containers can share them.

Layers are given bottom first, like the ``layers`` array of an OCI image
manifest; the kernel wants the opposite (the leftmost lowerdir is the top),
which :func:`options` takes care of.

This module is on the container start path: stdlib only, no subprocess. The
facts functions at the end (what notebook 04 records) import what they need
lazily.
"""

import ctypes
import errno
import os

from . import syscalls
from .errors import Conflict, LabkitError, NotFound, Unsupported

# mount(2) copies its data argument into one page: the whole option string,
# with its NUL, must fit in it. A long stack of long paths does not.
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# fs/overlayfs/params.h: OVL_MAX_STACK, the most lower layers one overlay takes.
MAX_STACK = 500

OPAQUE_XATTR = "trusted.overlay.opaque"
# statfs(2) f_type values (linux/magic.h) for the filesystems a student meets.
_FS_NAMES = {0x794C7630: "overlay", 0x858458F6: "ramfs", 0x01021994: "tmpfs",
             0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs",
             0x6969: "nfs", 0x65735546: "fuse", 0x9FA0: "proc", 0x62656572: "sysfs",
             0x4D44: "vfat", 0x2011BAB0: "exfat", 0x5346544E: "ntfs"}
_UPPER_OK = "put upperdir and workdir on ext4, xfs (ftype=1), btrfs or tmpfs, e.g. under $LABKIT_HOME"


class OverlayError(LabkitError):
    """An overlay that cannot be mounted as asked; names the option at fault."""


# --- small probes -------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


class _Dirent(ctypes.Structure):
    # struct dirent64 as glibc returns it from readdir(3) on 64-bit Linux.
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


_libc.opendir.restype = ctypes.c_void_p
_libc.opendir.argtypes = [ctypes.c_char_p]
_libc.readdir64.restype = ctypes.POINTER(_Dirent)
_libc.readdir64.argtypes = [ctypes.c_void_p]
_libc.closedir.argtypes = [ctypes.c_void_p]
_libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]


def fs_type(path):
    """The name of the filesystem ``path`` is on (statfs(2) f_type)."""
    buf = ctypes.create_string_buffer(128)       # struct statfs; f_type comes first
    if _libc.statfs(os.fsencode(path), buf) != 0:
        return "unknown"
    magic = ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF
    return _FS_NAMES.get(magic, hex(magic))


def has_d_type(path):
    """Whether readdir(3) on ``path`` reports file types (d_type).

    overlay needs them to find whiteouts without a stat() per entry; without
    them (xfs with ftype=0, ext4 without the filetype feature) the kernel only
    warns and the merged view then shows deleted files again."""
    d = _libc.opendir(os.fsencode(path))
    if not d:
        return True          # cannot tell; let mount(2) speak
    try:
        while True:
            ent = _libc.readdir64(d)
            if not ent:
                return True
            if ent.contents.d_name == b".":
                return ent.contents.d_type != 0      # DT_UNKNOWN
    finally:
        _libc.closedir(d)


def _has_trusted_xattrs(path):
    """Whether the filesystem of ``path`` keeps trusted.* xattrs (opaque dirs need them)."""
    name = "trusted.labkit-probe"
    try:
        os.setxattr(path, name, b"1")
        os.removexattr(path, name)
        return True
    except OSError as e:
        return e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP)


# --- options and checks ------------------------------------------------------

def _check_path(option, path):
    """A layer path as overlay reads it: absolute, and free of the option separators."""
    for ch, why in ((",", "separates mount options"), (":", "separates lower layers"),
                    ("\\", "escapes separators")):
        if ch in path:
            raise OverlayError(f"{option} '{path}' contains '{ch}', which {why} for overlay",
                               "rename the directory or give it through a path without it")
    if not os.path.isdir(path):
        what = "does not exist" if not os.path.lexists(path) else "is not a directory"
        raise NotFound(f"{option} '{path}' {what}",
                       "create the directory (or unpack the layer) before mounting")


def _check_not_in_use(upper, work):
    """Refuse an upper or work dir another mounted overlay uses: the kernel
    only warns ("undefined behavior") and mounts anyway."""
    ours = {upper: "upperdir", work: "workdir"}
    for mp, opts in mounts():
        for opt in opts.split(","):
            key, _, value = opt.partition("=")
            value = _unescape(value)
            if key in ("upperdir", "workdir") and value in ours:
                raise Conflict(f"{ours[value]} '{value}' is in use as {key} of the overlay mounted at {mp}",
                               "give every container its own upperdir and workdir")


def options(lowers, upper=None, work=None, extra=()):
    """The mount(2) data string for these layers (``lowers`` bottom first)."""
    if not lowers:
        raise OverlayError("lowerdir is empty", "give at least one lower layer")
    opts = ["lowerdir=" + ":".join(reversed(lowers))]
    if upper is not None:
        opts += ["upperdir=" + upper, "workdir=" + work]
    return ",".join(opts + list(extra))


def check(lowers, upper=None, work=None, extra=()):
    """Everything that can be checked before mount(2); returns the data string.

    Raises OverlayError / NotFound / Unsupported naming the option at fault."""
    lowers = [os.path.abspath(p) for p in lowers]
    for i, p in enumerate(lowers):
        _check_path(f"lowerdir[{i}]", p)
    if len(lowers) > MAX_STACK:
        raise OverlayError(f"lowerdir has {len(lowers)} layers; overlay stacks at most {MAX_STACK}",
                           "squash some layers into one (apply their tars onto one directory)")
    if (upper is None) != (work is None):
        raise OverlayError("upperdir and workdir go together", "give both, or neither for a read-only overlay")
    if upper is None and len(lowers) < 2:
        raise OverlayError("a read-only overlay (no upperdir) needs at least two lowerdirs",
                           "add an upperdir and a workdir, or another lower layer")
    if upper is not None:
        upper, work = os.path.abspath(upper), os.path.abspath(work)
        _check_path("upperdir", upper)
        _check_path("workdir", work)
        if os.stat(upper).st_dev != os.stat(work).st_dev:
            raise OverlayError(f"workdir '{work}' is not on the same filesystem as upperdir '{upper}'",
                               "the kernel renames from workdir into upperdir: put them side by side")
        if (upper + "/").startswith(work + "/") or (work + "/").startswith(upper + "/"):
            raise OverlayError(f"upperdir '{upper}' and workdir '{work}' are nested",
                               "make them two separate directories, e.g. <dir>/upper and <dir>/work")
        _check_not_in_use(upper, work)
        kind = fs_type(upper)
        if not _has_trusted_xattrs(work):
            raise Unsupported(f"upperdir '{upper}' is on {kind}, which keeps no trusted.* xattrs "
                              "(overlay needs them for opaque directories)", _UPPER_OK)
        if not has_d_type(work):
            raise Unsupported(f"upperdir '{upper}' is on {kind} without d_type in readdir "
                              "(overlay needs it to find whiteouts)",
                              _UPPER_OK + "; ext4 needs the filetype feature, xfs ftype=1")
    data = options(lowers, upper, work, extra)
    size = len(os.fsencode(data)) + 1
    if size > PAGE_SIZE:
        raise OverlayError(
            f"lowerdir list too long for one mount: the options take {size} bytes and mount(2) "
            f"accepts one page ({PAGE_SIZE} bytes) for {len(lowers)} layers",
            "use fewer layers (squash some into one) or shorter paths "
            "(e.g. short symlinks to the layer directories, as docker's overlay2 does in l/)")
    return data


def _explain(err, lowers, upper, work):
    """Turn a failed mount(2) into an OverlayError that names the option."""
    if err.errno == errno.EINVAL and upper is not None:
        kind = fs_type(upper)
        if kind in ("overlay", "nfs", "fuse", "proc", "sysfs", "vfat", "exfat", "ntfs"):
            return Unsupported(f"upperdir '{upper}' is on {kind}, which overlay does not support "
                               f"as an upper layer (mount: {err.strerror})", _UPPER_OK)
    if err.errno == errno.EBUSY and upper is not None:
        return Conflict(f"upperdir '{upper}' or workdir '{work}' is in use by another mounted overlay",
                        "give every container its own upperdir and workdir")
    if err.errno == errno.ENOENT:
        for i, p in enumerate(lowers):
            if not os.path.isdir(p):
                return NotFound(f"lowerdir[{i}] '{p}' does not exist", "create or unpack the layer first")
    return OverlayError(f"overlay mount failed: {err}", "the kernel log (dmesg) names the option it rejected")


def mount(target, lowers, upper=None, work=None, flags=0, extra=()):
    """Mount an overlay of ``lowers`` (bottom first) with ``upper``/``work`` at ``target``.

    Without ``upper`` the overlay is read-only. ``extra`` adds raw options
    (e.g. ``"index=off"``). Returns the mount data used."""
    data = check(lowers, upper, work, extra)
    lowers = [os.path.abspath(p) for p in lowers]
    if upper is not None:
        upper, work = os.path.abspath(upper), os.path.abspath(work)
    if not os.path.isdir(target):
        raise NotFound(f"mount point '{target}' does not exist", "create the directory first")
    try:
        syscalls.mount("overlay", target, "overlay", flags, data)
    except syscalls.SyscallError as e:
        raise _explain(e, lowers, upper, work) from None
    return data


def unmount(target):
    """Unmount ``target``; lazily (MNT_DETACH) if a process still uses it.

    Idempotent: returns "unmounted", "detached" or "not mounted"."""
    try:
        syscalls.umount2(target, syscalls.UMOUNT_NOFOLLOW)
        return "unmounted"
    except syscalls.SyscallError as e:
        if e.errno in (errno.EINVAL, errno.ENOENT):
            return "not mounted"
        if e.errno != errno.EBUSY:
            raise
    syscalls.umount2(target, syscalls.MNT_DETACH | syscalls.UMOUNT_NOFOLLOW)
    return "detached"


def _unescape(field):
    # /proc/self/mountinfo writes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts(fstype="overlay"):
    """[(mount point, super options)] of this mount namespace, from /proc/self/mountinfo
    (mounts of every type with ``fstype=None``)."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields and fstype in (None, rfields[0]):
                found.append((_unescape(fields[4]), rfields[2] if len(rfields) > 2 else ""))
    return found


def is_mounted(path):
    path = os.path.abspath(path)
    return any(mp == path for mp, _ in mounts())


class mounted:
    """``with mounted(target, lowers, upper, work):`` — unmounted on the way out, always."""

    def __init__(self, target, lowers, upper=None, work=None, **kw):
        self.args = (target, lowers, upper, work)
        self.kw = kw

    def __enter__(self):
        mount(*self.args, **self.kw)
        return self.args[0]

    def __exit__(self, *exc):
        unmount(self.args[0])


# --- facts (notebook 04 records these; tests assert them) ----------------------

def _scratch(workdir, name, lowers=None):
    """upper/work/merged dirs for one overlay under ``workdir``."""
    base = os.path.join(workdir, name)
    dirs = {k: os.path.join(base, k) for k in ("upper", "work", "merged")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    return dirs


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read(path):
    with open(path) as f:
        return f.read()


def fact_copy_up(workdir):
    """Writing to a lower file copies it into the upper; the lower copy is untouched."""
    lower = os.path.join(workdir, "lower")
    os.makedirs(lower, exist_ok=True)
    _write(os.path.join(lower, "motd"), "from the image\n")
    d = _scratch(workdir, "c")
    up = os.path.join(d["upper"], "motd")
    with mounted(d["merged"], [lower], d["upper"], d["work"]):
        before = os.path.lexists(up)
        with open(os.path.join(d["merged"], "motd"), "a") as f:
            f.write("written in the container\n")
        merged = _read(os.path.join(d["merged"], "motd"))
    return {"in_upper_before_write": before, "in_upper_after_write": os.path.exists(up),
            "lower_content": _read(os.path.join(lower, "motd")), "upper_content": _read(up),
            "merged_content": merged,
            "lower_inode": os.stat(os.path.join(lower, "motd")).st_ino, "upper_inode": os.stat(up).st_ino}


def fact_whiteout(workdir):
    """Deleting a lower file leaves a 0/0 character device (a whiteout) in the upper."""
    import stat
    lower = os.path.join(workdir, "lower")
    os.makedirs(lower, exist_ok=True)
    _write(os.path.join(lower, "secret"), "in the image\n")
    d = _scratch(workdir, "c")
    with mounted(d["merged"], [lower], d["upper"], d["work"]):
        os.unlink(os.path.join(d["merged"], "secret"))
        in_merged = os.path.lexists(os.path.join(d["merged"], "secret"))
    st = os.lstat(os.path.join(d["upper"], "secret"))
    return {"in_merged_after_delete": in_merged,
            "in_lower_after_delete": os.path.exists(os.path.join(lower, "secret")),
            "upper_is_char_device": stat.S_ISCHR(st.st_mode),
            "upper_rdev": [os.major(st.st_rdev), os.minor(st.st_rdev)],
            "upper_size": st.st_size}


def fact_opaque(workdir):
    """Replacing a lower directory makes the new one opaque: the lower entries stay hidden."""
    import shutil
    lower = os.path.join(workdir, "lower")
    os.makedirs(os.path.join(lower, "etc"), exist_ok=True)
    for name in ("a.conf", "b.conf"):
        _write(os.path.join(lower, "etc", name), name + "\n")
    d = _scratch(workdir, "c")
    with mounted(d["merged"], [lower], d["upper"], d["work"]):
        shutil.rmtree(os.path.join(d["merged"], "etc"))
        os.mkdir(os.path.join(d["merged"], "etc"))
        _write(os.path.join(d["merged"], "etc", "new.conf"), "new\n")
        merged_list = sorted(os.listdir(os.path.join(d["merged"], "etc")))
    try:
        xattr = os.getxattr(os.path.join(d["upper"], "etc"), OPAQUE_XATTR).decode()
    except OSError:
        xattr = None
    return {"merged_etc": merged_list, "lower_etc": sorted(os.listdir(os.path.join(lower, "etc"))),
            "upper_etc": sorted(os.listdir(os.path.join(d["upper"], "etc"))),
            "upper_etc_opaque_xattr": xattr}


def fact_isolation(workdir):
    """Two overlays on the same lower never see each other's changes."""
    lower = os.path.join(workdir, "lower")
    os.makedirs(lower, exist_ok=True)
    _write(os.path.join(lower, "shared"), "image\n")
    _write(os.path.join(lower, "doomed"), "image\n")
    a, b = _scratch(workdir, "a"), _scratch(workdir, "b")

    def view(top):
        return {"shared": _read(os.path.join(top, "shared")),
                "only-a": os.path.exists(os.path.join(top, "only-a")),
                "doomed": os.path.exists(os.path.join(top, "doomed"))}

    with mounted(a["merged"], [lower], a["upper"], a["work"]), \
            mounted(b["merged"], [lower], b["upper"], b["work"]):
        # a changes a file and adds one; b deletes one.
        _write(os.path.join(a["merged"], "shared"), "changed by a\n")
        _write(os.path.join(a["merged"], "only-a"), "a\n")
        os.unlink(os.path.join(b["merged"], "doomed"))
        return {"a": view(a["merged"]), "b": view(b["merged"]), "lower": view(lower)}


def disk_blocks(*paths):
    """Bytes allocated on disk under ``paths`` (st_blocks * 512, each inode once), like `du -s`."""
    seen, total = set(), 0
    for top in paths:
        for root, dirs, files in _walk_one_fs(top):
            for name in [None] + dirs + files:
                st = os.lstat(root if name is None else os.path.join(root, name))
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _walk_one_fs(top, mount_points=None):
    """os.walk that stays on the filesystem of ``top`` (like `du -x`, `cp -ax`):
    a rootfs may have a /proc mounted on it right now (a chroot without a
    mount namespace mounts it on the host), and that is no part of the image.
    The mount points met are appended to ``mount_points`` if given."""
    dev = os.lstat(top).st_dev
    for root, dirs, files in os.walk(top):
        keep = []
        for d in dirs:
            p = os.path.join(root, d)
            # Symlinks to directories are listed among dirs; os.walk never enters them.
            if os.path.islink(p) or os.lstat(p).st_dev == dev:
                keep.append(d)
            elif mount_points is not None:
                mount_points.append(p)
        dirs[:] = keep
        yield root, dirs, files


def full_copy(src, dst):
    """Copy a root filesystem the way `cp -a` does: hardlinks stay links, device
    nodes and FIFOs are made anew (never read: /dev/zero has no end)."""
    import shutil
    import stat
    links, mount_points = {}, []
    for root, dirs, files in _walk_one_fs(src, mount_points):
        out = os.path.join(dst, os.path.relpath(root, src))
        st = os.lstat(root)
        os.makedirs(out, exist_ok=True)
        os.chmod(out, stat.S_IMODE(st.st_mode))
        os.chown(out, st.st_uid, st.st_gid)
        # os.walk lists symlinks to directories among dirs but never enters them.
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            s, d = os.path.join(root, name), os.path.join(out, name)
            st = os.lstat(s)
            if st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
                os.link(links[(st.st_dev, st.st_ino)], d, follow_symlinks=False)
                continue
            links[(st.st_dev, st.st_ino)] = d
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISREG(st.st_mode):
                shutil.copy2(s, d)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(d, stat.S_IMODE(st.st_mode))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                os.mknod(d, st.st_mode, st.st_rdev)
            else:
                continue                         # sockets belong to running programs
            os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
    for mp in mount_points:                      # the directory stays, empty, as with `cp -ax`
        os.makedirs(os.path.join(dst, os.path.relpath(mp, src)), exist_ok=True)


def fact_disk_usage(workdir, lower, counts=(1, 2, 4, 8), write=b"x" * 4096):
    """Disk used by N containers sharing ``lower`` against N full copies of it.

    Each container writes one small file (``write``) through its merged view;
    each copy gets the same file. Measured in allocated blocks: the shared
    side counts the lower once plus every container's upper and work dir."""
    import shutil
    n_max = max(counts)
    copies, containers, mounted_at = [], [], []
    try:
        for i in range(n_max):
            d = _scratch(workdir, f"c{i}")
            mount(d["merged"], [lower], d["upper"], d["work"])
            mounted_at.append(d["merged"])
            with open(os.path.join(d["merged"], "container-file"), "wb") as f:
                f.write(write)
            containers.append(os.path.join(workdir, f"c{i}"))
            copy = os.path.join(workdir, f"copy{i}")
            copies.append(copy)
            full_copy(lower, copy)
            with open(os.path.join(copy, "container-file"), "wb") as f:
                f.write(write)
        os.sync()
        lower_bytes = disk_blocks(lower)
        rows = []
        for n in counts:
            rows.append({"n": n,
                         "shared_bytes": lower_bytes + disk_blocks(*[os.path.join(u, d) for u in containers[:n]
                                                                      for d in ("upper", "work")]),
                         "copies_bytes": disk_blocks(*copies[:n])})
        return {"lower_bytes": lower_bytes, "rows": rows}
    finally:
        for m in mounted_at:
            unmount(m)
        for c in copies:
            shutil.rmtree(c, ignore_errors=True)


def provenance(merged, lowers, upper=None):
    """{path in the merged view: the layer it comes from} — "upper" or "lower<i>" (0 = base).

    A path comes from the highest layer that has it: the merged view shows
    nothing else (whiteouts and opaque dirs only ever hide what is below)."""
    layers = ([("upper", upper)] if upper else []) + \
        [(f"lower{i}", p) for i, p in reversed(list(enumerate(lowers)))]
    origin = {}
    for root, dirs, files in _walk_one_fs(merged):
        for name in dirs + files:
            rel = os.path.relpath(os.path.join(root, name), merged)
            for label, top in layers:
                p = os.path.join(top, rel)
                if os.path.lexists(p) and not is_whiteout(p):
                    origin[rel] = label
                    break
    return origin


def is_whiteout(path):
    st = os.lstat(path)
    return (st.st_mode & 0o170000) == 0o020000 and st.st_rdev == 0
