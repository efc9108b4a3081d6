"""Which cgroup hierarchies are mounted, and where: v1, v2 or hybrid.

Read from /proc/self/mountinfo (proc(5)): a v1 hierarchy is a mount of type
`cgroup` whose super options name its controllers ("rw,cpu,cpuacct"); the
v2 unified hierarchy is a mount of type `cgroup2`, whose controllers are
listed in its root's cgroup.controllers. On a hybrid host both exist and a
controller is usable on one side only: the v1 side wins for the controllers
labkit uses, as it does for runc.
"""

import os

from labkit.linux import mountinfo

# The controllers labkit can set limits with or read statistics from.
KNOWN = ("cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer")


class Layout:
    """What is mounted. A plain class, not a dataclass: this is on the
    container start path (labkit/startpath.py)."""

    def __init__(self, v1=None, v2=None, v2_controllers=(), v1_mounts=()):
        self.v1 = {} if v1 is None else v1      # controller -> mount point
        self.v2 = v2                            # unified mount point
        self.v2_controllers = v2_controllers    # in its cgroup.controllers
        self.v1_mounts = v1_mounts              # every v1 mount point (for gc)

    def __repr__(self):
        return (f"Layout(v1={self.v1!r}, v2={self.v2!r}, v2_controllers={self.v2_controllers!r}, "
                f"v1_mounts={self.v1_mounts!r})")

    @property
    def mode(self):
        if self.v1 and self.v2:
            return "hybrid"
        if self.v1:
            return "v1"
        if self.v2:
            return "v2"
        return None

    @property
    def version(self):
        """The hierarchy labkit uses: the v1 one whenever v1 has controllers."""
        return 1 if self.v1 else 2 if self.v2 else None


def parse_mountinfo(text):
    return hierarchies(mountinfo.parse(text))


def hierarchies(mounts):
    """({controller: v1 mount point}, every v1 mount point, the v2 mount point)
    of a list of mountinfo.Mount."""
    v1, v1_mounts, v2 = {}, [], None
    for m in mounts:
        if m.fstype == "cgroup":
            v1_mounts.append(m.mount_point)
            for opt in m.super_options.split(","):
                if opt in KNOWN:
                    v1.setdefault(opt, m.mount_point)
        elif m.fstype == "cgroup2" and v2 is None:
            v2 = m.mount_point
    return v1, tuple(v1_mounts), v2


def detect(root=None):
    """The Layout of this host, or of a fake tree under `root` (tests): a
    root holding cgroup.controllers is a v2 tree; otherwise each
    subdirectory named after controllers ("memory", "cpu,cpuacct") is a v1
    hierarchy."""
    if root is None:
        v1, v1_mounts, v2 = hierarchies(mountinfo.read())
    else:
        v1, v1_mounts, v2 = _scan_tree(root)
    layout = Layout(v1=v1, v2=v2, v1_mounts=v1_mounts)
    if v2:
        try:
            with open(os.path.join(v2, "cgroup.controllers")) as f:
                layout.v2_controllers = tuple(f.read().split())
        except OSError:
            pass
    return layout


def own_paths():
    """This process's cgroup in each hierarchy, from /proc/self/cgroup:
    {hierarchy key ('memory', 'cpu,cpuacct', 'name=systemd', '' for v2): path}."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctls, path = line.rstrip("\n").split(":", 2)
            own[ctls] = path
    return own


def own_dirs():
    """This process's directory in each mounted hierarchy (/proc/self/cgroup
    read against the cgroup mounts); a child given a relative cgroup path
    (dockerd's --cgroup-parent) makes it below these."""
    own = list(own_paths().items())
    for m in mountinfo.read():
        if m.fstype == "cgroup2":
            paths = [path for ctls, path in own if ctls == ""]
        elif m.fstype == "cgroup":
            options = set(m.super_options.split(","))
            paths = [path for ctls, path in own if ctls and set(ctls.split(",")) <= options]
        else:
            continue
        for path in paths:
            yield os.path.join(m.mount_point, path.lstrip("/"))


def _scan_tree(root):
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return {}, (), root
    v1, mounts, v2 = {}, [], None
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            continue
        if os.path.exists(os.path.join(path, "cgroup.controllers")):
            v2 = path                               # hybrid: "unified"
            continue
        mounts.append(path)
        for ctl in name.split(","):
            if ctl in KNOWN:
                v1.setdefault(ctl, path)
    return v1, tuple(mounts), v2
