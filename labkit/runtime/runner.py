"""The runner: runc's parent/child split, in Python.

    monitor (this process: `labkit run`, single-threaded)
      │  prepare stages (cgroup, overlay) ─ fork ─┐
      │                                           A: unshare(USER) → wait for the
      │  write uid/gid maps  ◄── "user" ────────  parent to write the id maps,
      │                                           then unshare(the rest), fork ─┐
      │  ◄──────────────────────── "pid N" ─────  A waits for B                 B: PID 1 of the new
      │  attach stages (cgroup.procs ← N)                                         PID namespace
      │  ── "go" ────────────────────────────────────────────────────────────►  cgroupns, hostname, lo,
      │  ◄── error line, or EOF when exec succeeds ───────────────────────────  pivot_root, exec
      │  wait; forward signals; teardown stages

Why a fork in the middle: unshare(CLONE_NEWPID) does not move the caller, only
the children it forks afterwards, so B is the one that becomes PID 1. Why the
user namespace first: it must own the other namespaces, or the container's
root could not mount /proc in its own PID namespace. Without a user namespace
(the usual case) A is not needed: the monitor unshares CLONE_NEWPID itself,
forks B directly and sets its own children's PID namespace back (_fork_init);
B unshares the rest. Either way B sets itself up while the monitor attaches
it to its cgroup, and waits for "go" only before what needs the cgroup. Why the parent writes the
id maps and joins the cgroup: a process cannot grant itself ids, and limits
must hold before the first instruction of the user's program.

Never call this in a fork of a multithreaded process (a Jupyter kernel): the
notebooks start `labkit run` as a fresh process (labkit/api.py).
"""

import errno
import os
# The C module: signal.py only adds enums, and importing enum costs ~3 ms.
import _signal as signal
import sys

from .. import namespaces, process, syscalls
from ..errors import LabkitError, SetupError
from ..process import EXIT_SETUP, exec_program, read_all
from . import container as ct
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2)
KILL_GRACE = 3        # seconds between a forwarded SIGINT/SIGTERM and SIGKILL


def stages_for(config):
    """The stages this container needs, in prepare order (teardown reverses)."""
    stages = []
    if config.resources:
        from ..stages.cgroups import CgroupsStage
        stages.append(CgroupsStage())
    if config.layers:
        from ..stages.unionfs import UnionFS
        stages.append(UnionFS())
    if config.lxcfs:
        from ..stages.lxcfs import LxcfsStage
        stages.append(LxcfsStage())
    from ..stages.chroot import RootStage
    from ..stages.namespaces import NamespaceStage
    stages += [NamespaceStage(), RootStage()]
    return [s for s in stages if s.wanted(config)]


def run(config):
    """Create and run a container; return its exit code (128+N for signal N)."""
    c = ct.Container(config)
    c.create()
    if config.exec_fifo:   # OCI create: `start` opens it for reading
        fifo = os.path.join(c.state_dir, "exec.fifo")
        os.mkfifo(fifo)
        # Writable by the container's root even when that is an unprivileged
        # host uid (a user namespace); mkfifo's mode is cut by the umask.
        os.chmod(fifo, 0o622)
    if config.detach:
        return _detach(c)
    return Monitor(c).run()


def _detach(c):
    """-d: a monitor process stays behind to wait for the container and clean
    up after it; this process prints the id once the command has started."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = EXIT_SETUP
        try:
            os.close(r)
            os.setsid()
            if c.config.exec_fifo:
                # OCI create: the container's process gets the caller's stdin,
                # stdout and stderr (runc's pass-through), the monitor a log.
                c.stdio = tuple(os.dup(fd) for fd in (0, 1, 2))
            null = os.open("/dev/null", os.O_RDWR)
            log = os.open(os.path.join(c.state_dir, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            code = Monitor(c, started=w).run()
        finally:
            os._exit(code)
    os.close(w)
    message = read_all(r).decode(errors="replace").strip()
    os.close(r)
    if message != "ok":
        os.waitpid(pid, 0)
        raise LabkitError(message or f"container {c.id} failed to start")
    return 0


def _read_line(fd):
    line = bytearray()
    while True:
        ch = os.read(fd, 1)
        if not ch or ch == b"\n":
            return line.decode(errors="replace") if (line or ch) else None
        line += ch


class Monitor:
    def __init__(self, c, started=None):
        self.c = c
        self.config = c.config
        self.stages = stages_for(c.config)
        self.started = started   # -d: the fd to report "ok" or an error to
        self.child_a = None
        self.killer_armed = False

    # ---- parent side -------------------------------------------------
    def run(self):
        prepared = []
        error = None
        code = EXIT_SETUP
        try:
            for stage in self.stages:
                prepared.append(stage)
                stage.prepare(self.c)
            code = self._start_and_wait()
        except LabkitError as e:
            error = e
        except OSError as e:
            error = LabkitError(str(e))
        finally:
            self._kill_container()
            for stage in reversed(prepared):
                try:
                    stage.teardown(self.c)
                except Exception as e:  # keep tearing down the others
                    print(f"labkit: teardown of {stage.name}: {e}", file=sys.stderr)
            self._finish(code)
        if error is not None:
            self._report(str(error))
            raise error
        return code

    def _report(self, message):
        if self.started is not None:
            try:
                os.write(self.started, message.encode() + b"\n")
                os.close(self.started)
            except OSError:
                pass
            self.started = None

    def _finish(self, code):
        self.c.exit_code = code
        if self.config.remove:
            ct.remove_tree(self.c.state_dir)
        else:
            self.c.save("stopped")

    def _start_and_wait(self):
        cfg = self.config
        self.fifo = os.open(os.path.join(self.c.state_dir, "exec.fifo"),
                            os.O_PATH | os.O_CLOEXEC) if cfg.exec_fifo else None
        r_sync, w_sync = os.pipe()    # A/B -> parent: "user", "pid N", "err ..."
        r_go, w_go = os.pipe()        # parent -> A, then B: one byte each
        r_err, w_err = os.pipe()      # B -> parent: error line; EOF once exec'd
        # OCI create: B says "R" once it is waiting on exec.fifo for `start`.
        r_ready, w_ready = os.pipe() if cfg.exec_fifo else (None, None)
        console = console_peer = None
        if cfg.tty and not cfg.console_socket:
            from . import tty
            console, console_peer = tty.console_socket()
        stdin_null = None if (cfg.interactive or cfg.tty) else os.open("/dev/null", os.O_RDONLY)
        parent = os.getpid()
        direct = _one_fork(cfg)
        pid = _fork_init(cfg.namespaces) if direct else os.fork()
        if pid == 0:
            # Only the monitor may hold these: -d's "started" pipe must reach
            # EOF when the monitor closes it, not when the container exits.
            for fd in (r_sync, w_go, r_err, self.started, r_ready):
                if fd is not None:
                    os.close(fd)
            if console is not None:
                console.close()
            self.w_ready = w_ready
            self._child_a(parent, w_sync, r_go, w_err, console_peer, stdin_null, direct)
        self.child_a = pid
        for fd in (w_sync, r_go, w_err, stdin_null, w_ready) + tuple(getattr(self.c, "stdio", ())):
            if fd is not None:
                os.close(fd)
        if console_peer is not None:
            console_peer.close()
        master = None
        try:
            # One fork: the child is the init. Two: A says which pid B got.
            self.c.pid = pid if direct else self._handshake(r_sync, w_go)
            # Attach first: the init sets itself up meanwhile (see _child_b).
            for stage in self.stages:
                stage.attach(self.c, self.c.pid)
            self._install_signal_forwarding()
            if cfg.hooks:
                # prestart and createRuntime: on the host, once the namespaces
                # exist and before the root is set up. They may ask `state`.
                self._created()
                from ..oci import hooks
                hooks.run_phase(cfg, ("prestart", "createRuntime"), self.c.pid, "creating")
            try:
                os.write(w_go, b"G")
            except BrokenPipeError:
                pass   # the init is gone already: r_err says why
            if not cfg.hooks:
                self._created()   # while the init finishes its setup
            if console is not None:
                master = tty.receive_master(console)
            if r_ready is not None:
                if os.read(r_ready, 1) == b"R":
                    self.c.save("created")
                    self._report("ok")   # `create` returns; B waits for `start`
            failure = read_all(r_err).decode(errors="replace").strip()
            if failure:
                code = self._wait()
                raise SetupError(failure) if code == EXIT_SETUP else _ExecFailed(failure, code)
            if ct.start_time(self.c.pid) is not None:   # not once it has exited already
                self.c.save("running")
            self._report("ok")
            if cfg.hooks.get("poststart") and not cfg.exec_fifo:
                from ..oci import hooks
                hooks.run_phase(cfg, ("poststart",), self.c.pid, "running")
            if master is not None:
                tty.proxy(master, stdin=cfg.interactive)
            return self._wait()
        except _ExecFailed as e:
            print(f"labkit: {e}", file=sys.stderr)
            self._report(str(e))
            return e.code
        finally:
            for fd in (r_sync, w_go, r_err, master, r_ready):
                if fd is not None:
                    os.close(fd)
            if console is not None:
                console.close()

    def _created(self):
        if self.config.pid_file:
            from .execute import _write_pid
            _write_pid(self.config.pid_file, self.c.pid)
        if not self.config.exec_fifo:
            self.c.save("created")

    def _handshake(self, r_sync, w_go):
        while True:
            line = _read_line(r_sync)
            if line is None:
                self._wait()
                raise SetupError("the container's init exited before it started")
            if line == "user":
                self._write_id_maps(self.child_a)
                os.write(w_go, b"M")
            elif line.startswith("pid "):
                return int(line[4:])
            elif line.startswith("err "):
                self._wait()
                raise SetupError(line[4:])

    def _write_id_maps(self, pid):
        """uid 0..size-1 inside = userns_base.. outside: root in the container
        is an unprivileged user on the host (user_namespaces(7))."""
        default = f"0 {self.config.userns_base} {self.config.userns_size}\n"
        for name, maps in (("uid_map", self.config.uid_mappings), ("gid_map", self.config.gid_mappings)):
            mapping = default if maps is None else "".join(
                f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(mapping)

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
        for sig in FORWARDED:
            signal.signal(sig, forward)

    def _sigkill(self):
        """SIGKILL the container's init; A then reaps it and exits, and the
        main flow reaps A. Before the init exists, A itself is the target."""
        pid = self.c.pid or self.child_a
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _kill_container(self):
        self._sigkill()
        if self.child_a:
            self._wait()

    def _wait(self):
        """Reap A (which exits with B's status); 128+N if killed by signal N."""
        if self.child_a is None:
            return self.c.exit_code
        _, status = os.waitpid(self.child_a, 0)
        self.child_a = None
        code = os.waitstatus_to_exitcode(status)
        self.c.exit_code = 128 - code if code < 0 else code
        if self.c.pid and "pid" not in self.config.namespaces:
            ct.kill_session(self.c.pid)   # with a PID namespace the kernel does this
        self.c.pid = None
        return self.c.exit_code

    # ---- child side: A, then B ---------------------------------------
    def _child_a(self, parent, w_sync, r_go, w_err, console, stdin_null, direct):
        """Runs in the first fork; never returns. ``direct``: the monitor made
        the PID namespace (_one_fork) and this process is the init: it
        unshares the rest and goes on as B; its errors go to w_err, which
        the monitor reads, as B's do."""
        code = EXIT_SETUP
        try:
            # If the monitor dies (even by SIGKILL), so does the container.
            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
            # Did the monitor die before that? In its own PID namespace the
            # init sees no parent (getppid() is 0): there, an EOF instead of
            # the monitor's "G" tells (c.await_attach).
            if os.getppid() != parent and not (direct and "pid" in self.config.namespaces):
                os._exit(EXIT_SETUP)
            os.setsid()   # out of the terminal's process group: the monitor forwards signals
            for fd, saved in enumerate(getattr(self.c, "stdio", ())):
                os.dup2(saved, fd)
                os.close(saved)
            ns = self.config.namespaces
            joined = self.config.ns_paths
            rest = namespaces.flags(ns - {"cgroup", "user"} - set(joined) - ({"pid"} if direct else set()))
            if joined:
                # Namespaces given by path are joined, user first (it grants
                # the rights to join the others), as setns(2) requires.
                for name in namespaces.JOIN_ORDER:
                    if name in joined:
                        fd = os.open(joined[name], os.O_RDONLY | os.O_CLOEXEC)
                        try:
                            syscalls.setns(fd, namespaces.FLAGS[name])
                        finally:
                            os.close(fd)
            if "user" in ns and "user" not in joined:
                syscalls.unshare(syscalls.CLONE_NEWUSER)
                os.write(w_sync, b"user\n")
                if os.read(r_go, 1) != b"M":
                    os._exit(EXIT_SETUP)
                os.setresgid(0, 0, 0)
                os.setgroups([])
                os.setresuid(0, 0, 0)
            syscalls.unshare(rest)
            if direct or ("pid" not in ns and "time" not in ns):
                if not direct:
                    os.write(w_sync, f"pid {os.getpid()}\n".encode())
                self._child_b(w_err, r_go, console, stdin_null, same_process=True)
            pid_b = os.fork()
            if pid_b == 0:
                os.close(w_sync)
                self._child_b(w_err, r_go, console, stdin_null, same_process=False)
            os.write(w_sync, f"pid {pid_b}\n".encode())
            for fd in (w_sync, r_go, w_err, stdin_null):
                if fd is not None:
                    os.close(fd)
            if console is not None:
                console.close()
            # A only waits now; signals are for B (the monitor sends them there).
            for sig in FORWARDED:
                signal.signal(sig, signal.SIG_IGN)
            _, status = os.waitpid(pid_b, 0)
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
        except BaseException as e:
            if direct:
                process.report(w_err, e)
            else:
                process.report(w_sync, f"err {e}\n")
            if direct:   # the monitor is attaching this very process: let it finish
                self.c.go_fd = r_go
                _await_quietly(self.c)
        finally:
            os._exit(code)

    def _child_b(self, w_err, r_go, console, stdin_null, same_process):
        """The container's init: set up inside the namespaces, then exec."""
        code = EXIT_SETUP
        try:
            # Python's SIGINT handler would turn a forwarded Ctrl-C into a
            # traceback here; the default action is what the program gets.
            for sig in FORWARDED:
                signal.signal(sig, signal.SIG_DFL)
            if not same_process:
                syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
                os.setsid()
            cfg = self.config
            # Meanwhile the monitor attaches the stages: our pid goes into
            # cgroup.procs, and moving a process between cgroups waits for an
            # RCU grace period (~10 ms here). So the setup goes on and waits
            # for the monitor's "G" only where it must (c.await_attach):
            # before what depends on our cgroup (a cgroup namespace or
            # mount) and before the exec. Hooks come first: the monitor runs
            # prestart and createRuntime before the root is set up.
            self.c.go_fd = r_go
            if cfg.hooks:
                self.c.await_attach()
            # exec.fifo was opened (O_PATH) by the monitor, before any user
            # namespace: the container's root may be an unprivileged uid that
            # cannot walk to the state directory. It is reopened for writing
            # after the pivot through /proc/self/fd (the host's path is gone then).
            fifo = self.fifo
            if cfg.console_socket:
                import socket
                console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                console.connect(cfg.console_socket)
            set_process = cfg.capabilities is not None or cfg.user or cfg.rlimits \
                or cfg.no_new_privileges or cfg.oom_score_adj is not None
            hook_state = None
            if cfg.hooks.get("createContainer") or cfg.hooks.get("startContainer"):
                from ..oci import hooks
                # Our pid as the host sees it: the host's /proc, before the pivot.
                hook_state = hooks.state(cfg, int(os.readlink("/proc/self")), "created")
                self.c.before_pivot = lambda: hooks.run(cfg, "createContainer", hook_state)
            for stage in self.stages:
                stage.child(self.c)
            self.c.await_attach()   # the limits hold before the program's first instruction
            if console is not None:
                from . import tty
                master, slave = tty.open_pty()
                tty.send_master(console, master)
                console.close()
                tty.become_controlling(slave)
            elif stdin_null is not None:
                os.dup2(stdin_null, 0)
            if fifo is not None:
                # OCI create is done: wait here, before exec, for `start`
                # (opening a FIFO for writing blocks until a reader opens it).
                # A non-blocking open first: ENXIO (no reader yet) means the
                # blocking one will work; anything else fails `create` itself.
                try:
                    os.close(os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_NONBLOCK))
                except OSError as e:
                    if e.errno != errno.ENXIO:
                        raise SetupError(f"exec.fifo: {e.strerror}: the container's process "
                                         "cannot wait for `start`") from None
                os.write(self.w_ready, b"R")
                os.close(self.w_ready)
                w = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)
                os.write(w, b"0")
                os.close(w)
                os.close(fifo)
            if hook_state is not None:
                hooks.run(cfg, "startContainer", hook_state)
            if set_process:
                process.apply(cfg)
            exec_program(cfg.args, cfg.env, w_err)
        except BaseException as e:
            process.report(w_err, e)
            # Exit only once attached: the monitor may be writing our pid to
            # cgroup.procs, and must not find it gone (or reused).
            _await_quietly(self.c)
        finally:
            os._exit(code)


def _await_quietly(c):
    try:
        c.await_attach()
    except BaseException:
        pass


def _one_fork(cfg):
    """Whether the monitor can fork the container's init itself. Not with a
    user namespace: it must own the others, so the child creates it first
    and the PID namespace after it. Not with namespaces joined by path, nor
    a time namespace: the first child joins or makes those."""
    ns = cfg.namespaces
    return "user" not in ns and "time" not in ns and not cfg.ns_paths


def _fork_init(ns):
    """fork(), the child being PID 1 of a new PID namespace when ``ns`` has
    "pid". unshare(CLONE_NEWPID) moves only the children forked afterwards:
    the monitor stays in its namespace, and right after the fork it sets its
    children's namespace back to its own (setns on /proc/self/ns/pid), so
    that hooks and helpers it starts later are not born in the container."""
    if "pid" not in ns:
        return os.fork()
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.unshare(syscalls.CLONE_NEWPID)
        try:
            pid = os.fork()
        except BaseException:
            syscalls.setns(own, syscalls.CLONE_NEWPID)
            raise
        if pid == 0:
            return 0
        syscalls.setns(own, syscalls.CLONE_NEWPID)
        return pid
    finally:
        os.close(own)


class _ExecFailed(LabkitError):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code
