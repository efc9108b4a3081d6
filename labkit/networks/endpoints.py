"""Connecting a process's network namespace to a network, and undoing it.

    reserve()     before the container's process exists (the runner's
                  prepare): the network (the default one is made on first
                  use), its bridge, an address, the published ports checked
    plug()        once it exists: the veth pair (or CNI ADD), the firewall,
                  every hosts file of the network
    disconnect()  the other way round, also when the process is gone already
    gc()          the endpoints whose process died without a disconnect
                  (SIGKILL, a reboot)

`labkit run --network` calls reserve and plug from its network stage;
`labkit network connect NET ID|-` calls both at once, for a running container
or, with -, from an OCI hook that reads the container's state on stdin.
"""

import os

from labkit.containers import alive, start_time
from labkit.networks import firewall, hosts, ipam, links, namespace, ports, store, vips


def _keeper_alive(ep):
    if ep.get("pid"):
        return alive(ep["pid"], ep.get("pid_start"))
    return alive(ep.get("keeper"), ep.get("keeper_start"))


def _all():
    return {n: store.endpoints(n) for n in store.names()}


def _published(by_net, skip_owner):
    """(who, port) of every published port: the endpoints' and the services'."""
    taken = [(ep["name"], p) for eps in by_net.values() for ep in eps
             if ep["owner"] != skip_owner for p in ep.get("ports") or ()]
    return taken + [(f"service {v['name']}", p) for n in by_net for v in vips.of_network(n) for p in v["ports"]]


def _sync(by_net=None):
    """The firewall and every hosts file, from what is on disk now: the
    rules of the networks of this network namespace only (namespace.py)."""
    by_net = by_net if by_net is not None else _all()
    now = namespace.here()
    nets = [net for net in map(store.load, by_net) if namespace.is_here(net, now)]
    services = {n: vips.of_network(n) for n in by_net}
    firewall.apply(nets, lambda n: [ep for ep in by_net[n] if ep.get("ip")], services.get)
    for net in nets:
        links.set_vips(net, [v["vip"] for v in services[net["name"]]])
    for eps in by_net.values():
        for ep in eps:
            path = ep.get("hosts_file")
            if not path or not os.path.isdir(os.path.dirname(path)):
                continue
            mine = [n for n, others in by_net.items() if any(o["owner"] == ep["owner"] for o in others)]
            peers = [p for n in mine for p in by_net[n] if p.get("ip")]
            hosts.write(path, hosts.render(peers, [v for n in mine for v in services[n]]))


def refresh():
    """The firewall and the hosts files rendered again from what is on disk:
    a guard taken off by hand (`nft flush chain ip labkit input`) is back.
    Any command that changes a network does the same."""
    with store.Lock():
        _sync()


def reserve(network, owner, name=None, hostname=None, aliases=(), ip=None, publish=(), hosts_file=None):
    """The endpoint on disk, before its process exists; returns it."""
    store.check_owner(owner)
    for alias in aliases:
        store.check_alias(alias)
    with store.Lock():
        net, made = store.ensure(network)
        with _undone_if_failed(net, made):
            return _reserve(net, owner, name, hostname, aliases, ip, publish, hosts_file)


class _undone_if_failed:
    """A network made on first use (the default one) goes again if what made
    it fails: nothing is left half made."""

    def __init__(self, net, made):
        self.net, self.made = net, made

    def __enter__(self):
        return self.net

    def __exit__(self, kind, *exc):
        if kind is not None and self.made:
            links.remove_bridge(self.net)
            store.remove_files(self.net["name"])
            if not store.names():
                links.restore_forward()


def _reserve(net, owner, name, hostname, aliases, ip, publish, hosts_file):
    network = net["name"]
    by_net = _all()
    if any(ep["owner"] == owner for ep in by_net.get(network, ())):
        from labkit.errors import Conflict
        raise Conflict(f"container {owner} is already connected to network '{network}'",
                       f"disconnect it first: `labkit network disconnect {network} {owner}`")
    ports.check_free(list(publish), _published(by_net, owner))
    used = {e["ifname"] for eps in by_net.values() for e in eps if e["owner"] == owner}
    ifname = next(f"eth{n}" for n in range(len(used) + 1) if f"eth{n}" not in used)
    ep = {"owner": owner, "name": name or owner, "hostname": hostname, "aliases": list(aliases),
          "ifname": ifname, "veth": "lkv" + os.urandom(4).hex(), "ports": list(publish),
          "hosts_file": hosts_file, "pid": None, "pid_start": None,
          "keeper": os.getpid(), "keeper_start": start_time(os.getpid())}
    if net["driver"] == "cni":
        ep["ip"], ep["wanted_ip"], ep["mac"] = None, ip, None
    else:
        ep["ip"] = ipam.allocate(net, ip)
        ep["mac"] = links.mac_of(ep["ip"])
        links.ensure_bridge(net)
    store.save_endpoint(network, ep)
    if hosts_file:
        hosts.write(hosts_file, hosts.render(
            [e for e in by_net.get(network, ()) if e.get("ip")] + ([ep] if ep["ip"] else []),
            vips.of_network(network)))
    return ep


def plug(network, owner, pid):
    """Links for the reserved endpoint of ``owner``, into the network
    namespace of process ``pid``; returns the endpoint."""
    with store.Lock():
        net = store.load(network)
        ep = next(e for e in store.endpoints(network) if e["owner"] == owner)
        ep["pid"], ep["pid_start"] = pid, start_time(pid)
        try:
            if net["driver"] == "cni":
                from labkit.networks import cni
                cni.add(net, ep, pid)
                links.allow_localnet(net["bridge"])
                links.no_ipv6(net["bridge"])
                links.no_ipv6(ep["ifname"], pid)
            else:
                links.add_veth(net, ep, pid)
            store.save_endpoint(network, ep)
            _sync()
        except BaseException:
            _undo(net, ep, pid)
            _sync()
            raise
        return ep


def connect(network, owner, pid, **options):
    """Both at once, for a process that exists already."""
    reserve(network, owner, **options)
    try:
        return plug(network, owner, pid)
    except BaseException:
        disconnect(network, owner)
        raise


def _undo(net, ep, pid=None):
    """Whatever of the endpoint the kernel still has, then its file."""
    try:
        if net["driver"] == "cni" and (ep.get("cni_result") or pid):
            from labkit.networks import cni
            cni.delete(net, ep, pid if pid and alive(pid, ep.get("pid_start")) else None)
        elif ep.get("veth"):
            links.delete(ep["veth"])
    finally:
        store.drop_endpoint(net["name"], ep["owner"])


def disconnect(network, owner):
    """Remove ``owner``'s endpoint from ``network``; False if it had none."""
    with store.Lock():
        net = store.load(network)
        ep = next((e for e in store.endpoints(network) if e["owner"] == owner), None)
        if ep is None:
            return False
        _undo(net, ep, ep.get("pid"))
        _sync()
        return True


def release(owner):
    """Every endpoint of ``owner`` (a container being removed)."""
    done = []
    for network in store.names():
        if any(e["owner"] == owner for e in store.endpoints(network)) and disconnect(network, owner):
            done.append(network)
    return done


def gc():
    """Endpoints whose process is gone: disconnected. Returns what it did."""
    lines = []
    if not store.names():
        return lines
    with store.Lock():
        for network, eps in _all().items():
            net = store.load(network)
            for ep in eps:
                if not _keeper_alive(ep):
                    _undo(net, ep)
                    lines.append(f"disconnected {ep['name']} from network {network}")
        if lines:
            _sync()
    return lines


def attached(network):
    """The endpoints of ``network`` whose process is alive."""
    return [ep for ep in store.endpoints(network) if _keeper_alive(ep)]


def remove_network(name):
    """`network rm`: refused while a live container is attached; endpoints
    of dead ones are collected first. The last network puts ip_forward back."""
    from labkit.errors import Conflict
    with store.Lock():
        net = store.load(name)
        namespace.elsewhere(net)      # its bridge and rules are another namespace's: refused
        services = [v["name"] for v in vips.of_network(name)]
        if services:
            raise Conflict(f"network '{name}' has services: {', '.join(services)}",
                           f"remove them first (`labkit service rm {' '.join(services)}`)")
        live = [ep["name"] for ep in store.endpoints(name) if _keeper_alive(ep)]
        if live:
            raise Conflict(f"network '{name}' has containers attached: {', '.join(live)}",
                           f"stop them first (`labkit rm -f {' '.join(live)}`)")
        for ep in store.endpoints(name):
            _undo(net, ep)
        links.remove_bridge(net)
        store.remove_files(name)
        _sync()
        if not store.names():
            links.restore_forward()


def create_network(name, subnet=None, gateway=None, driver="bridge"):
    with store.Lock():
        net = store.create(name, subnet, gateway, driver)
        if driver == "cni":
            from labkit.networks import cni
            cni.write_conflist(net)
        return net


# ---- services: a virtual IP over replicas (vips.py) ------------------

def add_service(network, name, names, publish=()):
    """A service's virtual IP on ``network`` (made on first use, as for a
    container), with ``publish``'s ports checked free; returns it."""
    for n in names:
        store.check_alias(n)
    with store.Lock():
        net, made = store.ensure(network)
        with _undone_if_failed(net, made):
            return _add_service(net, name, names, publish)


def _add_service(net, name, names, publish):
    from labkit.errors import Conflict, LabkitError
    network = net["name"]
    if net["driver"] != "bridge":
        raise LabkitError(f"network '{network}' has the {net['driver']} driver: services need a bridge network",
                          "give --network a network made with `labkit network create NAME`")
    if vips.get(network, name) is not None:
        raise Conflict(f"service '{name}' is already on network '{network}'", f"`labkit service rm {name}` first")
    ports.check_free(list(publish), _published(_all(), None))
    vip = {"name": name, "vip": ipam.allocate_vip(net), "names": list(names), "ports": list(publish), "backends": []}
    links.ensure_bridge(net)
    vips.save(network, vip)
    _sync()
    return vip


def set_backends(network, name, owners):
    """The replicas in rotation behind service ``name``'s virtual IP, in order."""
    with store.Lock():
        vip = vips.get(network, name)
        if vip is None or vip["backends"] == list(owners):
            return
        vip["backends"] = list(owners)
        vips.save(network, vip)
        _sync()


def remove_service(network, name):
    with store.Lock():
        if vips.get(network, name) is None:
            return False
        vips.drop(network, name)
        _sync()
        return True
