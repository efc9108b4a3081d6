"""Published ports: -p [IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp].

A port is published with DNAT (labkit/networks/firewall.py): the kernel
rewrites the destination of each new connection to the host's port into the
container's address and port; conntrack rewrites the replies back. Docker
does the same, and also starts a userspace proxy (docker-proxy) for each port,
because a DNAT in the output chain alone does not catch a connection to
127.0.0.1 unless the bridge has route_localnet. labkit sets route_localnet
instead (as CNI's portmap does) and starts no process: one rule per port,
visible in `nft list ruleset`, and the container sees its clients' real
addresses (but for those from 127.0.0.1, which are masqueraded: the
container could not answer 127.0.0.1, its own loopback).

With no IP, a port is bound to 127.0.0.1 only: on a lab machine a published
port should not be open to the whole network, as Docker's 0.0.0.0 is. Give
0.0.0.0 to publish on every address of the host.
"""

import ipaddress

from labkit.errors import Conflict, LabkitError

PROTOS = ("tcp", "udp")
LOCAL = "127.0.0.1"


def _port(text, what, spec):
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise LabkitError(f"-p {spec}: {what} '{text}' is not a port number",
                          "give ports between 1 and 65535, e.g. -p 8080:80")
    return int(text)


def parse(spec):
    """'8080:80', '127.0.0.1:8080:80/tcp', '0.0.0.0:5353:53/udp' -> a dict."""
    rest, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in PROTOS:
        raise LabkitError(f"-p {spec}: '{proto}' is not a protocol labkit publishes", "give /tcp or /udp")
    parts = rest.split(":")
    if len(parts) == 2:
        host_ip, host_port, port = LOCAL, *parts
    elif len(parts) == 3:
        host_ip, host_port, port = parts
    else:
        raise LabkitError(f"-p {spec}: expected [IP:]HOSTPORT:CONTAINERPORT[/PROTO]",
                          "for example -p 8080:80, or -p 127.0.0.1:8080:80/tcp")
    try:
        if ipaddress.ip_address(host_ip).version != 4:
            raise ValueError
    except ValueError:
        raise LabkitError(f"-p {spec}: '{host_ip}' is not an IPv4 address of this host",
                          "give 127.0.0.1 (the default), 0.0.0.0 (every address) or one of `ip -4 addr`") from None
    return {"host_ip": host_ip, "host_port": _port(host_port, "host port", spec),
            "port": _port(port, "container port", spec), "proto": proto}


def text(p):
    return f"{p['host_ip']}:{p['host_port']}->{p['port']}/{p['proto']}"


def clash(a, b):
    any_ip = "0.0.0.0"
    return a["proto"] == b["proto"] and a["host_port"] == b["host_port"] and \
        (a["host_ip"] == b["host_ip"] or any_ip in (a["host_ip"], b["host_ip"]))


def check_free(wanted, published):
    """``wanted``: this container's ports; ``published``: (owner, port) of
    every endpoint. Taken by another container, or by a process of this
    host listening there (a DNAT would silently steal its traffic): refused."""
    import errno
    import socket
    for i, p in enumerate(wanted):
        for q in wanted[:i]:
            if clash(p, q):
                raise Conflict(f"-p {text(p)}: the host port is given twice", "publish each host port once")
        for owner, q in published:
            if clash(p, q):
                raise Conflict(f"-p {text(p)}: host port {p['host_port']}/{p['proto']} is already published "
                               f"by container {owner}", "pick another host port, or stop that container")
        kind = socket.SOCK_STREAM if p["proto"] == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((p["host_ip"], p["host_port"]))
            except OSError as e:
                if e.errno == errno.EADDRNOTAVAIL:
                    raise LabkitError(f"-p {text(p)}: {p['host_ip']} is not an address of this host",
                                      "give 127.0.0.1, 0.0.0.0 or one of `ip -4 addr`") from None
                raise Conflict(f"-p {text(p)}: {p['host_ip']}:{p['host_port']}/{p['proto']} is in use on this "
                               f"host ({e.strerror})",
                               "pick another host port (`ss -ltnu` lists what listens)") from None
