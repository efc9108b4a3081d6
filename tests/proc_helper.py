"""Small waits and process facts shared by the tests of long-lived processes
(the reaper, the fork server)."""

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
