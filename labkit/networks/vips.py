"""Virtual IPs: one address and one port for many identical containers.

A service (labkit/services/) has replicas, each an ordinary container with an
endpoint of its own. What makes them one service on the network is this:

    $LABKIT_HOME/networks/<net>/vips/<service>.json
        the service's virtual IP (taken from the subnet's top, as the IPAM
        hands out containers' from its bottom), its names, its published
        ports, and the replicas in rotation (``backends``: container ids)

and, rendered from it by the firewall (labkit/networks/firewall.py), one
rule per port that picks a replica for each new connection, in turn:

    ip daddr 10.77.0.254 dnat to numgen inc mod 3 map {
        0 : 10.77.0.2, 1 : 10.77.0.3, 2 : 10.77.0.4 }
    ip daddr 127.0.0.1 tcp dport 8080 dnat ip to numgen inc mod 3 map {
        0 : 10.77.0.2 . 80, 1 : 10.77.0.3 . 80, 2 : 10.77.0.4 . 80 }

`numgen inc` counts up by one for each packet that reaches the rule, and only
a connection's first packet does (conntrack remembers the choice for the rest
of it): round robin over connections. This is the kernel doing what a load
balancer process would, as Kubernetes' kube-proxy does in its nftables mode;
Docker Swarm uses IPVS for the same job, which not every kernel has (labkit.course.facts.services.ipvs asks).
No process listens on the virtual IP: the address sits on the bridge (a /32,
so that the host answers ARP for it) and the rule rewrites every connection
before any socket could see it. A replica that dies loses its endpoint, and
with it its place in the map, in the same transaction; the supervisor takes a
replica out of ``backends`` when its health check fails.
"""

import os

from labkit.networks import store

DIR = "vips"


def _dir(network):
    return os.path.join(store.root(network), DIR)


def path(network, name):
    return os.path.join(_dir(network), name + ".json")


def of_network(network):
    """Every virtual IP of ``network``, by name."""
    return store.read_all(_dir(network))


def addresses(network):
    return [v["vip"] for v in of_network(network)]


def get(network, name):
    return next((v for v in of_network(network) if v["name"] == name), None)


def save(network, vip):
    os.makedirs(_dir(network), exist_ok=True)
    store.write_json(path(network, vip["name"]), vip)


def drop(network, name):
    try:
        os.unlink(path(network, name))
    except FileNotFoundError:
        pass


def rules(vip, backends):
    """The nft rules of one virtual IP, given its backends' addresses in
    rotation: the address itself (every port, as Swarm's VIP), then one per
    published port of the host. None without a backend: a connection is then
    refused, as where nothing listens."""
    if not backends:
        return []
    name = vip["name"]
    pick = ", ".join(f"{i} : {ip}" for i, ip in enumerate(backends))
    out = [f'ip daddr {vip["vip"]} dnat to numgen inc mod {len(backends)} map {{ {pick} }} comment "{name}"']
    for p in vip["ports"]:
        match = "" if p["host_ip"] == "0.0.0.0" else f"ip daddr {p['host_ip']} "
        pick = ", ".join(f"{i} : {ip} . {p['port']}" for i, ip in enumerate(backends))
        out.append(f'{match}{p["proto"]} dport {p["host_port"]} dnat ip to numgen inc mod {len(backends)} '
                   f'map {{ {pick} }} comment "{name}"')
    return out
