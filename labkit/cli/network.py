"""`labkit network ...`: docker's network commands over labkit/networks/.

    labkit network create [--subnet CIDR] [--gateway IP] [-d bridge|cni] NAME
    labkit network ls
    labkit network inspect NAME...
    labkit network rm NAME...
    labkit network connect [--ip IP] [--alias A] [-p ...] NAME CONTAINER|-
    labkit network disconnect NAME CONTAINER|-

With - instead of a container, connect and disconnect read an OCI state
({"id": ..., "pid": ...}) on stdin: they are then OCI hooks, for a bundle run
by labkit-runtime or runc (createRuntime: connect; poststop: disconnect):

    "hooks": {"createRuntime": [{"path": "/usr/local/bin/labkit",
                                 "args": ["labkit", "network", "connect", "labkit", "-"],
                                 "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}],
              "poststop": [{"path": "/usr/local/bin/labkit",
                            "args": ["labkit", "network", "disconnect", "labkit", "-"],
                            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}]}

A hook gets only the environment its entry gives: `ip` and `nft` need PATH.
tests/networks/test_oci_hooks.py runs one bundle so under labkit-runtime and runc.
"""

import json
import sys
import time

from labkit.errors import need_root
from labkit.errors import LabkitError
from labkit.networks import endpoints, ports, store


def describe(net):
    """docker network inspect's shape, for one network."""
    return {
        "Name": net["name"], "Id": net["id"],
        "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(net["created"])),
        "Driver": net["driver"],
        "IPAM": {"Config": [{"Subnet": net["subnet"], "Gateway": net["gateway"]}]},
        "Options": {"bridge": net["bridge"]},
        "Containers": {ep["owner"]: {
            "Name": ep["name"], "IPv4Address": f"{ep['ip']}/{net['subnet'].split('/')[1]}" if ep.get("ip") else "",
            "MacAddress": ep.get("mac") or "", "Interface": ep["ifname"], "HostVeth": ep.get("veth") or "",
            "Aliases": ep.get("aliases") or [], "Ports": [ports.text(p) for p in ep.get("ports") or ()],
            "Pid": ep.get("pid")} for ep in endpoints.attached(net["name"])},
    }


def _target(container):
    """(owner, pid, hosts file) of a labkit container, or of the OCI state on stdin."""
    if container == "-":
        try:
            st = json.load(sys.stdin)
            return st["id"], st.get("pid"), None
        except (ValueError, KeyError, TypeError):
            raise LabkitError("network connect -: stdin is not an OCI state (JSON with id and pid)",
                              "use - only as an OCI hook; give a container id otherwise") from None
    import os
    from labkit import home
    from labkit.containers import alive, load
    st = load(container)
    if not alive(st.get("pid"), st.get("pid_start")):
        raise LabkitError(f"container {container} is not running", "start it first; `labkit ps` lists the running ones")
    if "net" not in (st.get("config") or {}).get("namespaces", ()) or (st["config"].get("ns_paths") or {}).get("net"):
        raise LabkitError(f"container {container} has no network namespace of its own",
                          "only a container run with the net namespace can be connected")
    hosts_file = os.path.join(home.containers_dir(container), "hosts")
    return container, st["pid"], hosts_file if os.path.exists(hosts_file) else None


def network_action(a):
    action = a.network_command
    if action == "create":
        net = endpoints.create_network(a.name, a.subnet, a.gateway, a.driver)
        print(net["id"])
    elif action == "ls":
        print(f"{'NETWORK ID':<14}{'NAME':<20}{'DRIVER':<8}{'SUBNET':<18}CONTAINERS")
        for net in store.all_networks():
            n = len(endpoints.attached(net["name"]))
            print(f"{net['id'][:12]:<14}{net['name']:<20}{net['driver']:<8}{net['subnet']:<18}{n}")
    elif action == "inspect":
        print(json.dumps([describe(store.load(n)) for n in a.names], indent=4))
    elif action == "rm":
        for name in a.names:
            endpoints.remove_network(name)
            print(name)
    elif action == "connect":
        owner, pid, hosts_file = _target(a.container)
        if not pid:
            raise LabkitError("network connect -: the state has no pid", "run it as a createRuntime or prestart hook")
        if a.name != store.DEFAULT:
            store.load(a.name)
        endpoints.connect(a.name, owner, pid, ip=a.ip, aliases=a.alias,
                          publish=[ports.parse(p) for p in a.publish], hosts_file=hosts_file)
    elif action == "disconnect":
        owner = _target(a.container)[0] if a.container == "-" else a.container
        if not endpoints.disconnect(a.name, owner) and a.container != "-":
            raise LabkitError(f"container {owner} is not connected to network '{a.name}'",
                              f"`labkit network inspect {a.name}` lists its containers")
    return 0


def add_parsers(sub):
    net = sub.add_parser("network", help="virtual networks: create, ls, inspect, rm, connect, disconnect",
                         description="Networks of containers, with docker's commands: a bridge per "
                         "network, a veth pair per container, NAT out, DNAT for published ports.")
    nsub = net.add_subparsers(dest="network_command", metavar="ACTION")
    nsub.required = True
    nc = nsub.add_parser("create", help="make a network (its bridge is made when a container joins)")
    nc.add_argument("name", metavar="NAME")
    nc.add_argument("--subnet", metavar="CIDR", help="e.g. 10.77.5.0/24 (default: the next free /24 of 10.77.0.0/16)")
    nc.add_argument("--gateway", metavar="IP", help="the bridge's address (default: the subnet's first)")
    nc.add_argument("-d", "--driver", default="bridge", choices=("bridge", "cni"),
                    help="bridge: labkit's own ip/nft commands; cni: Debian's CNI plugins (bridge, host-local)")
    nsub.add_parser("ls", help="list networks").set_defaults(func=cmd_network)
    ni = nsub.add_parser("inspect", help="a network as JSON: subnet, bridge, containers")
    ni.add_argument("names", nargs="+", metavar="NAME")
    nr = nsub.add_parser("rm", help="remove networks (refused while containers are attached)")
    nr.add_argument("names", nargs="+", metavar="NAME")
    for action, text in (("connect", "connect a running container, or with - the container of an "
                          "OCI hook's state on stdin"), ("disconnect", "the other way round")):
        x = nsub.add_parser(action, help=text)
        x.add_argument("name", metavar="NETWORK")
        x.add_argument("container", metavar="CONTAINER|-")
        if action == "connect":
            x.add_argument("--ip", help="its address (default: the next free one)")
            x.add_argument("--alias", action="append", default=[], metavar="NAME", help="one more name")
            x.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOSTPORT:PORT[/PROTO]")
        x.set_defaults(func=cmd_network)
    for x in (nc, ni, nr):
        x.set_defaults(func=cmd_network)



def cmd_network(a):
    if a.network_command not in ("ls", "inspect"):
        need_root(f"labkit network {a.network_command}")
    return network_action(a)
