"""A container from a notebook: start-to-exit of /bin/true through labkit.api
in a running Jupyter kernel, against the crun and runc command lines.

The kernel is a real one (jupyter_client, the python3 kernel a notebook
runs in). In it, each round times, with time.perf_counter around the call:

  warm   api.run(["/bin/true"], memory="64m"): a fork of the kernel's fork
         server (labkit/runtime/servers/forkserver.py) runs `labkit run`;
  fresh  the same with LABKIT_FORKSERVER=0: `labkit` started as a process.

Both are labkit's default container (pid, net, ipc, mnt, uts and cgroup
namespaces, pivot_root into a throwaway overlay, /proc, /dev, masked paths,
dropped capabilities, seccomp, a 64 MiB memory limit, --rm). In the same
rounds, from this process, crun and runc run bench/start.py's full bundle
(`crun run`, a fresh process each, as a notebook's `!crun run` would).
Rounds interleave them; the table has medians and the median of the
per-round ratios. On a hybrid-cgroup host crun runs behind bench/start.py's
wrapper, whose own cost is measured too and taken off for the goal.

Usage: python bench/notebook.py [--runs N] [--json FILE]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import start  # noqa: E402  (bench/start.py: the bundle, the runtimes, the timing)
from labkit.course.conformance import bundles, observe  # noqa: E402

KERNEL_SETUP = """
import json, os, time
from labkit import api
def _timed(fresh, gap):
    time.sleep(gap)                   # bench/start.py's rest before each sample
    if fresh:
        os.environ["LABKIT_FORKSERVER"] = "0"
    try:
        t0 = time.perf_counter()
        r = api.run(["/bin/true"], memory="64m")
        t = time.perf_counter() - t0
    finally:
        os.environ.pop("LABKIT_FORKSERVER", None)
    assert r.returncode == 0, r
    return t
_timed(False, 0); _timed(True, 0)     # the fork server started, caches warm
"""


class Kernel:
    def __init__(self):
        from jupyter_client import KernelManager
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=os.path.dirname(HERE))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.run(KERNEL_SETUP)

    def run(self, code):
        out, errors = [], []

        def hook(msg):
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))
        self.kc.execute_interactive(code, output_hook=hook, timeout=120)
        if errors:
            raise SystemExit("bench: the kernel failed:\n" + errors[0])
        return "".join(out)

    def timed(self, fresh):
        return float(self.run(f"print(_timed({fresh}, {start.GAP}))"))

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("the benchmark runs containers: run it as root (sudo make bench)")
    rts = [rt for rt in start.runtimes()[0] if rt.name in ("crun", "runc")]
    work = tempfile.mkdtemp(prefix="labkit-bench-")
    kernel = Kernel()
    times = {"labkit.api warm": [], "labkit.api fresh": [], **{rt.name: [] for rt in rts}}
    if any(rt.wrapper for rt in rts):
        times["crun wrapper"] = []
    try:
        bundle = bundles.full(os.path.join(work, "bundle")).path
        env = observe._env()
        for i in range(3 + args.runs):
            round_ = {"labkit.api warm": kernel.timed(False), "labkit.api fresh": kernel.timed(True)}
            for rt in rts:
                t, r = start.timed(rt.command(work, "run", "--bundle", bundle, f"nb-{uuid.uuid4().hex[:8]}"), env)
                if r.returncode != 0:
                    raise SystemExit(f"{rt.name} failed: {r.stderr.decode(errors='replace').strip()}")
                round_[rt.name] = t
            if any(rt.wrapper for rt in rts):
                round_["crun wrapper"] = start.timed([*observe.CRUN_WRAPPER, "/bin/true"])[0]
            if i >= 3:
                for k, v in round_.items():
                    times[k].append(v)
    finally:
        kernel.close()
        shutil.rmtree(work, ignore_errors=True)
    print("a container from a running Jupyter kernel: /bin/true, start to exit")
    print(start.table(times, args.runs))
    print()
    ratios = {}
    for mine in ("labkit.api warm", "labkit.api fresh"):
        for other in [rt.name for rt in rts]:
            ratios[f"{mine}/{other}"] = statistics.median(a / b for a, b in zip(times[mine], times[other]))
            print(f"{mine + '/' + other:<26} {ratios[mine + '/' + other]:.2f}x  (median of per-round ratios)")
    if "crun wrapper" in times:
        # crun refuses this hybrid-cgroup host: it runs behind a wrapper
        # (bench/start.py); without the wrapper's own cost, crun alone.
        alone = [c - w for c, w in zip(times["crun"], times["crun wrapper"])]
        ratios["labkit.api warm/crun alone"] = statistics.median(a / b for a, b in zip(times["labkit.api warm"], alone))
        print(f"{'labkit.api warm/crun alone':<26} {ratios['labkit.api warm/crun alone']:.2f}x  "
              f"(crun minus its wrapper's {start.ms(statistics.median(times['crun wrapper'])):.1f} ms)")
    if "crun" in times:
        r = ratios.get("labkit.api warm/crun alone", ratios["labkit.api warm/crun"])
        print(f"goal labkit.api (warm) <= crun's command line: {'met' if r <= 1.0 else 'NOT met'} ({r:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": args.runs, "median_ms": {k: start.ms(statistics.median(v)) for k, v in times.items()},
                       "ratios": ratios}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
