"""A command line handed to another process, which forks a child to run it.

Two long-lived processes take commands this way: the reaper (reaper.py),
which runs every `labkit run -d` so that the container descends from it,
and the fork server (forkserver.py), which runs a notebook's labkit calls
with labkit already imported. The message is marshal'd over a
SOCK_SEQPACKET socket (one message per packet: no framing to get wrong),
with the command's stdin, stdout and stderr as SCM_RIGHTS (unix(7)); the
child takes those as its 0, 1, 2, the caller's environment, working
directory and umask, and calls ``entry`` (a frontend's main, named
"module:function" by the caller: the runtime imports no frontend).
"""

import marshal
import os
import sys

import _signal as signal
import _socket as socket

from labkit import home

MAX_MESSAGE = 1 << 20       # a command line with its environment: far less than this


def seqpacket():
    return socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)


def at(path, op):
    """``op``(address) for the socket file ``path``. An AF_UNIX address holds
    107 bytes (unix(7)): a longer path, a deep $LABKIT_HOME, is reached
    through a descriptor of its directory, /proc/self/fd/N/NAME."""
    if len(os.fsencode(path)) < 108:
        return op(path)
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return op(f"/proc/self/fd/{fd}/{os.path.basename(path)}")
    finally:
        os.close(fd)


def connect(path):
    s = seqpacket()
    try:
        at(path, s.connect)
    except OSError:
        s.close()
        return None
    return s


def umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def import_path():
    """This process's sys.path for a server's `python -I -S`: labkit's own
    directory first (an editable install finds it through a .pth file,
    which -S never reads), then the rest."""
    here = home.source_tree()
    return [here] + [p for p in sys.path if p and p != here]


def command(entry, argv):
    """The message for ``entry``(``argv``) run as this process would run it."""
    return ("run", entry, list(argv), dict(os.environ), os.getcwd(), umask(), import_path())


def send_fds(s, message, fds):
    s.sendmsg([marshal.dumps(message)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                           b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))])


def recv(s, fds=0):
    """One message (and up to ``fds`` file descriptors), or None at EOF."""
    if fds:
        space = socket.CMSG_SPACE(4 * fds)
        data, ancillary, _, _ = s.recvmsg(MAX_MESSAGE, space)
    else:
        data, ancillary = s.recv(MAX_MESSAGE), []
    received = [int.from_bytes(d[i:i + 4], sys.byteorder)
                for level, kind, d in ancillary if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                for i in range(0, len(d) - len(d) % 4, 4)]
    if not data:
        for fd in received:
            os.close(fd)
        return None
    message = marshal.loads(data)
    return (message, received) if fds else message


def send(conn, message):
    try:
        conn.sendall(marshal.dumps(message))
    except OSError:
        pass        # the client is gone; nothing to tell


def kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def name(text):
    """A process's name (comm, 15 bytes): a fork has its parent's command
    line, so `ps -e` tells a server from its passing children by this."""
    with open("/proc/self/comm", "w") as f:
        f.write(text[:15])


def serve_signals(text):
    """The first steps of a server: its name, SIGCHLD waking its poll through
    a pipe (whose read end is returned: register it), SIGPIPE ignored (a
    client gone is a failed send, not a death)."""
    name(text)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    return wake_r


def drain(fd):
    try:
        os.read(fd, 4096)
    except BlockingIOError:
        pass


def reaped():
    """(pid, status) of each child that has exited, without waiting; the
    status as a shell says it (killed by signal N: 128+N)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        yield pid, (128 - code if code < 0 else code)


def children():
    """This process's children, alive or not yet reaped (a single thread)."""
    me = os.getpid()
    with open(f"/proc/{me}/task/{me}/children") as f:
        return f.read().split()


def fresh_child(fds=()):
    """The first steps of a server's child: ``fds`` as its 0, 1, 2, none of
    the server's descriptors, signals as a fresh process has them."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in os.listdir("/proc/self/fd"):
        if int(fd) > 2:
            try:
                os.close(int(fd))
            except OSError:
                pass


def run_command(message, fds, extra_env=None, before=None):
    """In a server's child: run the command of ``message`` (from command())
    with ``fds`` as its stdio, and exit with its status. Never returns."""
    code = 125
    try:
        _, entry, argv, env, cwd, mask, path = message
        fresh_child(fds)
        name(f"labkit {argv[0] if argv else ''}")
        os.environ.clear()
        os.environ.update(env)
        os.environ.update(extra_env or {})
        os.umask(mask)
        os.chdir(cwd)
        sys.path[:] = path
        sys.argv[:] = ["labkit", *argv]
        if before:
            before()
        module, _, function = entry.partition(":")
        code = getattr(__import__(module, fromlist=[function]), function)(argv)
    except SystemExit as e:          # argparse's way out: its message is printed already
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except BaseException as e:
        print(f"labkit: the command failed in a child of {os.getppid()}: {type(e).__name__}: {e}",
              file=sys.stderr, flush=True)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)
