"""Footprint and scale of detached containers: what labkit's own processes
cost per running container, and 100 started at once.

In a network namespace of its own (nothing touches the machine's links):

  footprint  the RSS (VmRSS) of every labkit process — the reaper, and the
             monitors where LABKIT_REAPER=0 keeps one per container — before,
             after 5 and after 50 `labkit run -d labkit/base sleep 3600`,
             started one after another; per container = (after − before) / N.
             The same with LABKIT_REAPER=0 beside it: one monitor each, as
             labkit ran before the reaper (and as podman runs conmon).
  scale      100 `labkit run -d` spawned at once: wall time until every one
             returned, failures, the peak of labkit's RSS (sampled every 20 ms),
             then one `labkit rm -f` of all 100, its time, and the leak scan
             (labkit.course.leaks) before and after.

RSS counts a page shared with another process in both; that is the figure
the goal is set in. Usage: python bench/footprint.py [--json FILE]
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from labkit import api, containers, home
from labkit.course import leaks
from labkit.linux import syscalls  # noqa: E402

GOAL_MIB = 2.0        # labkit's own memory per running detached container, at most


def labkit_pids():
    """The processes running labkit's code, by their name (comm): `labkit …`
    commands and the monitors they leave ("labkit"), a reaper
    ("labkit-reaper") and its passing children ("labkit run", "labkit finish")."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm.startswith("labkit") and containers.start_time(pid) is not None:
            found.append(int(pid))
    return found


def rss(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024
        except (OSError, StopIteration):
            pass
    return total


def settle(timeout=10):
    """Wait until only long-lived labkit processes are left (no command
    still returning, no reaper child passing)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        now = sorted(labkit_pids())
        if now == last:
            return now
        last = now
        time.sleep(0.3)
    return last


def run_d(name, env=None):
    return subprocess.run(api.labkit_argv("run", "-d", "--name", name, "labkit/base", "sleep", "3600"),
                          capture_output=True, text=True, env=env, timeout=300)


def remove(names, env=None):
    for i in range(0, len(names), 50):
        subprocess.run(api.labkit_argv("rm", "-f", *names[i:i + 50]), capture_output=True, env=env, timeout=600)


def footprint(counts=(5, 50), reaper_on=True):
    env = dict(os.environ, LABKIT_REAPER="1" if reaper_on else "0")
    before = rss(settle())
    rows, names = [], []
    try:
        for n in counts:
            while len(names) < n:
                name = f"fp{len(names)}"
                r = run_d(name, env)
                if r.returncode != 0:
                    raise SystemExit(f"bench: labkit run -d: {r.stderr.strip()}")
                names.append(name)
            pids = settle()
            after = rss(pids)
            rows.append({"containers": n, "labkit_processes": len(pids), "rss_before": before, "rss_after": after,
                         "per_container_mib": (after - before) / n / 2**20})
    finally:
        remove(names, env)
    return rows


def scale(n=100):
    before = set(leaks.leftovers())
    names = [f"many{i}" for i in range(n)]
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss(labkit_pids()))
            time.sleep(0.02)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    procs = [subprocess.Popen(api.labkit_argv("run", "-d", "--name", name, "labkit/base", "sleep", "3600"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for name in names]
    errors = [p.communicate(timeout=600)[1].strip() for p in procs]
    started = time.perf_counter() - t0
    failures = [e for p, e in zip(procs, errors) if p.returncode != 0]
    running = sum(1 for name in names
                  if os.path.isdir(home.containers_dir(name)) and containers.load(name)["status"] == "running")
    t1 = time.perf_counter()
    remove(names)
    removed = time.perf_counter() - t1
    stop.set()
    sampler.join()
    left = sorted(set(leaks.leftovers()) - before)
    return {"containers": n, "start_s": started, "running": running, "failures": len(failures),
            "first_failure": failures[0] if failures else None, "rm_s": removed,
            "peak_rss_mib": peak[0] / 2**20, "leaks": left}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json")
    p.add_argument("--scale", type=int, default=100)
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench/footprint.py needs root (containers, a network namespace)")
    syscalls.unshare(syscalls.CLONE_NEWNET)      # its own network namespace
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    result = {"reaper": footprint(), "monitors": footprint(reaper_on=False), "scale": scale(a.scale)}
    mib = 2**20
    print("labkit's own processes per running detached container (RSS, `labkit run -d … sleep 3600`)")
    print(f"  {'':<34} {'N':>4} {'processes':>10} {'RSS MiB':>9} {'per container':>14}")
    for label, key in (("one reaper for all (the default)", "reaper"), ("a monitor each (LABKIT_REAPER=0)", "monitors")):
        for row in result[key]:
            print(f"  {label:<34} {row['containers']:>4} {row['labkit_processes']:>10} "
                  f"{row['rss_after'] / mib:>9.1f} {row['per_container_mib']:>10.2f} MiB")
    worst = max(r["per_container_mib"] for r in result["reaper"])
    print(f"  goal <= {GOAL_MIB} MiB per container: {'met' if worst <= GOAL_MIB else 'NOT met'} "
          f"(worst {worst:.2f} MiB; with monitors {min(r['per_container_mib'] for r in result['monitors']):.2f})")
    s = result["scale"]
    print(f"{s['containers']} containers started at once: {s['start_s']:.1f} s until every `run -d` returned, "
          f"{s['running']} running, {s['failures']} failures; peak RSS of labkit's processes {s['peak_rss_mib']:.0f} MiB; "
          f"`rm -f` of all {s['rm_s']:.1f} s; leaks: {', '.join(s['leaks']) or 'none'}")
    if s["first_failure"]:
        print(f"  first failure: {s['first_failure']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
