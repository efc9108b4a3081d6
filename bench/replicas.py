"""Replicas: the time to start a service of 20 and what each one costs.

In a network namespace of its own (nothing touches the machine's links), it
runs

    labkit service create --name bench --replicas 20 labkit/base sleep 3600

timed from spawn until the command returns (every replica running), then
reads, per replica:

  - the container's memory as its cgroup counts it (memory.current on v2,
    memory.usage_in_bytes on v1: the page cache it touched included);
  - the proportional set size (Pss, /proc/PID/smaps_rollup) of its
    processes, and of its monitor (the `labkit run -d` process that waits
    for it): shared pages, the base image's files and Python's, are split
    among those who share them;

and removes the service. The rounds repeat (--rounds); medians are shown.

Usage: python bench/replicas.py [--replicas N] [--rounds K] [--json FILE]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from labkit import api
from labkit.linux import syscalls  # noqa: E402
from labkit.course.facts.services import cost_of  # noqa: E402
from labkit.services import store  # noqa: E402


def one_round(n):
    t0 = time.perf_counter()
    r = api.call(["service", "create", "--name", "bench", "--replicas", str(n), "labkit/base", "sleep", "3600"],
                 timeout=600)
    seconds = time.perf_counter() - t0
    try:
        if r.returncode != 0:
            raise SystemExit(f"bench: {r.stderr.strip()}")
        rows = [cost_of(task["container"]) for task in store.tasks("bench")["slots"].values()]
        return seconds, rows
    finally:
        api.call(["service", "rm", "bench"], timeout=300)
        api.call(["network", "rm", "labkit"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replicas", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench/replicas.py needs root (containers, a network namespace)")
    syscalls.unshare(syscalls.CLONE_NEWNET)      # its own network namespace: bridges and rules made here
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    starts, rows = [], []
    for _ in range(a.rounds):
        seconds, r = one_round(a.replicas)
        starts.append(seconds)
        rows += r
    med = lambda key: statistics.median(r[key] for r in rows) / 2**20   # noqa: E731
    result = {"replicas": a.replicas, "rounds": a.rounds, "start_s_median": statistics.median(starts),
              "start_s_per_replica": statistics.median(starts) / a.replicas,
              "cgroup_mib_median": med("cgroup"), "container_pss_mib_median": med("pss"),
              "monitor_pss_mib_median": med("monitor_pss")}
    print(f"{a.replicas} replicas, {a.rounds} rounds (medians)")
    print(f"  start, until every replica runs   {result['start_s_median']:.2f} s "
          f"({1000 * result['start_s_per_replica']:.0f} ms a replica)")
    print(f"  memory a replica, its cgroup      {result['cgroup_mib_median']:.2f} MiB")
    print(f"  Pss of its processes              {result['container_pss_mib_median']:.2f} MiB")
    print(f"  Pss of its monitor (labkit run)   {result['monitor_pss_mib_median']:.2f} MiB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
