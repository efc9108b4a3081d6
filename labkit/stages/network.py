"""Stage 6 — networks: `labkit run --network` plugs the container's new
network namespace into a network (labkit/networks/ builds the pieces).

  --network none          the default: a namespace with lo only (stage 2's lesson)
  --network host          no network namespace: the host's interfaces and ports
  --network container:ID  the namespace of another running container (setns):
                          one eth0, one lo, shared, as a Kubernetes pod's containers
  --network NAME          a veth pair to NAME's bridge, an address, a default
                          route, published ports (-p) and names in /etc/hosts

The stage's hooks (labkit/stages/__init__.py):

  prepare   an address and the ports, reserved before the process exists;
            the container's hosts file, bound over its /etc/hosts
  attach    the veth pair into the init's namespace, by its pid
  child     the init waits for that: the program never starts without its eth0
  teardown  the endpoint, its rules and hosts entries go
"""

import os

from labkit.errors import LabkitError
from labkit.stages import Stage

MODES = ("none", "host")


def from_cli(network, ip=None, aliases=(), publish=(), namespaces=frozenset()):
    """`labkit run`'s --network, --ip, --network-alias and -p ->
    (namespaces, ns_paths, the config's ``network``). Checked before anything
    is created."""
    extras = [flag for flag, given in (("-p", publish), ("--ip", ip), ("--network-alias", aliases)) if given]
    if network in MODES or network.startswith("container:"):
        if extras:
            raise LabkitError(f"{extras[0]} needs a network: --network {network} has no address or port "
                              "of its own", "give --network labkit (or a network of `labkit network ls`)")
        if network == "host":
            return namespaces - {"net"}, {}, None
        if network == "none":
            return namespaces, {}, None
        return _join(network.split(":", 1)[1], namespaces)
    if "net" not in namespaces:
        raise LabkitError(f"--network {network} needs the net namespace",
                          "add net to --ns, or use --network host for the host's own network")
    from labkit.networks import ports, store
    if network != store.DEFAULT:
        store.check_name(network)
        store.load(network)          # a clear "no such network" now, not after the fork
    for alias in aliases:
        store.check_alias(alias)
    return namespaces, {}, {"name": network, "ip": ip, "aliases": list(aliases),
                            "ports": [ports.parse(p) for p in publish]}


def _join(other, namespaces):
    from labkit.containers import alive, load
    from labkit.containers import RUNNING
    if "net" not in namespaces:
        raise LabkitError(f"--network container:{other} needs the net namespace", "add net to --ns")
    st = load(other)
    if st["status"] != RUNNING or not alive(st.get("pid"), st.get("pid_start")):
        raise LabkitError(f"--network container:{other}: container {other} is not running",
                          f"start it first; `labkit ps` lists the running ones")
    return namespaces, {"net": f"/proc/{st['pid']}/ns/net"}, {"container": other}


class NetworkStage(Stage):
    name = "network"

    def wanted(self, config, options=None):
        return bool(config.network)

    def prepare(self, c):
        net = c.config.network
        if "container" in net:
            # One namespace, one set of names: the other container's hosts file.
            from labkit import home
            shared = os.path.join(home.containers_dir(net["container"]), "hosts")
            if os.path.exists(shared):
                c.binds.append((shared, "/etc/hosts"))
            return
        from labkit.networks import endpoints
        hosts_file = os.path.join(c.state_dir, "hosts")
        c.network = endpoints.reserve(net["name"], c.id, name=c.id, hostname=c.config.hostname,
                                      aliases=net.get("aliases") or (), ip=net.get("ip"),
                                      publish=net.get("ports") or (), hosts_file=hosts_file)
        c.binds.append((hosts_file, "/etc/hosts"))

    def attach(self, c, pid):
        if c.network is not None:
            from labkit.networks import endpoints
            # A veth sent to `netns PID` before the init's unshare lands in
            # the namespace it is about to leave: the init says when (sync.NETNS).
            c.sync.wait_netns()
            c.network = endpoints.plug(c.config.network["name"], c.id, pid)

    def child(self, c):
        c.sync.wait_attached()   # eth0 is made and addressed while the monitor attaches

    def restore(self, c, state):
        # The endpoint itself is in the network's store: teardown disconnects
        # it by the container's id; it only needs to know there is one.
        if "container" not in c.config.network:
            c.network = c.id

    def teardown(self, c):
        if c.network is not None:
            from labkit.networks import endpoints
            endpoints.disconnect(c.config.network["name"], c.id)
            c.network = None
