"""The runtime spec's operations on a container, and its state JSON.

    create  everything is set up; the container's process waits, before the
            exec of the user's program, on <state dir>/exec.fifo
    start   open exec.fifo for reading: the process goes on and execs
    state   {ociVersion, id, status, pid, bundle, annotations}
    kill    a signal to the container's process
    delete  remove what create made (state dir, cgroup, mounts); poststop hooks

Status (creating, created, running, stopped) is read from the facts, as runc
does, not only from what the monitor last wrote: the process is alive and
exec.fifo exists -> created; alive, no fifo -> running; gone -> stopped.
"""

import os

from labkit import home
from labkit.errors import Conflict, LabkitError, NotFound
from labkit.runtime import container as ct
from labkit.containers import ACTIVE, CREATED, CREATING, OCI_VERSION, PAUSED, RUNNING, STOPPED

FIFO = "exec.fifo"


def _fifo(cid):
    return os.path.join(home.containers_dir(cid), FIFO)


def load(cid):
    """(labkit state dict, OCI status) of an existing container."""
    ct.check_id(cid)
    try:
        st = ct.load(cid)
    except NotFound:
        raise NotFound(f"container {cid} does not exist", "`labkit-runtime list` shows the containers") from None
    status = st["status"]
    if status == CREATING:
        return st, CREATING
    if status in ACTIVE and ct.alive(st.get("pid"), st.get("pid_start")):
        if os.path.exists(_fifo(cid)):
            return st, CREATED
        return st, PAUSED if _frozen(st) else RUNNING
    return st, STOPPED


def manager(st):
    """The container's cgroup manager, or None (no linux.resources, no cgroup)."""
    if not st.get("cgroup"):
        return None
    from labkit.linux import cgroups
    return cgroups.load(st["id"], path=(st.get("config") or {}).get("cgroup_path"),
                        made=st.get("cgroup_made") or ())


def _frozen(st):
    m = manager(st)
    return m is not None and m.frozen()


def _cgroup_of(cid, verb):
    st, status = load(cid)
    m = manager(st)
    if m is None:
        raise LabkitError(f"container {cid} has no cgroup to {verb}",
                          "give config.json linux.resources (or a cgroupsPath) for one")
    return st, status, m


def pause(cid):
    st, status, m = _cgroup_of(cid, "pause")
    if status != RUNNING:
        raise Conflict(f"container not running: {cid} is {status}", "only a running container can be paused")
    m.freeze(True)


def resume(cid):
    st, status, m = _cgroup_of(cid, "resume")
    if status != PAUSED:
        raise Conflict(f"container not paused: {cid} is {status}", "`labkit-runtime pause` it first")
    m.freeze(False)


def update(cid, resources):
    """runc update: new limits (config.json's linux.resources shape) on a live container."""
    from labkit.oci import convert
    st, status, m = _cgroup_of(cid, "update")
    if status not in (CREATED, RUNNING, PAUSED):
        raise Conflict(f"container not running: {cid} is {status}", "nothing to update")
    m.update(convert.resources(resources))


def processes(cid):
    """The pids of the container's processes, as the host sees them: its
    cgroup's, or (with no cgroup) those in its init's PID namespace."""
    st, status = load(cid)
    if status in (STOPPED, CREATING):
        return []
    m = manager(st)
    if m is not None:
        return m.pids()
    try:
        want = os.readlink(f"/proc/{st['pid']}/ns/pid")
    except OSError:
        return []
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/pid") == want:
                    found.append(int(name))
            except OSError:
                pass
    return sorted(found)


def oci_state(cid):
    st, status = load(cid)
    cfg = st.get("config") or {}
    return {"ociVersion": OCI_VERSION, "id": cid, "status": status,
            "pid": st.get("pid") if status in (CREATED, RUNNING) else 0,
            "bundle": cfg.get("bundle") or "", "annotations": cfg.get("annotations") or {}}


def config(bundle, cid):
    """Load, validate and convert <bundle>/config.json for container ``cid``."""
    from labkit.oci import convert, spec, validate
    ct.check_id(cid)
    if os.path.isdir(home.containers_dir(cid)):
        raise Conflict(f"container with id exists: {cid}", f"delete it first: labkit-runtime delete {cid}")
    raw, path = spec.read(bundle)
    cfg = validate.load_checked(raw, path)
    validate.check_meaning(cfg, bundle, cid)
    return convert.to_config(cfg, bundle, cid)


def options(pid_file=None, console_socket=None, no_pivot=False, **more):
    """runc's per-call flags as RunOptions, paths made absolute (the monitor
    changes directory; the caller's relative paths must still hold)."""
    from labkit.runtime.config import RunOptions
    return RunOptions(pid_file=os.path.abspath(pid_file) if pid_file else None,
                      console_socket=os.path.abspath(console_socket) if console_socket else None,
                      no_pivot=no_pivot, **more)


def check_terminal(c, opts):
    if c.tty and not opts.console_socket and (opts.detach or opts.no_monitor):
        raise LabkitError("cannot allocate tty if labkit-runtime will detach without setting console socket",
                          "give --console-socket PATH, or set process.terminal to false")
    if opts.console_socket and not c.tty:
        raise LabkitError("--console-socket given but process.terminal is false",
                          "set process.terminal to true in config.json, or drop --console-socket")


def create(bundle, cid, pid_file=None, console_socket=None, no_pivot=False, preserve_fds=0, edit=None):
    """``edit``: a function that may change the converted config (the
    caller's environment: LISTEN_FDS)."""
    from labkit.runtime import runner
    c = config(bundle, cid)
    if edit is not None:
        edit(c)
    # runc's contract: this process sets the container up and exits once the
    # init waits on exec.fifo; nothing of labkit's stays (RunOptions.no_monitor).
    opts = options(pid_file, console_socket, no_pivot, exec_fifo=True, no_monitor=True,
                   preserve_fds=preserve_fds)
    check_terminal(c, opts)
    try:
        runner.run(c, opts)
    except BaseException:
        # A failed create leaves nothing behind (the monitor has torn its stages down).
        from labkit.runtime import lifecycle
        if os.path.isdir(home.containers_dir(cid)):
            lifecycle.collect(cid)
        raise
    return c


def start(cid):
    st, status = load(cid)
    if status != CREATED:
        what = "has stopped" if status == STOPPED else f"is {status}"
        raise Conflict(f"cannot start a container that {what}: {cid}",
                       "only a created container can be started (labkit-runtime create)")
    fd = os.open(_fifo(cid), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _await_byte(fd, st)
    finally:
        os.close(fd)
    os.unlink(_fifo(cid))
    if st.get("monitor") is None:      # no monitor to write it: the state says running now
        _save_status(cid, st, RUNNING)
    cfg = ct.config_of(st)
    if cfg.hooks.get("poststart"):
        from labkit.stages.oci import run_hook_phases
        run_hook_phases(cfg, ("poststart",), st["pid"], RUNNING)


def _save_status(cid, st, status):
    ct.write_state(home.containers_dir(cid), dict(st, status=status))


def _await_byte(fd, st):
    """Opening the fifo for reading released the init's open(O_WRONLY); it
    writes one byte and execs. Wait for that byte while the init lives."""
    import select
    while True:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                if os.read(fd, 1):
                    return
            except BlockingIOError:
                continue
        if not ct.alive(st.get("pid"), st.get("pid_start")):
            raise Conflict(f"container {st['id']} exited before it was started", "see its log; delete it")


def parse_signal(text):
    """KILL, SIGKILL, kill or 9 -> 9."""
    # Imported here: signal imports enum, and `run` (the timed path) never
    # parses a signal name.
    import signal
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    signals = {s.name: s.value for s in signal.Signals}
    if name not in signals:
        raise LabkitError(f"unknown signal {text!r}", "e.g. TERM, KILL, SIGHUP, 9")
    return signals[name]


def kill(cid, sig="SIGTERM", all_processes=False):
    """The signal to the container's init, or (``all_processes``, runc's
    --all) to every process of the container."""
    signum = parse_signal(sig)
    st, status = load(cid)
    if status not in (CREATED, RUNNING, PAUSED):
        # Word for word runc's ErrNotRunning: containerd's shim matches on it.
        raise Conflict(f"container not running: {cid} is {status}", "nothing to signal")
    for pid in processes(cid) if all_processes else [st["pid"]]:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass                     # gone meanwhile


def delete(cid, force=False):
    import signal
    import time
    try:
        st, status = load(cid)
    except NotFound:
        if force:
            return
        raise
    if status in (RUNNING, PAUSED) and not force:
        raise Conflict(f"cannot delete container {cid} that is not stopped: {status}",
                       f"stop it (labkit-runtime kill {cid} KILL) or use delete --force")
    if status == PAUSED:
        manager(st).freeze(False)    # a frozen init takes no SIGKILL before it is thawed (v1)
    if status in (CREATED, RUNNING, PAUSED):
        try:
            os.kill(st["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Let the monitor tear its stages down (cgroup, mounts) before removing the rest.
    deadline = time.monotonic() + 5
    while ct.alive(st.get("monitor"), st.get("monitor_start")) and time.monotonic() < deadline:
        time.sleep(0.005)
    cfg = ct.config_of(st) if st.get("config") else None
    from labkit.runtime import lifecycle
    lifecycle.collect(cid)
    if cfg is not None and cfg.hooks.get("poststop"):
        from labkit.stages.oci import run_hook_phases
        run_hook_phases(cfg, ("poststop",), 0, STOPPED)


def list_states():
    out = []
    for cid in ct.all_ids():
        try:
            st, status = load(cid)
        except LabkitError:
            continue
        cfg = st.get("config") or {}
        out.append({"ociVersion": OCI_VERSION, "id": cid, "pid": st.get("pid") if status in (CREATED, RUNNING) else 0,
                    "status": status, "bundle": cfg.get("bundle") or "", "rootfs": cfg.get("rootfs") or "",
                    "created": st.get("created"), "owner": "root", "annotations": cfg.get("annotations") or {}})
    return out
