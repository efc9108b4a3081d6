"""The fork server: labkit calls from a notebook without a new interpreter each.

A Jupyter kernel is multithreaded, so it must never fork and go on running
Python in the child (a lock another thread held stays locked there). Before
the fork server, each labkit.api call therefore started `labkit` afresh: an
interpreter (10–16 ms) and labkit's imports (~17 ms) before any work. The
fork server is one single-threaded process per kernel, started with its
first call (spawned: fork + exec, which is safe), that has imported the
modules a container start needs and then only forks:

  1. api.call makes a socketpair for the call and sends one end over the
     server's control socket with the command line, environment, working
     directory, umask and three pipes for stdin, stdout and stderr
     (handoff.py).
  2. The server forks; the child (single-threaded: a fork of a single
     thread) runs `labkit ARGS` in-process, as the CLI would, and exits.
     Its exit status goes back over the call's socket.
  3. A call given up (the cell interrupted: KeyboardInterrupt) asks for
     SIGINT, which a `labkit run` handles as a Ctrl-C: it stops the
     container and tears its stages down; SIGKILL after a grace period. A
     call's socket closed with the command still running means the same.
  4. When the kernel goes (restarted, shut down, killed: its end of the
     control socket closes), the server interrupts what still runs, then
     removes every container started through it — their state directories
     carry its mark (LABKIT_OWNER) — and exits.

`ps -e` shows it as labkit-fork; labkit.api starts one in a Jupyter kernel
(LABKIT_FORKSERVER=1: in any process; =0: never, each call starts `labkit`
as a fresh process again).
"""

import os
import sys

import _signal as signal
import _socket as socket
import select

from labkit.runtime.servers.handoff import children, drain, import_path, kill, reaped, recv, run_command, send, send_fds, serve_signals

NAME = "labkit-fork"        # its /proc/PID/comm
OWNER = "LABKIT_OWNER"      # set in its children: the mark a container's state directory keeps
HOME_VARS = ("LABKIT_HOME", "LABKIT_STATE_ROOT")   # what decides where a container's state is
START_TIMEOUT = 30          # seconds for a new server's imports
GRACE = 10                  # seconds an interrupted command gets before SIGKILL


def owner_file(state_dir):
    return os.path.join(state_dir, "owner")


def mark(state_dir):
    """In a new container's state directory: the fork server it came from,
    if it came from one (so that the server removes it when its kernel goes)."""
    owner = os.environ.get(OWNER)
    if owner:
        with open(owner_file(state_dir), "w") as f:
            f.write(owner + "\n")


# ---- the caller's side: a Jupyter kernel, a test -------------------------

class Client:
    """A fork server of this process, spawned on the first call."""

    def __init__(self, entry, preload):
        import subprocess
        self.entry = entry
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.control = mine
        env = dict(os.environ, LABKIT_FORKSERVER_PATH=os.pathsep.join(import_path()))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", BOOT, str(theirs.fileno()), ",".join(preload)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None, env=env,
                pass_fds=[theirs.fileno()], start_new_session=True)
        finally:
            theirs.close()
        self.pid = self.proc.pid
        # Ready once its imports are done; a server that cannot start is
        # gone before it says so (the caller then starts `labkit` afresh).
        if not select.select([mine.fileno()], [], [], START_TIMEOUT)[0] or recv(mine) != ("ready",):
            self.proc.kill()
            self.proc.wait()
            mine.close()
            raise OSError(f"the fork server did not start (exit {self.proc.returncode})")

    def alive(self):
        return self.proc.poll() is None

    def call(self, argv, input=None, timeout=None):
        """`labkit ARGV` in a child of the server: (exit code, stdout, stderr)."""
        import time
        mine, writing, readers = self._send(argv, input)
        data = input.encode() if input is not None else b""
        out, err = readers.values()
        code = None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while readers or code is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"labkit {' '.join(argv)}: no exit after {timeout} s")
                wants = list(readers) + ([mine.fileno()] if code is None else [])
                ready_r, ready_w, _ = select.select(wants, [writing] if writing is not None else [], [], left)
                if writing in ready_w:
                    n = os.write(writing, data[:65536]) if data else 0
                    data = data[n:]
                    if not data:
                        os.close(writing)
                        writing = None
                for fd in ready_r:
                    if fd == mine.fileno():
                        message = recv(mine)
                        if message is None:
                            raise OSError("the fork server went away during the command")
                        if message[0] == "exit":      # ("started", pid) comes first: nothing to do
                            code = message[1]
                    else:
                        chunk = os.read(fd, 65536)
                        if chunk:
                            readers[fd] += chunk
                        else:
                            os.close(fd)
                            del readers[fd]
        except BaseException:
            # KeyboardInterrupt (the cell interrupted), a timeout: a Ctrl-C
            # for the command, then SIGKILL, as a terminal's user would.
            if code is None:
                self._interrupt(mine)
            raise
        finally:
            for fd in list(readers) + ([writing] if writing is not None else []):
                os.close(fd)
            mine.close()
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def _send(self, argv, input):
        """The command to the server, with a socket of its own for the exit
        code and pipes for its stdin, stdout and stderr: (our end of the
        socket, stdin's end to write to or None, {stdout's and stderr's ends: bytes read})."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        pipes = [os.pipe2(os.O_CLOEXEC) for _ in range(3)]
        stdin = pipes[0][0] if input is not None else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        theirs_fds = [theirs.fileno(), stdin, pipes[1][1], pipes[2][1]]
        try:
            from labkit.runtime.servers.handoff import command
            send_fds(self.control, command(self.entry, argv), theirs_fds)
        finally:
            for fd in theirs_fds[1:]:
                os.close(fd)
            theirs.close()
            if input is None:
                os.close(pipes[0][0])
                os.close(pipes[0][1])
        writing = pipes[0][1] if input is not None else None
        readers = {pipes[1][0]: bytearray(), pipes[2][0]: bytearray()}
        return mine, writing, readers

    def _interrupt(self, conn):
        import time
        send(conn, ("signal", signal.SIGINT))
        deadline = time.monotonic() + GRACE
        while time.monotonic() < deadline:
            if select.select([conn.fileno()], [], [], max(0, deadline - time.monotonic()))[0]:
                message = recv(conn)
                if message is None or message[0] == "exit":
                    return
        send(conn, ("signal", signal.SIGKILL))

    def close(self):
        """Stop the server the way the kernel's exit would (tests)."""
        self.control.close()
        self.proc.wait(timeout=60)


# ---- the server ----------------------------------------------------------

class Server:
    def __init__(self, control_fd):
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=control_fd)
        self.token = f"{os.getpid()}-{_start_time()}"
        self.calls = {}         # fd of a call's socket -> [socket, pid of its child or None]
        self.by_pid = {}        # pid -> fd of its call (None: the call was given up)
        self.entry = None       # the callers' main ("module:function"): what removes their containers
        self.homes = set()      # (LABKIT_HOME, LABKIT_STATE_ROOT) of the calls: where their containers are
        self.poll = select.poll()

    def serve(self):
        self.wake_r = serve_signals(NAME)
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # a Ctrl-C is for a command, never for it
        self.poll.register(self.control.fileno(), select.POLLIN)
        self.poll.register(self.wake_r, select.POLLIN)
        send(self.control, ("ready",))
        while True:
            for fd, _ in self.poll.poll():
                if fd == self.control.fileno():
                    if not self._request():
                        return self._leave()
                elif fd == self.wake_r:
                    drain(fd)
                elif fd in self.calls:
                    self._call(fd)
            self._reap()

    def _request(self):
        """A new call on the control socket; False once the kernel is gone."""
        try:
            got = recv(self.control, fds=4)
        except (OSError, ValueError, EOFError, TypeError):
            got = None
        if got is None:
            return False
        message, fds = got
        if not (isinstance(message, tuple) and message and message[0] == "run" and len(fds) == 4):
            for fd in fds:
                os.close(fd)
            return True
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=fds[0])
        self.entry = message[1]
        self.homes.add(tuple(message[3].get(var) for var in HOME_VARS))
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            # A session of its own, as a `labkit` started from a shell has.
            run_command(message, fds[1:], extra_env={OWNER: self.token}, before=os.setsid)
        for fd in fds[1:]:
            os.close(fd)
        self.calls[conn.fileno()] = [conn, pid]
        self.by_pid[pid] = conn.fileno()
        self.poll.register(conn.fileno(), select.POLLIN)
        send(conn, ("started", pid))
        return True

    def _call(self, fd):
        conn, pid = self.calls[fd]
        try:
            message = recv(conn)
        except (OSError, ValueError, EOFError, TypeError):
            message = None
        if message is None:
            # The caller gave the call up: a Ctrl-C for what still runs.
            if pid is not None:
                kill(pid, signal.SIGINT)
                self.by_pid[pid] = None      # its exit is no one's to hear now
            self._drop(fd)
        elif message[0] == "signal" and pid is not None and message[1] in (signal.SIGINT, signal.SIGKILL,
                                                                           signal.SIGTERM):
            kill(pid, message[1])

    def _drop(self, fd):
        self.poll.unregister(fd)
        self.calls.pop(fd)[0].close()

    def _reap(self):
        for pid, code in reaped():
            fd = self.by_pid.pop(pid, None)
            if fd is not None and fd in self.calls:
                send(self.calls[fd][0], ("exit", code))
                self._drop(fd)

    def _leave(self):
        """The kernel is gone: interrupt what runs, remove what it started."""
        import time
        for pid in self.by_pid:
            kill(pid, signal.SIGINT)
        deadline = time.monotonic() + GRACE
        while children() and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in self.by_pid:
            kill(pid, signal.SIGKILL)
        while children():
            self._reap()
            time.sleep(0.01)
        from labkit.runtime.servers.handoff import command
        for where in self.homes:
            for var, value in zip(HOME_VARS, where):
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
            owned = self._owned()
            if owned and self.entry:
                pid = os.fork()
                if pid == 0:
                    run_command(command(self.entry, ["rm", "-f", *owned]), [os.open(os.devnull, os.O_RDWR)] * 3)
                os.waitpid(pid, 0)
        return 0

    def _owned(self):
        """The containers (of the $LABKIT_HOME set now) started through this
        server, by their mark."""
        from labkit import home
        found = []
        top = home.containers_dir()
        try:
            names = os.listdir(top)
        except FileNotFoundError:
            return found
        for cid in names:
            try:
                with open(owner_file(os.path.join(top, cid))) as f:
                    if f.read().strip() == self.token:
                        found.append(cid)
            except OSError:
                pass
        return found


def _start_time():
    from labkit.containers import start_time
    return start_time(os.getpid())


# python -I -S -c BOOT FD MODULES: sys.path from LABKIT_FORKSERVER_PATH, the
# modules a container start needs imported once, then the loop.
BOOT = ("import os, sys; sys.path[:] = os.environ.pop('LABKIT_FORKSERVER_PATH').split(os.pathsep); "
        "from labkit.runtime.servers import forkserver; forkserver.main()")


def main():
    import importlib
    for module in filter(None, sys.argv[2].split(",")):
        importlib.import_module(module)
    sys.exit(Server(int(sys.argv[1])).serve())
