"""Services on disk: what is wanted, and what the supervisor saw.

    $LABKIT_HOME/services/.lock                 flock(2): the supervisor holds it
                                                for each pass of its loop, a
                                                command for each change it makes
    $LABKIT_HOME/services/supervisor.json       the supervisor's pid (supervisor.py)
    $LABKIT_HOME/services/supervisor.log        what it did, a line each
    $LABKIT_HOME/services/<name>/service.json   the spec: image, command,
                                                replicas, ports, health check...
                                                written by the commands only
    $LABKIT_HOME/services/<name>/tasks.json     the replicas as observed, and
                                                the events: written by the
                                                supervisor only
    $LABKIT_HOME/services/<name>/logs/          the output of replicas that are gone

Desired (service.json) and observed (tasks.json) are kept apart, as Swarm
and Kubernetes keep a spec and a status: the loop's job is to make the second
follow the first, and whoever kills the loop loses nothing (it reads both
again when it starts).
"""

import json
import os

from labkit import home
from labkit.errors import LabkitError, NotFound

MAX_REPLICAS = 50   # each replica is a process tree, a veth and an address of a /24
HISTORY = 3         # past tasks kept per slot, for `service ps` and `service logs`
EVENTS = 500        # events kept per service, for the timeline
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

# A replica's task state (observations.json; Swarm's task lifecycle, cut to
# what a supervisor of labkit's sees):
WAITING = "waiting"       # no container: its next start is due at next_start
STARTING = "starting"     # its container is being made; not yet in rotation
RUNNING = "running"       # its program runs; in rotation once ready
DRAINING = "draining"     # out of rotation, given DRAIN seconds to finish, then stopped
# A rolling update's state:
UPDATING = "updating"     # replicas of the old generation are being replaced
PAUSED = "paused"         # a new replica did not become ready: nothing more is replaced
COMPLETED = "completed"   # every replica is of the new generation


def root(name=""):
    return os.path.join(home.home(), "services", name)


def Lock():
    """Every change to a spec or its tasks holds it (the commands and the supervisor)."""
    return home.Lock(root())


def check_name(name):
    """A service's replicas are the containers NAME.1, NAME.2...: no dot in
    NAME, and room for the slot in a container name."""
    if not name or len(name) > 40 or not set(name) <= _NAME_CHARS or name[0] in "-_":
        raise LabkitError(f"bad service name {name!r}",
                          "use up to 40 letters, digits, '_' or '-', starting with a letter or digit")
    return name


def check_replicas(text):
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise LabkitError(f"--replicas {text}: not a number", "give a whole number, e.g. --replicas 3") from None
    if not 0 <= n <= MAX_REPLICAS:
        raise LabkitError(f"--replicas {n}: labkit runs 0 to {MAX_REPLICAS} replicas of a service",
                          f"each replica is a container with its own processes, veth and address; "
                          f"give at most {MAX_REPLICAS}")
    return n


def container(name, slot):
    return f"{name}.{slot}"


def names():
    if not os.path.isdir(root()):
        return []
    return sorted(n for n in os.listdir(root()) if os.path.isfile(os.path.join(root(n), "service.json")))


def _read(path):
    with open(path) as f:
        return json.load(f)


write_json = home.write_json


def load(name):
    check_name(name)
    try:
        return _read(os.path.join(root(name), "service.json"))
    except FileNotFoundError:
        raise NotFound(f"no such service '{name}'", "`labkit service ls` lists the services") from None


def save(spec):
    os.makedirs(os.path.join(root(spec["name"]), "logs"), exist_ok=True)
    write_json(os.path.join(root(spec["name"]), "service.json"), spec)


def tasks(name):
    """{"slots": {slot: task}, "events": [...], "update": ...} as the supervisor left it."""
    try:
        return _read(os.path.join(root(name), "tasks.json"))
    except (FileNotFoundError, ValueError):
        return {"slots": {}, "events": [], "update": None}


def save_tasks(name, data):
    data["events"] = data["events"][-EVENTS:]
    if os.path.isdir(root(name)):
        write_json(os.path.join(root(name), "tasks.json"), data)


def supervisor_file():
    return os.path.join(root(), "supervisor.json")


def supervisor_pid():
    """The supervisor's pid if it runs (supervisor.py), else None."""
    from labkit.containers import alive
    try:
        info = _read(supervisor_file())
    except (FileNotFoundError, ValueError):
        return None
    return info["pid"] if alive(info["pid"], info.get("start")) else None


def log_dir(name):
    return os.path.join(root(name), "logs")


def parse_duration(text, what):
    """docker's durations: 500ms, 2s, 1m30s, or a number of seconds."""
    import re
    value = str(text).strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?", value)
    if not value or parts is None:
        raise LabkitError(f"{what} {text}: not a duration", "give e.g. 500ms, 2s or 1m30s")
    h, m, s, ms = (float(p) if p else 0.0 for p in parts.groups())
    return h * 3600 + m * 60 + s + ms / 1000
