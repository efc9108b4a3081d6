"""Stage 5, the container format's lifecycle: what an OCI runtime adds around
the other stages so that a client (podman's conmon, containerd's shim) can
drive it — `create` and `start` as two steps, hooks, a pid file.

  exec.fifo   `create` sets everything up, and the init waits, just before
              the exec of the program, in open(exec.fifo, O_WRONLY): opening
              a FIFO for writing blocks until a reader opens it, and `start`
              is that reader (runc's own mechanism).
  pid file    --pid-file: the init's pid as the host sees it, written once
              the init exists, so the caller can wait for or signal it.
  hooks       programs run at fixed points of the container's life, each
              with the container's state JSON on its stdin (runtime-spec,
              "POSIX-platform Hooks"):

                prestart, createRuntime  create, on the host, once the namespaces exist
                createContainer          create, in the container's mount namespace,
                                         before pivot_root
                startContainer           start, in the container, just before the exec
                poststart                start, on the host, once the program runs
                poststop                 delete, on the host, once the container is gone

              A failing hook of the first four stops the container (an error
              naming the hook); a failing poststart or poststop hook is only
              reported, as the spec says.
"""

import errno
import os

from labkit import home
from labkit.errors import LabkitError, SetupError, warn
from labkit.containers import CREATED, CREATING, OCI_VERSION, RUNNING
from labkit.stages import Stage

FIFO = "exec.fifo"
ON_HOST = ("prestart", "createRuntime")
IN_CONTAINER = ("createContainer", "startContainer")


def write_pid_file(path, pid):
    """Atomically: a reader never sees a half-written pid."""
    home.write_atomic(path, str(pid))


FATAL = ("prestart", "createRuntime", "createContainer", "startContainer")


def hook_state(cfg, pid, status):
    """The state of the runtime spec (state-schema.json) for hooks."""
    return {"ociVersion": OCI_VERSION, "id": cfg.id, "status": status, "pid": pid,
            "bundle": cfg.bundle or "", "annotations": dict(cfg.annotations or {})}


def run_hooks(cfg, name, st):
    """Run every hook of phase ``name`` in order with ``st`` on stdin."""
    # Imported here: json and subprocess are not on the path of a container
    # without hooks.
    import json
    import subprocess
    data = json.dumps(st).encode()
    for i, hook in enumerate((cfg.hooks or {}).get(name) or ()):
        where = f"hooks.{name}[{i}] ({hook['path']})"
        args = hook.get("args") or [hook["path"]]
        env = dict(e.split("=", 1) for e in hook.get("env") or () if "=" in e)
        try:
            r = subprocess.run(args, executable=hook["path"], input=data, env=env,
                               timeout=hook.get("timeout"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, close_fds=True)
            problem = None if r.returncode == 0 else (
                f"exited with {r.returncode}: {r.stderr.decode(errors='replace').strip()[:200]}")
        except subprocess.TimeoutExpired:
            problem = f"timed out after {hook.get('timeout')} s"
        except OSError as e:
            problem = f"could not be run: {e.strerror}"
        if problem:
            if name in FATAL:
                raise LabkitError(f"{where} {problem}", "fix the hook, or remove it from config.json")
            warn(f"{where} {problem}")


def run_hook_phases(cfg, names, pid, status):
    st = hook_state(cfg, pid, status)
    for name in names:
        if (cfg.hooks or {}).get(name):
            run_hooks(cfg, name, st)


def _has(cfg, names):
    return any(cfg.hooks.get(name) for name in names)


class OCIStage(Stage):
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
            run_hook_phases(c.config, ON_HOST, pid, CREATING)

    def child(self, c):
        cfg = c.config
        if _has(cfg, ON_HOST):
            c.sync.wait_attached()   # the monitor runs them before the root is set up
        if _has(cfg, IN_CONTAINER):
            # Our pid as the host sees it: the host's /proc, before the pivot.
            self.state = hook_state(cfg, int(os.readlink("/proc/self")), CREATED)
            c.before_pivot.append(lambda: run_hooks(cfg, "createContainer", self.state))

    def before_exec(self, c):
        if c.fifo is not None:
            self._await_start(c)
        if c.config.hooks.get("startContainer"):
            run_hooks(c.config, "startContainer", self.state)

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
            run_hook_phases(c.config, ("poststart",), c.pid, RUNNING)

    def teardown(self, c):
        if c.fifo is not None:
            os.close(c.fifo)
            c.fifo = None
