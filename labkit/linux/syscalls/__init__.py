"""The thin syscall layer: one function per man page, nothing else.

Python 3.11 has no ``os.unshare``/``os.setns`` (they arrive in 3.12) and no
Python has mount(2), umount2(2) or pivot_root(2), so they are called through
ctypes. libc is loaded once, with ``use_errno=True`` so that errno survives
the call. Every failure raises :class:`SyscallError`, an OSError that names
the call, its path(s) and its flags, plus a hint a student can act on:

    mount(proc -> /x/proc, MS_NOSUID|MS_NODEV): EPERM (Operation not permitted)

The calls of a container's start that os already has (fork, chroot,
setresuid, setresgid, setgroups, execve) are here too, so that the whole
order of a start goes through this one layer.

No policy here: callers decide what to do. And no printing, unless asked:
with LABKIT_TRACE=1 in the environment each call is written to stderr as it
happens, flags by name, the result or the errno after it (trace.py):

    labkit-trace[4242]: unshare(CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET) = 0
    labkit-trace[1]: mount(none, "/", none, MS_REC|MS_PRIVATE) = 0
    labkit-trace[1]: pivot_root(".", ".") = 0
    labkit-trace[1]: umount2(".", MNT_DETACH) = 0
    labkit-trace[1]: execve("/bin/true", ["true"]) ...
    labkit-trace[1]: sethostname("x") = -1 EPERM

PID is the caller's own pid, as it sees itself (1 is a container's init).
execve is written before the call, since a successful one never returns.
The variable is read once, when this module is imported: untraced, no call
tests anything.
"""

import ctypes
import errno as _errno
import os

# <sched.h> — clone(2) flags, which unshare(2) and setns(2) also take.
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# <sys/mount.h> — mount(2) flags.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_POSIXACL = 0x10000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_I_VERSION = 0x800000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

# umount2(2) flags.
MNT_FORCE = 0x1
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

# prctl(2) options used by the runner.
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36     # orphans below become this process's children (runtime/servers/reaper.py)
PR_SET_NO_NEW_PRIVS = 38

_CLONE_NAMES = [
    (CLONE_NEWNS, "CLONE_NEWNS"), (CLONE_NEWUTS, "CLONE_NEWUTS"),
    (CLONE_NEWIPC, "CLONE_NEWIPC"), (CLONE_NEWUSER, "CLONE_NEWUSER"),
    (CLONE_NEWPID, "CLONE_NEWPID"), (CLONE_NEWNET, "CLONE_NEWNET"),
    (CLONE_NEWCGROUP, "CLONE_NEWCGROUP"), (CLONE_NEWTIME, "CLONE_NEWTIME"),
]
_MS_NAMES = [
    (MS_RDONLY, "MS_RDONLY"), (MS_NOSUID, "MS_NOSUID"), (MS_NODEV, "MS_NODEV"),
    (MS_NOEXEC, "MS_NOEXEC"), (MS_SYNCHRONOUS, "MS_SYNCHRONOUS"), (MS_REMOUNT, "MS_REMOUNT"),
    (MS_MANDLOCK, "MS_MANDLOCK"), (MS_DIRSYNC, "MS_DIRSYNC"), (MS_NOATIME, "MS_NOATIME"),
    (MS_NODIRATIME, "MS_NODIRATIME"),
    (MS_BIND, "MS_BIND"), (MS_MOVE, "MS_MOVE"), (MS_REC, "MS_REC"),
    (MS_SILENT, "MS_SILENT"), (MS_UNBINDABLE, "MS_UNBINDABLE"),
    (MS_PRIVATE, "MS_PRIVATE"), (MS_SLAVE, "MS_SLAVE"), (MS_SHARED, "MS_SHARED"),
    (MS_RELATIME, "MS_RELATIME"), (MS_STRICTATIME, "MS_STRICTATIME"), (MS_LAZYTIME, "MS_LAZYTIME"),
    (MS_NOSYMFOLLOW, "MS_NOSYMFOLLOW"), (MS_POSIXACL, "MS_POSIXACL"), (MS_I_VERSION, "MS_I_VERSION"),
]
_MNT_NAMES = [(MNT_FORCE, "MNT_FORCE"), (MNT_DETACH, "MNT_DETACH"),
              (UMOUNT_NOFOLLOW, "UMOUNT_NOFOLLOW")]


def flag_names(value, table):
    """``MS_BIND|MS_REC`` for 0x5000; unknown bits are shown in hex."""
    names = []
    for bit, name in table:
        if value & bit:
            names.append(name)
            value &= ~bit
    if value:
        names.append(hex(value))
    return "|".join(names) or "0"


# What a student can do about the usual failures, by (call, errno).
_HINTS = {
    ("*", _errno.EPERM): "this needs root (CAP_SYS_ADMIN): run it with sudo",
    ("unshare", _errno.EINVAL): "this kernel lacks that namespace type; `labkit doctor` lists what it has",
    ("unshare", _errno.ENOSPC): "the namespace limit is reached: see /proc/sys/user/max_*_namespaces",
    ("setns", _errno.EINVAL): "the file is not a namespace of that type, or the process cannot join it",
    ("mount", _errno.ENOENT): "the source or the mount point does not exist: create it first",
    ("mount", _errno.ENODEV): "the kernel does not know this filesystem type: try `modprobe` for it",
    ("mount", _errno.EBUSY): "something is already mounted there or the source is busy",
    ("umount2", _errno.EBUSY): "a process still uses this mount; MNT_DETACH unmounts it lazily",
    ("umount2", _errno.EINVAL): "this path is not a mount point",
    ("mount_setattr", _errno.EINVAL): "the kernel refused these attributes: an idmapped mount needs a filesystem "
                                      "that can be idmapped (ext4, xfs, btrfs, tmpfs 6.3+), and only one atime "
                                      "option (rnoatime, rrelatime, rstrictatime ...) may be given",
    ("pivot_root", _errno.EINVAL): ("new_root must be a mount point, put_old must be at or under it, and / "
                                    "must not be shared: make / private (mount --make-rprivate /)"),
    ("pivot_root", _errno.EBUSY): ("new_root is on the current root mount: bind-mount it onto itself first "
                                   "(mount --bind DIR DIR) so that it is a mount point of its own"),
    ("sethostname", _errno.EINVAL): "a hostname is at most 64 bytes",
}


class SyscallError(OSError):
    """A failed system call: errno, the call with its arguments, and a hint."""

    def __init__(self, err, call, detail, hint=None):
        super().__init__(err, os.strerror(err))
        self.call = call
        self.detail = detail
        self.hint = hint if hint is not None else (
            _HINTS.get((call, err)) or _HINTS.get(("*", err)))

    def __str__(self):
        name = _errno.errorcode.get(self.errno, str(self.errno))
        text = f"{self.call}({self.detail}): {name} ({self.strerror})"
        if self.hint:
            text += f"; {self.hint}"
        return text


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long
_libc.socket.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
# glibc has no pivot_root() wrapper; call it by number.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "armv7l": 218,
                   "ppc64le": 203, "s390x": 217, "riscv64": 41}.get(os.uname().machine, 155)
# Nor bpf() nor seccomp().
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386,
            "ppc64le": 361, "s390x": 351, "riscv64": 280}.get(os.uname().machine, 321)
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "armv7l": 383,
                "ppc64le": 358, "s390x": 348, "riscv64": 277}.get(os.uname().machine, 317)


def _b(value):
    return None if value is None else os.fsencode(value)


def _check(result, call, detail):
    if result == -1:
        raise SyscallError(ctypes.get_errno(), call, detail)
    return result


def unshare(flags):
    """unshare(2): move the caller into new namespaces of the given types."""
    _check(_libc.unshare(flags), "unshare", flag_names(flags, _CLONE_NAMES))


def setns(fd, nstype=0):
    """setns(2): join the namespace that ``fd`` (a /proc/PID/ns/* file) refers to."""
    if _libc.setns(fd, nstype) == -1:
        err = ctypes.get_errno()
        try:
            what = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            what = f"fd {fd}"
        raise SyscallError(err, "setns", f"{what}, {flag_names(nstype, _CLONE_NAMES)}")


def mount(source, target, fstype=None, flags=0, data=None):
    """mount(2). ``source`` may be None for remounts and propagation changes."""
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) == -1:
        err = ctypes.get_errno()
        detail = f"{source or 'none'} -> {target}"
        if fstype:
            detail += f", {fstype}"
        detail += f", {flag_names(flags, _MS_NAMES)}"
        if data:
            detail += f", {data}"
        raise SyscallError(err, "mount", detail)


def umount2(target, flags=0):
    """umount2(2): unmount ``target``; MNT_DETACH makes it lazy."""
    _check(_libc.umount2(_b(target), flags), "umount2",
           f"{target}, {flag_names(flags, _MNT_NAMES)}")


def pivot_root(new_root, put_old):
    """pivot_root(2): make ``new_root`` the root of this mount namespace."""
    _check(_libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old)),
           "pivot_root", f"{new_root}, {put_old}")


def sethostname(name):
    """sethostname(2): set the hostname of the caller's UTS namespace."""
    raw = os.fsencode(name)
    _check(_libc.sethostname(raw, len(raw)), "sethostname", name)


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    """prctl(2) for the integer options the runner needs."""
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), "prctl", str(option))


# The process calls of the start path, here so that the whole order of a
# container's start goes through one layer (os already wraps each of them).
def fork():
    """fork(2): the child's pid in the parent, 0 in the child."""
    return os.fork()


def chroot(path):
    """chroot(2): ``path`` becomes the caller's root directory."""
    os.chroot(path)


def setresgid(rgid, egid, sgid):
    """setresgid(2): the real, effective and saved group ids."""
    os.setresgid(rgid, egid, sgid)


def setgroups(groups):
    """setgroups(2): the supplementary group ids."""
    os.setgroups(groups)


def setresuid(ruid, euid, suid):
    """setresuid(2): the real, effective and saved user ids."""
    os.setresuid(ruid, euid, suid)


def execve(path, args, env):
    """execve(2): run ``path``; returns only by raising OSError."""
    os.execve(path, args, env)


class _Rlimit(ctypes.Structure):
    _fields_ = [("rlim_cur", ctypes.c_ulong), ("rlim_max", ctypes.c_ulong)]


RLIM_INFINITY = (1 << 64) - 1


def setrlimit(resource, soft, hard):
    """setrlimit(2); RLIM_INFINITY (or -1) for no limit. Here rather than
    Python's resource module, which costs a shared library to load."""
    lim = _Rlimit(soft & RLIM_INFINITY, hard & RLIM_INFINITY)
    _check(_libc.setrlimit(resource, ctypes.byref(lim)), "setrlimit", f"{resource}, {soft}, {hard}")


# socket(2) families and types, for the ioctls of network.py.
AF_INET = 2
SOCK_DGRAM = 2
SOCK_CLOEXEC = 0o2000000


def socket(domain, type_, protocol=0):
    """socket(2): a file descriptor. Here rather than Python's socket module:
    _socket costs more to load than a whole container start can spare."""
    return _check(_libc.socket(domain, type_, protocol), "socket", f"{domain}, {type_}, {protocol}")


def ioctl(fd, request, buf):
    """ioctl(2) with a mutable ctypes buffer the kernel reads and fills."""
    _check(_libc.ioctl(fd, request, buf), "ioctl", f"{fd}, {request:#x}")
    return buf


# The new mount API (Linux 5.2+; mount_setattr 5.12+): one number on every
# architecture but alpha.
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = 0o2000000
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_NOSUID = 0x00000002
MOUNT_ATTR_NODEV = 0x00000004
MOUNT_ATTR_NOEXEC = 0x00000008
MOUNT_ATTR__ATIME = 0x00000070     # an enum, not bits: change it whole
MOUNT_ATTR_RELATIME = 0x00000000
MOUNT_ATTR_NOATIME = 0x00000010
MOUNT_ATTR_STRICTATIME = 0x00000020
MOUNT_ATTR_NODIRATIME = 0x00000080
MOUNT_ATTR_IDMAP = 0x00100000
MOUNT_ATTR_NOSYMFOLLOW = 0x00200000
AT_FDCWD = -100


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def open_tree(path, flags):
    """open_tree(2): with OPEN_TREE_CLONE, a detached copy of the mount at
    ``path``, as a file descriptor (a bind mount not yet attached anywhere)."""
    return _check(_libc.syscall(_SYS_OPEN_TREE, ctypes.c_int(AT_FDCWD), _b(path), ctypes.c_uint(flags)),
                  "open_tree", f"{path}, {flags:#x}")


def mount_setattr(fd, attr_set, userns_fd=0, flags=AT_EMPTY_PATH, path=None, attr_clr=0):
    """mount_setattr(2) on the mount ``fd`` refers to (or at ``path``, with
    fd AT_FDCWD); MOUNT_ATTR_IDMAP with ``userns_fd`` shows its files'
    owners through that namespace's id maps; AT_RECURSIVE in ``flags``
    changes every mount below too (runc's rro, rnosuid ...)."""
    attr = _MountAttr(attr_set=attr_set, attr_clr=attr_clr, userns_fd=userns_fd)
    _check(_libc.syscall(_SYS_MOUNT_SETATTR, ctypes.c_int(fd), _b(path) or b"", ctypes.c_uint(flags),
                         ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
           "mount_setattr", f"{path or fd}, set {attr_set:#x}, clear {attr_clr:#x}")


def move_mount(fd, target):
    """move_mount(2): attach the detached mount ``fd`` at ``target``."""
    _check(_libc.syscall(_SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD), _b(target),
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)), "move_mount", f"{fd} -> {target}")


# openat2(2): one number on every architecture (the newer calls share a table).
_SYS_OPENAT2 = 437
# struct open_how's resolve flags.
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_RESOLVE_NAMES = [(RESOLVE_NO_XDEV, "RESOLVE_NO_XDEV"), (RESOLVE_NO_MAGICLINKS, "RESOLVE_NO_MAGICLINKS"),
                  (RESOLVE_NO_SYMLINKS, "RESOLVE_NO_SYMLINKS"), (RESOLVE_BENEATH, "RESOLVE_BENEATH"),
                  (RESOLVE_IN_ROOT, "RESOLVE_IN_ROOT")]


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd, path, flags, resolve, mode=0):
    """openat2(2): open ``path`` relative to ``dirfd`` with the kernel's
    resolve rules; RESOLVE_IN_ROOT resolves as if ``dirfd`` were / (a
    symlink or .. never leads out of it). ENOSYS before Linux 5.6."""
    how = _OpenHow(flags=flags, mode=mode, resolve=resolve)
    return _check(_libc.syscall(_SYS_OPENAT2, ctypes.c_int(dirfd), _b(path), ctypes.byref(how),
                                ctypes.c_size_t(ctypes.sizeof(how))),
                  "openat2", f"{path}, {flag_names(resolve, _RESOLVE_NAMES)}")


_BPF_CMDS = {5: "BPF_PROG_LOAD", 8: "BPF_PROG_ATTACH", 9: "BPF_PROG_DETACH", 16: "BPF_PROG_QUERY"}


def bpf(cmd, attr):
    """bpf(2) with ``attr`` (a ctypes Structure, the command's part of union
    bpf_attr): a new file descriptor for BPF_PROG_LOAD, 0 otherwise."""
    return _check(_libc.syscall(_SYS_BPF, ctypes.c_int(cmd), ctypes.byref(attr),
                                ctypes.c_uint(ctypes.sizeof(attr))),
                  "bpf", _BPF_CMDS.get(cmd, str(cmd)))


SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp(operation, flags, program):
    """seccomp(2) SECCOMP_SET_MODE_FILTER: install ``program`` (the bytes of
    a classic-BPF struct sock_filter array) as a filter on every later call."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    _check(_libc.syscall(_SYS_SECCOMP, ctypes.c_uint(operation), ctypes.c_uint(flags),
                         ctypes.byref(prog)), "seccomp", f"{operation}, {flags:#x}, {len(program) // 8} instructions")


# Last, once every call above exists: wrap them all, or leave them as they are.
if os.environ.get("LABKIT_TRACE") == "1":
    from labkit.linux.syscalls.trace import install as _install
    _install(globals())
