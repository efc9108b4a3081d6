"""The protocol between the monitor and the processes it forks.

runc calls this its sync pipe (libcontainer/sync.go); every message here has
a name. Two pipes, made by the monitor before the first fork:

  up    child -> monitor: one message per line; ERROR takes the rest
  down  monitor -> child: one byte per message

The default path (no user namespace: one fork, the child is the init):

    monitor (monitor.py)                           init (init.py, PID 1 inside)
      │ stages' prepare(): cgroup, overlay, fifo
      │ unshare(CLONE_NEWPID), fork ───────────────►│ unshare(uts, ipc, net, mnt)
      │ ◄────────────────────────────────── NETNS ──│ only on a network: its veth
      │                                             │   may now be moved in
      │ stages' attach(): cgroup.procs ← pid,       │ stages' child(): hostname, lo,
      │   pid file, prestart/createRuntime hooks    │   then waits for ATTACHED
      │ ── ATTACHED ───────────────────────────────►│ unshare(CLONE_NEWCGROUP),
      │                                             │   mounts, pivot_root
      │ ◄───────────────────────── AWAITING_START ──│ only OCI create: blocks on
      │   (`create` returns; `start` opens the fifo)│   exec.fifo until `start`
      │ ◄───────────── ERROR text, or EOF at exec ──│ exec tail: user, caps, execve
      │ stages' started(); wait, forward signals;
      │ stages' teardown()

With a user namespace (or namespaces joined by path, or a time namespace) an
intermediate process comes first (runtime/intermediate.py):

    monitor                     intermediate                  init
      │ fork ──────────────────►│ setns(joined), unshare(USER)
      │ ◄───────────── USERNS ──│
      │ write uid/gid maps      │
      │ ── MAPS_WRITTEN ───────►│ setresuid(0), unshare(the rest), fork ──►│
      │ ◄──────── INIT_PID N ───│ waits for the init, exits with its status
      │ ...then as above, with the init (no NETNS: the init was forked into
      │    its namespaces, which INIT_PID says exist)

Without a new PID namespace (--ns without pid) the intermediate is the init
itself: it sends its own pid as INIT_PID and goes on, no fork.

Why messages at all: a process cannot write its own id maps (user_namespaces(7)),
and the limits must hold before the program's first instruction, so the
init waits for the monitor twice: for the maps and for ATTACHED. Why EOF
means "exec'd": the init's end of `up` is close-on-exec, and it is the last
one open once the intermediate has closed its own.
"""

import os

from labkit.startpath import signal

# The signals the monitor forwards to the init (a `labkit run` in a terminal
# gets them first); the processes in between ignore them.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)

# child -> monitor (lines on `up`)
USERNS = "userns"          # intermediate: my user namespace exists: write its id maps
INIT_PID = "init-pid"      # intermediate: the init is this pid (as the host sees it)
NETNS = "netns"            # init: my network namespace exists (its veth may be moved in)
AWAITING_START = "awaiting-start"   # init: set up, blocked on exec.fifo until `start`
ERROR = "error"            # any: setup failed; everything after it says why
# monitor -> child (bytes on `down`)
MAPS_WRITTEN = b"M"        # the uid_map and gid_map are written
ATTACHED = b"G"            # the process is in its cgroup (every stage attached)


class Channel:
    """Both pipes; each process keeps the ends of its side (monitor or child)."""

    def __init__(self):
        self.up_r, self.up_w = os.pipe()
        self.down_r, self.down_w = os.pipe()
        self._attached = False
        self.netns_ready = False   # monitor side: the init's net namespace exists

    # -- child side ---------------------------------------------------
    def child_side(self):
        """In a forked child: close the monitor's ends."""
        _close(self.up_r, self.down_w)
        self.up_r = self.down_w = None

    def send(self, name, arg=None):
        line = name if arg is None else f"{name} {arg}"
        os.write(self.up_w, line.encode() + b"\n")

    def created(self):
        """OCI create is done: the init now blocks on exec.fifo until `start`."""
        self.send(AWAITING_START)

    def send_error(self, error):
        """Best effort: the monitor may be gone."""
        try:
            os.write(self.up_w, f"{ERROR} {error}".encode(errors="replace"))
        except OSError:
            pass

    def expect(self, byte):
        """Wait for one message from the monitor; False on EOF or another byte."""
        return os.read(self.down_r, 1) == byte

    def wait_attached(self):
        """Return once the monitor sent ATTACHED. The init calls it before the
        first thing that depends on its cgroup (a cgroup namespace, a cgroup
        mount) and always before exec; later calls return at once."""
        if self._attached:
            return
        if not self.expect(ATTACHED):
            from labkit.errors import SetupError
            raise SetupError("the monitor stopped before the container was attached")
        self._attached = True
        os.close(self.down_r)
        self.down_r = None

    def close_child_side(self):
        _close(self.up_w, self.down_r)
        self.up_w = self.down_r = None

    # -- monitor side -------------------------------------------------
    def monitor_side(self):
        """After the fork, in the monitor: close the children's ends."""
        _close(self.up_w, self.down_r)
        self.up_w = self.down_r = None

    def recv(self):
        """The next (name, argument) from the children; (None, None) at EOF.
        ERROR's argument is the rest of the stream."""
        line = bytearray()
        while True:
            ch = os.read(self.up_r, 1)
            if not ch or ch == b"\n":
                break
            line += ch
            if line == ERROR.encode() + b" ":
                from labkit.linux.process import read_all
                return ERROR, read_all(self.up_r).decode(errors="replace").strip()
        if not line:
            return None, None
        name, _, arg = line.decode(errors="replace").partition(" ")
        return name, arg

    def wait_netns(self):
        """Return once the init's network namespace exists: at once after an
        INIT_PID (the intermediate forked the init into its namespaces),
        else when the init says NETNS."""
        if self.netns_ready:
            return
        name, arg = self.recv()
        if name != NETNS:
            from labkit.errors import SetupError
            raise SetupError(arg if name == ERROR else
                             f"the container's init stopped before its network namespace existed ({name})")
        self.netns_ready = True

    def tell(self, byte):
        try:
            os.write(self.down_w, byte)
        except BrokenPipeError:
            pass   # the child is gone: `up` says why

    def close(self):
        _close(self.up_r, self.up_w, self.down_r, self.down_w)
        self.up_r = self.up_w = self.down_r = self.down_w = None


def _close(*fds):
    for fd in fds:
        if fd is not None:
            os.close(fd)
