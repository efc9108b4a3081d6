"""Networks and endpoints on disk, and the subnets networks take (their
addresses are handed out by ipam.py).

    $LABKIT_HOME/networks/.lock                  flock(2): one change at a time
    $LABKIT_HOME/networks/<name>/network.json    name, id, driver, subnet, gateway, bridge,
                                                 and the network namespace it lives in
    $LABKIT_HOME/networks/<name>/endpoints/<owner>.json
                                                 one per attached container: its
                                                 address, names, published ports,
                                                 and the pid that keeps it alive
    $LABKIT_HOME/networks/<name>/vips/<service>.json
                                                 one per service: its virtual IP
                                                 and its replicas (vips.py)

A network is only a file until a container needs it: the bridge and the
firewall rules are (re)made from it on every connect (links.ensure_bridge), so a
reboot, or a test's network namespace that went away, loses nothing that
matters. They are made only in the network namespace the network belongs to
(namespace.py): a command in another one is refused, or takes over a network
whose namespace is gone and says so. An endpoint belongs to a process, recorded with its start time; once
that process is gone the endpoint is garbage (endpoints.gc).
"""

import ipaddress
import json
import os
import time

from labkit import home
from labkit.errors import Conflict, LabkitError, NotFound
from labkit.networks import namespace

DEFAULT = "labkit"           # `labkit run --network labkit`, made on first use (Docker's bridge)
DEFAULT_BRIDGE = "labkit0"   # as docker0
POOL = ipaddress.ip_network("10.77.0.0/16")   # automatic subnets: the first free /24 in it
RESERVED = ("none", "host", "bridge", "default")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def root(name=""):
    return os.path.join(home.home(), "networks", name)


def _path(name):
    return os.path.join(root(name), "network.json")


def Lock():
    """Every change to networks and endpoints holds it: two `labkit run`s never
    take the same address, and the firewall is rendered from a settled state."""
    return home.Lock(root())


write_json = home.write_json


def check_name(name):
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS or name[0] in ".-":
        raise LabkitError(f"bad network name {name!r}",
                          "use up to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    if name in RESERVED:
        raise LabkitError(f"network name '{name}' is reserved",
                          "none and host are modes of --network, not networks: pick another name")
    return name


def check_alias(alias):
    """A name other containers find this one by: a DNS label's characters,
    so that nothing but a name ever lands in another container's /etc/hosts."""
    if not alias or len(alias) > 63 or not set(alias) <= _NAME_CHARS or alias[0] in ".-":
        raise LabkitError(f"bad network alias {alias!r}",
                          "use up to 63 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return alias


def check_owner(owner):
    """An endpoint's file is named by its owner (a container id, also one an
    OCI hook read from stdin): never a path."""
    if not owner or len(owner) > 128 or not set(owner) <= _NAME_CHARS or owner[0] in ".-":
        raise LabkitError(f"bad container id {owner!r} for a network endpoint",
                          "ids are letters, digits, '_', '.' and '-', as runc's")
    return owner


def names():
    if not os.path.isdir(root()):
        return []
    return sorted(n for n in os.listdir(root()) if os.path.isfile(_path(n)))


def load(name):
    try:
        with open(_path(name)) as f:
            return json.load(f)
    except FileNotFoundError:
        hint = ("it is made on first use: `labkit run --network labkit ...`" if name == DEFAULT
                else f"create it with `labkit network create {name}`; `labkit network ls` lists them")
        raise NotFound(f"no such network '{name}'", hint) from None
    except ValueError:
        raise LabkitError(f"network '{name}': {_path(name)} is not valid JSON",
                          f"remove it with `labkit network rm {name}`") from None


def all_networks():
    return [load(n) for n in names()]


# ---- subnets ---------------------------------------------------------

def parse_subnet(text):
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise LabkitError(f"--subnet {text}: {e}", "give an IPv4 network in CIDR form, e.g. 10.77.5.0/24") from None
    if net.version != 4:
        raise LabkitError(f"--subnet {text}: only IPv4 networks are supported", "give e.g. 10.77.5.0/24")
    if net.prefixlen > 29:
        raise LabkitError(f"--subnet {text}: a /{net.prefixlen} is too small",
                          "a network needs a gateway and room for containers: use /29 or larger, e.g. /24")
    return net


def host_routes():
    """The IPv4 networks this network namespace already routes to, other than
    labkit's own bridges: a new subnet must not overlap them, or containers
    could not reach the machines behind those routes."""
    import subprocess
    ours = {n["bridge"] for n in all_networks()} | {DEFAULT_BRIDGE}
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "main"],
                         capture_output=True, text=True).stdout
    routes = []
    for line in out.splitlines():
        words = line.split()
        if not words or words[0] == "default" or "dev" not in words:
            continue
        if words[words.index("dev") + 1] in ours:
            continue
        try:
            routes.append((ipaddress.ip_network(words[0], strict=False), line.strip()))
        except ValueError:
            pass
    return routes


def check_overlap(subnet, skip=None):
    for other in all_networks():
        if other["name"] != skip and subnet.overlaps(ipaddress.ip_network(other["subnet"])):
            raise Conflict(f"subnet {subnet} overlaps network '{other['name']}' ({other['subnet']})",
                           "pick another --subnet, or leave it out to get a free one")
    for net, line in host_routes():
        if subnet.overlaps(net):
            raise Conflict(f"subnet {subnet} overlaps a route of this machine ({line})",
                           "pick another --subnet, or leave it out to get a free one")


def free_subnet():
    for candidate in POOL.subnets(new_prefix=24):
        try:
            check_overlap(candidate)
            return candidate
        except Conflict:
            continue
    raise Conflict(f"no free /24 left in {POOL}", "remove a network (`labkit network rm`), or give --subnet")


def bridge_name(name, net_id):
    """At most 15 characters (IFNAMSIZ), and lk-… so that gc and the leak check know it."""
    return DEFAULT_BRIDGE if name == DEFAULT else "lk-" + net_id[:12]


def create(name, subnet=None, gateway=None, driver="bridge"):
    """A new network's file; nothing in the kernel yet. Call with the Lock held."""
    check_name(name)
    if driver not in ("bridge", "cni"):
        raise LabkitError(f"--driver {driver}: not a driver labkit has", "give bridge or cni")
    if os.path.exists(_path(name)):
        raise Conflict(f"network name '{name}' is already in use",
                       f"remove it with `labkit network rm {name}`, or pick another name")
    if subnet is None:
        if gateway is not None:
            raise LabkitError("--gateway needs --subnet", "give both, e.g. --subnet 10.77.5.0/24 --gateway 10.77.5.1")
        net = free_subnet()
    else:
        net = parse_subnet(subnet)
        check_overlap(net)
    hosts = list(net.hosts())
    if gateway is None:
        gw = hosts[0]
    else:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise LabkitError(f"--gateway {gateway}: not an IPv4 address", f"give one inside {net}") from None
        if gw not in hosts:
            raise LabkitError(f"--gateway {gateway} is not a host address of {net}",
                              f"give one between {hosts[0]} and {hosts[-1]}")
    net_id = os.urandom(32).hex()
    data = {"name": name, "id": net_id, "driver": driver, "subnet": str(net), "gateway": str(gw),
            "bridge": bridge_name(name, net_id), "created": time.time(), "netns": namespace.here()}
    os.makedirs(os.path.join(root(name), "endpoints"), exist_ok=True)
    write_json(_path(name), data)
    return data


def ensure(name):
    """(the network ``name``, whether this call made it): the default one is
    created on first use; one of another network namespace is refused, or
    taken over if that namespace is gone (namespace.py)."""
    if name == DEFAULT and not os.path.exists(_path(name)):
        return create(DEFAULT), True
    return namespace.claim(load(name), lambda net: write_json(_path(name), net)), False


def remove_files(name):
    from labkit.startpath import remove_tree
    remove_tree(root(name))


# ---- endpoints -------------------------------------------------------

def endpoint_path(name, owner):
    return os.path.join(root(name), "endpoints", owner + ".json")


def read_all(top):
    """Every *.json file of directory ``top``, in name order; one half written
    or gone meanwhile is skipped."""
    found = []
    for entry in sorted(os.listdir(top)) if os.path.isdir(top) else ():
        if entry.endswith(".json"):
            try:
                with open(os.path.join(top, entry)) as f:
                    found.append(json.load(f))
            except (OSError, ValueError):
                continue
    return found


def endpoints(name):
    """Every endpoint of network ``name``, by its address order."""
    found = read_all(os.path.join(root(name), "endpoints"))
    return sorted(found, key=lambda e: (e.get("ip") is None, ipaddress.ip_address(e.get("ip") or "0.0.0.0")))


def save_endpoint(name, ep):
    write_json(endpoint_path(name, ep["owner"]), ep)


def drop_endpoint(name, owner):
    try:
        os.unlink(endpoint_path(name, owner))
    except FileNotFoundError:
        pass
