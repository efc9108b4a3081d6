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

This module is on the container start path: stdlib only, no subprocess.
What overlay does, shown on raw overlay mounts, is in labkit/course/facts/overlay.py.
"""

import ctypes
import errno
import os

from labkit.linux import mountinfo, syscalls
from labkit.errors import Conflict, LabkitError, NotFound, Unsupported

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
            value = mountinfo.unescape(value)
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


def mounts(fstype="overlay"):
    """[(mount point, super options)] of this mount namespace, from /proc/self/mountinfo
    (mounts of every type with ``fstype=None``)."""
    return [(m.mount_point, m.super_options) for m in mountinfo.read()
            if fstype in (None, m.fstype)]


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


def is_whiteout(path):
    """A whiteout: the 0/0 character device overlay leaves for a deleted name."""
    st = os.lstat(path)
    return (st.st_mode & 0o170000) == 0o020000 and st.st_rdev == 0
