"""cgroup v2: one unified tree; the controllers a child may use are those
enabled in its parent's cgroup.subtree_control.

Limits are written in a fixed order (pids, memory, cpu, cpuset, devices), each by a
small setter; names and units are those of the kernel's
Documentation/admin-guide/cgroup-v2.rst.
"""

import os

from labkit.linux.cgroups import fs
from labkit.linux.cgroups.resources import UNLIMITED, v2_cpu_max, v2_limit, v2_swap_max, v2_weight


def enable(path, controllers):
    """Enable `controllers` for the children of `path` (those not on yet)."""
    control = os.path.join(path, "cgroup.subtree_control")
    on = set(fs.read(control).replace("+", "").split())
    missing = [c for c in controllers if c not in on]
    if missing:
        fs.write(control, " ".join("+" + c for c in missing), "controller list")


def set_pids(path, r):
    if r.pids_limit is not None:
        value = "max" if r.pids_limit == UNLIMITED else r.pids_limit
        fs.write(os.path.join(path, "pids.max"), value, "pids limit")


def set_memory(path, r):
    # swappiness and the OOM killer switch have no v2 file: left out, as
    # runc leaves them.
    if r.memory is not None:
        fs.write(os.path.join(path, "memory.max"), v2_limit(r.memory), "memory limit")
    if r.memory_reservation is not None:
        fs.write(os.path.join(path, "memory.low"), v2_limit(r.memory_reservation), "memory reservation")
    swap = v2_swap_max(r)
    if swap is not None:
        swap_file = os.path.join(path, "memory.swap.max")
        if swap == "0" and not os.path.exists(swap_file):
            return      # no swap wanted, and this kernel does not account swap
        fs.write(swap_file, swap, "swap limit")


def set_cpu(path, r):
    weight = v2_weight(r)
    if weight is not None:
        fs.write(os.path.join(path, "cpu.weight"), weight, "cpu weight")
    cpu_max = v2_cpu_max(r)
    if cpu_max is not None:
        fs.write(os.path.join(path, "cpu.max"), cpu_max, "cpu quota")


def set_cpuset(path, r):
    if r.cpuset_cpus is not None:
        fs.write(os.path.join(path, "cpuset.cpus"), r.cpuset_cpus, "cpuset cpus")
    if r.cpuset_mems is not None:
        fs.write(os.path.join(path, "cpuset.mems"), r.cpuset_mems, "cpuset mems")


def set_devices(path, r):
    # No file for it in v2: a BPF program attached to the cgroup (devicefilter.py).
    if r.devices is not None:
        from labkit.linux.cgroups import devicefilter
        devicefilter.attach(path, r.devices)


SETTERS = (set_pids, set_memory, set_cpu, set_cpuset, set_devices)


def apply(path, r):
    for setter in SETTERS:
        setter(path, r)


def stats(path):
    mem_events = fs.read_keyed(os.path.join(path, "memory.events"))
    cpu = fs.read_keyed(os.path.join(path, "cpu.stat"))
    return {
        "memory_current": fs.read_int(os.path.join(path, "memory.current")),
        "memory_peak": fs.read_int(os.path.join(path, "memory.peak")),  # 5.19+
        "memory_limit": fs.read_int(os.path.join(path, "memory.max")),
        "oom_kills": mem_events.get("oom_kill"),
        "cpu_usage_usec": cpu.get("usage_usec"),
        "nr_periods": cpu.get("nr_periods"),
        "nr_throttled": cpu.get("nr_throttled"),
        "throttled_usec": cpu.get("throttled_usec"),
        "pids_current": fs.read_int(os.path.join(path, "pids.current")),
        "pids_limit": fs.read_int(os.path.join(path, "pids.max")),
        "pids_refused": fs.read_keyed(os.path.join(path, "pids.events")).get("max"),
    }


def freeze(path, frozen, timeout):
    """cgroup.freeze 1 or 0; cgroup.events says "frozen 1" once it holds."""
    fs.write(os.path.join(path, "cgroup.freeze"), int(frozen), "freeze")
    fs.wait_until(lambda: fs.read_keyed(os.path.join(path, "cgroup.events")).get("frozen") == int(frozen),
                  timeout, f"the freezer of {path}")


def frozen(path):
    try:
        return fs.read(os.path.join(path, "cgroup.freeze")) == "1"
    except FileNotFoundError:       # a kernel before 5.2: no freezer in v2
        return False
