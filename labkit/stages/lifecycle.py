"""Stage 5, the container format's lifecycle: what an OCI runtime adds around
the other stages so that a client (podman's conmon, containerd's shim) can
drive it — `create` and `start` as two steps, hooks, a pid file.

  exec.fifo   `create` sets everything up, and the init waits, just before
              the exec of the program, in open(exec.fifo, O_WRONLY): opening
              a FIFO for writing blocks until a reader opens it, and `start`
              is that reader (runc's own mechanism).
  pid file    --pid-file: the init's pid as the host sees it, written once
              the init exists, so the caller can wait for or signal it.
  hooks       labkit/hooks.py: prestart and createRuntime on the host once
              the namespaces exist, createContainer before pivot_root,
              startContainer just before exec, poststart once it runs
              (poststop is `delete`'s).
"""

import errno
import os

from .. import hooks
from ..errors import SetupError
from ..status import CREATED, CREATING, RUNNING
from . import Stage

FIFO = "exec.fifo"
ON_HOST = ("prestart", "createRuntime")
IN_CONTAINER = ("createContainer", "startContainer")


def write_pid_file(path, pid):
    """Atomically: a reader never sees a half-written pid."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _has(cfg, names):
    return any(cfg.hooks.get(name) for name in names)


class LifecycleStage(Stage):
    name = "lifecycle"

    def __init__(self):
        self.state = None   # in the init: the state JSON its in-container hooks get

    def wanted(self, config, options=None):
        return bool(config.hooks) or (options is not None and bool(options.exec_fifo or options.pid_file))

    def prepare(self, c):
        if c.options.exec_fifo:
            path = os.path.join(c.state_dir, FIFO)
            os.mkfifo(path)
            # Writable by the container's root even when that is an unprivileged
            # host uid (a user namespace); mkfifo's mode is cut by the umask.
            os.chmod(path, 0o622)
            # Opened here, before any user namespace: the container's root may
            # not be able to walk to the state directory. The init reopens it
            # for writing through /proc/self/fd (the host's path is gone then).
            c.fifo = os.open(path, os.O_PATH | os.O_CLOEXEC)

    def attach(self, c, pid):
        if c.options.pid_file:
            write_pid_file(c.options.pid_file, pid)
        if _has(c.config, ON_HOST):
            c.save(CREATED)   # the hooks may ask `state`
            hooks.run_phase(c.config, ON_HOST, pid, CREATING)

    def child(self, c):
        cfg = c.config
        if _has(cfg, ON_HOST):
            c.sync.wait_attached()   # the monitor runs them before the root is set up
        if _has(cfg, IN_CONTAINER):
            # Our pid as the host sees it: the host's /proc, before the pivot.
            self.state = hooks.state(cfg, int(os.readlink("/proc/self")), CREATED)
            c.before_pivot.append(lambda: hooks.run(cfg, "createContainer", self.state))

    def before_exec(self, c):
        if c.fifo is not None:
            self._await_start(c)
        if c.config.hooks.get("startContainer"):
            hooks.run(c.config, "startContainer", self.state)

    def _await_start(self, c):
        """`create` is done: tell the monitor, then block until `start`.
        A non-blocking open first: ENXIO (no reader yet) means the blocking
        one will work; anything else fails `create` itself."""
        path = f"/proc/self/fd/{c.fifo}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise SetupError(f"exec.fifo: {e.strerror}: the container's process "
                                 "cannot wait for `start`") from None
        c.sync.created()
        w = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        os.write(w, b"0")
        os.close(w)
        os.close(c.fifo)
        c.fifo = None

    def started(self, c):
        if c.config.hooks.get("poststart") and not c.options.exec_fifo:
            hooks.run_phase(c.config, ("poststart",), c.pid, RUNNING)

    def teardown(self, c):
        if c.fifo is not None:
            os.close(c.fifo)
            c.fifo = None
