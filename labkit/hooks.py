"""OCI hooks: programs the runtime runs at fixed points of a container's life,
each with the container's state JSON on its stdin (runtime-spec, "POSIX-platform Hooks").

    prestart, createRuntime   create, on the host, after the namespaces exist
    createContainer           create, in the container's mount namespace, before pivot_root
    startContainer            start, in the container, just before the program's exec
    poststart                 start, on the host, after the program started
    poststop                  delete, on the host, after the container is gone

A failing hook of the first four stops the container (an error naming the
hook); a failing poststart or poststop hook is only reported, as the spec says.
"""

import sys

from .errors import LabkitError
from .status import OCI_VERSION

FATAL = ("prestart", "createRuntime", "createContainer", "startContainer")


def state(cfg, pid, status):
    """The state of the runtime spec (state-schema.json) for hooks."""
    return {"ociVersion": OCI_VERSION, "id": cfg.id, "status": status, "pid": pid,
            "bundle": cfg.bundle or "", "annotations": dict(cfg.annotations or {})}


def run(cfg, name, st):
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
            print(f"labkit-runtime: warning: {where} {problem}", file=sys.stderr)


def run_phase(cfg, names, pid, status):
    st = state(cfg, pid, status)
    for name in names:
        if (cfg.hooks or {}).get(name):
            run(cfg, name, st)
