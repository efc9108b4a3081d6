"""The leak scan: what of labkit is on the host right now.

Mounts with "labkit" in their path, cgroups named labkit, network links and
named network namespaces called lk* or labkit*, networks and endpoints on
disk and the nftables table `ip labkit`, processes running `-m labkit`
or with their root under $LABKIT_HOME, a reaper (runtime/servers/reaper.py),
container state directories, images, registry repositories and other
root filesystems (home_leftovers). The
test suite compares the scan before and after (tests/conftest.py) and the
cgroup facts check that they leave nothing; `labkit gc` is what cleans up.
"""

import os
import subprocess

from labkit import home
from labkit.linux import mountinfo
from labkit.containers import start_time
from labkit.linux.netdevice import link_names


# The cgroups labkit makes: its own tree (labkit/<id>), those of the
# conformance harness's containers under runc and crun (named by their ids),
# and the cgroup parent given to a real engine under test (dockerd's).
HARNESS_PREFIX = "labkit-matrix-"
CLIENT_PREFIX = "labkit-client-"


def own_cgroup(name):
    """Not any cgroup with "labkit" in its name: a systemd unit of the lab
    (labkit-jupyter.service) is the machine's, not a leftover."""
    from labkit.linux.cgroups.manager import PARENT
    return name == PARENT or name.startswith((HARNESS_PREFIX, CLIENT_PREFIX))


def _own_cgroups():
    """labkit's cgroups: near a hierarchy's top (three levels down at most),
    and below this process's own cgroup, however deep (where a child given a
    relative cgroup path, as dockerd's --cgroup-parent, makes its own)."""
    from labkit.linux.cgroups.hierarchy import own_dirs
    found = set()
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        depth = base.count("/") - "/sys/fs/cgroup".count("/")
        found.update(os.path.join(base, d) for d in dirs if own_cgroup(d))
        if depth >= 3:
            dirs[:] = []
    for base in own_dirs():
        try:
            found.update(os.path.join(base, d) for d in os.listdir(base) if own_cgroup(d))
        except OSError:
            continue
    return found


def network_leftovers():
    """Networks on disk, with their endpoints and services (and the services'
    supervisor), and nftables tables named labkit or lk*."""
    import shutil
    from labkit.networks import store
    from labkit.services import store as services
    found = [f"service {name}" for name in services.names()]
    found += [f"services' supervisor pid {pid}" for pid in [services.supervisor_pid()] if pid]
    for name in store.names():
        found.append(f"network {name}")
        found += [f"endpoint {ep['name']} on network {name}" for ep in store.endpoints(name)]
    if shutil.which("nft"):
        r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
        for line in r.stdout.splitlines():   # "table ip labkit"; lk… are the lessons' own
            words = line.split()
            if len(words) == 3 and (words[2].startswith("lk") or "labkit" in words[2]):
                found.append(f"nftables {line.strip()}")
    return found


def _reapers(grace=2.0):
    """Reaper processes still there after ``grace`` seconds: one leaves a
    moment after the last container it waited for is gone."""
    import time
    from labkit.containers import reapers
    deadline = time.monotonic() + grace
    while True:
        pids = reapers()
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(0.02)


def image_leftovers():
    """Tags in the local image store but labkit/base (made from the base rootfs
    on first use), and a lab registry left running (not the one the
    labkit-registry service runs in the foreground: the classroom VM's)."""
    from labkit.images import registry, store
    found = [f"registry pid {st['pid']} on {st['address']}" for st in [registry.status()]
             if st and not st.get("service")]
    if not os.path.exists(store.root("index.json")):
        return found
    return found + [f"image {ref}" for ref, _ in store.tags() if ref != "labkit/base:latest"]


# What $LABKIT_HOME holds (labkit/home.py): state a command made and another
# removes, reported when left; caches (unpacked layers, validated configs,
# the reaper's socket) that may stay; the base rootfs and labkit/base, made
# on first use.
HOME_STATE = ("containers", "networks", "services", "images", "registry", "rootfs")
HOME_CACHES = ("layers", "cache", "run")


def home_leftovers():
    """What of labkit's own state stays in $LABKIT_HOME beyond the base:
    a root filesystem other than base, a repository in the lab registry's
    storage, and any entry labkit does not know (containers, networks,
    services and tags are reported by the scans above)."""
    top = home.home()
    if not os.path.isdir(top):
        return []
    found = [f"in $LABKIT_HOME: {name}" for name in sorted(os.listdir(top))
             if name not in HOME_STATE + HOME_CACHES and not name.startswith(".")]
    rootfs = home.rootfs_dir()
    if os.path.isdir(rootfs):
        found += [f"rootfs {name}" for name in sorted(os.listdir(rootfs)) if name != "base"]
    repos = os.path.join(top, "registry", "data", "docker", "registry", "v2", "repositories")
    for base, dirs, _ in os.walk(repos):
        if "_manifests" in dirs:    # a repository (its name may hold slashes)
            found.append(f"registry repository {os.path.relpath(base, repos)}")
            dirs[:] = []
    return found


def leftovers():
    """What of labkit is on the host now: a sorted list of descriptions."""
    found = [f"mount {m.mount_point}" for m in mountinfo.read() if "labkit" in m.mount_point]
    found += [f"cgroup {path}" for path in sorted(_own_cgroups())]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {name}" for name in link_names(links) if name.startswith("lk") or "labkit" in name]
    if os.path.isdir("/run/netns"):
        found += [f"netns {n}" for n in os.listdir("/run/netns") if "labkit" in n or n.startswith("lk")]
    found += [f"reaper pid {pid}" for pid in _reapers()]
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == me or start_time(pid) is None:   # a zombie holds nothing
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue
        if b"-m" in argv and b"labkit" in argv[argv.index(b"-m") + 1:argv.index(b"-m") + 2]:
            found.append(f"process {pid} {b' '.join(argv).decode(errors='replace')}")
        elif root.startswith(home.home()):
            found.append(f"process {pid} in a container root {root}: {b' '.join(argv).decode(errors='replace')}")
    found += network_leftovers() + image_leftovers() + home_leftovers()
    containers = home.containers_dir()
    if os.path.isdir(containers):
        found += [f"container state {c}" for c in os.listdir(containers)]
    return sorted(found)
