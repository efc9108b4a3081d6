"""The suite's one wait, and small process facts.

A test never sleeps a fixed time to let something happen: it polls the
condition it needs with wait_for, which gives up at a deadline (a slow
machine waits longer, a fast one not at all). What stays a fixed time is a
measurement window (CPU time over a second), never a wait."""

import os
import time


def ppid(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def wait_for(predicate, timeout=20):
    """True once ``predicate()`` is, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def in_pidns_of(pid):
    """The pids (as seen here) of the processes in the PID namespace of ``pid``."""
    ns = os.readlink(f"/proc/{pid}/ns/pid")
    found = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{p}/ns/pid") == ns:
                found.append(int(p))
        except OSError:
            continue
    return found


def cmdline(pid):
    """argv of ``pid`` joined by spaces, '' if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().rstrip(b"\0").replace(b"\0", b" ").decode()
    except OSError:
        return ""


def ignores(pid, sig):
    """Whether ``pid`` ignores signal ``sig`` (SigIgn of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        mask = int(next(line for line in f if line.startswith("SigIgn:")).split()[1], 16)
    return bool(mask & (1 << (int(sig) - 1)))
