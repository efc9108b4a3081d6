"""Containers on disk, as every layer may read them: the state.json under
$LABKIT_HOME/containers/<id>/, and whether the processes it names still run.

The runtime writes state.json (labkit/runtime/container.py); the stages (the
overlay's commit and gc), the leak scan and the OCI state only read it, so
the reading is here, below all of them. A pid is recorded with its start
time, so that a recycled pid is never mistaken for the container's.
"""

import os

from labkit import home
from labkit.errors import NotFound
from labkit.startpath import dumps


# A container's status, one name each, as state.json and `labkit ps` say it.
#
# The runtime spec's four (creating, created, running, stopped) and two that a
# container on disk can also be in:
#
#   creating  its directory exists, its init does not yet
#   created   its init is set up and waits (OCI create: for `start`)
#   running   its program runs
#   stopping  its program has exited; the monitor is tearing the stages down
#   stopped   it exited and is cleaned up; state kept until `labkit rm`
#   dead      its monitor was killed (SIGKILL, a reboot): `labkit gc` cleans up
#
# and paused (pause: its cgroup is frozen), which is read from the cgroup
# itself, never written.

# The runtime-spec version labkit implements: the ociVersion of the state
# JSON, of hooks' stdin and of the default config.json. Here, at the bottom
# of the layers, because the hooks (below the runtime) need it as well.
OCI_VERSION = "1.0.2"

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
STOPPING = "stopping"
STOPPED = "stopped"
DEAD = "dead"
PAUSED = "paused"

ACTIVE = (CREATED, RUNNING, STOPPING)    # a monitor still owns it


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


# The name (/proc/PID/comm) of the process that waits for detached
# containers: labkit/runtime/servers/reaper.py.
REAPER = "labkit-reaper"


def reapers():
    """The pids of the reapers running now."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == REAPER and start_time(pid) is not None:
                    found.append(int(pid))
        except OSError:
            continue
    return found


def alive(pid, started):
    return pid is not None and started is not None and start_time(pid) == started


def load(cid):
    """The state of container ``cid``, with ``status`` brought up to date."""
    import json
    path = os.path.join(home.containers_dir(cid), "state.json")
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        if os.path.isdir(home.containers_dir(cid)):
            return {"id": cid, "status": CREATING, "pid": None, "config": {}}
        raise NotFound(f"no such container '{cid}'", "`labkit ps -a` lists the containers") from None
    except ValueError:
        return {"id": cid, "status": DEAD, "pid": None, "config": {}}
    if state["status"] in (CREATED, RUNNING):
        if state.get("monitor", 0) is None:
            # runc's contract (OCI create): no monitor at all, the init's own
            # liveness is the status; its exit code went to its parent.
            if not alive(state.get("pid"), state.get("pid_start")):
                state["status"] = STOPPED
        elif not alive(state.get("monitor"), state.get("monitor_start")):
            state["status"] = DEAD   # its runner was killed: `labkit gc` cleans up
        elif not alive(state.get("pid"), state.get("pid_start")):
            state["status"] = STOPPING
    return state


def all_ids():
    base = home.containers_dir()
    if not os.path.isdir(base):
        return []
    return sorted(os.listdir(base))


def write_state(state_dir, state):
    """state.json, replaced whole (a reader never sees half of it). Written
    by the runtime (runtime/container.py) and `labkit-runtime start`."""
    home.write_atomic(os.path.join(state_dir, "state.json"), dumps(state))
