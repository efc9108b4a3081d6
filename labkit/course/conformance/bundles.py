"""OCI bundles for tests, demos and the benchmark.

A bundle is a directory with ``rootfs/`` and ``config.json`` (runtime-spec,
"Filesystem Bundle"). Here the rootfs is a full copy of labkit's base rootfs
(device nodes made anew, never read) and config.json starts from the reference
default a runtime prints with ``spec`` (``runc spec``; labkit-runtime's own
``spec`` when runc is absent), then one *variant* changes what it is about.

Each variant also says what the bundle asks for, as a function of the config
and the host (``expect``): the matrix tests check any runtime against that,
and two runtimes against each other.

The process of most variants is a probe script: it prints sections
``@@name`` followed by the output of one command (``PROBES``), so that a
runtime's behaviour becomes plain text an observer can parse (observe.py).
"""

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile

from labkit.errors import LabkitError, NotFound
# The bit of each capability in /proc/PID/status Cap* masks: the one table.
from labkit.linux.process import CAPABILITIES


def cap_mask(names):
    """The hex mask /proc/PID/status prints for a list of capability names."""
    mask = 0
    for n in names:
        mask |= 1 << CAPABILITIES.index(n)
    return f"{mask:016x}"


# One command per observable; observe.parse() turns each output into a fact.
PROBES = {
    "hostname": "hostname",
    "ps": "ps -e -o pid=,comm=",
    "mounts": "cat /proc/self/mountinfo",
    "status": "grep -E '^(Cap|NoNewPrivs|Uid|Gid|Groups)' /proc/self/status",
    "limits": "cat /proc/self/limits",
    "env": "env",
    "cwd": "pwd",
    "links": "ip -o link",
    # A masked file reads as empty, a masked directory lists nothing.
    "masked": ("for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do "
               "[ -e $p ] && echo \"$p $(head -c 64 $p 2>/dev/null | wc -c)\"; done; "
               "for d in /proc/acpi /proc/scsi /sys/firmware; do "
               "[ -d $d ] && echo \"$d $(ls -A $d 2>/dev/null | wc -l)\"; done"),
    # Write back the value already there: harmless even where it succeeds.
    "ro_paths": ("for p in /proc/sys/kernel/domainname /proc/sys/kernel/hostname; do "
                 "v=$(cat $p); if (echo \"$v\" > $p) 2>/dev/null; then echo \"$p writable\"; "
                 "else echo \"$p readonly\"; fi; done"),
    "root_write": ("if touch /.labkit-probe 2>/dev/null; then echo writable; rm -f /.labkit-probe; "
                   "else echo readonly; fi"),
    "oom_score_adj": "cat /proc/self/oom_score_adj",
    "ip_forward": "cat /proc/sys/net/ipv4/ip_forward",
    "shmmax": "cat /proc/sys/kernel/shmmax",
    "idmap": "cat /proc/self/uid_map /proc/self/gid_map",
    "scratch": "echo data > /scratch/f && cat /scratch/f",
    "data": ("cat /data/hello; if touch /data/new 2>/dev/null; then echo writable; "
             "else echo readonly; fi"),
}


def probe_args(*names):
    """The process args of a probe printing ``@@name`` sections."""
    script = "; ".join(f"echo @@{n}; {PROBES[n]}" for n in names)
    return ["/bin/sh", "-c", script]


class Variant:
    """One bundle of the matrix: a name, what it tests, how it changes the
    default config, and what the result must show (``expect(config, host)``
    returns {fact: value} — host is observe.host_facts())."""

    def __init__(self, name, doc, edit, expect, needs=()):
        self.name, self.doc, self.edit, self.expect, self.needs = name, doc, edit, expect, needs

    def __repr__(self):
        return f"Variant({self.name})"


def _proc(cfg):
    return cfg["process"]


def _set(**process):
    def edit(cfg, ctx):
        _proc(cfg).update(process)
    return edit


def _probe(*names, **process):
    def edit(cfg, ctx):
        _proc(cfg).update(process)
        _proc(cfg)["args"] = probe_args(*names)
    return edit


def _chain(*edits):
    def edit(cfg, ctx):
        for e in edits:
            e(cfg, ctx)
    return edit


def _linux(**fields):
    def edit(cfg, ctx):
        cfg["linux"].update(copy.deepcopy(fields))
    return edit


def _resources(**res):
    def edit(cfg, ctx):
        cfg["linux"].setdefault("resources", {}).update(copy.deepcopy(res))
    return edit


def _ns_types(cfg):
    # A namespace joined by path differs from the host's too (it is not the host's).
    return sorted({"network": "net", "mount": "mnt"}.get(n["type"], n["type"])
                  for n in cfg["linux"]["namespaces"])


def _caps_expect(cfg, host):
    c = _proc(cfg)["capabilities"]
    # Ambient capabilities must also be permitted and inheritable (capabilities(7)).
    amb = [n for n in c.get("ambient", []) if n in c.get("inheritable", []) and n in c.get("permitted", [])]
    return {"status.CapEff": cap_mask(c.get("effective", [])),
            "status.CapPrm": cap_mask(c.get("permitted", [])),
            "status.CapBnd": cap_mask(c.get("bounding", [])),
            "status.CapInh": cap_mask(c.get("inheritable", [])),
            "status.CapAmb": cap_mask(amb)}


ONLY_BIND = ["CAP_NET_BIND_SERVICE"]
HOOK_OUT = "prestart-hook.json"
MEMORY = 64 * 1024 * 1024


def _mount(**m):
    def edit(cfg, ctx):
        cfg["mounts"].append(dict(m, source=m["source"].format(bundle=ctx["bundle"])))
    return edit


def _hostdir(cfg, ctx):
    d = os.path.join(ctx["bundle"], "hostdir")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "hello"), "w") as f:
        f.write("from the host\n")


def _join_netns(cfg, ctx):
    for n in cfg["linux"]["namespaces"]:
        if n["type"] == "network":
            n["path"] = ctx["netns"]


def _drop_netns(cfg, ctx):
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]


def _userns(cfg, ctx):
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    # Host uids 100000-165535 own nothing in the rootfs: root inside reads it
    # as "other" (the base rootfs is world-readable) and cannot write it.


def _hook(cfg, ctx):
    out = os.path.join(ctx["bundle"], HOOK_OUT)
    # A hook runs on the host, in the runtime's namespaces, with the state on stdin.
    cfg.setdefault("hooks", {})["prestart"] = [
        {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}"]}]


VARIANTS = [
    Variant("true", "the default bundle running /bin/true: its namespaces, and only them, differ from the host",
            _set(args=["/bin/true"]),
            lambda c, h: {"exit_code": 0, "stdout": "", "namespaces": _ns_types(c)}),
    Variant("exit3", "the process's exit code is the runtime's",
            _set(args=["/bin/sh", "-c", "exit 3"]), lambda c, h: {"exit_code": 3}),
    Variant("stdout", "the process's stdout reaches the caller",
            _set(args=["/bin/echo", "hello from the bundle"]),
            lambda c, h: {"exit_code": 0, "stdout": "hello from the bundle\n"}),
    Variant("hostname", "config.hostname inside a UTS namespace",
            _chain(_probe("hostname"), lambda c, x: c.update(hostname="lk-bundle")),
            lambda c, h: {"hostname": c["hostname"]}),
    Variant("env", "process.env is the whole environment (plus what the shell adds)",
            _probe("env", env=["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LABKIT_GREETING=hola"]),
            lambda c, h: {"env.LABKIT_GREETING": "hola", "env.PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}),
    Variant("cwd", "process.cwd is the working directory",
            _probe("cwd", cwd="/tmp"), lambda c, h: {"cwd": "/tmp"}),
    Variant("user", "process.user: uid, gid and additionalGids",
            _probe("status", user={"uid": 1000, "gid": 1000, "additionalGids": [2000, 3000]}),
            lambda c, h: {"status.Uid": "1000 1000 1000 1000", "status.Gid": "1000 1000 1000 1000",
                          "status.Groups": " ".join(map(str, c["process"]["user"]["additionalGids"]))}),
    Variant("readonly_root", "root.readonly: / cannot be written",
            _chain(_probe("root_write"), lambda c, x: c["root"].update(readonly=True)),
            lambda c, h: {"root_write": "readonly"}),
    Variant("writable_root", "root.readonly false: / can be written",
            _chain(_probe("root_write"), lambda c, x: c["root"].update(readonly=False)),
            lambda c, h: {"root_write": "writable"}),
    Variant("rlimit_nofile", "process.rlimits RLIMIT_NOFILE soft/hard",
            _probe("limits", rlimits=[{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768}]),
            lambda c, h: {"limits.Max open files": "512 768"}),
    Variant("caps_default", "the reference default capability sets and noNewPrivileges",
            _probe("status"),
            lambda c, h: dict(_caps_expect(c, h),
                              **{"status.NoNewPrivs": "1" if c["process"].get("noNewPrivileges") else "0"})),
    Variant("caps_only_bind", "capabilities reduced to CAP_NET_BIND_SERVICE in every set",
            _probe("status", capabilities={k: list(ONLY_BIND) for k in
                                          ("bounding", "effective", "permitted", "inheritable", "ambient")}),
            _caps_expect),
    Variant("new_privs", "process.noNewPrivileges false",
            _probe("status", noNewPrivileges=False), lambda c, h: {"status.NoNewPrivs": "0"}),
    Variant("masked_paths", "linux.maskedPaths read as empty",
            _probe("masked"),
            lambda c, h: {"masked": {p: 0 for p in h["masked_candidates"] if p in c["linux"]["maskedPaths"]}}),
    Variant("readonly_paths", "linux.readonlyPaths cannot be written",
            _probe("ro_paths"),
            lambda c, h: {"ro_paths": {"/proc/sys/kernel/domainname": "readonly",
                                       "/proc/sys/kernel/hostname": "readonly"}}),
    Variant("tmpfs_mount", "an extra tmpfs mount, writable under a read-only root",
            _chain(_probe("scratch", "mounts"),
                   _mount(destination="/scratch", type="tmpfs", source="tmpfs",
                          options=["nosuid", "nodev", "size=1m"])),
            lambda c, h: {"scratch": "data", "mounts.has": "/scratch tmpfs rw"}),
    Variant("bind_ro", "a read-only bind mount of a host directory",
            _chain(_hostdir, _probe("data", "mounts"),
                   _mount(destination="/data", type="bind", source="{bundle}/hostdir",
                          options=["rbind", "ro"])),
            lambda c, h: {"data": "from the host\nreadonly"}),
    Variant("memory_limit", "linux.resources.memory.limit in force in the container's cgroup",
            _chain(_set(args=["/bin/true"]), _resources(memory={"limit": MEMORY})),
            lambda c, h: {"cgroup.memory": MEMORY}),
    Variant("pids_limit", "linux.resources.pids.limit in force",
            _chain(_set(args=["/bin/true"]), _resources(pids={"limit": 32})),
            lambda c, h: {"cgroup.pids": 32}),
    Variant("cpu_quota", "linux.resources.cpu quota/period in force",
            _chain(_set(args=["/bin/true"]), _resources(cpu={"quota": 50000, "period": 100000})),
            lambda c, h: {"cgroup.cpu": [50000, 100000]}),
    Variant("no_netns", "without a network namespace the host's interfaces show",
            _chain(_probe("links"), _drop_netns),
            lambda c, h: {"links": h["links"], "namespaces": _ns_types(c)}),
    Variant("join_netns", "a namespace joined by path (a netns made with `ip netns add`)",
            _chain(_probe("links"), _join_netns),
            lambda c, h: {"links": ["lo"], "namespaces": _ns_types(c), "joined": {"net": True}},
            needs=("netns",)),
    Variant("sysctl", "linux.sysctl set inside the container's namespaces",
            _chain(_probe("ip_forward", "shmmax"),
                   _linux(sysctl={"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"})),
            lambda c, h: {"ip_forward": "1", "shmmax": "123456789"}),
    Variant("oom_score_adj", "process.oomScoreAdj",
            _probe("oom_score_adj", oomScoreAdj=500), lambda c, h: {"oom_score_adj": "500"}),
    Variant("userns", "uid/gid mappings in a user namespace",
            _chain(_probe("idmap", "status"), _userns),
            lambda c, h: {"idmap": ["0 100000 65536", "0 100000 65536"], "status.Uid": "0 0 0 0",
                          "namespaces": _ns_types(c)}),
    Variant("ps", "the process is PID 1 of its PID namespace",
            _probe("ps"), lambda c, h: {"ps.pid1": "sh"}),
    Variant("mount_table", "the mount table a runtime builds (points, types, ro/rw)",
            _probe("mounts"), lambda c, h: {"mounts.has": "/ ext4 ro" if h["root_fstype"] == "ext4" else None}),
    Variant("hooks", "a prestart hook runs on the host with the state on stdin",
            _chain(_set(args=["/bin/true"]), _hook),
            lambda c, h: {"hook.ran": True, "hook.id_matches": True, "hook.pid_positive": True}),
]

BY_NAME = {v.name: v for v in VARIANTS}

_SPEC_CACHE = {}

# The device rules containerd's default spec sends (oci.WithDefaultUnixDevices
# after "deny all"): what a real client hands a runtime.
CONTAINERD_DEVICES = [{"allow": False, "access": "rwm"}] + [
    {"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
    for ma, mi in ((1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1))] + [
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"}]


def reference_spec(runtime=None):
    """The default config.json a runtime prints with `spec` (runc's, else labkit-runtime's)."""
    candidates = [runtime] if runtime else (
        [["runc"]] if shutil.which("runc") else []) + [[sys.executable, "-m", "labkit.cli.runtime"]]
    for argv in candidates:
        key = tuple(argv)
        if key in _SPEC_CACHE:
            return copy.deepcopy(_SPEC_CACHE[key])
        with tempfile.TemporaryDirectory(prefix="labkit-spec-") as d:
            r = subprocess.run([*argv, "spec"], cwd=d, capture_output=True, text=True)
            path = os.path.join(d, "config.json")
            if r.returncode == 0 and os.path.exists(path):
                with open(path) as f:
                    _SPEC_CACHE[key] = json.load(f)
                return copy.deepcopy(_SPEC_CACHE[key])
    raise NotFound("no runtime could print a default config.json (`runc spec`, `labkit-runtime spec`)",
                   "install runc (apt-get install runc) or labkit with its labkit-runtime command")


def default_config(args=("/bin/true",)):
    """The reference config with the process set to ``args`` and no terminal."""
    cfg = reference_spec()
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = list(args)
    cfg["root"]["path"] = "rootfs"
    cfg.setdefault("linux", {}).setdefault("namespaces", [])
    return cfg


def copy_rootfs(rootfs, dest):
    """A private copy of a rootfs (device nodes made anew, never read)."""
    from labkit.images import builder
    from labkit.linux.files import full_copy
    full_copy(builder.resolve(rootfs), dest)


def write_bundle(path, cfg, rootfs="base"):
    """Make ``path`` a bundle: rootfs/ copied from ``rootfs``, config.json from ``cfg``."""
    if not os.path.isdir(os.path.join(path, "rootfs")):
        tmp = os.path.join(path, ".rootfs-copy")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(path, exist_ok=True)
        copy_rootfs(rootfs, tmp)
        os.rename(tmp, os.path.join(path, "rootfs"))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return path


class Bundle:
    def __init__(self, path, variant, config):
        self.path, self.variant, self.config = path, variant, config

    @property
    def name(self):
        return self.variant.name if self.variant else os.path.basename(self.path)

    def expect(self, host):
        return self.variant.expect(self.config, host) if self.variant else {}

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)

    def __repr__(self):
        return f"Bundle({self.name!r}, {self.path!r})"


def config_for(name, dest, netns=None):
    """The config.json (a dict) of variant ``name`` for a bundle at ``dest``;
    files the variant needs beside it (a host dir to bind) are made there.

    ``netns`` is the path of a network namespace to join, for variants that
    need one (``Variant.needs``)."""
    if name not in BY_NAME:
        raise LabkitError(f"no bundle variant '{name}'", "choose one of: " + ", ".join(BY_NAME))
    v = BY_NAME[name]
    if "netns" in v.needs and not netns:
        raise LabkitError(f"bundle variant '{name}' joins a network namespace: give netns=PATH",
                          "make one with `ip netns add lkNAME` and pass /run/netns/lkNAME")
    cfg = default_config()
    os.makedirs(dest, exist_ok=True)
    v.edit(cfg, {"bundle": os.path.abspath(dest), "netns": netns})
    return cfg


def make(name, dest, rootfs="base", netns=None):
    """Build the bundle of variant ``name`` in directory ``dest``."""
    cfg = config_for(name, dest, netns)
    write_bundle(dest, cfg, rootfs)
    return Bundle(os.path.abspath(dest), BY_NAME[name], cfg)


def full(dest, rootfs="base", memory=MEMORY, args=("/bin/true",)):
    """The benchmark's bundle: the five seed namespaces (pid, net, ipc, mnt,
    uts), a memory limit, pivot_root into the rootfs and /proc — the reference
    default config plus a memory limit."""
    cfg = default_config(args)
    have = {n["type"] for n in cfg["linux"]["namespaces"]}
    for t in ("pid", "network", "ipc", "uts", "mount"):
        if t not in have:
            cfg["linux"]["namespaces"].append({"type": t})
    cfg["linux"].setdefault("resources", {})["memory"] = {"limit": memory}
    write_bundle(dest, cfg, rootfs)
    return Bundle(os.path.abspath(dest), None, cfg)
