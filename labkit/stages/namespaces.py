"""Stage 2 — namespaces: what the container's init does once inside them.

The unshare(2) itself happens in the runner, because where it happens
decides what it affects (a new PID namespace only applies to children forked
afterwards). Here: the cgroup namespace, which must be created *after* the
parent has moved the process into its cgroup so that the container sees that
cgroup as its root; the hostname; and lo, which a new network namespace
creates down.
"""

from .. import network, syscalls
from . import Stage


class NamespaceStage(Stage):
    name = "namespaces"

    def child(self, c):
        ns = c.config.namespaces
        if "uts" in ns and c.config.hostname:
            syscalls.sethostname(c.config.hostname)
        if "net" in ns:
            network.link_up("lo")
        if "cgroup" in ns and "cgroup" not in c.config.ns_paths:
            c.await_attach()   # the namespace's root is the cgroup we are in now
            syscalls.unshare(syscalls.CLONE_NEWCGROUP)
