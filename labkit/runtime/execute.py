"""`labkit exec`: run one more process in a running container.

What `docker exec` and `nsenter` do: open the container init's
/proc/PID/ns/* files, setns(2) into each, take its root directory, join its
cgroup, then fork (a PID namespace applies to children only) and exec.
"""

import os

from labkit.linux import namespaces, process, syscalls
from labkit.errors import Conflict, LabkitError
from labkit.linux.process import EXIT_SETUP, read_all
from labkit.stages import namespaces as ns_stage
from labkit.stages.oci import write_pid_file
from labkit.stages.rootfs import enter_cwd
from labkit.startpath import signal
from labkit.containers import RUNNING
from labkit.runtime import container as ct


def execute(cid, args, tty=False, interactive=False, edit=None, pid_file=None, preserve_fds=0,
            detach=False, console_socket=None):
    """``edit``: a function of the container's ContainerConfig returning
    the one to use (env, cwd, user, capabilities... of an OCI exec);
    ``preserve_fds``: the caller's fds 3, 4, ... that the process gets too;
    ``detach``: runc's exec --detach — return once the program runs, leaving
    it to the caller (its subreaper reaps it), nothing of labkit's between;
    ``console_socket``: with ``tty``, the pty is made in the container's own
    devpts and its master sent to this unix socket (runc's --console-socket),
    whose owner shows it (conmon, containerd's shim)."""
    state, config = _running(cid, edit)
    pid = state["pid"]
    master = slave = None
    if tty and not console_socket:
        from labkit.runtime import tty as ttymod
        master, slave = ttymod.open_pty()
    # The container's seccomp filter, compiled here on the host: libseccomp is
    # out of reach once the child has joined the container's root.
    seccomp = None
    if config.seccomp:
        from labkit.linux.seccomp import Filter
        seccomp = Filter(config.seccomp)
    r_err, w_err = os.pipe()
    # The pid of the process inside, from the child that forks it, for
    # --pid-file: written here, on the host (the child is in the container's mounts).
    r_pid, w_pid = os.pipe() if pid_file and ns_stage.init_forks(config) else (None, None)
    # The signals this process forwards stay blocked from before the fork
    # until the forwarding is in place: one sent in between (a Ctrl-C, a
    # `kill` of this pid) is then forwarded, not the end of this process
    # with its child killed (PR_SET_PDEATHSIG). The child unblocks them
    # before its exec (process.exec_program).
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        child = syscalls.fork()
        if child == 0:
            _child(pid, state, config, args, slave, interactive or tty, w_err, w_pid, preserve_fds, seccomp,
                   detach, console_socket if tty else None)
        os.close(w_err)
        if slave is not None:
            os.close(slave)
        if pid_file:
            _pid_file(pid_file, child, r_pid, w_pid)
        if detach:
            return _detached(child, r_err, config)
        _forward_to(child)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    failure = read_all(r_err)
    os.close(r_err)
    if master is not None and not failure:
        from labkit.runtime import tty as ttymod
        ttymod.proxy(master, stdin=interactive)
    _, status = os.waitpid(child, 0)
    code = process.exit_code(status)
    if failure:
        raise _Failed(failure.decode(errors="replace").strip(), code)
    return code


def _running(cid, edit):
    """The running container's state and the configuration the process gets."""
    state = ct.load(cid)
    if state["status"] != RUNNING:
        raise Conflict(f"container '{cid}' is not running (status: {state['status']})",
                       f"start a new one with `labkit run`, or see `labkit ps -a`")
    config = ct.config_of(state)
    return state, (edit(config) if edit is not None else config)


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _forward_to(pid):
    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for sig in FORWARDED:
        signal.signal(sig, forward)


def _pid_file(path, child, r_pid, w_pid):
    inner = child
    if r_pid is not None:
        os.close(w_pid)
        inner = int(read_all(r_pid) or 0)
        os.close(r_pid)
    if inner:           # 0: the child failed before it forked; its error follows
        write_pid_file(path, inner)


def _detached(child, r_err, config):
    """EOF on the error pipe: the program was exec'd. With a PID namespace
    the forked child only waits to fork the process inside and exits: reap it."""
    failure = read_all(r_err)
    os.close(r_err)
    if failure or ns_stage.init_forks(config):
        _, status = os.waitpid(child, 0)
        if failure:
            raise _Failed(failure.decode(errors="replace").strip(), process.exit_code(status))
    return 0


class _Failed(LabkitError):
    def __init__(self, message, code):
        super().__init__(message)
        self.exit_code = code if 0 < code < 128 else EXIT_SETUP


def _child(pid, state, config, args, slave, keep_stdin, w_err, w_pid=None, preserve_fds=0,
           seccomp=None, detach=False, console_socket=None):
    code = EXIT_SETUP
    try:
        if not detach:   # it dies with this labkit process, unless it is the caller's (exec -d)
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        os.setsid()
        process.not_dumpable()   # while this host process is inside the namespaces
        process.close_fds(keep={w_err, w_pid, slave, *range(3, 3 + preserve_fds)})
        console = None
        if console_socket:      # a path on the host: connected before the container's mounts
            import socket
            from labkit.runtime import tty as ttymod   # before the container's root hides labkit's files
            console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            console.connect(console_socket)
        if state.get("cgroup"):   # the same limits as the container's init
            from labkit.linux import cgroups
            manager = cgroups.load(state["id"], path=config.cgroup_path)
            if manager is not None:
                manager.add(os.getpid())
        namespaces.join(pid, config.namespaces)
        enter_cwd(config.cwd)
        if "user" in config.namespaces:
            syscalls.setresgid(0, 0, 0)
            syscalls.setresuid(0, 0, 0)
        if ns_stage.init_forks(config):
            _fork_into(w_err, w_pid, detach)   # only the new process goes on
        if console is not None:
            master, slave = ttymod.open_pty()   # the container's devpts: its root is ours now
            ttymod.send_master(console, master)
            console.close()
        if slave is not None:
            from labkit.runtime import tty as ttymod
            if "pid" in config.namespaces:
                os.setsid()
            ttymod.become_controlling(slave)
        elif not keep_stdin:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
        process.exec_tail(config, args, where=f"container '{state['id']}'", preserve_fds=preserve_fds,
                          seccomp=seccomp)
    except process.ExecFailed as e:
        code = e.exit_code
        process.report(w_err, e)
    except BaseException as e:
        process.report(w_err, e)
    finally:
        os._exit(code)


def _fork_into(w_err, w_pid, detach=False):
    """PID and time namespaces apply to children only: fork, and wait in
    this process for the one that is inside, with its exit status (with
    ``detach``, exit at once: the process inside is the caller's)."""
    grandchild = syscalls.fork()
    if grandchild == 0:
        if w_pid is not None:
            os.close(w_pid)
        if not detach:
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        return
    if w_pid is not None:
        os.write(w_pid, str(grandchild).encode())
        os.close(w_pid)
    os.close(w_err)
    if detach:
        os._exit(0)
    _forward_to(grandchild)       # what was blocked since the first fork arrives now
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    _, status = os.waitpid(grandchild, 0)
    os._exit(process.exit_code(status))
