"""The reaper: one process that waits for every detached container.

Someone must wait for a detached container's program, to learn its exit
code, and tear its stages down when it ends. runc leaves that to its caller;
podman runs conmon, a small C monitor, one per container; containerd a shim
per container (or per pod). labkit's monitor (runtime/monitor.py) is a copy of
the `labkit run` process, a Python interpreter of about 9 MB, so one per
container would make 50 replicas cost 450 MB of monitors. Instead:

  1. `labkit run -d` does not start the container itself: it sends its
     command line, environment, working directory, umask and its stdin,
     stdout and stderr (SCM_RIGHTS, unix(7)) to the reaper, and waits for
     the exit code. The reaper forks, and its child runs the same command
     with those file descriptors: the container's processes descend from the
     reaper.
  2. The monitor prepares the stages and starts the container as always;
     once the program runs it tells the reaper "adopt CONTAINER PID" and
     exits. The reaper is a subreaper (prctl(2) PR_SET_CHILD_SUBREAPER): the
     init, orphaned, becomes its child rather than PID 1's.
  3. When the init exits, waitpid(2) hands the reaper its status; it forks a
     finisher, which tears the stages down from state.json and saves the exit
     code (or forgets the container, for --rm), as the monitor would have.

The reaper itself imports no more than it needs to wait (about 8 MB,
whatever the number of containers); every labkit module is imported by its
children. There is one per $LABKIT_HOME and network and mount namespace; it
starts with the first `labkit run -d` there and exits once nothing of its own
runs; `ps -ef --forest` shows it with its containers' inits below.
A container that needs its monitor after the start (an lxcfs to stop, hooks to
run) keeps one, under the reaper too. LABKIT_REAPER=0 turns the reaper off:
one monitor per container, as before. If the reaper is killed (SIGKILL), its
containers go on running, marked dead: `labkit gc` stops and removes them.
"""

import os
import sys

import _signal as signal
import _socket as socket
import select

from labkit.containers import start_time
from labkit.runtime.servers import reaper_client as client
from labkit.runtime.servers.reaper_client import NAME
from labkit.runtime.servers.handoff import children as _children
from labkit.runtime.servers.handoff import at, kill as _kill, name as _name
from labkit.runtime.servers.handoff import recv as _recv, run_command, send as _send, seqpacket as _seqpacket
from labkit.runtime.servers.handoff import drain, fresh_child, reaped, serve_signals

ORPHAN_MEMORY = 60          # seconds an unclaimed exit status is kept (see Reaper.orphans)


# ---- the reaper ----------------------------------------------------------

class Reaper:
    def __init__(self, path, import_path):
        self.path, self.import_path = path, import_path
        self.me = (os.getpid(), start_time(os.getpid()))
        self.commands = {}      # pid of a forked command -> its client's connection
        self.adopted = {}       # pid of an adopted init -> container id
        self.clients = {}       # fd -> a connection: a request not read yet, or a command's client
        # Exit statuses of children nobody claimed (yet): the monitors that
        # left, and an init that exited before its monitor's "adopt" arrived
        # (one whose own parent, an intermediate process, left first).
        self.orphans = {}       # pid -> (exit code, time of the exit)
        self.poll = select.poll()

    def serve(self):
        import fcntl
        self.wake_r = serve_signals(NAME)
        old = os.umask(0o077)            # the socket: root's alone (the peer's uid is checked too)
        self.listener = _seqpacket()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        at(self.path, self.listener.bind)
        os.umask(old)
        self.listener.listen(128)
        fcntl.fcntl(self.listener.fileno(), fcntl.F_SETFL, os.O_NONBLOCK)
        self.poll.register(self.listener.fileno(), select.POLLIN)
        self.poll.register(self.wake_r, select.POLLIN)
        print(f"reaper {os.getpid()}: listening on {self.path}", flush=True)
        while True:
            for fd, _ in self.poll.poll(1000):
                if fd == self.listener.fileno():
                    self._accept()
                elif fd == self.wake_r:
                    drain(fd)
                elif fd in self.clients:
                    self._client(fd)
            self._reap()
            if not self.clients and not self.adopted and not _children() and self._leave():
                return 0

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener._accept()
            except BlockingIOError:
                return
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=conn)
            os.set_inheritable(conn.fileno(), False)
            cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            if int.from_bytes(cred[4:8], sys.byteorder) != 0:   # struct ucred: pid, uid, gid
                conn.close()
                continue
            self.clients[conn.fileno()] = conn
            self.poll.register(conn.fileno(), select.POLLIN)

    def _drop(self, fd):
        self.poll.unregister(fd)
        self.clients.pop(fd).close()

    def _client(self, fd):
        conn = self.clients[fd]
        try:
            got = _recv(conn, fds=3)
        except (OSError, ValueError, EOFError, TypeError):
            got = None
        running = [pid for pid, c in self.commands.items() if c is conn]
        if got is None or running:
            # EOF (or a word out of turn) from a client whose command still
            # runs: it is stopped as an interrupted `labkit run` would be.
            for pid in running:
                _kill(pid, signal.SIGTERM)
                self.commands[pid] = None
            for x in got[1] if got else ():
                os.close(x)
            self._drop(fd)
            return
        message, fds = got
        kind = message[0] if isinstance(message, tuple) and message else None
        if kind == "adopt" and not fds:
            _, cid, pid = message
            _send(conn, ("adopted",))
            self._drop(fd)
            if pid in self.orphans:      # it has exited already
                self._finisher(cid, pid, self.orphans.pop(pid)[0])
            else:
                self.adopted[pid] = cid
        elif kind == "run" and len(fds) == 3:
            pid = os.fork()
            if pid == 0:
                self._command(message, fds)
            for x in fds:
                os.close(x)
            self.commands[pid] = conn   # answered when it exits; its client's EOF stops it
            _send(conn, ("started", pid))
        else:
            for x in fds:
                os.close(x)
            self._drop(fd)

    def _reap(self):
        import time
        now = time.monotonic()
        for pid in [p for p, (_, t) in self.orphans.items() if now - t > ORPHAN_MEMORY]:
            del self.orphans[pid]
        for pid, code in reaped():
            if pid in self.commands:
                conn = self.commands.pop(pid)
                if conn is not None:
                    _send(conn, ("exit", code))
                    self._drop(conn.fileno())
            elif pid in self.adopted:
                self._finisher(self.adopted.pop(pid), pid, code)
            else:
                self.orphans[pid] = (code, now)

    def _leave(self):
        """Nothing of ours runs: stop listening, unless a client came meanwhile."""
        from labkit.home import Lock
        with Lock(os.path.dirname(self.path)):
            # A client that connected meanwhile (the wake-up pipe is not one).
            if select.select([self.listener.fileno()], [], [], 0)[0] or _children():
                return False
            os.unlink(self.path)        # first: a new client starts a new reaper from here on
            self.listener.close()
        print(f"reaper {os.getpid()}: nothing left to wait for, exiting", flush=True)
        return True

    # ---- in the reaper's children ------------------------------------------
    def _command(self, message, fds):
        def adopter():
            # The command's monitor hands its init back to this reaper (client.adopt).
            client.ADOPTER = self.me
        run_command(message, fds, before=adopter)

    def _finisher(self, cid, pid, code):
        if os.fork() != 0:
            return
        status = 1
        try:
            fresh_child()
            _name("labkit finish")
            sys.path[:] = self.import_path
            from labkit.runtime import runner
            runner.finish_adopted(cid, code)
            status = 0
        except BaseException as e:
            print(f"reaper: the end of container {cid}: {type(e).__name__}: {e}", flush=True)
        finally:
            sys.stdout.flush()
            os._exit(status)


def main():
    sys.exit(Reaper(sys.argv[1], sys.path[:]).serve())
