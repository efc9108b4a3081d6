"""Start-to-exit time of /bin/true in a full OCI bundle, labkit-runtime
against runc and crun.

The bundle: the reference default config (all five seed namespaces — pid,
net, ipc, mnt, uts —, pivot_root into the rootfs, /proc, /dev, /sys and the
masked/read-only paths) plus a 64 MiB memory limit, running /bin/true.

Each runtime runs ``RUNTIME --root TMP run --bundle B ID`` as a fresh process,
timed with time.perf_counter from spawn to exit. Runs are interleaved
(A B C A B C …) so that a slow moment of the machine hits every runtime alike;
the table shows medians and, per pair, the median of the per-round ratios.

crun refuses this hybrid-cgroup host, so it runs inside
``unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; exec crun …'``;
the wrapper's own cost (the same command exec'ing /bin/true) is measured and shown.

labkit's start is also split into phases: interpreter start, imports (python
-X importtime), and syscall marks from ``strace -f -ttt`` (first fork,
pivot_root, the exec of /bin/true, exits).

Usage: python bench/start.py [--runs N] [--json FILE]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from labkit.course.conformance import bundles, observe  # noqa: E402

TARGET = 1.0          # the goal: labkit-runtime run at most as long as runc run


GAP = 0.05            # seconds of rest before each sample (see timed)


def timed(argv, env=None):
    """Seconds from spawn to exit of ``argv``, and its CompletedProcess.

    Each sample starts after GAP seconds of rest: a runtime's first move of a
    process into a cgroup waits for an RCU grace period unless another move
    happened within the last one (labkit/startpath.py), so back to back, a
    runtime would ride on the previous one's."""
    time.sleep(GAP)
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - t0, r


def runtimes():
    found, missing = [], {}
    for name in ("labkit", "runc", "crun"):
        rt = observe.runtime(name)
        if rt:
            found.append(rt)
        else:
            missing[name] = (observe.labkit_available() if name == "labkit"
                             else f"{name} is not installed (apt-get install {name})")
    return found, missing


def measure(rts, bundle, runs, warmup=3):
    """{name: [seconds, ...]} over ``runs`` interleaved rounds (plus warmup)."""
    roots = {rt.name: tempfile.mkdtemp(prefix="labkit-bench-root-") for rt in rts}
    times = {rt.name: [] for rt in rts}
    env = observe._env()
    extra = {"crun wrapper": [*observe.CRUN_WRAPPER, "/bin/true"], "spawn /bin/true": ["/bin/true"]}
    if any(rt.wrapper for rt in rts):
        times["crun wrapper"] = []
    times["spawn /bin/true"] = []
    try:
        for i in range(warmup + runs):
            for rt in rts:
                cid = f"labkit-bench-{uuid.uuid4().hex[:8]}"
                argv = rt.command(roots[rt.name], "run", "--bundle", bundle, cid)
                t, r = timed(argv, env)
                if r.returncode != 0:
                    subprocess.run(rt.command(roots[rt.name], "delete", "--force", cid),
                                   capture_output=True, env=env)
                    raise SystemExit(f"{rt.name} failed (exit {r.returncode}): "
                                     f"{r.stderr.decode(errors='replace').strip()}")
                if i >= warmup:
                    times[rt.name].append(t)
            for name in [n for n in extra if n in times]:
                t, _ = timed(extra[name])
                if i >= warmup:
                    times[name].append(t)
    finally:
        for root in roots.values():
            shutil.rmtree(root, ignore_errors=True)
    return times


def ms(seconds):
    return seconds * 1000


def table(times, runs):
    lines = [f"{'command':<18} {'median ms':>10} {'p10':>8} {'p90':>8}   (n={runs}, interleaved)"]
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=10) if len(ts) >= 2 else [ts[0]] * 9
        lines.append(f"{name:<18} {ms(statistics.median(ts)):>10.1f} {ms(q[0]):>8.1f} {ms(q[-1]):>8.1f}")
    return "\n".join(lines)


def ratios(times):
    """Per pair (labkit/runc, labkit/crun): median of the per-round ratios."""
    out = {}
    if "labkit" in times:
        for other in ("runc", "crun"):
            if other in times:
                per_round = [a / b for a, b in zip(times["labkit"], times[other])]
                out[f"labkit/{other}"] = statistics.median(per_round)
    if "crun" in times and "runc" in times:
        out["crun/runc"] = statistics.median([a / b for a, b in zip(times["crun"], times["runc"])])
    return out


def interpreter(rt):
    """How labkit-runtime is started: (the interpreter with its flags, the
    script) for a launcher script (`#!…/python -IS`), else `python -m`."""
    first = rt.command("x")[0]
    if first != sys.executable:
        with open(first) as f:
            shebang = f.readline()
        if shebang.startswith("#!"):
            return shebang[2:].split(), [first]
    return [sys.executable], ["-m", "labkit.cli.runtime"]


def import_cost(rt, root, bundle):
    """Import time (ms) during a real `labkit-runtime run`, from -X importtime
    (started the way the runtime is): the total of the top-level imports, and
    the heaviest of them."""
    python, script = interpreter(rt)
    argv = [*python, "-X", "importtime", *script, "--root", root,
            "run", "--bundle", bundle, f"labkit-bench-{uuid.uuid4().hex[:8]}"]
    r = subprocess.run(argv, capture_output=True, text=True, env=observe._env())
    top = {}
    for line in r.stderr.splitlines():
        parts = line.split("|")
        # top level: the module name follows the bar after exactly one space
        if len(parts) == 3 and parts[0].startswith("import time:") and parts[1].strip().isdigit() \
                and not parts[2].startswith("  "):
            top[parts[2].strip()] = int(parts[1]) / 1000
    heaviest = dict(sorted(top.items(), key=lambda kv: -kv[1])[:5])
    return sum(top.values()), heaviest


STRACE_CALLS = "execve,clone,clone3,fork,vfork,unshare,pivot_root,exit_group"
STRACE_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)")


def strace_marks(path):
    """From `strace -f -ttt` output: when the runtime started, first forked,
    called pivot_root, exec'd the container's process, and when that process
    and the runtime exited (seconds, strace's own clock)."""
    first = {}
    main_pid = proc_pid = None
    marks = {}
    with open(path) as f:
        for line in f:
            m = STRACE_LINE.match(line)
            if not m or "resumed>" in line:
                continue
            pid, t, call, args = int(m.group(1)), float(m.group(2)), m.group(3), m.group(4)
            if main_pid is None:
                main_pid, marks["start"] = pid, t
            if call in ("clone", "clone3", "fork", "vfork") and "CLONE_THREAD" not in args:
                first.setdefault("fork", t)      # a process (the warm-up thread is not one)
            elif call == "pivot_root":
                first.setdefault("pivot_root", t)
            elif call == "execve" and pid != main_pid:
                proc_pid, marks["exec"] = pid, t       # the last exec is the container's process
            elif call == "exit_group":
                if pid == proc_pid:
                    marks["process_exit"] = t
                if pid == main_pid:
                    marks["end"] = t
    marks.update(first)
    return marks


PHASES = [("interpreter, imports, config, cgroups (to the first fork)", "start", "fork"),
          ("namespaces, rootfs mounts (fork to pivot_root)", "fork", "pivot_root"),
          ("after pivot_root: masks, caps, cgroup move's end, exec", "pivot_root", "exec"),
          ("the container's /bin/true", "exec", "process_exit"),
          ("teardown (process exit to runtime exit)", "process_exit", "end")]


def phases(rt, bundle, runs=10):
    """labkit's start split in phases (medians, ms): interpreter start alone,
    import cost (-X importtime), and syscall marks from strace (-f -ttt;
    strace stops the traced calls only, yet these phases still add up to a
    little more than the untraced total)."""
    root = tempfile.mkdtemp(prefix="labkit-bench-root-")
    interp, totals, per_phase = [], [], {name: [] for name, _, _ in PHASES}
    strace = shutil.which("strace")
    env = observe._env()
    try:
        for _ in range(runs):
            interp.append(timed([*interpreter(rt)[0], "-c", "pass"])[0])
            totals.append(timed(rt.command(root, "run", "--bundle", bundle,
                                           f"labkit-bench-{uuid.uuid4().hex[:8]}"), env)[0])
            if not strace:
                continue
            out = os.path.join(root, "strace.out")
            # --seccomp-bpf: only the calls traced stop the process, so the
            # phases are near the untraced ones (labkit's warm-up thread would
            # otherwise be stopped at every syscall of the imports beside it).
            subprocess.run([strace, "-f", "--seccomp-bpf", "-ttt", "-e", f"trace={STRACE_CALLS}", "-o", out,
                            *rt.command(root, "run", "--bundle", bundle,
                                        f"labkit-bench-{uuid.uuid4().hex[:8]}")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            marks = strace_marks(out)
            for name, a, b in PHASES:
                if a in marks and b in marks:
                    per_phase[name].append(ms(marks[b] - marks[a]))
        imports = [import_cost(rt, root, bundle) for _ in range(3)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total_imports, heaviest = sorted(imports, key=lambda i: i[0])[1]     # the median of three
    return {"total (untraced)": ms(statistics.median(totals)),
            "python -c pass": ms(statistics.median(interp)),
            "imports during run (-X importtime)": total_imports,
            "heaviest top-level imports": heaviest,
            "strace phases": {k: statistics.median(v) for k, v in per_phase.items() if v}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30, help="interleaved rounds (default 30)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("the benchmark runs containers: run it as root (sudo make bench)")
    rts, missing = runtimes()
    work = tempfile.mkdtemp(prefix="labkit-bench-")
    try:
        b = bundles.full(os.path.join(work, "bundle"))
        print(f"bundle: {b.path} — /bin/true, namespaces "
              f"{[n['type'] for n in b.config['linux']['namespaces']]}, memory.limit "
              f"{b.config['linux']['resources']['memory']['limit']} bytes, pivot_root, /proc")
        for name, why in missing.items():
            print(f"not measured: {name}: {why}")
        times = measure(rts, b.path, args.runs)
        print()
        print(table(times, args.runs))
        r = ratios(times)
        print()
        for pair, value in r.items():
            print(f"{pair:<12} {value:.2f}x  (median of per-round ratios)")
        if "labkit/runc" in r:
            verdict = "met" if r["labkit/runc"] <= TARGET else "NOT met"
            print(f"target labkit <= {TARGET}x runc: {verdict}")
        result = {"runs": args.runs, "median_ms": {k: ms(statistics.median(v)) for k, v in times.items()},
                  "ratios": r, "missing": missing}
        labkit = next((rt for rt in rts if rt.name == "labkit"), None)
        if labkit:
            p = phases(labkit, b.path)
            result["labkit_phases_ms"] = p
            print("\nlabkit-runtime start, by phase (medians, ms):")
            for k in ("total (untraced)", "python -c pass", "imports during run (-X importtime)"):
                print(f"  {k:<58} {p[k]:7.1f}")
            print("  heaviest top-level imports: "
                  + ", ".join(f"{m} {v:.1f}" for m, v in p["heaviest top-level imports"].items()))
            if p["strace phases"]:
                print("  under strace -f --seccomp-bpf (a little slower; read the split):")
                for k, v in p["strace phases"].items():
                    print(f"    {k:<56} {v:7.1f}")
            else:
                print("  (strace not installed: apt-get install strace for the syscall phases)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
