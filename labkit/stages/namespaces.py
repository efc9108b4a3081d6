"""Stage 2 — namespaces: every unshare(2) and setns(2) of a container.

Where each call happens decides what it affects, so this stage is called
at four points of the runner, by three processes (labkit/runtime/sync.py
draws them):

  fork_init()        the monitor: unshare(CLONE_NEWPID), then fork: a new PID
                     namespace applies only to children forked afterwards,
                     so the child is PID 1 and the monitor stays outside;
  join(), unshare_user(), become_root()
                     the intermediate process: namespaces given by path are
                     joined (setns), the user namespace comes first because
                     it must own the others (the monitor writes its id maps);
  unshare_rest()     the first process inside: uts, ipc, net, mnt (and pid,
                     time for its children when the monitor did not);
  NamespaceStage.child()
                     the init: the cgroup namespace, which must be made only
                     once the monitor has moved the process into its cgroup
                     (so that cgroup is its root); the hostname; and lo, which
                     a new network namespace creates down.
"""

import os

from labkit.linux import namespaces, netdevice as network, syscalls
from labkit.linux.rootfs import mounts_cgroups
from labkit.stages import Stage


def one_fork(config):
    """Whether the monitor can fork the container's init itself. Not with a
    user namespace: it must own the others, so a first child creates it and
    the PID namespace after it. Not with namespaces joined by path, nor a
    time namespace: that first child joins or makes those."""
    ns = config.namespaces
    return "user" not in ns and "time" not in ns and not config.ns_paths


def fork_init(config):
    """fork(); the child is PID 1 of a new PID namespace when the config has
    one. Right after the fork the monitor sets its children's PID namespace
    back to its own (setns on /proc/self/ns/pid), so that hooks and helpers
    it starts later are not born inside the container."""
    if "pid" not in config.namespaces:
        return syscalls.fork()
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.unshare(syscalls.CLONE_NEWPID)
        try:
            pid = syscalls.fork()
        except BaseException:
            syscalls.setns(own, syscalls.CLONE_NEWPID)
            raise
        if pid:
            syscalls.setns(own, syscalls.CLONE_NEWPID)
        return pid
    finally:
        os.close(own)


def join(config):
    """setns(2) into the namespaces config.json gives by path, user first (it
    grants the rights to join the others), in namespaces.JOIN_ORDER."""
    for name in namespaces.JOIN_ORDER:
        path = config.ns_paths.get(name)
        if path:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscalls.setns(fd, namespaces.FLAGS[name])
            finally:
                os.close(fd)


def wants_user(config):
    return "user" in config.namespaces and "user" not in config.ns_paths


def searchable_by_root_inside(path, config):
    """The init mounts its root (``path``: the overlay a stage prepared, or
    the rootfs itself) once it is root of its user namespace: an
    unprivileged uid and gid on the host, which needs the search bit on
    ``path`` and every directory above, as any other user would. A
    directory made by `mktemp -d` (mode 0700) stops it: say so before the
    start fails with mount(…): EACCES."""
    from labkit.errors import LabkitError
    uid, gid = (_host_id(config.id_map(name)) for name in ("uid", "gid"))
    d = os.path.abspath(path)
    while True:
        st = os.stat(d)
        shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
        if not (st.st_mode >> shift) & 1:
            raise LabkitError(
                f"the container's root (uid {uid} on the host) cannot search {d} "
                f"(mode {st.st_mode & 0o7777:04o}), where its root filesystem is mounted",
                f"chmod o+x {d}, or set LABKIT_HOME to a directory under one every user may search")
        if d == "/":
            return
        d = os.path.dirname(d)


def _host_id(id_map):
    """The host id that id 0 inside maps to."""
    for line in id_map.splitlines():
        inside, outside, size = (int(x) for x in line.split())
        if inside <= 0 < inside + size:
            return outside - inside
    return None


def unshare_user():
    syscalls.unshare(syscalls.CLONE_NEWUSER)


def become_root():
    """Once the id maps are written: uid and gid 0 of the new user namespace,
    which owns (and so has every capability over) the namespaces made next."""
    syscalls.setresgid(0, 0, 0)
    syscalls.setgroups([])
    syscalls.setresuid(0, 0, 0)


def unshare_rest(config, pid_done):
    """unshare(2) of every namespace not made or joined already. The cgroup
    namespace waits for the init (NamespaceStage.child); ``pid_done``: the
    monitor made the PID namespace (fork_init)."""
    skip = {"cgroup", "user"} | set(config.ns_paths) | ({"pid"} if pid_done else set())
    flags = namespaces.flags(config.namespaces - skip)
    if flags:
        syscalls.unshare(flags)


def init_forks(config):
    """Whether the init must be a child of the process that unshared: PID and
    time namespaces apply to children only."""
    return "pid" in config.namespaces or "time" in config.namespaces


class NamespaceStage(Stage):
    name = "namespaces"

    def prepare(self, c):
        if wants_user(c.config):
            searchable_by_root_inside(c.rootfs, c.config)

    def child(self, c):
        ns = c.config.namespaces
        if "uts" in ns and c.config.hostname:
            syscalls.sethostname(c.config.hostname)
        if "net" in ns:
            network.link_up("lo")
        if _new_cgroupns(c) and mounts_cgroups(c.mounts):
            # A cgroup mount below is rooted at the namespace: it must exist
            # first, and its root is the cgroup the process is in, so the
            # monitor's move comes before it.
            c.sync.wait_attached()
            syscalls.unshare(syscalls.CLONE_NEWCGROUP)

    def attached(self, c):
        # No cgroup mount needs it: the namespace is made once the move is
        # done, and the root was mounted while the kernel's grace period ran.
        if _new_cgroupns(c) and not mounts_cgroups(c.mounts):
            syscalls.unshare(syscalls.CLONE_NEWCGROUP)


def _new_cgroupns(c):
    return "cgroup" in c.config.namespaces and "cgroup" not in c.config.ns_paths
