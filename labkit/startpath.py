"""The shortcuts that keep a container's start fast, in one place.

Starting a container is the hot path: `labkit run` and `labkit-runtime run`
are fresh interpreters, so every module they import is paid at every start
(`make bench` measures it; tests/test_startpath.py keeps the list out of
sys.modules). Measured on the course's machines (python -X importtime):

  signal        the `signal` module imports enum (~3 ms); its C core
                `_signal` has every function and constant used here.
  json          imports re, and re imports enum (~5 ms together): state.json
                is written with the C encoder json.dumps itself uses (dumps()).
  shutil        imports bz2, lzma and fnmatch (~3 ms): remove_tree() is rm -r.
  argparse      ~6 ms with gettext and re: `labkit run` reads its options
                from one table (labkit/cli/main.py).
  dataclasses   ~20 ms with inspect: configs are plain classes.
  threading     nothing on the start path needs a thread.
  _socket,      the C modules' own initialisation (~1 M instructions for
  resource      _socket with fcntl, ~0.4 M for resource, measured with
                valgrind --tool=callgrind): lo is brought up and rlimits are
                set through the syscall layer's ctypes instead.
  jsonschema    ~100 ms: labkit/oci/validate.py checks a config.json against
                the spec's schema once and caches the parsed config by the
                sha256 of its bytes, in marshal format (no json to read it
                again); the digest comes from the builtin _sha256, as
                hashlib would load OpenSSL for it (~5 ms).

Besides imports:

  gc            a start allocates enough for the cyclic garbage collector to
                run a full pass in the middle of it (~2 ms), and a start makes
                no cycles worth collecting: it is off (gc.disable) for the
                whole of a short command. A detached monitor, which lives as
                long as its container, turns it back on once the caller is told.

  cgroup        a process's first move into a cgroup (a write to
  attach        cgroup.procs) waits for an RCU grace period, 10-15 ms on the
                course's machines: the kernel's lock for moving processes
                (cgroup_threadgroup_rwsem, a percpu rw-semaphore) has to switch
                its readers to the slow path first, and stays switched for a
                grace period after its last writer. warm_cgroup_attach() makes
                that wait happen in a thread while the interpreter imports: the
                runtime moves itself into the cgroup it is already in (no
                change), so that the move of the container's init finds the
                lock ready (about 0.1 ms). runc pays the wait in full (strace -T
                on its first write to cgroup.procs: ~15 ms).

Everything else imports what it needs, as usual; only the run path is fenced.
"""

import gc
import os
import _signal as signal  # noqa: F401 (re-exported: `from ..startpath import signal`)


_warming = False


def _own_cgroup_procs():
    """An fd on the cgroup.procs of this process's own cgroup v2 cgroup (the
    unified hierarchy of a hybrid host, or the whole tree), or None. Plain
    os calls: no file object whose lock a fork could copy held."""
    fd = os.open("/proc/self/cgroup", os.O_RDONLY | os.O_CLOEXEC)
    try:
        text = os.read(fd, 65536)
    finally:
        os.close(fd)
    path = next((line[3:] for line in text.splitlines() if line.startswith(b"0::")), None)
    if path is None:
        return None
    for top in (b"/sys/fs/cgroup/unified", b"/sys/fs/cgroup"):
        try:
            return os.open(top + path + b"/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            continue
    return None


def _move_self(fd, started):
    started.release()
    try:
        os.write(fd, b"%d" % os.getpid())   # where it is already: nothing changes
    except OSError:
        pass   # refused (an internal-process rule): just no head start
    finally:
        os.close(fd)


def warm_cgroup_attach():
    """Start the kernel's wait of a first cgroup move now, in a thread (see
    the docstring above), for a command that is about to attach a container
    to its cgroup. Nobody waits for the thread: the monitor's own write to
    cgroup.procs waits for the same grace period, and a fork meanwhile copies
    only the forking thread (the thread holds nothing but its own fd, which
    is close-on-exec and which the init closes anyway)."""
    global _warming
    if _warming or os.geteuid() != 0:
        return
    _warming = True
    try:
        fd = _own_cgroup_procs()
    except OSError:
        return
    if fd is None:
        return
    import _thread
    started = _thread.allocate_lock()
    started.acquire()
    _thread.start_new_thread(_move_self, (fd, started))
    started.acquire()   # the GIL goes to the thread now, not after the next switch interval


def hold_gc():
    """No cyclic garbage collection until resume_gc(): for a command that
    starts a container (labkit run, labkit-runtime create/run/exec)."""
    gc.disable()


def resume_gc():
    gc.enable()


def _not_serializable(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps(obj):
    """json.dumps(obj) in its default, compact form, from json's own C
    encoder; json itself where _json lacks it (the pure-Python encoder would
    cost ~1 ms a save)."""
    try:
        from _json import encode_basestring_ascii, make_encoder
    except ImportError:
        import json
        return json.dumps(obj)
    # markers (circular check), default, string encoder, indent,
    # key and item separators, sort_keys, skipkeys, allow_nan: json.dumps's.
    encode = make_encoder({}, _not_serializable, encode_basestring_ascii, None,
                          ": ", ", ", False, False, True)
    return "".join(encode(obj, 0))


def remove_tree(top):
    """rm -r. os.walk does not follow symlinks: a link is removed, never
    what it points to."""
    for base, dirs, files in os.walk(top, topdown=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            try:
                os.unlink(os.path.join(base, name))
            except FileNotFoundError:
                pass
        for name in dirs:
            try:
                os.rmdir(os.path.join(base, name))
            except (FileNotFoundError, NotADirectoryError):
                pass
    try:
        os.rmdir(top)
    except FileNotFoundError:
        pass
