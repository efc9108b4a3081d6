"""cgroup v1: one hierarchy per controller, one small setter per controller.

Each setter writes only the files whose value was asked for. File names and
units are those of the kernel's Documentation/admin-guide/cgroup-v1/.
"""

import os

from labkit.linux.cgroups import fs
from labkit.linux.cgroups.resources import UNLIMITED, v1_limit, v1_shares


def set_memory(path, r):
    # The limit first: memsw (memory + swap) may never be below it.
    if r.memory is not None:
        fs.write(os.path.join(path, "memory.limit_in_bytes"), v1_limit(r.memory),
                 "memory limit")
    if r.memory_swap is not None:
        memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
        if r.memory_swap == r.memory and not os.path.exists(memsw):
            return      # no swap wanted, and this kernel does not account swap
        fs.write(memsw, v1_limit(r.memory_swap), "memory+swap limit")
    for name, value, what in (("memory.soft_limit_in_bytes", r.memory_reservation, "memory reservation"),
                              ("memory.swappiness", r.memory_swappiness, "memory swappiness"),
                              ("memory.oom_control", 1 if r.oom_kill_disable else None, "OOM killer")):
        if value is not None:
            fs.write(os.path.join(path, name), v1_limit(value) if "bytes" in name else value, what)


def set_cpu(path, r):
    shares = v1_shares(r)
    if shares is not None:
        fs.write(os.path.join(path, "cpu.shares"), shares, "cpu shares")
    # The period before the quota: the kernel checks the quota against it.
    if r.cpu_period is not None:
        fs.write(os.path.join(path, "cpu.cfs_period_us"), r.cpu_period, "cpu period")
    if r.cpu_quota is not None:
        fs.write(os.path.join(path, "cpu.cfs_quota_us"), r.cpu_quota, "cpu quota")


def set_cpuset(path, r, parent):
    # A new v1 cpuset starts empty and takes no task until both are set.
    cpus = r.cpuset_cpus or fs.read(os.path.join(parent, "cpuset.cpus"))
    mems = r.cpuset_mems or fs.read(os.path.join(parent, "cpuset.mems"))
    fs.write(os.path.join(path, "cpuset.cpus"), cpus, "cpuset cpus")
    fs.write(os.path.join(path, "cpuset.mems"), mems, "cpuset mems")


def inherit_cpuset(path, parent):
    """Give an intermediate v1 cpuset (the `labkit` parent) its parent's
    cpus and mems, or no child of it could hold a task."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not fs.read(os.path.join(path, name)):
            fs.write(os.path.join(path, name), fs.read(os.path.join(parent, name)))


def set_pids(path, r):
    if r.pids_limit is not None:
        value = "max" if r.pids_limit == UNLIMITED else r.pids_limit
        fs.write(os.path.join(path, "pids.max"), value, "pids limit")


def set_devices(path, r):
    # In order: "a" in devices.deny forgets every rule before it, each later
    # line adds to or takes from the exceptions (labkit/linux/cgroups/devices.py).
    if r.devices is not None:
        from labkit.linux.cgroups.devices import line
        for rule in r.devices:
            name = "devices.allow" if rule["allow"] else "devices.deny"
            fs.write(os.path.join(path, name), line(rule), "device rule")


SETTERS = {"memory": set_memory, "cpu": set_cpu, "pids": set_pids, "devices": set_devices}


def stats(paths):
    """Counters from the v1 files, in the same names and units as v2's."""
    mem, cpu, acct, pids = (paths.get(c) for c in ("memory", "cpu", "cpuacct", "pids"))
    out = {}
    if mem:
        out["memory_current"] = fs.read_int(os.path.join(mem, "memory.usage_in_bytes"))
        out["memory_peak"] = fs.read_int(os.path.join(mem, "memory.max_usage_in_bytes"))
        out["memory_limit"] = fs.read_int(os.path.join(mem, "memory.limit_in_bytes"))
        out["oom_kills"] = fs.read_keyed(os.path.join(mem, "memory.oom_control")).get("oom_kill")
    if acct:
        usage_ns = fs.read_int(os.path.join(acct, "cpuacct.usage"))
        out["cpu_usage_usec"] = None if usage_ns is None else usage_ns // 1000
    if cpu:
        st = fs.read_keyed(os.path.join(cpu, "cpu.stat"))
        out["nr_periods"] = st.get("nr_periods")
        out["nr_throttled"] = st.get("nr_throttled")
        ns = st.get("throttled_time")
        out["throttled_usec"] = None if ns is None else ns // 1000
    if pids:
        out["pids_current"] = fs.read_int(os.path.join(pids, "pids.current"))
        out["pids_limit"] = fs.read_int(os.path.join(pids, "pids.max"))
        out["pids_refused"] = fs.read_keyed(os.path.join(pids, "pids.events")).get("max")
    return out


def freeze(path, frozen, timeout):
    """freezer.state: FROZEN or THAWED; FREEZING while the kernel gets there."""
    want = "FROZEN" if frozen else "THAWED"
    fs.write(os.path.join(path, "freezer.state"), want, "freezer state")
    fs.wait_until(lambda: fs.read(os.path.join(path, "freezer.state")) == want, timeout, f"the freezer of {path}")


def frozen(path):
    try:
        return fs.read(os.path.join(path, "freezer.state")) in ("FROZEN", "FREEZING")
    except FileNotFoundError:
        return False
