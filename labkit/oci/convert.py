"""config.json -> ContainerConfig (runc calls this step "specconv").

Runs after validate.py, so every value here has the right type and meaning;
this module only translates names and units: OCI namespace types to
/proc/PID/ns names, mount options to mount(2) flags, resources to the
cgroups package's names, paths relative to the bundle to absolute ones.
"""

import os

from labkit.runtime.config import ContainerConfig
from labkit.linux import syscalls as sc
from labkit.linux.rootfs import PROPAGATION, parse_options, recursive_attrs
from labkit.oci.validate import NS_TYPES, unset

# linux.resources -> ContainerConfig.resources (labkit/linux/cgroups/resources.py names).
RESOURCES = {
    ("memory", "limit"): "memory", ("memory", "swap"): "memory_swap",
    ("memory", "reservation"): "memory_reservation", ("memory", "swappiness"): "memory_swappiness",
    ("memory", "disableOOMKiller"): "oom_kill_disable",
    ("cpu", "shares"): "cpu_shares", ("cpu", "quota"): "cpu_quota", ("cpu", "period"): "cpu_period",
    ("cpu", "cpus"): "cpuset_cpus", ("cpu", "mems"): "cpuset_mems",
    ("pids", "limit"): "pids_limit",
}


def _mount(m, bundle):
    flags, prop, data = parse_options(m.get("options"))
    bind = m.get("type") == "bind" or bool(flags & sc.MS_BIND)
    source = m.get("source") or ""
    if bind and not source.startswith("/"):
        source = os.path.join(bundle, source)
    return {"destination": m["destination"], "type": m.get("type") or "none", "source": source,
            "flags": flags, "propagation": prop, "data": data, "bind": bind,
            "recursive": recursive_attrs(m.get("options")), "copyup": "tmpcopyup" in (m.get("options") or ())}


def resources(res):
    out = {}
    for (group, key), name in RESOURCES.items():
        value = (res.get(group) or {}).get(key)
        # 0 and "" are runc's "not set" (Go's zero values): dockerd writes
        # cpu.shares 0 into every config.json, and means the default.
        if not unset(value):
            out[name] = value
    memory = res.get("memory") or {}
    if not (unset(memory.get("kernel")) and unset(memory.get("kernelTCP"))):
        from labkit.errors import warn      # runc 1.1's words: kmem is gone from new kernels
        warn("Kernel memory settings are ignored and will be removed")
    # As runc does, whatever the config says: start from nothing allowed (a
    # config with no rules, or whose resources were replaced by a student's
    # {"memory": ...}, must not mean every device of the host), then the
    # rules given, then mknod of anything and the nodes of every container's
    # /dev (which the container would not work without).
    from labkit.linux.cgroups.devices import ALLOWED, DENY_ALL, parse
    out["devices"] = [DENY_ALL] + parse(res.get("devices") or []) + list(ALLOWED)
    return out


def _capabilities(caps):
    """The sets without the names this kernel has no capability of: runc
    drops those with a warning, and so does labkit (a config.json written
    for a newer kernel still runs)."""
    if not caps:
        return caps
    from labkit.linux.process import CAPABILITIES
    unknown = sorted({name for names in caps.values() for name in names or () if name not in CAPABILITIES})
    if unknown:
        from labkit.errors import warn
        warn(f"ignoring unknown or unavailable capabilities: {', '.join(unknown)}")
    return {kind: [name for name in names or () if name in CAPABILITIES] for kind, names in caps.items()}


def to_config(cfg, bundle, cid):
    """A ContainerConfig for container ``cid`` from a validated config.json."""
    bundle = os.path.abspath(bundle)
    proc = cfg["process"]
    linux = cfg.get("linux") or {}
    namespaces, ns_paths = set(), {}
    for ns in linux.get("namespaces") or ():
        name = NS_TYPES[ns["type"]]
        namespaces.add(name)
        if ns.get("path"):
            ns_paths[name] = ns["path"]
    mounts = [_mount(m, bundle) for m in cfg.get("mounts") or ()]
    user = proc.get("user") or {}
    devices = [{"path": d["path"], "type": d["type"], "major": d.get("major", 0), "minor": d.get("minor", 0),
                "fileMode": d.get("fileMode"), "uid": d.get("uid"), "gid": d.get("gid")}
               for d in linux.get("devices") or ()]
    res = resources(linux.get("resources") or {})
    if linux.get("cgroupsPath") and not res:
        # A cgroup is made for limits; pids.max "max" asks for one that limits nothing.
        res = {"pids_limit": -1}
    return ContainerConfig(
        id=cid, args=list(proc["args"]), env=list(proc.get("env") or ()), cwd=proc.get("cwd", "/"),
        rootfs=os.path.join(bundle, cfg["root"]["path"]),
        readonly_rootfs=bool(cfg["root"].get("readonly")),
        namespaces=frozenset(namespaces), ns_paths=ns_paths,
        hostname=cfg.get("hostname") or None,
        mount_proc=any(m["type"] == "proc" for m in mounts), mounts=mounts, devices=devices,
        rootfs_propagation=PROPAGATION.get(linux.get("rootfsPropagation") or "") or None,
        masked_paths=list(linux.get("maskedPaths") or ()),
        readonly_paths=list(linux.get("readonlyPaths") or ()),
        sysctl=dict(linux.get("sysctl") or {}),
        user={"uid": user.get("uid", 0), "gid": user.get("gid", 0),
              "additionalGids": list(user.get("additionalGids") or ()), "umask": user.get("umask")},
        capabilities=_capabilities(proc.get("capabilities")),
        rlimits=list(proc.get("rlimits") or ()),
        no_new_privileges=bool(proc.get("noNewPrivileges")),
        oom_score_adj=proc.get("oomScoreAdj"),
        uid_mappings=linux.get("uidMappings"), gid_mappings=linux.get("gidMappings"),
        hooks=dict(cfg.get("hooks") or {}),
        seccomp=linux.get("seccomp") or None,
        resources=res, cgroup_path=linux.get("cgroupsPath") or None,
        tty=bool(proc.get("terminal")), interactive=True,
        bundle=bundle, annotations=dict(cfg.get("annotations") or {}),
    )
