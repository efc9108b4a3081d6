"""Figures for the notebooks, drawn from facts (labkit/course/facts) and the time
series sampled with them. matplotlib is imported inside each function: this
module may be imported where plotting never happens.

Each function takes a fact dict, draws on ``ax`` (or a new figure) and
returns the figure, so a notebook can show it and a test can save it.
"""

from labkit.i18n import N_, _
from labkit.services.store import RUNNING

MiB = 1 << 20


def _axes(ax, ncols=1, figsize=(7, 3.2)):
    import matplotlib.pyplot as plt
    if ax is not None:
        return ax.figure, ax
    fig, axes = plt.subplots(1, ncols, figsize=figsize)
    return fig, axes


def rate(t, usage_usec, window=4):
    """cpu use in % of one core, over `window` samples at a time (a cfs
    period is 100 ms: a shorter window shows the throttling saw-tooth)."""
    out_t, out = [], []
    for i in range(window, len(t)):
        dt = t[i] - t[i - window]
        if dt > 0:
            out_t.append((t[i] + t[i - window]) / 2)
            out.append(100.0 * (usage_usec[i] - usage_usec[i - window]) / (dt * 1e6))
    return out_t, out


def memory_oom(f, ax=None):
    """memory.current (v1: memory.usage_in_bytes) against the limit, with
    the moment the OOM killer struck."""
    fig, ax = _axes(ax)
    s = f["series"]
    limit = f["limit_bytes"] / MiB
    ax.plot(s["t"], [(v or 0) / MiB for v in s["memory_current"]], color="#1f77b4",
            label=_("memory in use (the container's cgroup)"))
    ax.axhline(limit, color="#d62728", linestyle="--", label=_("limit: {limit:.0f} MiB", limit=limit))
    if f.get("kill_t") is not None:
        ax.axvline(f["kill_t"], color="black", linestyle=":", label=_("OOM kill (oom_kill 0 → 1)"))
        ax.annotate("SIGKILL", (f["kill_t"], limit), xytext=(6, -28), textcoords="offset points")
    ax.set_xlabel(_("seconds"))
    ax.set_ylabel("MiB")
    ax.set_ylim(0, limit * 1.25)
    ax.set_title(_("A hog under --memory {limit:.0f}m grows to the limit and is killed", limit=limit))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def fork_bomb(f, ax=None):
    """pids.current against pids.max while a fork bomb runs."""
    fig, ax = _axes(ax)
    s = f["series"]
    ax.axhline(f["pids_limit"], color="#d62728", linestyle="--", linewidth=1, zorder=1,
               label=_("pids.max = {limit}", limit=f["pids_limit"]))
    ax.step(s["t"], [v or 0 for v in s["pids_current"]], where="post", color="#1f77b4",
            linewidth=2, zorder=2, label=_("processes in the cgroup (pids.current)"))
    ax2 = ax.twinx()
    ax2.plot(s["t"], [v or 0 for v in s["pids_refused"]], color="#7f7f7f", linewidth=1,
             label=_("forks refused (pids.events max)"))
    ax2.set_ylabel(_("forks refused"), color="#7f7f7f")
    ax.set_xlabel(_("seconds"))
    ax.set_ylabel(_("processes"))
    ax.set_ylim(0, f["pids_limit"] * 1.3)
    ax.set_title(_("A fork bomb meets pids.max"))
    lines = ax.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def cpu_quota(f, axes=None):
    """cpu time used against wall time (the slope is the share of one core),
    and the use in % over 200 ms windows, for --cpus and for no quota."""
    fig, axes = _axes(axes, ncols=2, figsize=(10, 3.4))
    s = f["series"]
    t = s["t"]
    labels = [f"--cpus {f['cpus']}", _("no quota")]
    colors = ["#d62728", "#7f7f7f"]
    for usage, label, color in zip(s["cpu_usage_usec"], labels, colors):
        axes[0].plot(t, [(u - usage[0]) / 1e6 for u in usage], color=color, label=label)
        rt, r = rate(t, usage)
        axes[1].plot(rt, r, color=color, label=label)
    axes[0].plot([t[0], t[-1]], [0, (t[-1] - t[0]) * f["cpus"]], color="black", linestyle=":",
                 linewidth=1, label=_("{cpus} s per second", cpus=f["cpus"]))
    axes[0].set_xlabel(_("seconds"))
    axes[0].set_ylabel(_("cpu seconds used"))
    axes[0].set_title(_("cpu time: the slope is the quota"))
    axes[0].legend(fontsize=8)
    axes[1].axhline(f["target_percent"], color="black", linestyle=":", linewidth=1)
    axes[1].set_ylim(0, 120)
    axes[1].set_xlabel(_("seconds"))
    axes[1].set_ylabel(_("% of one core (200 ms windows)"))
    axes[1].set_title(_("measured: {percent}% vs {control}%", percent=f["percent"], control=f["control_percent"]))
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def cpu_shares(f, axes=None):
    """Two busy containers on one cpu: cpu time of each over wall time, and
    the split against the shares' ratio."""
    fig, axes = _axes(axes, ncols=2, figsize=(10, 3.4))
    s = f["series"]
    t = s["t"]
    colors = ["#1f77b4", "#ff7f0e"]
    for usage, share, color in zip(s["cpu_usage_usec"], f["shares"], colors):
        axes[0].plot(t, [(u - usage[0]) / 1e6 for u in usage], color=color,
                     label=f"--cpu-shares {share}")
    axes[0].set_xlabel(_("seconds"))
    axes[0].set_ylabel(_("cpu seconds used"))
    axes[0].set_title(_("two busy loops pinned to cpu {cpu}", cpu=f["pinned_cpu"]))
    axes[0].legend(fontsize=8)
    total = sum(f["cpu_usec"]) or 1
    measured = [u / total for u in f["cpu_usec"]]
    expected = [sh / sum(f["shares"]) for sh in f["shares"]]
    x = range(len(f["shares"]))
    axes[1].bar([i - 0.2 for i in x], expected, width=0.4, color="#cccccc", label=_("shares ratio"))
    axes[1].bar([i + 0.2 for i in x], measured, width=0.4, color=colors[:len(measured)],
                label=_("measured cpu time"))
    axes[1].set_xticks(list(x), [_("shares {shares}", shares=sh) for sh in f["shares"]])
    axes[1].set_ylabel(_("fraction of the cpu"))
    axes[1].set_ylim(0, 1)
    axes[1].set_title(_("split 1:{ratio} (expected 1:{expected:g})", ratio=f["ratio"], expected=f["expected_ratio"]))
    axes[1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


# Which answer of the side-by-side probe (labkit/course/facts/security.py) means
# the guard held.
GUARD_HELD = {"mount": "no", "proc_sys": "no", "userns": "no", "open_disk": "no", "seccomp": "2",
              "no_new_privs": "1"}
GUARD_NAMES = {"mount": "mount(2)", "proc_sys": N_("write /proc/sys"), "userns": "unshare -U",
               "open_disk": N_("open a disk node"), "seccomp": N_("seccomp filter"), "no_new_privs": "no_new_privs"}


def guards(columns, ax=None):
    """One row per guard, one column per configuration: green where the
    guard held (the escape failed), red where it did not."""
    from matplotlib.colors import ListedColormap
    fig, ax = _axes(ax, figsize=(7, 3.4))
    names = list(columns)
    rows = list(GUARD_HELD)
    grid = [[1 if columns[c].get(r) == GUARD_HELD[r] else 0 for c in names] for r in rows]
    ax.imshow(grid, cmap=ListedColormap(["#e06666", "#93c47d"]), vmin=0, vmax=1, aspect="auto")
    for i, r in enumerate(rows):
        for j, c in enumerate(names):
            ax.text(j, i, _("held") if grid[i][j] else _("open"), ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(names)), names, fontsize=9)
    ax.set_yticks(range(len(rows)), [_(GUARD_NAMES[r]) for r in rows], fontsize=9)
    ax.set_title(_("guards a default keeps (green: the escape failed)"))
    return fig


def topology(f, ax=None):
    """The network as the kernel has it (fact net_topology): the host's
    namespace with the bridge and the host ends of the veth pairs, and one box
    per container namespace with its eth0, joined by the pair's two ends."""
    from matplotlib.patches import FancyBboxPatch
    containers = f["containers"]
    n = max(1, len(containers))
    fig, ax = _axes(ax, figsize=(2.6 * n + 2, 4.2))
    width = 2.4 * n + 1
    ax.set_xlim(0, width)
    ax.set_ylim(0, 6)
    ax.axis("off")

    def box(x, y, w, h, text, color, **kw):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=color, ec="#444", **kw))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8)

    ax.add_patch(FancyBboxPatch((0.1, 3.0), width - 0.2, 2.8, boxstyle="round,pad=0.05", fc="#f3f3f3",
                                ec="#999", ls="--"))
    ax.text(0.25, 5.55, _("host network namespace ({ns})", ns=f["host_ns"]), fontsize=8, color="#555")
    br = f["bridge"]
    box(width / 2 - 1.1, 4.4, 2.2, 0.8, _("bridge {name}\n{address} (gateway)", name=br["name"], address=br["address"]), "#cfe2f3")
    for i, c in enumerate(containers):
        x = 0.5 + 2.4 * i
        box(x, 3.3, 1.9, 0.6, f"{c['veth']}\nindex {c['peer_index']}", "#fff2cc")
        ax.plot([x + 0.95, width / 2], [3.9, 4.4], color="#444", lw=1)
        ax.plot([x + 0.95, x + 0.95], [3.3, 2.3], color="#c00", lw=2)
        ax.text(x + 1.0, 2.75, _("veth pair"), fontsize=7, color="#c00")
        box(x, 0.3, 1.9, 2.0, f"{c['name']}\nnet ns {c['net_ns']}\n\n{c['ifname']}@if{c['peer_index']}\n{c['ip']}",
            "#d9ead3")
    ax.set_title(_("the links, read from `ip -j addr` inside and outside"))
    return fig


def disk_usage(rows, lower_bytes, title, ax=None):
    """N full copies of a rootfs against N containers sharing it (overlay):
    rows of {n, copies_bytes, shared_bytes}. Notebook 04 draws it for bare
    containers, notebook 08 for the replicas of a service."""
    fig, ax = _axes(ax, figsize=(7, 3.4))
    x = range(len(rows))
    b1 = ax.bar([i - 0.2 for i in x], [r["copies_bytes"] / MiB for r in rows], width=0.4, color="#999",
                label=_("N full copies of the rootfs"))
    b2 = ax.bar([i + 0.2 for i in x], [r["shared_bytes"] / MiB for r in rows], width=0.4, color="#1f77b4",
                label=_("N containers on the shared rootfs (overlay)"))
    ax.bar_label(b1, fmt="%.1f", fontsize=8)
    ax.bar_label(b2, fmt="%.1f", fontsize=8)
    ax.set_xticks(list(x), [str(r["n"]) for r in rows])
    ax.set_xlabel(_("N (containers or copies)"))
    ax.set_ylabel(_("disk used (MiB)"))
    ax.set_title(_("{title} (the rootfs is {size:.1f} MiB)", title=title, size=lower_bytes / MiB), fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def _replica_rows(names):
    """A row per replica (SERVICE.SLOT), sorted by slot."""
    return {n: i for i, n in enumerate(sorted(names, key=lambda n: int(n.split(".")[1])))}


def requests(f, ax=None):
    """Each request at its time, on the row of the replica that answered
    (its hostname, SERVICE.SLOT.TASK); a failed one as a red x below."""
    answers = f["answers"]
    names = {b.split()[-1] for _, b in answers if b}
    rows = _replica_rows({n.rsplit(".", 1)[0] for n in names})
    fig, ax = _axes(ax, figsize=(7, 2.6))
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
    for t, b in answers:
        if b is None:
            ax.plot(t, -1, "x", color="#c00")
            continue
        replica = b.split()[-1].rsplit(".", 1)[0]
        ax.plot(t, rows[replica], "o", ms=5, color=colors[rows[replica] % len(colors)])
    ax.set_yticks([-1] + list(rows.values()), [_("failed")] + list(rows))
    ax.set_ylim(-1.6, len(rows) - 0.4)
    ax.set_xlabel(_("seconds"))
    ax.set_title(_("who answered each request to the published port"), fontsize=10)
    fig.tight_layout()
    return fig


def _intervals(events, t0, end):
    """From the supervisor's events: per replica slot, the [start, end) times
    each task was in the rotation (ready) and alive (running)."""
    live, ready, open_live, open_ready = {}, {}, {}, {}
    for e in sorted(events, key=lambda e: e["t"]):
        slot, t = e["slot"], e["t"] - t0
        if e["event"] == RUNNING:
            open_live[slot] = (t, e["task"])
        elif e["event"] in ("ready", "healthy") and slot not in open_ready:
            open_ready[slot] = (t, e["task"])
        elif e["event"] in ("draining", "unhealthy", "retired"):
            if slot in open_ready:
                ready.setdefault(slot, []).append((*open_ready.pop(slot), t))
            if e["event"] == "retired" and slot in open_live:
                live.setdefault(slot, []).append((*open_live.pop(slot), t))
    for slot, (t, task) in open_live.items():
        live.setdefault(slot, []).append((t, task, end))
    for slot, (t, task) in open_ready.items():
        ready.setdefault(slot, []).append((t, task, end))
    return live, ready


def timeline(f, ax=None, marks=()):
    """Replicas over time, from tasks.json's events (a thin bar: the task's
    container runs; a thick one: it is in the rotation), with the requests
    below: served (green) and failed (red). ``marks``: [(seconds, label)]."""
    answers, t0 = f["answers"], f["t0"]
    end = max([t for t, _ in answers] + [0]) + 0.5
    live, ready = _intervals(f["events"], t0, end)
    slots = sorted(set(live) | set(ready))
    fig, ax = _axes(ax, figsize=(7.5, 0.6 * len(slots) + 2.2))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    tasks = {}
    for y, slot in enumerate(slots, start=1):
        for start, task, stop in live.get(slot, []):
            color = tasks.setdefault(task, palette[len(tasks) % len(palette)])
            ax.barh(y, stop - max(start, 0), left=max(start, 0), height=0.2, color=color, alpha=0.5)
        for start, task, stop in ready.get(slot, []):
            color = tasks.setdefault(task, palette[len(tasks) % len(palette)])
            ax.barh(y, stop - max(start, 0), left=max(start, 0), height=0.55, color=color)
            ax.text(max(start, 0) + 0.05, y, task, va="center", fontsize=7, color="white")
    ok = [t for t, b in answers if b is not None]
    bad = [t for t, b in answers if b is None]
    ax.plot(ok, [0] * len(ok), "|", ms=12, color="#2ca02c", label=_("served ({n})", n=len(ok)))
    ax.plot(bad, [0] * len(bad), "x", ms=9, color="#c00", label=_("failed ({n})", n=len(bad)))
    for t, label in marks:
        ax.axvline(t, color="#c00", ls="--", lw=1)
        ax.text(t, len(slots) + 0.55, label, color="#c00", fontsize=8, ha="center")
    ax.set_yticks(range(len(slots) + 1), [_("requests")] + [_("slot {n}", n=s) for s in slots])
    ax.set_ylim(-0.7, len(slots) + 0.9)
    ax.set_xlim(0, end)
    ax.set_xlabel(_("seconds (thin: the container runs; thick: in the rotation; the label is the task)"))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def memory_per_replica(f, ax=None):
    """Memory of each replica, for N replicas of one image (fact svc_cost):
    what its cgroup counts, and the Pss of its processes."""
    import statistics
    rows = f["rows"]
    fig, ax = _axes(ax, figsize=(7, 3))
    x = range(len(rows))
    for dx, key, color, label in ((-0.2, "cgroup", "#1f77b4", _("cgroup (memory.current / usage_in_bytes)")),
                                  (0.2, "pss", "#ff7f0e", _("Pss of its processes"))):
        bars = ax.bar([i + dx for i in x], [statistics.median(r[key]) / MiB for r in rows], width=0.4,
                      color=color, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(list(x), [str(r["n"]) for r in rows])
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)     # room for the legend above the bars
    ax.set_xlabel(_("N replicas"))
    ax.set_ylabel(_("MiB a replica (median)"))
    ax.set_title(_("memory of one replica: its own pages, not the image's size"), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# The course's map: each layer of a container, bottom up, with its notebook.
COURSE = (
    (N_("Linux kernel (one, shared by host and containers)"), "#888888", "—"),
    (N_("chroot / pivot_root: its own /"), "#1f77b4", "01"),
    (N_("namespaces: PID NET IPC MNT UTS (+USER CGROUP TIME): its own view"), "#2ca02c", "02"),
    (N_("cgroups: memory, cpu, pids limits"), "#ff7f0e", "03"),
    (N_("union filesystem: shared read-only layers + a writable one"), "#9467bd", "04"),
    (N_("container format: config.json (OCI runtime spec), run by labkit or runc"), "#d62728", "05"),
    (N_("virtual networks: veth pairs, a bridge, NAT, published ports"), "#17becf", "06"),
    (N_("images and registries: layers named by their digest"), "#8c564b", "07"),
    (N_("microservices: many identical replicas behind one address"), "#bcbd22", "08"),
    (N_("security: capabilities, seccomp, user namespaces — and the escapes"), "#e377c2", "09"),
)


def course_map(ax=None):
    """The layers a container is built from, one per notebook, bottom up."""
    from matplotlib.patches import FancyBboxPatch
    fig, ax = _axes(ax, figsize=(9, 0.55 * len(COURSE) + 0.6))
    for i, (text, color, nb) in enumerate(COURSE):
        ax.add_patch(FancyBboxPatch((0, i), 10, 0.85, boxstyle="round,pad=0.02", color=color, alpha=0.85))
        ax.text(0.2, i + 0.42, _(text), va="center", color="white", fontsize=10, weight="bold")
        ax.text(9.8, i + 0.42, nb, va="center", ha="right", color="white", fontsize=10)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, len(COURSE))
    ax.axis("off")
    ax.set_title(_("A container, built up one primitive at a time (right: the notebook)"))
    fig.tight_layout()
    return fig
