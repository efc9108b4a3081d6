"""`labkit exec`: run one more process in a running container.

What `docker exec` and `nsenter` do: open the container init's
/proc/PID/ns/* files, setns(2) into each, take its root directory, join its
cgroup, then fork (a PID namespace applies to children only) and exec.
"""

import os

from .. import namespaces, process, syscalls
from ..errors import Conflict, LabkitError
from ..process import EXIT_SETUP, read_all
from ..stages import namespaces as ns_stage
from ..stages.lifecycle import write_pid_file
from ..stages.rootfs import enter_cwd
from ..startpath import signal
from ..status import RUNNING
from . import container as ct


def execute(cid, args, tty=False, interactive=False, edit=None, pid_file=None, preserve_fds=0):
    """``edit``: a function of the container's ContainerConfig returning
    the one to use (env, cwd, user, capabilities... of an OCI exec);
    ``preserve_fds``: the caller's fds 3, 4, ... that the process gets too."""
    state = ct.load(cid)
    if state["status"] != RUNNING:
        raise Conflict(f"container '{cid}' is not running (status: {state['status']})",
                       f"start a new one with `labkit run`, or see `labkit ps -a`")
    config = ct.config_of(state)
    if edit is not None:
        config = edit(config)
    pid = state["pid"]
    master = slave = None
    if tty:
        from . import tty as ttymod
        master, slave = ttymod.open_pty()
    # The container's seccomp filter, compiled here on the host: libseccomp is
    # out of reach once the child has joined the container's root.
    seccomp = None
    if config.seccomp:
        from ..seccomp import Filter
        seccomp = Filter(config.seccomp)
    r_err, w_err = os.pipe()
    child = syscalls.fork()
    if child == 0:
        _child(pid, state, config, args, slave, interactive or tty, w_err, pid_file, preserve_fds, seccomp)
    os.close(w_err)
    if slave is not None:
        os.close(slave)

    def forward(signum, frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, forward)
    failure = read_all(r_err)
    os.close(r_err)
    if master is not None and not failure:
        from . import tty as ttymod
        ttymod.proxy(master, stdin=interactive)
    _, status = os.waitpid(child, 0)
    code = process.exit_code(status)
    if failure:
        raise _Failed(failure.decode(errors="replace").strip(), code)
    return code


class _Failed(LabkitError):
    def __init__(self, message, code):
        super().__init__(message)
        self.exit_code = code if 0 < code < 128 else EXIT_SETUP


def _child(pid, state, config, args, slave, keep_stdin, w_err, pid_file=None, preserve_fds=0,
           seccomp=None):
    code = EXIT_SETUP
    try:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        os.setsid()
        process.not_dumpable()   # while this host process is inside the namespaces
        process.close_fds(keep={w_err, slave, *range(3, 3 + preserve_fds)})
        if state.get("cgroup"):   # the same limits as the container's init
            from .. import cgroups
            manager = cgroups.load(state["id"])
            if manager is not None:
                manager.add(os.getpid())
        namespaces.join(pid, config.namespaces)
        enter_cwd(config.cwd)
        if "user" in config.namespaces:
            syscalls.setresgid(0, 0, 0)
            syscalls.setresuid(0, 0, 0)
        if ns_stage.init_forks(config):
            _fork_into(w_err, pid_file)   # only the new process goes on
        elif pid_file:
            write_pid_file(pid_file, os.getpid())
        if slave is not None:
            from . import tty as ttymod
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


def _fork_into(w_err, pid_file):
    """PID and time namespaces apply to children only: fork, and wait in
    this process for the one that is inside, with its exit status."""
    grandchild = syscalls.fork()
    if grandchild == 0:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        return
    if pid_file:
        write_pid_file(pid_file, grandchild)
    os.close(w_err)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda s, f: os.kill(grandchild, s))
    _, status = os.waitpid(grandchild, 0)
    os._exit(process.exit_code(status))
