"""The limits at work on plain processes, no container: the cgroup manager
proven on its own, on the host and inside user-mode Linux (v2).

Each workload creates its own cgroup(s), runs a small program as a plain
process moved into the cgroup *before* it starts working (it waits on a
pipe until released), removes everything on the way out and returns a
dict of what was measured from the kernel's own counters. The same limits
through `labkit run` are the facts of labkit/course/facts/cgroups.py.
"""

import os
import signal
import subprocess
import sys
import time

from labkit.linux import cgroups
from labkit.linux.cgroups.lxcfs import LXCFS_DIR, Lxcfs
from labkit.course.facts.cgroups import one_cpu

MiB = 1 << 20


def start_paused(manager, code, stdout=subprocess.DEVNULL):
    """A Python process that runs `code` only after release(): first it is
    moved into `manager`'s cgroup, so everything it does is charged there."""
    p = subprocess.Popen(
        [sys.executable, "-S", "-c", "import os\nos.read(0, 1)\n" + code],
        stdin=subprocess.PIPE, stdout=stdout, stderr=subprocess.DEVNULL,
        close_fds=True)
    try:
        manager.add(p.pid)
    except BaseException:
        p.kill()
        p.wait()
        raise
    return p


def release(p):
    p.stdin.write(b"!")
    p.stdin.close()


def _stop(p):
    if p.poll() is None:
        p.kill()
    p.wait()


def _cid(name):
    return f"demo-{name}-{os.getpid()}"


# -- memory ---------------------------------------------------------------

_HOG = """
import sys
chunks = []
for mib in range(1, {cap} + 1):
    chunks.append(b"x" * (1 << 20))      # bytes are written: pages are touched
    sys.stdout.write(f"{{mib}}\\n"); sys.stdout.flush()
"""


def memory_oom(limit="32m", timeout=120.0, hz=20):
    """A process allocating 1 MiB at a time, with no swap allowed, is killed
    by the OOM killer at `limit` (it would stop by itself at 8x the limit)."""
    limit_bytes = cgroups.parse_memory(limit)
    m = cgroups.create(_cid("oom"), {"memory": limit_bytes, "memory_swap": limit_bytes})
    p = None
    try:
        p = start_paused(m, _HOG.format(cap=8 * limit_bytes // MiB), stdout=subprocess.PIPE)
        release(p)
        # The pipe ends when the process does; the last line is its last MiB.
        deadline = time.monotonic() + timeout
        last = 0
        for line in p.stdout:
            last = int(line)
            if time.monotonic() > deadline:
                break
        series = cgroups.sample(m, until=lambda: p.poll() is not None, hz=hz, timeout=5)
        p.wait(timeout=10)
        stats = m.stats()
        return {
            "limit_bytes": limit_bytes,
            "returncode": p.returncode,
            "killed_by": signal.Signals(-p.returncode).name if p.returncode < 0 else None,
            "allocated_mib": last,
            "oom_kills": stats["oom_kills"],
            "memory_peak": stats["memory_peak"],
            "mode": cgroups.mode(),
            "series": series,
        }
    finally:
        if p is not None:
            _stop(p)
        m.destroy()


# -- pids -----------------------------------------------------------------

_BOMB = """
import time
while True:
    try:
        os.fork()              # parent and child both go round again
    except OSError:
        time.sleep(0.05)       # EAGAIN at pids.max: try again, forever
"""


def fork_bomb(limit=16, timeout=60.0, hz=20):
    """A fork bomb fills the cgroup up to pids.max and no further, while
    the host outside can still start processes."""
    m = cgroups.create(_cid("pids"), {"pids_limit": limit})
    p = None
    try:
        p = start_paused(m, _BOMB)
        start = time.monotonic()
        release(p)
        series = cgroups.sample(
            m, until=lambda: (m.stats()["pids_current"] or 0) >= limit
            and (m.stats()["pids_refused"] or 0) > 0, hz=hz, timeout=timeout)
        filled = time.monotonic() - start
        host_fork = subprocess.run(["/bin/true"]).returncode == 0
        time.sleep(0.2)         # a measurement window: a moment later, still no further than the limit
        stats = m.stats()
        return {
            "pids_limit": stats["pids_limit"],
            "pids_current": stats["pids_current"],
            "forks_refused": stats["pids_refused"],
            "seconds_to_fill": round(filled, 3),
            "host_can_fork": host_fork,
            "mode": cgroups.mode(),
            "series": series,
        }
    finally:
        m.destroy()         # pids.max 0 first, then SIGKILL until empty
        if p is not None:
            _stop(p)


# -- cpu ------------------------------------------------------------------

_BUSY = "while True:\n    pass\n"


def _usage(managers):
    return [m.stats()["cpu_usage_usec"] for m in managers], time.monotonic()


def cpu_quota(cpus=0.5, seconds=2.0, warmup=0.3, hz=20):
    """A busy loop under --cpus `cpus` gets that share of one core: cpu time
    used (cpuacct.usage / cpu.stat usage_usec) over wall time."""
    quota, period = cgroups.parse_cpus(cpus)
    m = cgroups.create(_cid("quota"), {"cpu_quota": quota, "cpu_period": period})
    p = None
    try:
        p = start_paused(m, _BUSY)
        release(p)
        time.sleep(warmup)
        before = m.stats()
        (u0,), t0 = _usage([m])
        series = cgroups.sample(m, until=lambda: time.monotonic() - t0 >= seconds,
                                hz=hz, timeout=seconds + 5)
        (u1,), t1 = _usage([m])
        after = m.stats()
        return {
            "cpus": cpus,
            "quota_us": quota,
            "period_us": period,
            "percent_of_one_core": round(100.0 * (u1 - u0) / ((t1 - t0) * 1e6), 1),
            "nr_throttled": after["nr_throttled"] - before["nr_throttled"],
            "throttled_usec": after["throttled_usec"] - before["throttled_usec"],
            "wall_seconds": round(t1 - t0, 3),
            "mode": cgroups.mode(),
            "series": series,
        }
    finally:
        if p is not None:
            _stop(p)
        m.destroy()


def cpu_shares(shares=(256, 768), seconds=3.0, warmup=0.3, hz=20):
    """Two busy loops on one cpu with cpu shares 1:3 (cpu.weight 10:30 on v2)
    split that cpu about 1:3."""
    pin = one_cpu()
    made, procs = [], []
    try:
        for i, s in enumerate(shares):
            res = {"cpu_shares": s}
            if pin is not None:
                res["cpuset_cpus"] = pin
            made.append(cgroups.create(_cid(f"share{i}"), res))
        procs = [start_paused(m, _BUSY) for m in made]
        for p in procs:
            release(p)
        time.sleep(warmup)
        u0, t0 = _usage(made)
        time.sleep(seconds)
        u1, t1 = _usage(made)
        used = [b - a for a, b in zip(u0, u1)]
        total = sum(used) or 1
        return {
            "shares": list(shares),
            "pinned_cpu": pin,
            "cpu_usec": used,
            "fractions": [round(u / total, 3) for u in used],
            "ratio": round(used[-1] / used[0], 2) if used[0] else None,
            "percent_of_one_core": round(100.0 * total / ((t1 - t0) * 1e6), 1),
            "mode": cgroups.mode(),
        }
    finally:
        for p in procs:
            _stop(p)
        for m in made:
            m.destroy()


# -- free and lxcfs -------------------------------------------------------

_FREE = """
total() { free -b | awk '/^Mem:/ {print $2}'; }
total
mount --bind "$1" /proc/meminfo && total
"""


def free_inside(memory="64m", path=LXCFS_DIR):
    """What procps `free` says about total memory in a cgroup with `memory`
    as its limit and its own PID namespace, without and with lxcfs's
    meminfo bound over /proc/meminfo; and what it says on the host."""
    limit = cgroups.parse_memory(memory)
    host_total = int(subprocess.run(["free", "-b"], capture_output=True, text=True, check=True)
                     .stdout.split("\n")[1].split()[1])
    with Lxcfs(path) as lx:
        m = cgroups.create(f"demo-free-{os.getpid()}", {"memory": limit})
        try:
            # unshare: a new PID namespace (lxcfs needs its init in the cgroup)
            # and a private mount namespace, so the bind mount stays inside.
            argv = ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", _FREE, "sh",
                    os.path.join(lx.path, "proc", "meminfo")]
            p = start_paused(m, f"os.execvp('unshare', {argv!r})", stdout=subprocess.PIPE)
            release(p)
            mounts = lx.bind_mounts()
            out = p.stdout.read().decode()
            p.wait(timeout=60)
        finally:
            m.destroy()
    totals = [int(x) for x in out.split()]
    return {
        "limit_bytes": limit,
        "host_total": host_total,
        "inside_without_lxcfs": totals[0] if totals else None,
        "inside_with_lxcfs": totals[1] if len(totals) > 1 else None,
        "bind_mounts": mounts,
    }
