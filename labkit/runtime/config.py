"""What a container is asked to be, before anything is created.

The CLI (`labkit run`), the notebooks' Python API and, later, an OCI
config.json all end up as one ContainerConfig; the runner and the stages read
it and never look at where it came from.
"""

from dataclasses import dataclass, field

# The namespaces of namespaces(7), by the names /proc/PID/ns uses.
NAMESPACES = ("pid", "net", "ipc", "mnt", "uts", "user", "cgroup", "time")
# `--all`: the five of the seed text (PID, NET, IPC, MNT, UTS) plus CGROUP.
# USER and TIME stay opt-in, as with docker (userns-remap is off by default).
DEFAULT_NAMESPACES = ("pid", "net", "ipc", "mnt", "uts", "cgroup")

DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "TERM=xterm", "HOME=/root")


@dataclass
class ContainerConfig:
    id: str
    args: list
    rootfs: str                      # a directory; stages may replace it (overlay)
    namespaces: frozenset = frozenset(DEFAULT_NAMESPACES)
    hostname: str = None             # set only with a UTS namespace
    env: list = field(default_factory=lambda: list(DEFAULT_ENV))
    cwd: str = "/"
    mount_proc: bool = True          # mount /proc inside the root
    readonly_rootfs: bool = False
    tty: bool = False                # -t: a pseudo-terminal, like docker run -t
    interactive: bool = False        # -i: keep stdin open
    detach: bool = False             # -d: run in the background
    # USER namespace: uid/gid 0 inside maps to this many ids from `userns_base`.
    userns_base: int = 100000
    userns_size: int = 65536
    # Opaque to the runner; each stage reads its own part.
    resources: dict = field(default_factory=dict)   # cgroups: memory, cpus, pids …
    layers: list = field(default_factory=list)      # union filesystem: lower layers
    lxcfs: bool = False                              # bind lxcfs's /proc files

    @property
    def pivot_root(self):
        """With a mount namespace the root is changed with pivot_root; without
        one, only chroot(2) is possible (pivot_root would move the host's root)."""
        return "mnt" in self.namespaces
