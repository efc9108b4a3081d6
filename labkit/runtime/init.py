"""The container's init: the process that becomes the user's program.

It runs inside the new namespaces, as PID 1 of its PID namespace: every
stage's child() (hostname, lo, the mounts and pivot_root), once attached to
its cgroup every stage's attached() (the cgroup namespace, unless a cgroup
mount needed it earlier), then its terminal, then every stage's before_exec() (the wait
for `start`), then the exec tail: user, capabilities, rlimits, no_new_privs,
and execve (labkit/linux/process.py). What it tells the monitor on the way is
runtime/sync.py's protocol.

It is always a fresh, single-threaded process: forked from the monitor (a
fresh `labkit` process), never from a notebook's multithreaded kernel.
"""

import os

from labkit.linux import process, syscalls
from labkit.linux.process import EXIT_SETUP
from labkit.stages import namespaces as ns_stage
from labkit.startpath import signal
from labkit.runtime import sync
from labkit.runtime.config import MONITOR


def leave_monitor(c, parent):
    """The first steps of a child of the monitor (the init, or the
    intermediate process before it)."""
    # If the monitor dies (even by SIGKILL), so does the container; unless
    # another waits for the init (RunOptions.waiter).
    if c.options.waiter == MONITOR:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    # Did the monitor die before that? In a new PID namespace the parent is
    # invisible (getppid() is 0): there, an EOF instead of ATTACHED tells.
    if os.getppid() not in (parent, 0):
        os._exit(EXIT_SETUP)
    os.setsid()   # out of the terminal's process group: the monitor forwards signals
    for fd, saved in enumerate(c.stdio):   # OCI create: the caller's stdio
        os.dup2(saved, fd)
        os.close(saved)


def start(c, stages, parent, console, stdin_null):
    """The init forked by the monitor itself (one fork: no user namespace),
    already PID 1 of the PID namespace the monitor made. Never returns."""
    try:
        leave_monitor(c, parent)
        ns_stage.unshare_rest(c.config, pid_done=True)
        if c.network is not None:   # the monitor's network stage moves the veth in now
            c.sync.send(sync.NETNS)
    except BaseException as e:
        _fail(c, e)
    run(c, stages, console, stdin_null, own_process=False)


def run(c, stages, console, stdin_null, own_process):
    """Set up and exec; never returns. ``own_process``: forked by the
    intermediate process, so not yet tied to the monitor's lifetime."""
    code = EXIT_SETUP
    try:
        # Python's SIGINT handler would turn a forwarded Ctrl-C into a
        # traceback here; the default action is what the program gets.
        for sig in sync.FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        if own_process:
            if c.options.waiter == MONITOR:
                syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
            os.setsid()
        process.not_dumpable()
        # Nothing the monitor's caller held goes further than this (only
        # --preserve-fds ones): before any chdir, before the exec.
        process.close_fds(keep=_own_fds(c, console, stdin_null))
        if c.options.console_socket:   # the caller's socket, on the host: before the pivot
            import socket
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            console.connect(c.options.console_socket)
        if console is not None:
            # Imported now: after the stages' child() the root is the
            # container's, where no labkit is to import from.
            from labkit.runtime import tty  # noqa: F401
        for stage in stages:
            stage.child(c)
        c.sync.wait_attached()   # the limits hold before the program's first instruction
        for stage in stages:
            stage.attached(c)
        process.set_oom_score_adj(c.config.oom_score_adj)   # refused: `create` fails, not the start
        _stdio(console, stdin_null)
        for stage in stages:
            stage.before_exec(c)
        process.exec_tail(c.config, preserve_fds=c.options.preserve_fds, seccomp=c.seccomp)
    except process.ExecFailed as e:
        code = e.exit_code
        if c.options.no_monitor:   # after `start` nobody else is there to say it
            os.write(2, f"labkit-runtime: {e}\n".encode(errors="replace"))
        c.sync.send_error(e)
    except BaseException as e:
        _fail(c, e)
    finally:
        os._exit(code)


def _own_fds(c, console, stdin_null):
    """The fds the init itself needs until the exec, and the caller's
    --preserve-fds (3, 4, ...)."""
    own = {c.sync.up_w, c.sync.down_r, c.fifo, stdin_null,
           console.fileno() if console is not None else None}
    return own | set(range(3, 3 + c.options.preserve_fds))


def _stdio(console, stdin_null):
    """-t: a pty from the container's own devpts, its master sent to whoever
    shows it (the monitor, or the OCI caller's console socket). Otherwise,
    without -i, stdin reads /dev/null."""
    if console is not None:
        from labkit.runtime import tty
        master, slave = tty.open_pty()
        tty.send_master(console, master)
        console.close()
        tty.become_controlling(slave)
    elif stdin_null is not None:
        os.dup2(stdin_null, 0)


def _fail(c, error):
    """Tell the monitor why, and exit — only once attached: the monitor may
    be writing our pid to cgroup.procs, and must not find it gone (or reused)."""
    c.sync.send_error(error)
    try:
        c.sync.wait_attached()
    except BaseException:
        pass
    os._exit(EXIT_SETUP)
