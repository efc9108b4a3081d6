"""Reading and writing cgroup files, with errors that name file and value."""

import errno
import os

from labkit.errors import LabkitError, Unsupported


def write(path, value, what="cgroup limit"):
    """Write one value to a cgroup file. The kernel checks the value on
    write(2), so its EINVAL/EBUSY is the answer to "is this limit allowed"."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        raise Unsupported(f"{path} does not exist: the kernel does not offer this file",
                          "the controller or feature is missing on this kernel") from None
    try:
        os.write(fd, str(value).encode())
        _trace(path, value, "0")
    except OSError as e:
        _trace(path, value, f"-1 {errno.errorcode.get(e.errno, e.errno)}")
        raise LabkitError(
            f"{what} refused by the kernel: writing '{value}' to {path}: "
            f"{os.strerror(e.errno)}", _hint(path, e.errno)) from None
    finally:
        os.close(fd)


def _trace(path, value, result):
    """LABKIT_TRACE=1: a cgroup limit is a write(2) to a file; show it beside
    the system calls of the syscall layer (labkit/linux/syscalls/trace.py)."""
    if os.environ.get("LABKIT_TRACE") == "1":
        from labkit.linux.syscalls import trace
        trace.emit(f"write({trace.quote(path)}, {trace.quote(value)}) = {result}")


def _hint(path, err):
    name = os.path.basename(path)
    if "period" in name or name == "cpu.max":
        return "the cpu period must be 1000..1000000 us"
    if "memsw" in name or "swap" in name:
        return "memory-swap is memory plus swap: it cannot be less than memory"
    if "memory" in name:
        return "choose a limit the kernel accepts, e.g. --memory 64m"
    if err == errno.EBUSY:
        return "the cgroup is busy"
    return None


def read(path):
    with open(path) as f:
        return f.read().strip()


def read_int(path, default=None):
    """An integer file; "max" and absent files give `default`."""
    try:
        text = read(path)
    except (FileNotFoundError, ProcessLookupError):
        return default
    if text == "max":
        return default
    return int(text)


def read_keyed(path):
    """A flat keyed file ("key value" lines: cpu.stat, memory.events,
    memory.oom_control) as a dict of ints; {} if the file is absent."""
    try:
        text = read(path)
    except FileNotFoundError:
        return {}
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def procs(path):
    """PIDs in cgroup.procs (empty if the cgroup is gone)."""
    try:
        return [int(p) for p in read(os.path.join(path, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


def wait_until(done, timeout, what):
    """Poll ``done()`` until it holds; a LabkitError naming ``what`` after
    ``timeout`` seconds (a state the kernel reaches asynchronously: a freeze)."""
    import time
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise LabkitError(f"{what} did not settle in {timeout} s",
                              "a process may be stuck in the kernel (D state)")
        time.sleep(0.002)
