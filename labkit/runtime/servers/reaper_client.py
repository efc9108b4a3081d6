"""The reaper's client side: how `labkit run -d` hands its command to the
reaper (run), how the monitor hands it the init (adopt), and how the reaper
is started and recognised. The reaper itself, and why there is one, is
runtime/servers/reaper.py.
"""

import os
import sys

from labkit.containers import REAPER as NAME   # its /proc/PID/comm, what `ps -e` and `top` show
from labkit.runtime.servers.handoff import command, connect as _connect, import_path
from labkit.runtime.servers.handoff import recv as _recv, send as _send, send_fds

RUN = "run"                 # under $LABKIT_HOME: the sockets, their lock, the log
LOG = "reaper.log"
SPAWN_TIMEOUT = 10          # seconds for a new reaper to listen

# In a child of the reaper: (its pid, its start time), the monitor's new owner.
ADOPTER = None


def _home():
    return os.environ.get("LABKIT_HOME", "/var/lib/labkit")


def run_dir(home=None):
    return os.path.join(home or _home(), RUN)


def socket_path(home=None):
    """One reaper per $LABKIT_HOME and per network and mount namespace: its
    children make their mounts, links and rules where the command was typed
    (a test's own network namespace, `unshare -m`), as the command itself would."""
    net, mnt = (os.stat(f"/proc/self/ns/{ns}").st_ino for ns in ("net", "mnt"))
    return os.path.join(run_dir(home), f"reaper-{net}-{mnt}.sock")


def wanted():
    """Should this `labkit run -d` go through the reaper?"""
    return ADOPTER is None and os.environ.get("LABKIT_REAPER", "1") != "0"


def can_adopt(config, options):
    """Does nothing of this container need its monitor once the program runs?"""
    return ADOPTER is not None and options.detach and not (
        config.tty or config.lxcfs or config.hooks or options.exec_fifo or
        options.pid_file or options.console_socket or options.no_monitor)


def _error(message, hint):
    from labkit.errors import LabkitError
    return LabkitError(message, hint)


# ---- the client side: `labkit run -d` and the monitor ----------------------

def _reaper(home=None):
    """A connection to this $LABKIT_HOME's reaper, started if none runs."""
    home = home or _home()
    path = socket_path(home)
    s = _connect(path)
    if s is not None:
        return s
    from labkit.home import Lock
    # One starter at a time; a reaper that is leaving holds the lock too.
    with Lock(run_dir(home)):
        s = _connect(path)
        if s is None:
            s = _spawn(home, path)
    return s


def _spawn(home, path):
    import subprocess
    import time
    log = os.open(os.path.join(run_dir(home), LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    env = dict(os.environ, LABKIT_REAPER_PATH=os.pathsep.join(import_path()))
    try:
        # The subreaper flag is set in the child before the exec, which keeps
        # it: the reaper itself then needs no ctypes (a megabyte of memory).
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", BOOT, path],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True, preexec_fn=_become_subreaper)
    finally:
        os.close(log)
    deadline = time.monotonic() + SPAWN_TIMEOUT
    while time.monotonic() < deadline:
        s = _connect(path)
        if s is not None:
            # Not our child to wait for: it outlives this command. Popen's
            # bookkeeping would reap it otherwise.
            proc.returncode = 0
            return s
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    raise _error(f"the reaper did not start (see {os.path.join(run_dir(home), LOG)})",
                 "LABKIT_REAPER=0 runs one monitor per detached container instead")


def run(entry, argv):
    """``entry``(ARGV) in a child of the reaper — entry is "module:function",
    a command line's main (the caller's: the runtime knows no frontend) —
    with this process's stdin, stdout, stderr, environment and working
    directory; its exit code."""
    request = command(entry, argv)
    for attempt in (1, 2):
        s = _reaper()
        try:
            send_fds(s, request, (0, 1, 2))
            reply = _recv(s)
            if reply is None:
                # A reaper that was leaving as we connected: it never
                # started the command. Once more, with a new one.
                continue
            reply = _recv(s)
            if reply is None or reply[0] != "exit":
                raise _error("the reaper went away while the command ran",
                             f"see {os.path.join(run_dir(), LOG)}; `labkit ps -a` shows what was started")
            return reply[1]
        finally:
            s.close()
    raise _error("the reaper closed every connection", f"see {os.path.join(run_dir(), LOG)}")


def adopt(cid, pid):
    """From the monitor: the reaper now waits for ``pid``, container ``cid``'s
    init (or its process that exits with the init's status). True once the
    reaper has taken it."""
    s = _connect(socket_path())
    if s is None:
        return False
    try:
        _send(s, ("adopt", cid, pid))
        return _recv(s) == ("adopted",)
    except OSError:
        return False
    finally:
        s.close()


def is_reaper(pid):
    """Is ``pid`` a reaper (and not one of its children)?"""
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() != NAME:
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return BOOT.encode() in f.read().split(b"\0")
    except OSError:
        return False


def _become_subreaper():
    from labkit.linux import syscalls
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)


# python -I -S -c BOOT SOCKET, spawned by the first `labkit run -d` with its
# sys.path in LABKIT_REAPER_PATH: this module comes from its compiled .pyc
# (a script's source would be compiled anew, half a megabyte more to keep).
BOOT = ("import os, sys; sys.path[:] = os.environ.pop('LABKIT_REAPER_PATH').split(os.pathsep); "
        "from labkit.runtime.servers.reaper import main; main()")
