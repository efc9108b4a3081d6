"""LABKIT_TRACE=1: each call of the syscall layer, one line on stderr.

    labkit-trace[1]: mount(none, "/", none, MS_REC|MS_PRIVATE) = 0
    labkit-trace[1]: pivot_root(".", ".") = 0
    labkit-trace[1]: execve("/bin/true", ["true"]) ...

Imported only when the variable is "1" (labkit/linux/syscalls/__init__.py): then
install() replaces each function of the layer by one that prints the call
and its result, so that the untraced path tests no flag at all. Everything
a wrapper needs is bound here, at install time: after pivot_root the host's
standard library is out of reach, so nothing may be imported later.

The line is written with one os.write(2, ...) per call: no buffer to lose in
an exec or to copy into a fork, and lines of different processes interleave
whole.
"""

import functools
import os
from errno import errorcode

# prctl(2) options by their man-page names, those labkit passes.
PR_NAMES = {1: "PR_SET_PDEATHSIG", 4: "PR_SET_DUMPABLE", 8: "PR_SET_KEEPCAPS",
            24: "PR_CAPBSET_DROP", 36: "PR_SET_CHILD_SUBREAPER", 38: "PR_SET_NO_NEW_PRIVS", 47: "PR_CAP_AMBIENT"}


def emit(text):
    try:
        os.write(2, f"labkit-trace[{os.getpid()}]: {text}\n".encode("utf-8", "backslashreplace"))
    except OSError:
        pass                        # no stderr: tracing must never break the call


def quote(value):
    """A string as C would write it; None as ``none`` (mount(8)'s word)."""
    if value is None:
        return "none"
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    value = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{value}"'


def install(ns):
    """Replace the calls in the syscall module's namespace ``ns`` by traced ones."""
    names = ns["flag_names"]
    clone, ms, mnt = ns["_CLONE_NAMES"], ns["_MS_NAMES"], ns["_MNT_NAMES"]

    def fd_name(fd):
        try:
            return f"{fd}<{os.readlink(f'/proc/self/fd/{fd}')}>"
        except OSError:
            return str(fd)

    def mount(source, target, fstype=None, flags=0, data=None):
        text = f"{quote(source)}, {quote(target)}, {quote(fstype)}, {names(flags, ms)}"
        return text + (f", {quote(data)}" if data else "")

    def prctl(option, arg2=0, *args):
        # Every option has an arg2; the later ones only when they are given.
        args = (arg2,) + args
        while len(args) > 1 and not args[-1]:
            args = args[:-1]
        return ", ".join([PR_NAMES.get(option, str(option))] + [str(a) for a in args])

    show = {
        "unshare": lambda flags: names(flags, clone),
        "setns": lambda fd, nstype=0: f"{fd_name(fd)}, {names(nstype, clone)}",
        "mount": mount,
        "umount2": lambda target, flags=0: f"{quote(target)}, {names(flags, mnt)}",
        "pivot_root": lambda new_root, put_old: f"{quote(new_root)}, {quote(put_old)}",
        "sethostname": lambda name: quote(name),
        "prctl": prctl,
        "chroot": lambda path: quote(path),
        "setresuid": lambda r, e, s: f"{r}, {e}, {s}",
        "setresgid": lambda r, e, s: f"{r}, {e}, {s}",
        "setgroups": lambda groups: "[" + ", ".join(str(g) for g in groups) + "]",
        "bpf": lambda cmd, attr: f"{ns['_BPF_CMDS'].get(cmd, cmd)}, {{...}}",
        "open_tree": lambda path, flags: f"AT_FDCWD, {quote(path)}, {flags:#x}",
        "mount_setattr": lambda fd, attr_set, userns_fd=0, flags=0x1000, path=None, attr_clr=0:
            f"{quote(path) if path else fd}, {flags:#x}, {{attr_set={attr_set:#x}, attr_clr={attr_clr:#x}, "
            f"userns_fd={fd_name(userns_fd)}}}",
        "move_mount": lambda fd, target: f"{fd}, AT_FDCWD, {quote(target)}",
        "openat2": lambda dirfd, path, flags, resolve, mode=0:
            f"{fd_name(dirfd)}, {quote(path)}, {{flags={flags:#o}, "
            f"resolve={names(resolve, ns['_RESOLVE_NAMES'])}}}",
        "seccomp": lambda op, flags, program:
            f"SECCOMP_SET_MODE_FILTER, {flags:#x}, {{len={len(program) // 8}}}",
    }
    for name, fmt in show.items():
        ns[name] = _traced(ns[name], fmt)
    ns["fork"] = _traced_fork(ns["fork"])
    ns["execve"] = _traced_execve(ns["execve"])


def _failed(text, e):
    emit(f"{text} = -1 {errorcode.get(e.errno, e.errno)}")


def _traced(call, fmt):
    @functools.wraps(call)
    def traced(*args, **kw):
        text = f"{call.__name__}({fmt(*args, **kw)})"
        try:
            result = call(*args, **kw)
        except OSError as e:
            _failed(text, e)
            raise
        emit(f"{text} = {0 if result is None else result}")
        return result
    return traced


def _traced_fork(call):
    @functools.wraps(call)
    def fork():
        try:
            pid = call()
        except OSError as e:
            _failed("fork()", e)
            raise
        if pid:                      # the parent; the child's line would be a second "= 0"
            emit(f"fork() = {pid}")
        return pid
    return fork


def _traced_execve(call):
    @functools.wraps(call)
    def execve(path, args, env):
        # Before the call: a successful execve(2) does not return.
        text = f"execve({quote(path)}, [{', '.join(quote(a) for a in args)}])"
        emit(f"{text} ...")
        try:
            call(path, args, env)
        except OSError as e:
            _failed(text, e)
            raise
    return execve
