"""The container's process as the OCI runtime spec describes it: rlimits,
user and groups, capabilities, no_new_privs, OOM score — applied by the
container's init just before it execs the program.

Order matters, and follows from the man pages:

  1. rlimits and oom_score_adj first: raising a hard limit or lowering the
     OOM score needs CAP_SYS_RESOURCE, which may be dropped below;
  2. the bounding set is trimmed (PR_CAPBSET_DROP) while we still hold
     CAP_SETPCAP;
  3. groups, gid, then uid — with PR_SET_KEEPCAPS, or setuid(2) to a non-zero
     uid would empty the permitted set (capabilities(7), "Effect of user ID
     changes on capabilities");
  4. capset(2) sets effective, permitted and inheritable exactly;
  5. ambient capabilities last: the kernel accepts one only if it is already
     permitted and inheritable;
  6. no_new_privs: from then on execve(2) can never grant more (no setuid bits,
     no file capabilities);
  7. the seccomp filter (labkit/linux/seccomp.py): with no_new_privs just before the
     exec; without it first of all, while CAP_SYS_ADMIN is still held.

Then exec_tail: apply all of it and exec the program, the last step of
every container process (the init and each exec).
"""

import ctypes
import os

from labkit.linux import syscalls
from labkit.errors import LabkitError
from labkit.startpath import signal

# linux/capability.h: capability name -> bit number. The one table of names.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)


def capability_names(mask):
    """The names of the bits set in a capability mask (hex, as
    /proc/PID/status writes CapEff and CapBnd), as `capsh --decode` prints them."""
    bits = int(mask, 16)
    return [name for i, name in enumerate(CAPABILITIES) if bits >> i & 1]

# prctl(2) options
PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(os.uname().machine, 126)
_SYS_CLOSE_RANGE = 436          # the same number on every architecture (Linux 5.9)
CLOSE_RANGE_CLOEXEC = 4         # mark close-on-exec instead of closing (Linux 5.11)
PR_SET_DUMPABLE = 4

# setrlimit(2) resources by their OCI names.
RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}


def cap_bits(names):
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES.index(name)
    return mask


def last_cap():
    """The highest capability this kernel knows (newer names may be unknown to it)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITIES) - 1


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capset(effective, permitted, inheritable):
    """capset(2) with 64-bit masks (version 3: two 32-bit halves)."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    libc = syscalls._libc
    if libc.syscall(_SYS_CAPSET, ctypes.byref(hdr), ctypes.byref(data)) == -1:
        err = ctypes.get_errno()
        raise syscalls.SyscallError(err, "capset", f"eff={effective:#x} prm={permitted:#x} inh={inheritable:#x}")


def apply_capabilities(caps):
    top = last_cap()
    known = lambda names: [n for n in names if CAPABILITIES.index(n) <= top]  # noqa: E731
    bounding = cap_bits(known(caps.get("bounding", ())))
    for bit in range(top + 1):
        if not bounding & (1 << bit):
            syscalls.prctl(PR_CAPBSET_DROP, bit)
    return (cap_bits(known(caps.get("effective", ()))), cap_bits(known(caps.get("permitted", ()))),
            cap_bits(known(caps.get("inheritable", ()))), known(caps.get("ambient", ())))


def set_oom_score_adj(value):
    """proc(5)'s /proc/self/oom_score_adj; a value below the lowest this
    process was given needs CAP_SYS_RESOURCE. Writing the same value twice
    is harmless: the init sets it before `create` returns, so that a refusal
    fails `create` (as runc's does), and again in apply()."""
    if value is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        raise LabkitError(f"config.json: process.oomScoreAdj: {value}: {e.strerror}",
                          "lowering it below the caller's own needs CAP_SYS_RESOURCE: leave it out, "
                          "or run the runtime with that capability") from None


def apply(config, seccomp=None):
    """Everything above, in order, for ``config`` (a ContainerConfig);
    ``seccomp``: its filter, compiled (labkit/linux/seccomp.py Filter)."""
    for rl in config.rlimits:
        syscalls.setrlimit(RLIMITS[rl["type"]], rl["soft"], rl["hard"])
    set_oom_score_adj(config.oom_score_adj)
    if seccomp is not None and not config.no_new_privileges:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: now,
        # before the user and the capabilities change (runc's order).
        seccomp.load()
    caps = config.capabilities
    sets = apply_capabilities(caps) if caps is not None else None
    user = config.user
    if user is not None:
        if caps is not None:
            syscalls.prctl(PR_SET_KEEPCAPS, 1)
        syscalls.setgroups(list(user.get("additionalGids") or []))
        gid, uid = user.get("gid", 0), user.get("uid", 0)
        syscalls.setresgid(gid, gid, gid)
        syscalls.setresuid(uid, uid, uid)
        if user.get("umask") is not None:
            os.umask(user["umask"])
    if sets is not None:
        effective, permitted, inheritable, ambient = sets
        capset(effective, permitted, inheritable)
        syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
        for name in ambient:
            bit = 1 << CAPABILITIES.index(name)
            # Only a capability both permitted and inheritable may be ambient
            # (capabilities(7)); the default spec lists ambient ones that are
            # not inheritable, which no runtime can honour.
            if permitted & bit and inheritable & bit:
                syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAPABILITIES.index(name))
    if config.no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)


# Exit codes of a process that could not be started (docker's).
EXIT_SETUP = 125      # the container could not be set up
EXIT_NOEXEC = 126     # found but not executable
EXIT_NOTFOUND = 127   # command not found
# Python ignores SIGPIPE and SIGXFSZ and handles SIGINT, and the runner
# forwards the others: the program gets the default action of each.
_RESET = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
          signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def execvpe(file, args, env):
    """execvp(3)'s PATH search, with the container's PATH.

    Not os.execvpe: it imports the warnings module on first use, and this
    runs after pivot_root, when the host's standard library is out of
    reach. Like execvp: a name with a slash is used as is; a missing file or
    directory tries the next PATH entry; EACCES is remembered and raised if
    nothing else runs."""
    if "/" in file:
        syscalls.execve(file, args, env)
    denied = None
    for directory in env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
        try:
            syscalls.execve(os.path.join(directory or ".", file), args, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as e:
            denied = e
    if denied is not None:
        raise denied
    raise FileNotFoundError(2, "No such file or directory", file)


def close_fds(keep=(), first=3):
    """Close every file descriptor from ``first`` up but those in ``keep``.

    Whatever the caller of labkit held open (a shell's `exec 7</etc`, a
    notebook's sockets) would otherwise be inherited by the container: a
    directory fd is a way out of any root, e.g. a working directory of
    /proc/self/fd/7 (runc's CVE-2024-21626). Called first thing by every
    process that enters a container, before it changes directory."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass   # the directory's own fd, closed by listdir already


def cloexec_from(first):
    """Just before exec: every fd from ``first`` up is closed by execve(2)
    (close_range(2) with CLOSE_RANGE_CLOEXEC), so that only stdio and the
    fds the caller asked to pass (--preserve-fds) reach the program. Our own
    pipes stay open until the exec itself, to report its failure."""
    libc = syscalls._libc
    if libc.syscall(_SYS_CLOSE_RANGE, ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                    ctypes.c_uint(CLOSE_RANGE_CLOEXEC)) == 0:
        return
    for name in os.listdir("/proc/self/fd"):   # an older kernel
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def not_dumpable():
    """prctl(PR_SET_DUMPABLE, 0): until the exec, no process in the container
    may open this one's /proc/PID/exe (the host's interpreter) or /proc/PID/fd
    — the way in of runc's CVE-2019-5736. execve(2) makes the program
    dumpable again."""
    syscalls.prctl(PR_SET_DUMPABLE, 0)


class ExecFailed(LabkitError):
    """The program could not be executed: exit status 127 or 126, as a shell's."""

    def __init__(self, message, hint, exit_code):
        super().__init__(message, hint)
        self.exit_code = exit_code


def home_of(uid, passwd="/etc/passwd"):
    """The home directory of ``uid`` in passwd(5), or "/" (runc's fallback)."""
    try:
        with open(passwd) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def exec_program(args, env, where="the container"):
    """Replace this process with ``args`` (looked up in PATH), its
    environment the NAME=VALUE strings ``env``, every signal at its default.
    Returns only by raising ExecFailed (127 not found, 126 not executable)."""
    for sig in _RESET:
        signal.signal(sig, signal.SIG_DFL)
    # And none blocked: a runner may block the ones it forwards around a fork
    # (runtime/execute.py), and a blocked mask survives execve(2).
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    environ = dict(e.split("=", 1) for e in env if "=" in e)
    if "HOME" not in environ:           # as runc: the user's home from the container's passwd
        environ["HOME"] = home_of(os.getuid())
    try:
        execvpe(args[0], args, environ)
    except FileNotFoundError:
        raise ExecFailed(f"command '{args[0]}' not found in {where}",
                         "check the name, or add the program to the rootfs", EXIT_NOTFOUND) from None
    except PermissionError:
        raise ExecFailed(f"command '{args[0]}' cannot be executed in {where}",
                         "is it a directory, or missing its execute bit?", EXIT_NOEXEC) from None


def exec_tail(config, args=None, where="the container", preserve_fds=0, seccomp=None):
    """The last step of every process that enters a container, the init and
    each `exec` alike: the process as configured (apply(), above), then the
    program (``args``, by default the container's own), with no fd but stdio
    and the ``preserve_fds`` after it (3, 4, ...)."""
    if config.capabilities is not None or config.user or config.rlimits or seccomp is not None \
            or config.no_new_privileges or config.oom_score_adj is not None:
        apply(config, seccomp)
    if seccomp is not None and config.no_new_privileges:
        # With no_new_privs, as close to execve as it can be: the filter
        # then applies to as little of labkit's own setup as possible.
        seccomp.load()
    cloexec_from(3 + preserve_fds)
    exec_program(args or config.args, config.env, where)


def exit_code(wait_status):
    """A waitpid(2) status as a shell shows it: the exit code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def report(w_err, error):
    """Tell the parent why this process fails, on its error pipe (best
    effort: the parent may be gone)."""
    try:
        os.write(w_err, str(error).encode())
    except OSError:
        pass


def read_all(fd):
    """Everything a pipe carries until EOF (every write end closed)."""
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
