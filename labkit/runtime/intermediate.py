"""The intermediate process: only where the init cannot be forked by the
monitor directly — a user namespace, namespaces joined by path, a time
namespace (stages/namespaces.one_fork says why).

It joins the namespaces given by path, creates the user namespace and waits
while the monitor writes its id maps (a process cannot grant itself ids),
becomes root there, unshares the rest, and forks the init: PID and time
namespaces apply only to children. Then it waits for the init and exits
with its status, which the monitor reaps — or, for OCI create, exits at
once, as runc's does, so that the init is the caller's. runc's equivalent
is the first child of its nsexec (runc:[1:CHILD]).
"""

import os

from labkit.linux import process, syscalls
from labkit.linux.process import EXIT_SETUP
from labkit.stages import namespaces as ns_stage
from labkit.startpath import signal
from labkit.runtime import init, sync
from labkit.runtime.config import MONITOR


def run(c, stages, parent, console, stdin_null):
    """Never returns."""
    code = EXIT_SETUP
    try:
        cfg = c.config
        init.leave_monitor(c, parent)
        ns_stage.join(cfg)
        if ns_stage.wants_user(cfg):
            ns_stage.unshare_user()
            c.sync.send(sync.USERNS)
            if not c.sync.expect(sync.MAPS_WRITTEN):
                os._exit(EXIT_SETUP)
            ns_stage.become_root()
        ns_stage.unshare_rest(cfg, pid_done=False)
        if not ns_stage.init_forks(cfg):   # no new PID namespace: this process is the init
            c.sync.send(sync.INIT_PID, os.getpid())
            init.run(c, stages, console, stdin_null, own_process=False)
        pid = syscalls.fork()
        if pid == 0:
            init.run(c, stages, console, stdin_null, own_process=True)
        c.sync.send(sync.INIT_PID, pid)
        # From now on the init alone holds the children's ends: its exec
        # closes the last one (EOF for the monitor).
        c.sync.close_child_side()
        if c.options.waiter != MONITOR:
            # Nothing of the runtime between the init and whoever waits for
            # it (RunOptions.waiter): it goes to the caller's subreaper now
            # (the reaper's: runtime/servers/reaper.py).
            code = 0
            return
        if stdin_null is not None:
            os.close(stdin_null)
        if console is not None:
            console.close()
        for sig in sync.FORWARDED:   # signals are for the init: the monitor sends them there
            signal.signal(sig, signal.SIG_IGN)
        _, status = os.waitpid(pid, 0)
        code = process.exit_code(status)
    except BaseException as e:
        c.sync.send_error(e)
    finally:
        os._exit(code)
