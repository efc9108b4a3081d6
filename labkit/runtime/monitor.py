"""The monitor: the parent side of a container (the `labkit run` process,
or its detached copy with -d), as runc's process_linux.go. A detached
container's monitor leaves once the program runs, handing it to the reaper
(runtime/servers/reaper.py), which waits for every detached container at once.

It prepares the stages, forks the init (through the intermediate process
where a user namespace needs one), answers the protocol of runtime/sync.py
(id maps, attach, ATTACHED), then waits for the program, forwards signals to
it, and tears the stages down whatever happens. Single-threaded, always a
fresh process: never call it in a fork of a multithreaded one (a Jupyter
kernel); the notebooks start `labkit run` (labkit/api.py).
"""

import os
import sys

from labkit.linux import process, syscalls
from labkit.errors import LabkitError, SetupError
from labkit.linux.process import EXIT_SETUP, read_all
from labkit.stages import namespaces as ns_stage
from labkit.startpath import remove_tree, resume_gc, signal
from labkit.containers import CREATED, RUNNING, STOPPED
from labkit.runtime import container as ct
from labkit.runtime import init, sync

KILL_GRACE = 3        # seconds between a forwarded SIGINT/SIGTERM and SIGKILL


def detach(c, stages):
    """-d: a monitor process stays behind to wait for the container and clean
    up after it; this process returns once the program has started (or OCI
    create is done), or raises why it did not."""
    r, w = os.pipe()
    pid = syscalls.fork()
    if pid == 0:
        code = EXIT_SETUP
        try:
            os.close(r)
            os.setsid()
            if c.options.exec_fifo:
                # OCI create: the container's process gets the caller's stdin,
                # stdout and stderr (runc's pass-through), the monitor a log.
                c.stdio = tuple(os.dup(fd) for fd in (0, 1, 2))
            null = os.open("/dev/null", os.O_RDWR)
            log = os.open(os.path.join(c.state_dir, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            for fd, target in ((null, 0), (log, 1), (log, 2)):
                os.dup2(fd, target)
            code = Monitor(c, stages, started=w).run()
        finally:
            os._exit(code)
    os.close(w)
    message = read_all(r).decode(errors="replace").strip()
    os.close(r)
    if message != "ok":
        os.waitpid(pid, 0)
        raise LabkitError(message or f"container {c.id} failed to start")
    return 0


class Monitor:
    def __init__(self, c, stages, started=None):
        self.c = c
        self.stages = stages
        self.started = started   # -d: the fd to report "ok" or an error to
        self.child = None        # the monitor's own child: the init, or the intermediate
        self.killer_armed = False
        self.left_running = False  # OCI create without a monitor: the container outlives this process

    def run(self):
        """Prepare, start and wait; tear down on every way out. Returns the
        program's exit code (128+N if signal N killed it)."""
        prepared = []
        error = None
        code = EXIT_SETUP
        try:
            for stage in self.stages:
                prepared.append(stage)
                stage.prepare(self.c)
            code = self._start()
        except LabkitError as e:
            error = e
        except OSError as e:
            error = LabkitError(str(e))
        finally:
            if not self.left_running:
                self._kill_container()
                self._teardown(prepared)
                self._finish(code)
        if error is not None:
            self._report(str(error))
            raise error
        return code

    def _teardown(self, prepared):
        for stage in reversed(prepared):
            try:
                stage.teardown(self.c)
            except Exception as e:  # keep tearing down the others
                print(f"labkit: teardown of {stage.name}: {e}", file=sys.stderr)

    def _report(self, message):
        """-d: tell the waiting caller, once."""
        if self.started is not None:
            try:
                os.write(self.started, message.encode() + b"\n")
                os.close(self.started)
            except OSError:
                pass
            self.started = None

    def _finish(self, code):
        self.c.exit_code = code
        if self.c.options.remove:
            remove_tree(self.c.state_dir)
        else:
            self.c.save(STOPPED)

    # ---- start -------------------------------------------------------
    def _start(self):
        c, cfg = self.c, self.c.config
        c.sync = sync.Channel()
        console = peer = None
        if cfg.tty and not c.options.console_socket:
            from labkit.runtime import tty
            console, peer = tty.console_socket()
        stdin_null = None if (cfg.interactive or cfg.tty) else os.open("/dev/null", os.O_RDONLY)
        self._fork(peer, stdin_null, console)
        for fd in (stdin_null, *c.stdio):
            if fd is not None:
                os.close(fd)
        c.stdio = ()
        if peer is not None:
            peer.close()
        try:
            return self._follow(console)
        except _ExecFailed as e:
            print(f"labkit: {e}", file=sys.stderr)
            self._report(str(e))
            return e.code
        finally:
            c.sync.close()
            if console is not None:
                console.close()

    def _fork(self, peer, stdin_null, console):
        """The monitor's one child: the init itself, or the intermediate."""
        c = self.c
        parent = os.getpid()
        direct = ns_stage.one_fork(c.config)
        pid = ns_stage.fork_init(c.config) if direct else syscalls.fork()
        if pid == 0:
            # Only the monitor may hold these: -d's "started" pipe must reach
            # EOF when the monitor closes it, not when the container exits.
            c.sync.child_side()
            if self.started is not None:
                os.close(self.started)
            if console is not None:
                console.close()
            if direct:
                init.start(c, self.stages, parent, peer, stdin_null)
            from labkit.runtime import intermediate
            intermediate.run(c, self.stages, parent, peer, stdin_null)
        self.child = pid
        c.sync.monitor_side()
        c.pid = pid if direct else None

    def _follow(self, console):
        """Everything after the fork, in protocol order (runtime/sync.py)."""
        c = self.c
        if c.pid is None:
            c.pid = self._handshake()
        # Attach first: the init sets itself up meanwhile, and waits for
        # ATTACHED only before what needs its cgroup.
        for stage in self.stages:
            stage.attach(c, c.pid)
        self._install_signal_forwarding()
        c.sync.tell(sync.ATTACHED)
        # No "created" save here: without OCI create (which saves it on
        # AWAITING_START) or hooks (the lifecycle stage saves it for them)
        # nothing can look at it before "running" a few ms later, and each
        # save is a write and a rename on the start path.
        master = None
        try:
            if console is not None:
                from labkit.runtime import tty
                master = tty.receive_master(console)
            self._until_exec()
            if self.left_running:
                return 0
            if c.options.reaped:
                self._hand_over()
                self._running(save=False)
                return 0
            self._running()
            if master is not None:
                tty.proxy(master, stdin=c.config.interactive)
            return self._wait()
        finally:
            if master is not None:
                os.close(master)

    def _handshake(self):
        """With an intermediate process: its user namespace's id maps, then
        the pid of the init it forked."""
        while True:
            name, arg = self.c.sync.recv()
            if name == sync.USERNS:
                self._write_id_maps(self.child)
                self.c.sync.tell(sync.MAPS_WRITTEN)
            elif name == sync.INIT_PID:
                self.c.sync.netns_ready = True   # forked into its namespaces
                return int(arg)
            else:
                self._wait()
                raise SetupError(arg if name == sync.ERROR else
                                 "the container's init exited before it started")

    def _until_exec(self):
        """Messages from the init until EOF: its exec closed its end."""
        while True:
            name, arg = self.c.sync.recv()
            if name is None:
                return
            if name == sync.AWAITING_START:
                if self.c.options.no_monitor:
                    self._leave()
                    return
                self.c.save(CREATED)
                self._report("ok")   # `create` returns; the init waits for `start`
                continue
            code = self._wait()
            failure = arg if name == sync.ERROR else f"unexpected message from the init: {name}"
            raise SetupError(failure) if code == EXIT_SETUP else _ExecFailed(failure, code)

    def _leave(self):
        """OCI create is done and no monitor stays: the state says so (no
        monitor pid: status comes from the init's own liveness), the
        intermediate, if any, has exited and is reaped, and this process
        returns leaving the stages up for `delete`."""
        if self.child != self.c.pid:
            os.waitpid(self.child, 0)
        self.child = None
        self.c.save(CREATED, monitor=None, monitor_start=None)
        self.left_running = True

    def _hand_over(self):
        """-d under the reaper (runtime/servers/reaper.py): the state names the reaper
        as the container's monitor, the reaper is told to wait for the init
        (which its exit, or the intermediate's, made the reaper's child), and
        this process leaves. A reaper that is gone (killed) takes nothing: the
        container is then dead, as with a killed monitor, and gc's."""
        from labkit.runtime.servers import reaper_client as reaper
        if self.child != self.c.pid:
            os.waitpid(self.child, 0)     # the intermediate: it left once the init was forked
        self.child = None
        self.left_running = True
        owner, start = reaper.ADOPTER
        self.c.save(RUNNING, monitor=owner, monitor_start=start, reaper=True, remove=self.c.options.remove)
        if not reaper.adopt(self.c.id, self.c.pid):
            print(f"labkit: the reaper {owner} took no container {self.c.id}: `labkit gc` removes it",
                  file=sys.stderr)

    def _running(self, save=True):
        if save and ct.start_time(self.c.pid) is not None:   # not once it has exited already
            self.c.save(RUNNING)
        if self.started is not None:
            # -d: the caller is told and gone; this process may now live as
            # long as the container, so it collects its garbage again.
            self._report("ok")
            resume_gc()
        for stage in self.stages:
            stage.started(self.c)

    def _write_id_maps(self, pid):
        """uid 0..size-1 inside = userns_base.. outside: root in the container
        is an unprivileged user on the host (user_namespaces(7))."""
        for name in ("uid", "gid"):
            with open(f"/proc/{pid}/{name}_map", "w") as f:
                f.write(self.c.config.id_map(name))

    # ---- signals and the end -----------------------------------------
    def _install_signal_forwarding(self):
        def forward(signum, frame):
            pid = self.c.pid
            if pid:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    return
            # A PID 1 ignores signals it has no handler for; so does a shell.
            # After a grace period an interrupt or a stop becomes SIGKILL.
            if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) and not self.killer_armed:
                self.killer_armed = True
                signal.signal(signal.SIGALRM, lambda s, f: self._sigkill())
                signal.alarm(KILL_GRACE)
        for sig in sync.FORWARDED:
            signal.signal(sig, forward)

    def _sigkill(self):
        """SIGKILL the container's init; the intermediate (if any) then reaps
        it and exits, and the main flow reaps that. Before the init exists,
        the monitor's own child is the target."""
        pid = self.c.pid or self.child
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _kill_container(self):
        self._sigkill()
        if self.child:
            self._wait()

    def _wait(self):
        """Reap the monitor's child (the intermediate exits with the init's status)."""
        if self.child is None:
            return self.c.exit_code
        _, status = os.waitpid(self.child, 0)
        self.child = None
        self.c.exit_code = process.exit_code(status)
        if self.c.pid and "pid" not in self.c.config.namespaces:
            ct.kill_session(self.c.pid)   # with a PID namespace the kernel does this
        self.c.pid = None
        return self.c.exit_code


class _ExecFailed(LabkitError):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code
