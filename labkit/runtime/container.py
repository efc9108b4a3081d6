"""A container on disk: its directory under $LABKIT_HOME/containers/<id>,
its state.json, and how to tell whether it is still alive.

state.json keeps what `labkit ps`, `exec`, `stop` and `gc` need: the pid of
the container's init, the pid of the process that watches it (the monitor:
the `labkit run` process, or its detached copy with -d), their start times
(so that a recycled pid is never mistaken for the container), the
configuration, and the mounts made on the host.
"""

import os
import time

from .. import home
from ..errors import Conflict, LabkitError, NotFound, SetupError
from .config import ContainerConfig

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def check_id(cid):
    if not cid or len(cid) > 64 or not set(cid) <= _ID_CHARS or cid[0] in ".-":
        raise LabkitError(f"bad container name '{cid}'",
                          "use up to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return cid


def new_id():
    return os.urandom(6).hex()


def start_time(pid):
    """The process's start time in clock ticks (field 22 of /proc/PID/stat),
    or None if there is no such process or it is a zombie (it has exited;
    its parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


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


def alive(pid, started):
    return pid is not None and started is not None and start_time(pid) == started


class Container:
    """The runtime's view of one container while it is being run."""

    def __init__(self, config):
        self.config = config
        self.id = config.id
        self.state_dir = home.containers_dir(config.id)
        self.rootfs = config.rootfs
        self.host_mounts = []   # mounts made in the host's namespace (chroot /proc)
        self.pid = None         # the container's init, as the host sees it
        self.cgroup = None      # set by the cgroups stage
        self.exit_code = None
        self.created = time.time()
        self.go_fd = None       # in the container's init: where the monitor's "G" arrives

    def await_attach(self):
        """In the container's init: return once the monitor has attached
        every stage to this process (its pid written to cgroup.procs). The
        first call waits, later ones return at once. Stages call it before
        whatever depends on the process's cgroup (a cgroup namespace, a
        cgroup mount); the runner calls it before the exec."""
        fd, self.go_fd = self.go_fd, None
        if fd is None:
            return
        go = os.read(fd, 1)
        os.close(fd)
        if go != b"G":
            raise SetupError("the monitor stopped before the container was attached")

    def create(self):
        os.makedirs(home.containers_dir(), exist_ok=True)
        try:
            os.mkdir(self.state_dir, 0o711)
        except FileExistsError:
            raise Conflict(f"container name '{self.id}' is already in use",
                           f"remove it with `labkit rm {self.id}`, or pick another --name") from None

    def save(self, status, **extra):
        state = {
            "id": self.id, "status": status, "pid": self.pid,
            "pid_start": start_time(self.pid) if self.pid else None,
            "monitor": os.getpid(), "monitor_start": start_time(os.getpid()),
            "created": self.created,
            "rootfs": self.rootfs, "host_mounts": self.host_mounts,
            "exit_code": self.exit_code, "config": self.config.to_dict(),
            "cgroup": self.cgroup is not None,
        }
        state.update(extra)
        tmp = os.path.join(self.state_dir, "state.json.tmp")
        with open(tmp, "w") as f:
            f.write(dumps(state))
        os.rename(tmp, os.path.join(self.state_dir, "state.json"))


def _not_serializable(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj):
    """json.dumps(obj), without importing json on the start path: json imports
    re, and re imports enum (~5 ms together). This is the C encoder json.dumps
    itself uses for its default, compact form (no indent: the pure-Python
    encoder would cost ~1 ms a save); json is the fallback where _json lacks it."""
    try:
        from _json import encode_basestring_ascii, make_encoder
    except ImportError:
        import json
        return json.dumps(obj)
    # markers (circular check), default, string encoder, indent,
    # key and item separators, sort_keys, skipkeys, allow_nan: json.dumps's.
    encode = make_encoder({}, _not_serializable, encode_basestring_ascii, None,
                          ": ", ", ", False, False, True)
    return "".join(encode(obj, 0))


def remove_tree(top):
    """rm -r, without importing shutil (and with it bz2, lzma, fnmatch) on
    the start path. os.walk does not follow symlinks: a link is removed,
    never what it points to."""
    for base, dirs, files in os.walk(top, topdown=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            try:
                os.unlink(os.path.join(base, name))
            except FileNotFoundError:
                pass
        for name in dirs:
            try:
                os.rmdir(os.path.join(base, name))
            except (FileNotFoundError, NotADirectoryError):
                pass
    try:
        os.rmdir(top)
    except FileNotFoundError:
        pass


def load(cid):
    """The state of container ``cid``, with ``status`` brought up to date."""
    import json
    path = os.path.join(home.containers_dir(cid), "state.json")
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        if os.path.isdir(home.containers_dir(cid)):
            return {"id": cid, "status": "creating", "pid": None, "config": {}}
        raise NotFound(f"no such container '{cid}'", "`labkit ps -a` lists the containers") from None
    except ValueError:
        return {"id": cid, "status": "dead", "pid": None, "config": {}}
    if state["status"] in ("created", "running"):
        if not alive(state.get("monitor"), state.get("monitor_start")):
            state["status"] = "dead"   # its runner was killed: `labkit gc` cleans up
        elif not alive(state.get("pid"), state.get("pid_start")):
            state["status"] = "stopping"
    return state


def config_of(state):
    return ContainerConfig.from_dict(state["config"])


def all_ids():
    base = home.containers_dir()
    if not os.path.isdir(base):
        return []
    return sorted(os.listdir(base))
