"""A container on disk: its directory under $LABKIT_HOME/containers/<id>,
its state.json, and how to tell whether it is still alive.

state.json keeps what `labkit ps`, `exec`, `stop` and `gc` need: the pid of
the container's init, the pid of the process that watches it (the monitor:
the `labkit run` process, its detached copy with -d, or the reaper that
adopted it: runtime/servers/reaper.py), their start times
(so that a recycled pid is never mistaken for the container), the
configuration, and the mounts made on the host.
"""

import os
import time

from labkit import home
from labkit.errors import Conflict, LabkitError
from labkit.containers import alive, all_ids, load, start_time, write_state  # noqa: F401 (the runtime's view of them)
from labkit.runtime.config import ContainerConfig

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def check_id(cid):
    if not cid or len(cid) > 64 or not set(cid) <= _ID_CHARS or cid[0] in ".-":
        raise LabkitError(f"bad container name '{cid}'",
                          "use up to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return cid


def new_id():
    return os.urandom(6).hex()


def kill_session(sid, sig=9):
    """SIGKILL every process of session ``sid``. A container without a PID
    namespace is its init's session (the init called setsid): when the init
    dies, the kernel kills nothing else, and its children would live on."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if int(data[data.rindex(b")") + 2:].split()[3]) == sid:   # field 6: session
            try:
                os.kill(int(pid), sig)
            except ProcessLookupError:
                pass


class Container:
    """The runtime's view of one container while it is being run: every
    field any process or stage sets is declared here."""

    def __init__(self, config, options=None):
        from labkit.runtime.config import RunOptions
        self.config = config
        self.options = options or RunOptions()
        self.id = config.id
        self.state_dir = home.containers_dir(config.id)
        self.rootfs = config.rootfs   # the directory the init enters (unionfs: the overlay)
        self.created = time.time()
        # Set by the monitor while it runs the container.
        self.pid = None          # the container's init, as the host sees it
        self.exit_code = None
        self.stdio = ()          # OCI create: the caller's stdin, stdout, stderr for the init
        # Set by stages (labkit/stages/), read by other stages or by gc.
        self.host_mounts = []    # rootfs: mounts made in the host's namespace (a chroot's /proc)
        self.mounts = None       # rootfs: the table the init mounts (config's, or labkit run's)
        self.cgroup = None       # cgroups: the manager of the container's cgroup
        self.lxcfs = None        # lxcfs: the container's own lxcfs, if it started one
        self.binds = []          # lxcfs: (host file, path inside) to bind over the new root
        self.before_pivot = []   # lifecycle: callbacks after the mounts, before pivot_root
        self.fifo = None         # lifecycle: exec.fifo, opened O_PATH by the monitor
        self.seccomp = None      # seccomp: the compiled filter the init loads before exec
        self.network = None      # network: the endpoint reserved for it (labkit/networks/endpoints.py)
        # In the container's processes: their end of the protocol (runtime/sync.py).
        self.sync = None

    def create(self):
        os.makedirs(home.containers_dir(), exist_ok=True)
        home.register()
        try:
            os.mkdir(self.state_dir, 0o711)
        except FileExistsError:
            raise Conflict(f"container name '{self.id}' is already in use",
                           f"remove it with `labkit rm {self.id}`, or pick another --name") from None
        if os.environ.get("LABKIT_OWNER"):
            # Started through a fork server: it removes the container when its kernel goes.
            from labkit.runtime.servers.forkserver import mark
            mark(self.state_dir)

    def save(self, status, **extra):
        state = {
            "id": self.id, "status": status, "pid": self.pid,
            "pid_start": start_time(self.pid) if self.pid else None,
            "monitor": os.getpid(), "monitor_start": start_time(os.getpid()),
            "created": self.created,
            "rootfs": self.rootfs, "host_mounts": self.host_mounts,
            "exit_code": self.exit_code, "config": self.config.to_dict(),
            "cgroup": self.cgroup is not None,
            # The parents a cgroupsPath made (delete removes them once empty).
            "cgroup_made": self.cgroup.made if self.cgroup is not None else [],
        }
        state.update(extra)
        write_state(self.state_dir, state)


def config_of(state):
    return ContainerConfig.from_dict(state["config"])
