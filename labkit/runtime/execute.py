"""`labkit exec`: run one more process in a running container.

What `docker exec` and `nsenter` do: open the container init's
/proc/PID/ns/* files, setns(2) into each, take its root directory, join its
cgroup, then fork (a PID namespace applies to children only) and exec.
"""

import os
# The C module: signal.py only adds enums, and importing enum costs ~3 ms.
import _signal as signal

from .. import namespaces, process, syscalls
from ..errors import Conflict, LabkitError
from ..process import EXIT_SETUP, exec_program, read_all
from . import container as ct


def execute(cid, args, tty=False, interactive=False, process=None, pid_file=None):
    """``process``: a function of the container's ContainerConfig returning
    the one to use (env, cwd, user, capabilities... of an OCI exec)."""
    state = ct.load(cid)
    if state["status"] != "running":
        raise Conflict(f"container '{cid}' is not running (status: {state['status']})",
                       f"start a new one with `labkit run`, or see `labkit ps -a`")
    config = ct.config_of(state)
    if process is not None:
        config = process(config)
    pid = state["pid"]
    master = slave = None
    if tty:
        from . import tty as ttymod
        master, slave = ttymod.open_pty()
    r_err, w_err = os.pipe()
    child = os.fork()
    if child == 0:
        _child(pid, state, config, args, slave, interactive or tty, w_err, pid_file)
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
    code = os.waitstatus_to_exitcode(status)
    if failure:
        raise _Failed(failure.decode(errors="replace").strip(), code)
    return 128 - code if code < 0 else code


class _Failed(LabkitError):
    def __init__(self, message, code):
        super().__init__(message)
        self.exit_code = code if code > 0 else EXIT_SETUP


def _child(pid, state, config, args, slave, keep_stdin, w_err, pid_file=None):
    code = EXIT_SETUP
    try:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        os.setsid()
        if state.get("cgroup"):   # the same limits as the container's init
            from .. import cgroups
            manager = cgroups.load(state["id"])
            if manager is not None:
                manager.add(os.getpid())
        namespaces.join(pid, config.namespaces)
        os.chdir(config.cwd)
        if "user" in config.namespaces:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        if "pid" in config.namespaces or "time" in config.namespaces:
            grandchild = os.fork()
            if grandchild and pid_file:
                _write_pid(pid_file, grandchild)
            if grandchild:
                os.close(w_err)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                    signal.signal(sig, lambda s, f, g=grandchild: os.kill(g, s))
                _, status = os.waitpid(grandchild, 0)
                c = os.waitstatus_to_exitcode(status)
                os._exit(128 - c if c < 0 else c)
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        elif pid_file:
            _write_pid(pid_file, os.getpid())
        if slave is not None:
            from . import tty as ttymod
            if "pid" in config.namespaces:
                os.setsid()
            ttymod.become_controlling(slave)
        elif not keep_stdin:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
        if config.capabilities is not None or config.user or config.rlimits \
                or config.no_new_privileges:
            process.apply(config)
        exec_program(args, config.env, w_err, where=f"container '{state['id']}'")
    except BaseException as e:
        process.report(w_err, e)
    finally:
        os._exit(code)


def _write_pid(path, pid):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)
