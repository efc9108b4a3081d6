"""The suite's one wait, and small process facts and helpers.

A test never sleeps a fixed time to let something happen: it polls the
condition it needs with wait_for, which gives up at a deadline (a slow
machine waits longer, a fast one not at all). What stays a fixed time is a
measurement window (CPU time over a second), never a wait."""

import os
import signal
import socket
import subprocess
import time


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc, timeout=15):
    """SIGTERM to a server's whole process group (it was started with
    start_new_session), SIGKILL if it lingers."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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


PF_KTHREAD = 0x00200000       # include/linux/sched.h: the flags field of /proc/PID/stat


def processes():
    """{(pid, start time)} of every process but kernel threads and zombies.
    A kernel thread is told by its flag, not by an empty command line: a
    process in the middle of execve(2) has none for a moment, after the
    close-on-exec pipe that tells its parent the exec worked has closed."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 of proc(5): state; flags is field 9, starttime 22.
        if fields[0] in (b"Z", b"X") or int(fields[6]) & PF_KTHREAD:
            continue
        found.add((int(pid), int(fields[19])))
    return found


def new_processes(before, grace=5.0):
    """Processes started during the suite and still running after ``grace``
    seconds (one that is on its way out gets the time to go): a daemon, a
    server or a container's process that a test left behind, whatever its
    name — the scan of labkit.course.leaks knows labkit's own only. Not the
    machine's: a process whose parents lead to one that was there at the
    start and is not an ancestor of this one (someone's shell, a service's
    job) is not the suite's; one left to init (pid 1) or to this process is."""
    deadline = time.monotonic() + grace
    while True:
        now = processes()
        left = sorted(pid for pid, _ in now - before if pid != os.getpid() and _the_suites(pid, now - before))
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    out = []
    for pid in left:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out.append(f"process {pid} started during the suite, still running: {argv[:200]}")
    return out


def _the_suites(pid, new):
    """Whether ``pid`` descends from this process, or from nobody but
    init, through processes that are all ``new``."""
    mine, newer = _ancestors(os.getpid()), {p for p, _ in new}
    while pid in newer:
        try:
            pid = ppid(pid)
        except (OSError, StopIteration):
            return False        # gone meanwhile: nothing left to report
    return pid in mine or pid == os.getpid()


def _ancestors(pid):
    found = set()
    while pid > 1:
        pid = ppid(pid)
        found.add(pid)
    return found
