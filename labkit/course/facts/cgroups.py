"""Stage 3 facts: the limits of `labkit run --memory/--pids-limit/--cpus/
--cpu-shares` at work in real containers, read from the kernel's own cgroup
counters on the host, and what `free` tells inside with and without lxcfs.

Each fact starts its container(s) through the CLI (labkit.api), lasts a few
seconds at most and removes everything on the way out, also on error. The
time series (``series``) are sampled from the container's cgroup while it
runs, for labkit.course.notebook.plots.
"""

import os
import re
import subprocess
import time

from labkit import api
from labkit.images import builder
from labkit.linux import cgroups
from labkit.containers import RUNNING
from labkit.course.facts import fact
from labkit.i18n import _

LAYER = "3 cgroups"
MiB = 1 << 20
BUSY = "while :; do :; done"
# Memory that grows 1 MiB at a time: busybox tail keeps all of its input when
# it has no newline, so it holds everything `head` writes until killed. The
# loop stops when tail is gone (head fails on the closed pipe) or at `cap`.
HOG = ("i=0; while [ $i -lt {cap} ] && head -c 1m /dev/zero; do i=$((i+1)); sleep 0.02; done "
       "| tail > /dev/null")
# A fork bomb that keeps trying: every process forks two more and, when they
# are gone, forks again. A shell whose fork fails exits, so the classic
# `bomb() { bomb | bomb & }` dies out at pids.max; this one refills the
# cgroup forever. PID 1 only waits (the sleep keeps it waiting), so the
# container lives until it is removed.
BOMB = "sleep 300 & bomb() { while :; do bomb | bomb & wait; done; }; (bomb) & wait"


# Every container of these facts is named cg-<what>-<random>, so that what
# they might leave behind can be told from other containers on the host.
PREFIX = "cg-"


def _name(what):
    return f"{PREFIX}{what}-{os.urandom(4).hex()}"


def leftovers(wait=5.0):
    """What containers of these facts left on the host: their cgroups,
    mounts, state, processes (found by their cgroup) and lxcfs daemons.
    A process SIGKILLed a moment ago may still be exiting: what is found is
    looked at again for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        found = _leftovers()
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _leftovers():
    from labkit.linux.cgroups.manager import PARENT
    from labkit.course.leaks import leftovers as labkit_leftovers
    mine = f"/{PARENT}/{PREFIX}"
    found = [item for item in labkit_leftovers()
             if f"/{PREFIX}" in item or item.startswith(f"container state {PREFIX}")]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                in_ours = mine in f.read()
            with open(f"/proc/{pid}/cmdline") as f:
                cmd = f.read().replace("\0", " ").strip()
        except OSError:
            continue                       # gone meanwhile
        if in_ours or ("lxcfs" in cmd and f"/containers/{PREFIX}" in cmd):
            found.append(f"process {pid} {cmd}")
    return sorted(found)


def _mib(n):
    return "?" if n is None else f"{n / MiB:.0f} MiB"


def _keep(series, keys):
    return {k: series[k] for k in ("t",) + tuple(keys) if k in series}


def _manager(c):
    m = cgroups.load(c.id)
    if m is None:
        raise RuntimeError(f"container {c.id} has no cgroup")
    return m


# -- the limits are files ---------------------------------------------------

def _read(path):
    with open(path) as f:
        return f.read().strip()


def limit_files(m):
    """The files that hold a container's memory, pids and cpu limits, and
    what they say: {path: content}, v1 or v2 alike."""
    if m.version == 2:
        names = [("memory", "memory.max"), ("pids", "pids.max"), ("cpu", "cpu.max")]
    else:
        names = [("memory", "memory.limit_in_bytes"), ("pids", "pids.max"),
                 ("cpu", "cpu.cfs_quota_us"), ("cpu", "cpu.cfs_period_us")]
    return {os.path.join(m.paths[ctl], name): _read(os.path.join(m.paths[ctl], name))
            for ctl, name in names if ctl in m.paths}


def limits_in_files(memory="64m", pids=20, cpus=0.5, rootfs="base"):
    """`labkit run --memory 64m --pids-limit 20 --cpus 0.5` writes the
    limits into the container's cgroup files, and its init is listed in
    that cgroup's cgroup.procs before it runs the command."""
    quota, period = cgroups.parse_cpus(cpus)
    limit = cgroups.parse_memory(memory)
    with api.Container("sleep 300", memory=memory, pids=pids, cpus=cpus, rootfs=rootfs,
                       name=_name("files")) as c:
        m = _manager(c)
        files = limit_files(m)
        members = m.pids()
        init = c.pid
    values = {os.path.basename(k): v for k, v in files.items()}
    if m.version == 2:
        want = {"memory.max": str(limit), "pids.max": str(pids), "cpu.max": f"{quota} {period}"}
    else:
        want = {"memory.limit_in_bytes": str(limit), "pids.max": str(pids),
                "cpu.cfs_quota_us": str(quota), "cpu.cfs_period_us": str(period)}
    return fact("limits_in_files", LAYER, _("limits are values in cgroup files; init in procs"),
                " ".join(f"{k}={v}" for k, v in values.items()), f"init pid {init} in {m.path}",
                values == want and init in members,
                command=f"labkit run --memory {memory} --pids-limit {pids} --cpus {cpus} -- sleep 300",
                files=files, expected=want, members=members, init=init, version=m.version)


# -- memory ---------------------------------------------------------------

def oom_kill(limit="64m", rootfs="base", hz=20):
    """A process in the container allocates past --memory: the OOM killer
    kills it (SIGKILL, memory.oom_control/memory.events count one kill) while
    the container's init lives on, and the same allocation on the host,
    outside the cgroup, completes."""
    limit_bytes = cgroups.parse_memory(limit)
    hog = HOG.format(cap=4 * limit_bytes // MiB)
    with api.Container("sleep 300", memory=limit, rootfs=rootfs, name=_name("oom"),
                       extra=["--memory-swap", limit]) as c:   # no swap to escape to
        m = _manager(c)
        sampler = cgroups.Sampler(m, hz=hz).start()
        try:
            r = c.exec(hog, timeout=60)
            time.sleep(0.3)
        finally:
            series = sampler.stop()
        stats = m.stats()
        init_alive = c.state["status"] == RUNNING
    kills = series["oom_kills"]
    kill_t = next((t for t, k in zip(series["t"], kills) if k and k > (kills[0] or 0)), None)
    # Outside: twice the limit through the same busybox tail, no cgroup limit.
    busybox = os.path.join(builder.resolve(rootfs), "bin", "busybox")
    outside = subprocess.run(f"head -c {2 * limit_bytes} /dev/zero | {busybox} tail | wc -c",
                             shell=True, capture_output=True, text=True, timeout=60)
    host_bytes = int(outside.stdout.strip() or 0)
    peak = stats["memory_peak"]
    return fact("oom_kill", LAYER, _("--memory {limit}: OOM kill at the limit, host fine", limit=limit),
                f"hog exit {r.returncode} (SIGKILL), {stats['oom_kills']} oom kill, "
                f"peak {_mib(peak)}",
                f"same hog, {2 * limit_bytes // MiB} MiB, on the host: "
                + ("completes" if host_bytes == 2 * limit_bytes else f"read {host_bytes} bytes"),
                r.returncode == 128 + 9 and (stats["oom_kills"] or 0) >= 1 and init_alive
                and peak is not None and 0.8 * limit_bytes <= peak <= limit_bytes
                and host_bytes == 2 * limit_bytes,
                command=f"labkit run -d --memory {limit} --memory-swap {limit} -- sleep 300; "
                        f"labkit exec ID sh -c '{hog}'",
                limit_bytes=limit_bytes, memory_peak=peak, oom_kills=stats["oom_kills"],
                returncode=r.returncode, init_alive=init_alive, kill_t=kill_t,
                host_bytes=host_bytes, mode=cgroups.mode(),
                series=_keep(series, ("memory_current", "oom_kills")))


# -- pids -----------------------------------------------------------------

def fork_bomb(limit=32, rootfs="base", hz=20, seconds=1.5, timeout=10.0):
    """A fork bomb fills the container's cgroup up to pids.max and no
    further, while the host still starts processes as fast as before."""
    def host_forks(n=20):
        start = time.monotonic()
        ok = sum(subprocess.run(["/bin/true"]).returncode == 0 for _ in range(n))
        return ok, round(1000 * (time.monotonic() - start) / n, 2)

    before_ok, before_ms = host_forks()
    with api.Container(BOMB, pids=limit, rootfs=rootfs, name=_name("bomb")) as c:
        m = _manager(c)
        start = time.monotonic()
        series = cgroups.sample(
            m, until=lambda: time.monotonic() - start >= seconds and (m.stats()["pids_refused"] or 0) > 0,
            hz=hz, timeout=timeout)
        during_ok, during_ms = host_forks()
        stats = m.stats()
    peak = max(p or 0 for p in series["pids_current"])
    return fact("fork_bomb", LAYER, _("--pids-limit {limit}: fork bomb stops, host forks", limit=limit),
                f"at most {peak}/{stats['pids_limit']} processes, {stats['pids_refused']} forks refused",
                f"host: {during_ok}/20 forks ok during the bomb ({during_ms} ms each; "
                f"{before_ms} ms before)",
                peak == stats["pids_limit"] == limit and (stats["pids_refused"] or 0) > 0
                and during_ok == 20,
                command=f"labkit run --pids-limit {limit} -- sh -c '{BOMB}'",
                pids_limit=limit, pids_peak=peak, forks_refused=stats["pids_refused"],
                host_fork_ms_before=before_ms, host_fork_ms_during=during_ms, mode=cgroups.mode(),
                series=_keep(series, ("pids_current", "pids_refused")))


# -- cpu ------------------------------------------------------------------

def _usage(managers):
    return [m.stats()["cpu_usage_usec"] for m in managers], time.monotonic()


def _cpu_series(managers, seconds, hz):
    """cpu_usage_usec of each manager, read together `hz` times a second."""
    t, usage = [], [[] for _ in managers]
    start = next_at = time.monotonic()
    while True:
        now = time.monotonic()
        t.append(round(now - start, 4))
        for row, m in zip(usage, managers):
            row.append(m.stats()["cpu_usage_usec"])
        if now - start >= seconds:
            return {"t": t, "cpu_usage_usec": usage}
        next_at += 1.0 / hz
        time.sleep(max(0.0, next_at - time.monotonic()))


def _percent(series, i):
    u, t = series["cpu_usage_usec"][i], series["t"]
    return round(100.0 * (u[-1] - u[0]) / ((t[-1] - t[0]) * 1e6), 1)


def cpu_quota(cpus=0.5, rootfs="base", seconds=2.0, warmup=0.3, hz=20, attempts=3):
    """A busy loop under --cpus 0.5 gets half of one core (cpu time used
    over wall time, from cpuacct.usage / cpu.stat); the same loop in a
    container without a quota takes a whole core.

    On a machine busy with other work the loop without a quota gets less
    than a core, and the quota may not be reached: then it is measured again
    (up to `attempts` times); in any case the loop under the quota gets what
    the unlimited one gets, but never more than the quota."""
    quota, period = cgroups.parse_cpus(cpus)
    target = 100.0 * quota / period
    for attempt in range(1, attempts + 1):
        # The control has a cgroup too (--pids-limit), so both are measured alike.
        with api.Container(BUSY, cpus=cpus, rootfs=rootfs, name=_name("quota")) as limited, \
                api.Container(BUSY, pids=100, rootfs=rootfs, name=_name("noquota")) as free:
            managers = [_manager(limited), _manager(free)]
            time.sleep(warmup)
            before = [m.stats() for m in managers]
            series = _cpu_series(managers, seconds, hz)
            after = [m.stats() for m in managers]
        inside, outside = _percent(series, 0), _percent(series, 1)
        if outside >= 80:
            break                  # a whole core was free: the quota was the only limit
    throttled, control_throttled = ((a["nr_throttled"] or 0) - (b["nr_throttled"] or 0)
                                    for b, a in zip(before, after))
    busy = outside < 80
    return fact("cpu_quota", LAYER, _("--cpus {cpus}: a busy loop gets {target:.0f}% of one core (±10)",
                                  cpus=cpus, target=target),
                f"{inside}% of one core, throttled {throttled} times",
                f"no quota: {outside}% of one core" + (" (the machine is busy)" if busy else ""),
                abs(inside - min(target, outside)) <= 10 and inside <= target + 10
                and control_throttled == 0 and (throttled > 0 or busy),
                command=f"labkit run --cpus {cpus} -- sh -c '{BUSY}'",
                cpus=cpus, quota_us=quota, period_us=period, target_percent=target,
                percent=inside, control_percent=outside, nr_throttled=throttled,
                control_nr_throttled=control_throttled, busy_machine=busy, attempts=attempt,
                mode=cgroups.mode(), series=series)


def one_cpu():
    """The lowest cpu this process may run on, or None on a 1-cpu machine
    (nothing to pin: every process already shares that one)."""
    cpus = sorted(os.sched_getaffinity(0))
    return str(cpus[0]) if len(cpus) > 1 else None


def _has_cpuset():
    from labkit.linux.cgroups import hierarchy
    layout = hierarchy.detect()
    return "cpuset" in (layout.v1 if layout.version == 1 else layout.v2_controllers)


def cpu_shares(shares=(256, 768), rootfs="base", seconds=3.0, warmup=0.3, hz=20):
    """Two busy containers pinned to one cpu with --cpu-shares 256 and 768
    (cpu.weight 10 and 30 on v2) split that cpu about 1:3."""
    pin = one_cpu()
    opts = [["--cpu-shares", str(s)] for s in shares]
    busy = BUSY
    if pin is not None and _has_cpuset():
        opts = [o + ["--cpuset-cpus", pin] for o in opts]
    elif pin is not None:
        busy = f"exec taskset -c {pin} sh -c '{BUSY}'"    # no cpuset controller: plain affinity
    with api.Container(busy, rootfs=rootfs, extra=opts[0], name=_name("share")) as a, \
            api.Container(busy, rootfs=rootfs, extra=opts[1], name=_name("share")) as b:
        managers = [_manager(a), _manager(b)]
        time.sleep(warmup)
        series = _cpu_series(managers, seconds, hz)
    used = [u[-1] - u[0] for u in series["cpu_usage_usec"]]
    ratio = round(used[1] / used[0], 2) if used[0] else None
    want = shares[1] / shares[0]
    total = 100.0 * sum(used) / ((series["t"][-1] - series["t"][0]) * 1e6)
    return fact("cpu_shares", LAYER,
                _("--cpu-shares {low}/{high} on one cpu: 1:{want:g} split (±20%)",
                  low=shares[0], high=shares[1], want=want),
                f"cpu time {used[0] / 1e6:.2f} s : {used[1] / 1e6:.2f} s = 1:{ratio}",
                f"together {total:.0f}% of cpu {pin}",
                # Other load on that cpu takes its part; the split between
                # the two is what the shares decide.
                ratio is not None and abs(ratio - want) <= 0.2 * want,
                command=" & ".join(f"labkit run {' '.join(o)} -- sh -c \"{busy}\"" for o in opts),
                shares=list(shares), pinned_cpu=pin, cpu_usec=used, ratio=ratio,
                expected_ratio=want, percent_together=round(total, 1), mode=cgroups.mode(),
                series=series)


# -- free and lxcfs -------------------------------------------------------

def _mem_total(free_output):
    """The total of the Mem: line of `free -b` (procps or busybox)."""
    m = re.search(r"^Mem:\s+(\d+)", free_output, re.M)
    return int(m.group(1)) if m else None


def _host_total():
    with open("/proc/meminfo") as f:
        return int(re.search(r"MemTotal:\s+(\d+) kB", f.read()).group(1)) * 1024


def free_without_lxcfs(limit="64m", rootfs="base"):
    """The surprise: under --memory 64m, `free` shows the host's memory —
    /proc/meminfo is not namespaced."""
    r = api.run("free -b", memory=limit, rootfs=rootfs, name=_name("free"), check=True)
    inside, host = _mem_total(r.stdout), _host_total()
    return fact("free_without_lxcfs", LAYER, _("--memory {limit}: free still shows the host's total", limit=limit),
                f"total {_mib(inside)}", f"host total {_mib(host)}",
                inside == host > cgroups.parse_memory(limit),
                command=r.command, inside_total=inside, host_total=host,
                limit_bytes=cgroups.parse_memory(limit))


def free_with_lxcfs(limit="64m", rootfs="base"):
    """With --lxcfs, lxcfs's meminfo is bound over /proc/meminfo and procps
    `free` shows the limit."""
    r = api.run("free -b", memory=limit, lxcfs=True, rootfs=rootfs, name=_name("free"),
                check=True)
    inside, host = _mem_total(r.stdout), _host_total()
    limit_bytes = cgroups.parse_memory(limit)
    return fact("free_with_lxcfs", LAYER, _("--memory {limit} --lxcfs: procps free shows the limit", limit=limit),
                f"total {_mib(inside)}", f"host total {_mib(host)}",
                inside == limit_bytes < host,
                command=r.command, inside_total=inside, host_total=host, limit_bytes=limit_bytes)


# What a program asks the machine for: memory (free), CPUs (nproc: the
# CPUs it may run on, sched_getaffinity(2)), uptime and top's load average.
PROC_PROBE = ("free -m | awk '/^Mem:/ {print $2}'; nproc; cut -d' ' -f1 /proc/uptime; "
              "cut -d' ' -f1-3 /proc/loadavg")
PROC_ROWS = ("free -m: total MiB", "nproc", "uptime (s)", "load average (top)")


def proc_views(limit="64m", cpus=1, rootfs="base"):
    """The host's /proc against a container's, without and with lxcfs:
    lxcfs makes free (meminfo) and uptime the container's own; nproc counts
    the CPUs the process may be scheduled on (a cpuset, not a quota), and
    the load average stays the host's (lxcfs virtualises it only when
    started with -l). What the container's processes are told, side by side."""
    seen = {}
    for label, lxcfs in (("container", False), ("container --lxcfs", True)):
        r = api.run(PROC_PROBE, memory=limit, cpus=cpus, lxcfs=lxcfs, rootfs=rootfs,
                    name=_name("proc"), check=True)
        seen[label] = r.stdout.split("\n")[:4]
    host = subprocess.run(["sh", "-c", PROC_PROBE], capture_output=True, text=True, check=True).stdout.split("\n")[:4]
    table = {row: {"host": h, **{k: v[i] for k, v in seen.items()}} for i, (row, h) in enumerate(zip(PROC_ROWS, host))}
    mib = cgroups.parse_memory(limit) >> 20
    free_row, up_row = table[PROC_ROWS[0]], table[PROC_ROWS[2]]
    return fact("proc_views", LAYER,
                _("--memory {limit} --cpus {cpus}: lxcfs makes free and uptime the container's",
                  limit=limit, cpus=cpus),
                seen["container --lxcfs"], host,
                free_row["container"] == free_row["host"] and free_row["container --lxcfs"] == str(mib)
                and float(up_row["container --lxcfs"]) < float(up_row["host"])
                and table["nproc"]["container --lxcfs"] == table["nproc"]["host"],
                table=table)


def busybox_free_with_lxcfs(limit="64m", rootfs="base"):
    """busybox `free` takes its totals from sysinfo(2), a system call no
    bind mount can change: with lxcfs too it shows the host's total."""
    r = api.run("busybox free -b", memory=limit, lxcfs=True, rootfs=rootfs,
                name=_name("free"), check=True)
    inside, host = _mem_total(r.stdout), _host_total()
    return fact("busybox_free_with_lxcfs", LAYER,
                _("--lxcfs: busybox free: host total (sysinfo(2))"),
                f"total {_mib(inside)}", f"host total {_mib(host)}",
                inside == host > cgroups.parse_memory(limit),
                command=r.command, inside_total=inside, host_total=host)


# -- cgroup namespace -----------------------------------------------------

def _cgroup_lines(text):
    """/proc/PID/cgroup as {hierarchy id and controllers: path}."""
    out = {}
    for line in text.strip().splitlines():
        hid, ctls, path = line.split(":", 2)
        out[f"{hid}:{ctls}"] = path
    return out


def cgroup_namespace(rootfs="base"):
    """In its cgroup namespace the container sees its cgroup as "/"; the
    host sees the same process in /labkit/<id>. (`exec` joins both.)"""
    with api.Container("sleep 300", memory="64m", rootfs=rootfs, name=_name("cgns")) as c:
        # An exec'd process: it shows "/" only if it joined both the
        # container's cgroup and its cgroup namespace.
        inside = _cgroup_lines(c.exec("cat /proc/self/cgroup", timeout=30).stdout)
        with open(f"/proc/{c.pid}/cgroup") as f:
            outside = _cgroup_lines(f.read())
        cid = c.id
    ours = sorted(k for k, v in outside.items() if v == f"/labkit/{cid}")
    key = next((k for k in ours if "memory" in k), ours[0] if ours else None)
    return fact("cgroup_namespace", LAYER, _("cgroup ns: /proc/self/cgroup is / inside"),
                f"{key} {inside.get(key)}", f"{key} {outside.get(key)}",
                bool(ours) and all(inside.get(k) == "/" for k in ours),
                hierarchies=ours, path_inside=inside.get(key), path_outside=outside.get(key), id=cid)


def all_facts(rootfs="base"):
    import shutil
    facts = [f(rootfs=rootfs) for f in (limits_in_files, oom_kill, fork_bomb, cpu_quota,
                                        cpu_shares, free_without_lxcfs)]
    if shutil.which("lxcfs"):
        facts += [free_with_lxcfs(rootfs=rootfs), busybox_free_with_lxcfs(rootfs=rootfs)]
    else:
        facts.append(fact("free_with_lxcfs", LAYER, _("--lxcfs: procps free shows the limit"),
                          "lxcfs is not installed", "apt-get install lxcfs", False))
    facts.append(cgroup_namespace(rootfs=rootfs))
    return facts
