"""Hand-made Ethernet frames: what a container with CAP_NET_RAW (Docker's
default set has it) can write to its network's bridge through a packet
socket, for the lessons and tests of the guards (docs/security.md).

Only byte strings are built here; ``send_from`` writes one out of a
container's eth0. busybox has no tool that writes a hand-made packet (its
arping will not claim an address the interface lacks), so the host's own
Python does it from inside the container's network namespace (nsenter
--net), with no capability the container lacks (setpriv --bounding-set, from
its init's CapBnd): the same socket, on the same interface, under the same
capability check a process of the container meets."""

import socket
import struct
import subprocess
import sys

# One frame out of eth0, run in the container's network namespace.
_SEND = ("import socket, sys; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); "
         "s.bind(('eth0', 0)); s.send(bytes.fromhex(sys.argv[1]))")


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def gateway_mac(gateway):
    """The MAC labkit gives a bridge: 02:42 and the gateway's four bytes
    (links.ensure_bridge)."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in gateway.split("."))


def checksum(data):
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src_mac, dst_mac, src_ip, dst_ip, proto, ident, payload):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x08\x00" + header + payload


def udp(src_mac, dst_mac, src_ip, dst_ip, port, payload):
    """A UDP datagram (checksum 0: none, which IPv4 allows)."""
    datagram = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    return _ipv4(src_mac, dst_mac, src_ip, dst_ip, socket.IPPROTO_UDP, 1, datagram)


def tcp_syn(src_mac, dst_mac, src_ip, dst_ip, port):
    """The first segment of a TCP handshake, as a userspace TCP stack on a
    packet socket sends it."""
    segment = struct.pack("!HHIIBBHHH", 40001, port, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src_ip) + socket.inet_aton(dst_ip) + \
        struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(segment))
    segment = segment[:16] + struct.pack("!H", checksum(pseudo + segment)) + segment[18:]
    return _ipv4(src_mac, dst_mac, src_ip, dst_ip, socket.IPPROTO_TCP, 2, segment)


def router_advertisement(src_mac, prefix="2001:db8:77::"):
    """An ICMPv6 router advertisement to all nodes: "I am your default
    router, and here is a /64 to make addresses in" (RFC 4861)."""
    m = mac_bytes(src_mac)
    src = socket.inet_pton(socket.AF_INET6, "fe80::")[:8] + bytes([m[0] ^ 2]) + m[1:3] + b"\xff\xfe" + m[3:]
    dst = socket.inet_pton(socket.AF_INET6, "ff02::1")
    ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    ra += struct.pack("!BB6s", 1, 1, m)                                          # source link-layer address
    ra += struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 86400, 14400, 0,            # prefix: on-link, autonomous
                      socket.inet_pton(socket.AF_INET6, prefix))
    pseudo = src + dst + struct.pack("!I3xB", len(ra), 58)
    ra = ra[:2] + struct.pack("!H", checksum(pseudo + ra)) + ra[4:]
    ipv6 = struct.pack("!IHBB16s16s", 6 << 28, len(ra), 58, 255, src, dst)
    return b"\x33\x33\x00\x00\x00\x01" + m + b"\x86\xdd" + ipv6 + ra


def arp_reply(src_mac, dst_mac, claimed_ip, dst_ip):
    """"CLAIMED_IP is at SRC_MAC", sent to DST_MAC (RFC 826): a neighbour
    that has CLAIMED_IP in its table takes the new address."""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac_bytes(src_mac), socket.inet_aton(claimed_ip),
                      mac_bytes(dst_mac), socket.inet_aton(dst_ip))
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x08\x06" + arp


def bounding_set(pid):
    """The capability names in process ``pid``'s bounding set, as
    setpriv(1) spells them (net_raw)."""
    from labkit.linux.process import capability_names
    with open(f"/proc/{pid}/status") as f:
        mask = next(line.split()[1] for line in f if line.startswith("CapBnd:"))
    return [name[4:].lower() for name in capability_names(mask)]


def _in_its_net(pid, code, *args):
    """Run Python CODE in the network namespace of process ``pid``, with no
    capability outside its bounding set."""
    caps = ",".join(["-all"] + ["+" + c for c in bounding_set(pid)])
    return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "setpriv", "--bounding-set", caps,
                           "--inh-caps", "-all", sys.executable, "-c", code, *args],
                          capture_output=True, text=True, timeout=30)


def packet_socket_opens(pid):
    """Whether the kernel gives a packet socket to a process with the
    capabilities of process ``pid``, in its network namespace."""
    return _in_its_net(pid, "import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)").returncode == 0


def send_from(pid, frame):
    """Write ``frame`` out of eth0 of the network namespace of process
    ``pid`` (a container's init), with no capability outside its bounding
    set. Returns the CompletedProcess: exit 1 and PermissionError on stderr
    when the container may not open a packet socket."""
    return _in_its_net(pid, _SEND, frame.hex())
