"""A service's replicas ("tasks", as Swarm calls them): each one an ordinary
container, started with the command a student would type:

    labkit run -d --name web.1 --hostname web.1.3f2a1c --network labkit \\
        --network-alias tasks.web -m 32m IMAGE CMD...

and stopped with `labkit rm -f web.1`. The supervisor (supervisor.py) calls
these; they never wait long: a start is a process it polls, a health check
too, so that one slow replica never holds up the others.
"""

import os
import shutil
import subprocess

from labkit import api, home
from labkit.containers import load as load_container
from labkit.errors import NotFound
from labkit.services import store


def run_args(spec, slot, task):
    """`labkit run`'s arguments for a replica of ``spec``."""
    name = spec["name"]
    args = ["run", "-d", "--name", store.container(name, slot), "--hostname", f"{name}.{slot}.{task}",
            "--network", spec["network"], "--network-alias", f"tasks.{name}"]
    for flag, key in (("--memory", "memory"), ("--cpus", "cpus"), ("--pids-limit", "pids")):
        if spec.get(key):
            args += [flag, str(spec[key])]
    for item in spec["env"]:
        args += ["-e", item]
    return args + [spec["image"]] + list(spec["command"])


def start(spec, slot, task):
    """The `labkit run -d` of a replica, as a process to poll."""
    return subprocess.Popen(api.labkit_argv(*run_args(spec, slot, task)), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")


def state(cid):
    """The container's status and pid; None if it is gone (removed, collected)."""
    try:
        st = load_container(cid)
    except NotFound:
        return None
    return st


def address(network, cid):
    from labkit.networks import store as nets
    try:
        return next((e["ip"] for e in nets.endpoints(network) if e["owner"] == cid), None)
    except OSError:
        return None


def retire(spec, task, timeout=5):
    """Stop and remove the replica's container, keeping its output in the
    service's logs/ (the last HISTORY tasks of each slot)."""
    from labkit.runtime import lifecycle
    cid = task["container"]
    log = os.path.join(home.containers_dir(cid), "log")
    slot_prefix = f"{cid}."
    try:
        if state(cid) is not None:
            lifecycle.stop(cid, timeout)
        if os.path.exists(log):
            shutil.copyfile(log, os.path.join(store.log_dir(spec["name"]), f"{cid}.{task['task']}.log"))
        if state(cid) is not None:
            lifecycle.remove(cid, force=True)
    except NotFound:
        pass
    kept = sorted((e for e in os.listdir(store.log_dir(spec["name"])) if e.startswith(slot_prefix)),
                  key=lambda e: os.path.getmtime(os.path.join(store.log_dir(spec["name"]), e)))
    for old in kept[:-store.HISTORY]:
        os.unlink(os.path.join(store.log_dir(spec["name"]), old))


# What a health check runs inside: CMD under sh -c, given --health-timeout
# by timeout(1) in the container where the image has it. The limit is the
# command's own, as Docker's: on a slow machine (an emulated classroom VM) the
# `labkit exec` that enters the container may take seconds by itself, and a
# check charged for it fails on a healthy replica, which is then replaced.
# Without timeout(1) the supervisor's limit (timeout + EXEC_GRACE) applies.
_TIMED = 'if command -v timeout >/dev/null 2>&1; then exec timeout -s KILL "$1" sh -c "$2"; fi; exec sh -c "$2"'
EXEC_GRACE = 30.0


def check(cid, cmd, timeout):
    """A health check: CMD under sh -c inside the replica (`labkit exec`), as
    Docker's HEALTHCHECK CMD-SHELL, killed after ``timeout`` seconds of its own."""
    import math
    seconds = str(max(1, math.ceil(timeout)))
    return subprocess.Popen(api.labkit_argv("exec", cid, "--", "sh", "-c", _TIMED, "health", seconds, cmd),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd="/")


def probe(ip, port, timeout=0.3):
    """Without a health check, a replica that publishes a port is ready once
    that port accepts a connection (Kubernetes' tcpSocket readiness probe):
    else it would get connections before its program listens."""
    import socket
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def logs(name):
    """(task label, text) of every replica, the gone ones first."""
    out = []
    top = store.log_dir(name)
    for entry in sorted(os.listdir(top), key=lambda e: os.path.getmtime(os.path.join(top, e))) \
            if os.path.isdir(top) else ():
        with open(os.path.join(top, entry), errors="replace") as f:
            out.append((entry[:-len(".log")], f.read()))
    for slot, task in sorted(store.tasks(name)["slots"].items(), key=lambda kv: int(kv[0])):
        path = os.path.join(home.containers_dir(task["container"]), "log")
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                out.append((f"{task['container']}.{task['task']}", f.read()))
    return out
