"""Notebook 03's exercises: a memory limit and a CPU quota written by hand
into cgroup files, on v1 or v2, and `free` made truthful in a container.
Each check reads /proc/PID/cgroup, the limit files of the cgroup found
there, and what the kernel counted (the process's CPU time)."""

import os
import time

from labkit.course.lab import Exercise, background, kill_line, pattern, rm_line, running, sh, started, wait_line
from labkit.linux.cgroups import hierarchy
from labkit.i18n import _

# The same steps on both layouts: v1 has a hierarchy per controller; v2 one
# tree, where the root must enable the controller for its children (systemd
# usually has; a bare kernel has not).
WHERE = ('if [ -d /sys/fs/cgroup/{ctl} ]; then CG=/sys/fs/cgroup/{ctl}/{name}; F={v1}; '
         'else CG=/sys/fs/cgroup/{name}; F={v2}; grep -qw {ctl} /sys/fs/cgroup/cgroup.subtree_control || '
         'echo +{ctl} > /sys/fs/cgroup/cgroup.subtree_control; fi; ')
MEMORY = WHERE.format(ctl="memory", name="lab03", v1="memory.limit_in_bytes", v2="memory.max")
CPU = WHERE.format(ctl="cpu", name="lab03-cpu", v1="cpu.cfs_quota_us", v2="cpu.max")
BUSY = "while :; do :; done # lab03"
# A reset's last command (after a WHERE prelude): remove $CG, waiting up to 5 s.
# A killed process drops out of pgrep's view as soon as it is a zombie (a
# zombie has no command line), before the kernel lets go of its cgroup:
# until its parent reaps it, rmdir may say EBUSY.
RMDIR = ('for i in $(seq 50); do [ -d $CG ] || break; rmdir $CG 2>/dev/null || sleep 0.1; done; '
         '[ ! -d $CG ] || rmdir $CG')


def cgroup_dir(pid, controller):
    """The directory of process ``pid``'s cgroup for ``controller``, on the
    host's layout (v1: that controller's hierarchy; v2: the one tree)."""
    layout = hierarchy.detect()
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        number, names, path = line.split(":", 2)
        if controller in layout.v1 and controller in names.split(","):
            return layout.v1[controller] + path
        if controller not in layout.v1 and number == "0" and layout.v2:
            return layout.v2 + path
    return None


def _read(path):
    try:
        return open(path).read().strip()
    except OSError:
        return None


def memory_limit(pid):
    """(the directory of process ``pid``'s memory cgroup, its limit in bytes
    or None when it has none) — v1's memory.limit_in_bytes or v2's memory.max."""
    cg = cgroup_dir(pid, "memory")
    limit = _read(os.path.join(cg, "memory.limit_in_bytes")) or _read(os.path.join(cg, "memory.max"))
    return cg, None if limit in (None, "max") or int(limit) >= 1 << 60 else int(limit)


def _by_hand(pid, controller, name):
    """None when process ``pid`` is in the cgroup ``name`` right under the
    root of ``controller``'s hierarchy (where the task says to make it),
    else why not: a cgroup named so elsewhere is someone else's (labkit
    run's, under labkit/)."""
    cg = cgroup_dir(pid, controller)
    top = os.path.dirname(cg)
    if os.path.basename(cg) != name or top not in (hierarchy.detect().v1.get(controller), hierarchy.detect().v2):
        return _("process {pid} is in {cg}, not in the cgroup {name} you make by hand at the top of the hierarchy",
                 pid=pid, cg=cg, name=name)
    return None


def _memory():
    pid, why = started("sleep", "1031")
    if pid is None:
        return False, why
    why = _by_hand(pid, "memory", "lab03")
    if why:
        return False, why
    cg, limit = memory_limit(pid)
    if limit is None:
        return False, _("sleep 1031 is in {cg}, which has no memory limit", cg=cg)
    if limit != 32 << 20:
        return False, _("the memory limit of {cg} is {limit} bytes, not 32 MiB ({want})",
                         cg=cg, limit=limit, want=32 << 20)
    return True, _("sleep 1031 is in {cg}, limited to {limit} bytes", cg=cg, limit=limit)


def _cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick     # utime + stime
        except OSError:
            pass
    return total


def _quota(cg):
    """(CPUs a cgroup may use: quota / period, the period in seconds); CPUs
    None when unlimited."""
    v2 = _read(os.path.join(cg, "cpu.max"))
    if v2:
        quota, period = v2.split()
        return (None if quota == "max" else int(quota) / int(period)), int(period) / 1e6
    quota = int(_read(os.path.join(cg, "cpu.cfs_quota_us")) or -1)
    period = int(_read(os.path.join(cg, "cpu.cfs_period_us")))
    return (None if quota < 0 else quota / period), period / 1e6


def _cpu():
    pid, why = started("sh", "-c", BUSY)
    if pid is None:
        return False, why
    why = _by_hand(pid, "cpu", "lab03-cpu")
    if why:
        return False, why
    cg = cgroup_dir(pid, "cpu")
    cpus, period = _quota(cg)
    if cpus is None:
        return False, _("{cg} has no CPU quota: the loop may take a whole CPU", cg=cg)
    if abs(cpus - 0.25) > 0.001:
        return False, _("the quota of {cg} is {cpus:g} CPU, not 0.25", cg=cg, cpus=cpus)
    # What the kernel let it use over four periods of wall time (half a
    # second at least): a window that starts mid-period can hold one
    # period's quota more, and /proc counts CPU time in clock ticks.
    window = min(max(0.5, 4 * period), 4.0)
    most = cpus * (1 + period / window) + 2 / os.sysconf("SC_CLK_TCK") / window + 0.02
    t0, c0 = time.monotonic(), _cpu_seconds([pid])
    time.sleep(window)
    seconds = time.monotonic() - t0
    used = (_cpu_seconds([pid]) - c0) / seconds
    if used > most:
        return False, _("the loop used {used:.2f} CPU over {seconds:.1f} s, above its quota", used=used,
                        seconds=seconds)
    return True, _("the busy loop in {cg} is held to {cpus:g} CPU: it used {used:.2f} CPU over {seconds:.1f} s",
                   cg=cg, cpus=cpus, used=used, seconds=seconds)


def _free():
    pid, why = running("lab03-free")
    if pid is None:
        return False, why
    cg, limit = memory_limit(pid)
    if limit != 128 << 20:
        return False, _("lab03-free's memory limit is {limit}, not 128 MiB", limit=limit)
    out = sh("labkit exec lab03-free free -m").stdout.split("\n")
    total = next((line.split()[1] for line in out if line.startswith("Mem:")), "?")
    if total != "128":
        return False, _("`free -m` in lab03-free says {total} MiB total: /proc/meminfo there is the host's",
                         total=total)
    return True, _("`free -m` in lab03-free says 128 MiB total, its cgroup's limit")


EXERCISES = [
    Exercise("03.memory", "a memory limit, by hand",
             "Make a cgroup named lab03 (v1: under /sys/fs/cgroup/memory; v2: under /sys/fs/cgroup) with a "
             "memory limit of 32 MiB, and start `sleep 1031` in the background inside it, what it prints kept in "
             "/tmp/lab03/memory.log.",
             ["cgroups(7): a cgroup is a directory; its limit is a file; a process joins by writing its pid "
              "to cgroup.procs (a child starts in its parent's cgroup)",
              "v1: memory.limit_in_bytes; v2: memory.max. Both take 32M. A shell that writes $$ to cgroup.procs "
              "and then execs the sleep puts it there",
              "sudo mkdir -p /tmp/lab03 /sys/fs/cgroup/memory/lab03; echo 32M | sudo tee /sys/fs/cgroup/memory/lab03/"
              "memory.limit_in_bytes; sudo nohup setsid -f sh -c 'echo $$ > /sys/fs/cgroup/memory/lab03/cgroup.procs; "
              "exec sleep 1031' >/tmp/lab03/memory.log 2>&1"],
             _memory,
             [MEMORY + 'mkdir -p $CG && echo 32M > $CG/$F && '
              'mkdir -p /tmp/lab03 && setsid -f sh -c "echo \\$\\$ > $CG/cgroup.procs && exec sleep 1031" '
              '>/tmp/lab03/memory.log 2>&1',
              wait_line("sleep", "1031")],
             [rm_line("lab03"), kill_line("sleep", "1031"), MEMORY + RMDIR],
             log="/tmp/lab03/memory.log"),
    Exercise("03.cpu", "a quarter of a CPU",
             "Make a cgroup named lab03-cpu (v1: under /sys/fs/cgroup/cpu; v2: under /sys/fs/cgroup) whose "
             f"processes get at most a quarter of one CPU, and run the busy loop `sh -c '{BUSY}'` in it, what it "
             "prints kept in /tmp/lab03/cpu.log.",
             ["the CFS bandwidth controller: a quota of CPU time per period (Documentation/scheduler/"
              "sched-bwc.rst)",
              "v1: cpu.cfs_quota_us (the period, cpu.cfs_period_us, is 100000 µs); v2: cpu.max, "
              "\"QUOTA PERIOD\"",
              "sudo mkdir -p /tmp/lab03 /sys/fs/cgroup/cpu/lab03-cpu; echo 25000 | sudo tee /sys/fs/cgroup/cpu/lab03-cpu/"
              "cpu.cfs_quota_us; sudo nohup setsid -f sh -c 'echo $$ > /sys/fs/cgroup/cpu/lab03-cpu/cgroup.procs; "
              f"exec sh -c \"{BUSY}\"' >/tmp/lab03/cpu.log 2>&1"],
             _cpu,
             [CPU + 'mkdir -p $CG && if [ $F = cpu.max ]; then echo "25000 100000" > $CG/$F; '
              'else echo 25000 > $CG/$F; fi && '
              f'mkdir -p /tmp/lab03 && setsid -f sh -c "echo \\$\\$ > $CG/cgroup.procs && exec sh -c \'{BUSY}\'" '
              '>/tmp/lab03/cpu.log 2>&1',
              wait_line("sh", "-c", BUSY)],
             [rm_line("lab03-cpu"), kill_line("sh", "-c", BUSY), CPU + RMDIR],
             log="/tmp/lab03/cpu.log"),
    Exercise("03.free", "free that tells the container's truth",
             "Start a detached container named lab03-free (running `sleep 600`) with a memory limit of 128 MiB, "
             "in which `free -m` says 128 MiB total.",
             ["/proc/meminfo is not namespaced: lxcfs serves one computed from the reader's cgroup",
              "labkit run --memory SIZE, and --lxcfs to bind lxcfs's files over /proc/meminfo …",
              "sudo labkit run -d --name lab03-free --memory 128m --lxcfs -- sleep 600"],
             _free,
             ["labkit run -d --name lab03-free --memory 128m --lxcfs -- sleep 600"],
             [rm_line("lab03-free")]),
]


_MEM_BYTES = MEMORY + "mkdir -p $CG && echo 33554432 > $CG/$F"
_CPU_HALF_PERIOD = (CPU + 'mkdir -p $CG && if [ $F = cpu.max ]; then echo "50000 200000" > $CG/$F; '
                    'else echo 200000 > $CG/cpu.cfs_period_us && echo 50000 > $CG/$F; fi')

ALTERNATIVES = {
    "03.memory": {
        "the limit in bytes; sleep started first, then moved in": [
            _MEM_BYTES, "setsid -f sleep 1031 >/dev/null 2>&1", wait_line("sleep", "1031"),
            MEMORY + f"echo $(pgrep -f '{pattern('sleep', '1031')}') > $CG/cgroup.procs"],
        "Python writes the files, then execs sleep by its path": [
            MEMORY + "mkdir -p $CG && setsid -f python3 -c 'import os, sys; cg, f = sys.argv[1:]; "
            "open(os.path.join(cg, f), \"w\").write(\"32M\"); "
            "open(os.path.join(cg, \"cgroup.procs\"), \"w\").write(str(os.getpid())); "
            "os.execv(\"/bin/sleep\", [\"/bin/sleep\", \"1031\"])' $CG $F >/dev/null 2>&1",
            wait_line("sleep", "1031")],
    },
    "03.cpu": {
        "a quarter as 50 ms every 200 ms": [
            _CPU_HALF_PERIOD + f' && setsid -f sh -c "echo \\$\\$ > $CG/cgroup.procs && exec sh -c \'{BUSY}\'" '
            ">/dev/null 2>&1", wait_line("sh", "-c", BUSY)],
        "the loop started first, then moved in": [
            CPU + 'mkdir -p $CG && if [ $F = cpu.max ]; then echo "25000 100000" > $CG/$F; '
            "else echo 25000 > $CG/$F; fi",
            f"setsid -f sh -c '{BUSY}' >/dev/null 2>&1", wait_line("sh", "-c", BUSY),
            CPU + f"echo $(pgrep -f '{pattern('sh', '-c', BUSY)}') > $CG/cgroup.procs"],
    },
    "03.free": {
        "the size in bytes, flags in another order": [
            "labkit run --lxcfs -d --memory 134217728 --name lab03-free -- sleep 600"],
        "--memory=128M, and busybox's sleep": [
            "labkit run -d --name=lab03-free --memory=128M --lxcfs -- busybox sleep 600"],
    },
}

NEAR_MISSES = {
    "03.memory": {
        "a cgroup with no limit": ([MEMORY + "mkdir -p $CG && " + " && ".join(background(
            'sh -c "echo \\$\\$ > $CG/cgroup.procs && exec sleep 1031"', "sleep", "1031"))], "has no memory limit"),
        "32 MB, not 32 MiB": ([MEMORY + "mkdir -p $CG && echo 32000000 > $CG/$F && " + " && ".join(background(
            'sh -c "echo \\$\\$ > $CG/cgroup.procs && exec sleep 1031"', "sleep", "1031"))], "not 32 MiB"),
        "labkit run --memory, not by hand": (
            ["labkit run -d --name lab03 --memory 32m -- sleep 1031", wait_line("sleep", "1031")],
            "not in the cgroup lab03 you make by hand"),
    },
    "03.cpu": {
        "a cgroup with no quota": ([CPU + "mkdir -p $CG && " + " && ".join(background(
            f'sh -c "echo \\$\\$ > $CG/cgroup.procs && exec sh -c \'{BUSY}\'"', "sh", "-c", BUSY))],
            "has no CPU quota"),
        "half a CPU": ([_CPU_HALF_PERIOD.replace("50000", "100000") + " && " + " && ".join(background(
            f'sh -c "echo \\$\\$ > $CG/cgroup.procs && exec sh -c \'{BUSY}\'"', "sh", "-c", BUSY))],
            "not 0.25"),
        "labkit run --cpus, not by hand": (
            [f"labkit run -d --name lab03-cpu --cpus 0.25 -- sh -c '{BUSY}'", wait_line("sh", "-c", BUSY)],
            "not in the cgroup lab03-cpu you make by hand"),
    },
    "03.free": {
        "no lxcfs": (["labkit run -d --name lab03-free --memory 128m -- sleep 600"], "is the host's"),
        "lxcfs, but 256 MiB": (["labkit run -d --name lab03-free --memory 256m --lxcfs -- sleep 600"],
                               "not 128 MiB"),
    },
}
