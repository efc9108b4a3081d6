"""IP address management: which address of a network's subnet a new
endpoint or a service's virtual IP gets (Docker's IPAM driver does this job
for its networks; CNI has its host-local plugin).

A network's subnet is chosen when it is made (store.py); here the addresses
in it: the gateway takes the first, containers the lowest free ones from
the bottom up, services' virtual IPs (vips.py) the highest free ones from the
top down, so that an address says which it is. What is taken is read from
the files every time, under the networks' lock, never cached.
"""

import ipaddress

from labkit.errors import Conflict, LabkitError
from labkit.networks import store, vips


def taken_addresses(net):
    """The gateway's, the endpoints' and the services' virtual IPs (vips.py)."""
    used = [net["gateway"]] + [e["ip"] for e in store.endpoints(net["name"]) if e.get("ip")] + vips.addresses(net["name"])
    return {ipaddress.ip_address(a) for a in used}


def allocate(net, wanted=None):
    """An address for a new endpoint: ``wanted`` (--ip) if it is free and in
    the subnet, else the lowest free one. The gateway's is never handed out."""
    subnet = ipaddress.ip_network(net["subnet"])
    taken = taken_addresses(net)
    if wanted is not None:
        try:
            ip = ipaddress.ip_address(wanted)
        except ValueError:
            raise LabkitError(f"--ip {wanted}: not an IPv4 address", f"give one inside {subnet}") from None
        if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
            raise LabkitError(f"--ip {wanted} is outside network '{net['name']}' ({subnet})",
                              f"give a host address of {subnet}, or leave --ip out")
        if ip in taken:
            who = "its gateway" if str(ip) == net["gateway"] else "another container or a service"
            raise Conflict(f"--ip {wanted} is already used on network '{net['name']}' by {who}",
                           "pick another address, or leave --ip out")
        return str(ip)
    for ip in subnet.hosts():
        if ip not in taken:
            return str(ip)
    raise Conflict(f"network '{net['name']}' ({subnet}) has no free address left",
                   "remove a container from it, or make a network with a larger --subnet")


def allocate_vip(net):
    """The highest free host address of the subnet: services at the top,
    containers at the bottom, so that an address says which it is."""
    subnet = ipaddress.ip_network(net["subnet"])
    taken = taken_addresses(net)
    for n in range(subnet.num_addresses - 2, 0, -1):
        ip = subnet.network_address + n
        if ip not in taken:
            return str(ip)
    raise Conflict(f"network '{net['name']}' ({subnet}) has no free address left for a service",
                   "remove a container or a service from it, or use a network with a larger --subnet")
