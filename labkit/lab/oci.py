"""Notebook 05's exercises: a bundle's config.json edited by the student and
run with labkit-runtime (or runc). Each check asks the runtime for the
container's state (its pid), then the kernel: the init's namespaces, its
cgroup's limit, its own mount table."""

import json

from . import Exercise, own_namespace, sh
from .. import mountinfo
from .cgroups import memory_limit
from ..i18n import _

TOP = "/tmp/lab05"
SHARE = f"{TOP}/share"


def state(cid):
    """The OCI state of ``cid`` from labkit-runtime, else from runc, or (None, why not)."""
    for runtime in ("labkit-runtime", "runc"):
        r = sh(f"{runtime} state {cid}")
        if r.returncode == 0:
            st = json.loads(r.stdout)
            if st.get("status") != "running":
                return None, _("container {cid} is {status}, not running (`{runtime} start {cid}`)",
                               cid=cid, status=st.get('status'), runtime=runtime)
            return st["pid"], None
    return None, _("neither labkit-runtime nor runc knows a container {cid} (`labkit-runtime list`)", cid=cid)


def solution(name, edit):
    """Make bundle /tmp/lab05/NAME from `labkit-runtime spec`, apply the
    Python statements ``edit`` to its config ``c``, run it detached as lab05-NAME."""
    path = f"{TOP}/{name}"
    return [f"mkdir -p {path} && cp -a $ROOTFS {path}/rootfs && cd {path} && labkit-runtime spec",
            f"cd {path} && python3 -c 'import json; c = json.load(open(\"config.json\")); "
            f"c[\"process\"].update(terminal=False, args=[\"sleep\", \"600\"]); {edit}; "
            f"json.dump(c, open(\"config.json\", \"w\"), indent=2)'",
            f"labkit-runtime run -d --bundle {path} lab05-{name} </dev/null >/dev/null 2>&1"]


def reset(name):
    return [f"labkit-runtime delete --force lab05-{name} >/dev/null 2>&1 || true",
            f"runc delete --force lab05-{name} >/dev/null 2>&1 || true",
            f"rm -rf {TOP}/{name}", f"rmdir {TOP} 2>/dev/null || true"]


def _host_network():
    pid, why = state("lab05-hostnet")
    if pid is None:
        return False, why
    if own_namespace(pid, "net"):
        return False, _("lab05-hostnet has a network namespace of its own: linux.namespaces still lists network")
    if not own_namespace(pid, "pid"):
        return False, _("lab05-hostnet shares the host's PID namespace too: drop only the network one")
    return True, _("lab05-hostnet's init is in the host's network namespace, and in a PID namespace of its own")


def _memory():
    pid, why = state("lab05-mem")
    if pid is None:
        return False, why
    cg, limit = memory_limit(pid)
    if limit != 48 << 20:
        return False, _("lab05-mem's cgroup {cg} has the memory limit {limit}, not 48 MiB ({want})",
                        cg=cg, limit=limit, want=48 << 20)
    return True, _("lab05-mem's cgroup {cg} is limited to {limit} bytes, as config.json asked", cg=cg, limit=limit)


def _mount():
    pid, why = state("lab05-data")
    if pid is None:
        return False, why
    mine = [m for m in mountinfo.parse(open(f"/proc/{pid}/mountinfo").read()) if m.mount_point == "/data"]
    if not mine:
        return False, _("lab05-data has nothing mounted on /data (config.json's mounts)")
    try:
        seen = open(f"/proc/{pid}/root/data/hello").read().strip()
        expected = open(f"{SHARE}/hello").read().strip()
    except OSError:
        seen = expected = None
    if seen is None or seen != expected:
        return False, _("/data in lab05-data does not show {share} (its hello is {seen})", share=SHARE, seen=repr(seen))
    if "ro" not in mine[-1].options.split(","):
        return False, _("/data in lab05-data is writable: the container could change the host's files")
    return True, _("/data in lab05-data is {share} of the host, mounted read-only", share=SHARE)


EDIT_NET = 'c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]'
EDIT_MEM = 'c["linux"].setdefault("resources", {})["memory"] = {"limit": 48 * 1024 * 1024}'
EDIT_MOUNT = (f'c["mounts"].append({{"destination": "/data", "type": "bind", "source": "{SHARE}", '
              '"options": ["rbind", "ro"]})')

EXERCISES = [
    Exercise("05.no-net", "a container on the host's network",
             f"Make a bundle {TOP}/hostnet (rootfs and config.json) whose container runs `sleep 600` in every "
             "namespace of the default spec but the network one, and run it detached as lab05-hostnet.",
             ["config-linux.md, \"Namespaces\": a namespace not listed in linux.namespaces is the runtime's own",
              "labkit-runtime spec writes the default config.json; remove the entry {\"type\": \"network\"}, set "
              "process.terminal false and process.args; then labkit-runtime run -d --bundle DIR ID",
              f"mkdir -p {TOP}/hostnet && cp -a $ROOTFS {TOP}/hostnet/rootfs && cd {TOP}/hostnet && "
              "labkit-runtime spec; edit config.json; sudo labkit-runtime run -d --bundle . lab05-hostnet "
              "</dev/null >/dev/null 2>&1"],
             _host_network, solution("hostnet", EDIT_NET), reset("hostnet")),
    Exercise("05.memory", "a memory limit in config.json",
             f"Make a bundle {TOP}/mem whose container (`sleep 600`) has a memory limit of 48 MiB, and run it "
             "detached as lab05-mem.",
             ["config-linux.md, \"Control groups\" → \"Memory\": linux.resources.memory.limit, in bytes",
              "\"resources\": {\"memory\": {\"limit\": 50331648}} inside \"linux\"",
              f"as 05.no-net, with c[\"linux\"][\"resources\"] = {{\"memory\": {{\"limit\": 50331648}}}}; "
              "sudo labkit-runtime run -d --bundle . lab05-mem </dev/null >/dev/null 2>&1"],
             _memory, solution("mem", EDIT_MEM), reset("mem")),
    Exercise("05.mount", "a host directory, read-only",
             f"Make a bundle {TOP}/data whose container (`sleep 600`) sees the host's {SHARE} (the notebook "
             "makes it) at /data, read-only, and run it detached as lab05-data.",
             ["config.md, \"Mounts\": destination, type, source, options — a bind mount is type \"bind\"",
              "{\"destination\": \"/data\", \"type\": \"bind\", \"source\": \"/tmp/lab05/share\", "
              "\"options\": [\"rbind\", \"ro\"]} appended to \"mounts\"",
              "as 05.no-net, with that entry appended to c[\"mounts\"]; sudo labkit-runtime run -d --bundle . "
              "lab05-data </dev/null >/dev/null 2>&1"],
             _mount,
             [f"mkdir -p {SHARE} && echo 'from the host' > {SHARE}/hello"] + solution("data", EDIT_MOUNT),
             reset("data") + [f"rm -rf {SHARE}", f"rmdir {TOP} 2>/dev/null || true"]),
]
