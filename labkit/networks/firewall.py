"""The firewall: one nftables table, `ip labkit`, rendered whole from the
networks and endpoints on disk and replaced in one transaction (`nft -f`):
either the old ruleset or the new one is in force, never half of each.

    table ip labkit {
      chain prerouting   nat, before routing: a connection from outside to a
                         published port is sent to the container (DNAT)
      chain output       nat, the same for connections made on this host
      chain ports        the DNAT rules, one per published port, and for a
                         service's virtual IP one that takes its replicas in
                         turn (numgen; labkit/networks/vips.py)
      chain postrouting  nat, after routing: a container's packet leaving by
                         another link gets the host's address (masquerade);
                         one from 127.0.0.1 to a published port too
      chain forward      filter: one network's bridge never forwards to
                         another's (Docker's DOCKER-ISOLATION chains), and
                         nothing from beyond the host starts a connection
                         to a container but through a published port
      chain input        filter: nothing that comes in from a bridge is
                         delivered to the host's 127.0.0.0/8 (the guard)
    }

The guard. Published ports answer on 127.0.0.1 because each bridge has
route_localnet=1 (links.allow_localnet), and that also lets a container
address the host's loopback: with CAP_NET_RAW (Docker's default set has it)
it writes a frame to the bridge's MAC with 127.0.0.1 as the destination, and
a service that listens on 127.0.0.1 only, believing itself private (the lab
registry, JupyterLab, whatever a student runs), gets it. This is
CVE-2020-8558, which Kubernetes closed with the same rule: drop packets to
127.0.0.0/8 that arrive from elsewhere than lo, unless they belong to a
connection already made (the answers to a published port's clients).
`sudo nft flush chain ip labkit input` takes the guard off, for the lesson.

The way in. The host routes (ip_forward=1), so a machine next to it that
routes a network's subnet through the host could open a connection to any
port of any container, published or not, straight to the container's
address: a port bound to 127.0.0.1 on the host is then open to the LAN
(moby/moby#45610). Docker drops what its own rules did not let in (the
FORWARD chain's policy, and since Docker 28 the container's address from
elsewhere than its bridge); here the forward chain lets into a bridge only
the answers to a container's own connections and what a published port's
DNAT sent there. `sudo nft flush chain ip labkit forward` takes it off (with
the isolation of the networks).

`nft list table ip labkit` prints it; the table is deleted with the last network.
"""

from labkit.networks import vips
from labkit.networks.links import run

TABLE = "ip labkit"


def render(networks, endpoints_of, vips_of=lambda name: ()):
    """The table as nft's input language. ``endpoints_of(name)``: its
    endpoints; ``vips_of(name)``: its services' virtual IPs (vips.py)."""
    ports, post, forward = [], [], []
    bridges = [n["bridge"] for n in networks]
    for net in networks:
        br, subnet = net["bridge"], net["subnet"]
        post.append(f'ip saddr {subnet} oifname != "{br}" masquerade comment "{net["name"]}: the way out"')
        published = False
        eps = endpoints_of(net["name"])
        for ep in eps:
            for p in ep.get("ports") or ():
                published = True
                match = "" if p["host_ip"] == "0.0.0.0" else f"ip daddr {p['host_ip']} "
                ports.append(f"{match}{p['proto']} dport {p['host_port']} dnat to {ep['ip']}:{p['port']} "
                             f'comment "{ep["name"]}"')
        services = list(vips_of(net["name"]))
        for vip in services:
            address = {ep["owner"]: ep["ip"] for ep in eps}
            ports.extend(vips.rules(vip, [address[o] for o in vip["backends"] if o in address]))
            published = published or bool(vip["ports"])
        if services:
            # A container that reaches a replica of its own network through the
            # virtual IP would get the reply straight from the replica's
            # address, which it never asked: the host stands in as the client.
            post.append(f'ip saddr {subnet} oifname "{br}" ct status dnat masquerade '
                        f'comment "{net["name"]}: to a service of its own network"')
        if published:
            post.append(f'ip saddr 127.0.0.0/8 oifname "{br}" masquerade comment "{net["name"]}: from 127.0.0.1"')
        others = [b for b in bridges if b != br]
        if others:
            quoted = ", ".join(f'"{b}"' for b in others)
            forward.append(f'iifname "{br}" oifname {{ {quoted} }} drop comment "{net["name"]}: no other network"')

    def chain(name, head, rules):
        body = "".join(f"\t\t{r}\n" for r in rules)
        return f"\tchain {name} {{\n" + (f"\t\t{head}\n" if head else "") + body + "\t}\n"

    local = ["fib daddr type local jump ports"]
    quoted = ", ".join(f'"{b}"' for b in bridges)
    if bridges:      # after the isolation above: from a bridge here is from the same network
        forward += [f"oifname {{ {quoted} }} iifname {{ {quoted} }} accept",
                    f"oifname {{ {quoted} }} ct state {{ established, related }} accept",
                    f'oifname {{ {quoted} }} ct status dnat accept comment "a published port"',
                    f'oifname {{ {quoted} }} drop comment "nothing else from beyond the host reaches a container"']
    guard = [f'iifname {{ {quoted} }} ip daddr 127.0.0.0/8 ct state != {{ established, related }} drop '
             'comment "no container reaches the host\'s loopback (CVE-2020-8558)"'] if bridges else []
    return (f"table {TABLE} {{\n"
            + chain("prerouting", "type nat hook prerouting priority dstnat; policy accept;", local)
            + chain("output", "type nat hook output priority -100; policy accept;", local)
            + chain("ports", "", ports)
            + chain("postrouting", "type nat hook postrouting priority srcnat; policy accept;", post)
            + chain("forward", "type filter hook forward priority filter; policy accept;", forward)
            + chain("input", "type filter hook input priority filter; policy accept;", guard)
            + "}\n")


def apply(networks, endpoints_of, vips_of=lambda name: ()):
    """Replace the table (or delete it, with no network left). `add table`
    first: `delete table` of a table that does not exist would fail the
    whole transaction."""
    script = f"add table {TABLE}\ndelete table {TABLE}\n"
    if networks:
        script += render(networks, endpoints_of, vips_of)
    run(["nft", "-f", "-"], script)


def listing():
    """What the kernel has now, as `nft list table ip labkit` prints it ('' if none)."""
    r = run(["nft", "list", "table"] + TABLE.split(), check=False)
    return r.stdout if r.returncode == 0 else ""
