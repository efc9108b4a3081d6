"""Notebook 05's exercises: a bundle's config.json edited by the student and
run with labkit-runtime (or runc). Each check asks the runtime for the
container's state (its pid), then the kernel: the init's namespaces, its
cgroup's limit, its own mount table."""

import glob
import json
import os
import shlex

from labkit.containers import RUNNING
from labkit.course.lab import Exercise, own_namespace, sh
from labkit.linux import mountinfo
from labkit.course.lab.cgroups import memory_limit
from labkit.i18n import _

TOP = "/tmp/lab05"
SHARE = f"{TOP}/share"


# Where a student's --root may be: a directory under /tmp or /run holding one
# named after the container (labkit-runtime and runc both keep ROOT/ID/).
ROOT_GLOBS = ("/tmp/*/{cid}", "/tmp/*/*/{cid}", "/run/*/{cid}")


def roots(cid):
    """The state directories to ask about ``cid``: each runtime's default
    (None), then any --root that holds a directory named ``cid``."""
    found = [None]
    for pattern in ROOT_GLOBS:
        for d in sorted(glob.glob(pattern.format(cid=cid))):
            if os.path.isdir(d) and os.path.dirname(d) not in found:
                found.append(os.path.dirname(d))
    return found


def state(cid):
    """The pid of ``cid``'s init from labkit-runtime or runc, under any
    --root the student used (see roots), or (None, why not)."""
    for root in roots(cid):
        flag = f"--root {shlex.quote(root)} " if root else ""
        for runtime in ("labkit-runtime", "runc"):
            r = sh(f"{runtime} {flag}state {cid}")
            if r.returncode != 0:
                continue
            st = json.loads(r.stdout)
            if st.get("status") != RUNNING:
                return None, _("container {cid} is {status}, not running (`{runtime} {flag}start {cid}`)",
                               cid=cid, status=st.get('status'), runtime=runtime, flag=flag)
            return st["pid"], None
    return None, _("neither labkit-runtime nor runc knows a container {cid} (`labkit-runtime list`; "
                   "with --root DIR if you gave one)", cid=cid)


def solution(name, edit, run="labkit-runtime run -d --bundle {bundle} {cid}"):
    """Make bundle /tmp/lab05/NAME from `labkit-runtime spec`, apply the
    Python statements ``edit`` to its config ``c``, then ``run`` it (the
    default: detached, as lab05-NAME, with labkit-runtime's default --root)."""
    path = f"{TOP}/{name}"
    return [f"mkdir -p {path} && cp -a $ROOTFS {path}/rootfs && cd {path} && labkit-runtime spec",
            f"cd {path} && python3 -c 'import json; c = json.load(open(\"config.json\")); "
            f"c[\"process\"].update(terminal=False, args=[\"sleep\", \"600\"]); {edit}; "
            f"json.dump(c, open(\"config.json\", \"w\"), indent=2)'",
            run.format(bundle=path, cid=f"lab05-{name}") + f" </dev/null >{TOP}/{name}.log 2>&1"]


def reset(name):
    """Delete lab05-NAME under either runtime, in the default state directory
    and in any --root a student used (an empty one goes too), then the bundle."""
    cid = f"lab05-{name}"
    where = " ".join(g.format(cid=cid) for g in ROOT_GLOBS)
    return [f'for r in "" $(for d in {where}; do [ -d "$d" ] && dirname "$d"; done); do '
            f'for rt in labkit-runtime runc; do $rt ${{r:+--root "$r"}} delete --force {cid} >/dev/null 2>&1; done; '
            f'[ -z "$r" ] || rmdir "$r" 2>/dev/null; done; true',
            f"rm -rf {TOP}/{name}", f"rmdir {TOP} 2>/dev/null || true"]


def _host_network():
    pid, why = state("lab05-hostnet")
    if pid is None:
        return False, why
    if own_namespace(pid, "net"):
        return False, _("lab05-hostnet has a network namespace of its own: linux.namespaces still lists network")
    shared = [kind for kind in ("pid", "ipc", "uts", "mnt") if not own_namespace(pid, kind)]
    if shared:
        return False, _("lab05-hostnet shares the host's {kinds} namespace too: drop only the network one",
                        kinds=", ".join(shared))
    return True, _("lab05-hostnet's init is in the host's network namespace, and in PID, IPC, UTS and mount "
                   "namespaces of its own")


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
             "namespace of the default spec but the network one, and run it detached as lab05-hostnet, what it prints kept in /tmp/lab05/hostnet.log.",
             ["config-linux.md, \"Namespaces\": a namespace not listed in linux.namespaces is the runtime's own",
              "labkit-runtime spec writes the default config.json; remove the entry {\"type\": \"network\"}, set "
              "process.terminal false and process.args; then labkit-runtime run -d --bundle DIR ID",
              f"mkdir -p {TOP}/hostnet && cp -a $ROOTFS {TOP}/hostnet/rootfs && cd {TOP}/hostnet && "
              "labkit-runtime spec; edit config.json; sudo labkit-runtime run -d --bundle . lab05-hostnet "
              "</dev/null >/tmp/lab05/hostnet.log 2>&1"],
             _host_network, solution("hostnet", EDIT_NET), reset("hostnet"), log=f"{TOP}/hostnet.log"),
    Exercise("05.memory", "a memory limit in config.json",
             f"Make a bundle {TOP}/mem whose container (`sleep 600`) has a memory limit of 48 MiB, and run it "
             "detached as lab05-mem, what it prints kept in /tmp/lab05/mem.log.",
             ["config-linux.md, \"Control groups\" → \"Memory\": linux.resources.memory.limit, in bytes",
              "\"memory\": {\"limit\": 50331648} added inside \"linux\" → \"resources\", beside the "
              "\"devices\" rule already there (replacing the resources would drop it)",
              "as 05.no-net, with c[\"linux\"][\"resources\"][\"memory\"] = {\"limit\": 50331648}; "
              "sudo labkit-runtime run -d --bundle . lab05-mem </dev/null >/tmp/lab05/mem.log 2>&1"],
             _memory, solution("mem", EDIT_MEM), reset("mem"), log=f"{TOP}/mem.log"),
    Exercise("05.mount", "a host directory, read-only",
             f"Make a bundle {TOP}/data whose container (`sleep 600`) sees the host's {SHARE} (the notebook "
             "makes it) at /data, read-only, and run it detached as lab05-data, what it prints kept in /tmp/lab05/data.log.",
             ["config.md, \"Mounts\": destination, type, source, options — a bind mount is type \"bind\"",
              "{\"destination\": \"/data\", \"type\": \"bind\", \"source\": \"/tmp/lab05/share\", "
              "\"options\": [\"rbind\", \"ro\"]} appended to \"mounts\"",
              "as 05.no-net, with that entry appended to c[\"mounts\"]; sudo labkit-runtime run -d --bundle . "
              "lab05-data </dev/null >/tmp/lab05/data.log 2>&1"],
             _mount,
             [f"mkdir -p {SHARE} && echo 'from the host' > {SHARE}/hello"] + solution("data", EDIT_MOUNT),
             reset("data") + [f"rm -rf {SHARE}", f"rmdir {TOP} 2>/dev/null || true"], log=f"{TOP}/data.log"),
]


# Other ways to run the same bundle: runc, the notebook's own --root, and
# create + start (the two steps of `run`).
RUNC = "runc run -d --bundle {bundle} {cid}"
STATE_ROOT = "labkit-runtime --root /tmp/lab05-state run -d --bundle {bundle} {cid}"
TWO_STEPS = ("labkit-runtime --root /tmp/lab05-state create --bundle {bundle} {cid} </dev/null >/dev/null 2>&1 && "
             "labkit-runtime --root /tmp/lab05-state start {cid}")
ONLY_PID = 'c["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}]; c.pop("hostname", None)'
EDIT_NET_BY_INDEX = ('c["linux"]["namespaces"].pop([n["type"] for n in c["linux"]["namespaces"]]'
                     '.index("network"))')
SHARE_MADE = f"mkdir -p {SHARE} && echo 'from the host' > {SHARE}/hello"

ALTERNATIVES = {
    "05.no-net": {
        "run by runc": solution("hostnet", EDIT_NET, RUNC),
        "the notebook's --root, created then started": solution("hostnet", EDIT_NET_BY_INDEX, TWO_STEPS),
    },
    "05.memory": {
        "48 × 1048576 written by Python, under the notebook's --root": solution(
            "mem", 'c["linux"]["resources"]["memory"] = {"limit": 48 * 1048576}', STATE_ROOT),
        "the resources replaced whole, run by runc": solution(
            "mem", 'c["linux"]["resources"] = {"memory": {"limit": 50331648}}', RUNC),
    },
    "05.mount": {
        "bind (not rbind), ro, nosuid": [SHARE_MADE] + solution(
            "data", EDIT_MOUNT.replace('["rbind", "ro"]', '["bind", "ro", "nosuid"]')),
        "inserted first, run by runc": [SHARE_MADE] + solution(
            "data", EDIT_MOUNT.replace('c["mounts"].append(', 'c["mounts"].insert(len(c["mounts"]), '), RUNC),
    },
}

NEAR_MISSES = {
    "05.no-net": {
        "the network namespace still listed": (solution("hostnet", "pass"), "has a network namespace of its own"),
        "every namespace dropped but pid and mount": (solution("hostnet", ONLY_PID), "shares the host's ipc, uts"),
        "created, never started": (solution("hostnet", EDIT_NET, TWO_STEPS.split(" && ")[0].replace(
            " </dev/null >/dev/null 2>&1", "")), "is created, not running"),
    },
    "05.memory": {
        "no limit": (solution("mem", "pass"), "not 48 MiB"),
        "48 MB, not 48 MiB": (solution("mem", 'c["linux"]["resources"]["memory"] = {"limit": 48000000}'),
                              "not 48 MiB"),
    },
    "05.mount": {
        "read-write": ([SHARE_MADE] + solution("data", EDIT_MOUNT.replace('"rbind", "ro"', '"rbind"')), "is writable"),
        "another source": ([SHARE_MADE] + solution("data", EDIT_MOUNT.replace(f'"{SHARE}"', '"/etc"')),
                           "does not show"),
    },
}
