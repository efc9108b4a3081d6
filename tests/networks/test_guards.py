"""What a container with CAP_NET_RAW (Docker's default set has it) can send
to the host through its network's bridge, as an attacker would: hand-made
frames from a packet socket in the container's network namespace. Each
guard is shown both ways: the escape works with the guard taken off on
purpose, and fails by default (labkit/networks/firewall.py, links.py).

Traffic stays in the test's own network namespace (the `netns` fixture)."""

import json
import socket
import struct
import subprocess
import sys

import pytest

from net_helpers import labkit, ok
from proc_helper import wait_for

pytestmark = pytest.mark.root

# Run by the host's Python inside the container's network namespace
# (nsenter --net): one frame out of eth0, as the container's own raw socket would.
SEND = ("import socket, sys; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); "
        "s.bind(('eth0', 0)); s.send(bytes.fromhex(sys.argv[1]))")


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(src_mac, dst_mac, src_ip, dst_ip, port, payload):
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload      # checksum 0: none (IPv4)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x08\x00" + header + udp


def tcp_syn(src_mac, dst_mac, src_ip, dst_ip, port):
    """The first segment of a TCP handshake, as a userspace TCP stack on a
    raw socket would send it."""
    tcp = struct.pack("!HHIIBBHHH", 40001, port, 1, 0, 5 << 4, 0x02, 64240, 0, 0)      # SYN
    pseudo = socket.inet_aton(src_ip) + socket.inet_aton(dst_ip) + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 2, 0, 64, socket.IPPROTO_TCP, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x08\x00" + header + tcp


def router_advertisement(src_mac, prefix="2001:db8:77::"):
    """An ICMPv6 router advertisement to all nodes: "I am your default
    router, and here is a /64 to make addresses in" (RFC 4861)."""
    m = mac_bytes(src_mac)
    src = socket.inet_pton(socket.AF_INET6, "fe80::") [:8] + bytes([m[0] ^ 2]) + m[1:3] + b"\xff\xfe" + m[3:]
    dst = socket.inet_pton(socket.AF_INET6, "ff02::1")
    ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    ra += struct.pack("!BB6s", 1, 1, m)                                          # source link-layer address
    ra += struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 86400, 14400, 0,            # prefix: on-link, autonomous
                      socket.inet_pton(socket.AF_INET6, prefix))
    pseudo = src + dst + struct.pack("!I3xB", len(ra), 58)
    ra = ra[:2] + struct.pack("!H", checksum(pseudo + ra)) + ra[4:]
    ipv6 = struct.pack("!IHBB16s16s", 6 << 28, len(ra), 58, 255, src, dst)
    return b"\x33\x33\x00\x00\x00\x01" + m + b"\x86\xdd" + ipv6 + ra


@pytest.fixture
def attacker(netns):
    """A default container on the network labkit, and what an attacker in
    it knows: its MAC and address, and the bridge's."""
    cid = ok("run", "-d", "--name", "lk-attacker", "--network", "labkit", "--", "sleep", "300").strip()
    try:
        net = json.loads(ok("network", "inspect", "labkit"))[0]
        ep = net["Containers"][cid]
        gateway = net["IPAM"]["Config"][0]["Gateway"]
        yield {"pid": ep["Pid"], "mac": ep["MacAddress"], "ip": ep["IPv4Address"].split("/")[0],
               "bridge": net["Options"]["bridge"],
               "bridge_mac": "02:42:" + ":".join(f"{int(b):02x}" for b in gateway.split("."))}
    finally:
        ok("rm", "-f", cid)
        ok("network", "rm", "labkit")


def send(attacker, frame):
    r = subprocess.run(["nsenter", f"--net=/proc/{attacker['pid']}/ns/net", sys.executable, "-c", SEND,
                        frame.hex()], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def received(attacker, listener, port):
    """Whether a datagram sent from the container to the host's 127.0.0.1:PORT
    reaches a socket that listens there only (one try, one second)."""
    send(attacker, udp_frame(attacker["mac"], attacker["bridge_mac"], attacker["ip"], "127.0.0.1", port,
                             b"from the container"))
    listener.settimeout(1.0)
    try:
        data, source = listener.recvfrom(100)
    except socket.timeout:
        return None
    return data, source[0]


def test_the_hosts_loopback_is_out_of_a_containers_reach(attacker):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))                   # a service that believes itself private
    port = listener.getsockname()[1]
    try:
        assert received(attacker, listener, port) is None
        # The guard off, on purpose: the same frame gets through, from the container's address.
        subprocess.run(["nft", "flush", "chain", "ip", "labkit", "input"], check=True)
        assert received(attacker, listener, port) == (b"from the container", attacker["ip"])
    finally:
        listener.close()


def half_open(port):
    """The connections half made to 127.0.0.1:PORT: a SYN the host's
    listener answered (SYN-RECV)."""
    return subprocess.run(["ss", "-Htn", "state", "syn-recv", "src", f"127.0.0.1:{port}"],
                          capture_output=True, text=True).stdout.strip()


def test_a_tcp_syn_to_the_hosts_loopback_is_not_answered(attacker):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    syn = tcp_syn(attacker["mac"], attacker["bridge_mac"], attacker["ip"], "127.0.0.1", port)
    try:
        send(attacker, syn)
        assert not wait_for(lambda: half_open(port), timeout=1), half_open(port)
        # The guard off, on purpose: the host's listener answers the container.
        subprocess.run(["nft", "flush", "chain", "ip", "labkit", "input"], check=True)
        send(attacker, syn)
        assert wait_for(lambda: attacker["ip"] in half_open(port), timeout=5), half_open(port)
    finally:
        listener.close()


def _ipv6_routes(link):
    return subprocess.run(["ip", "-6", "route", "show", "dev", link], capture_output=True, text=True).stdout


def test_a_containers_router_advertisement_changes_nothing_on_the_host(attacker):
    br = attacker["bridge"]
    send(attacker, router_advertisement(attacker["mac"]))
    assert not wait_for(lambda: "default" in _ipv6_routes(br) or "2001:db8:77" in _ipv6_routes(br), timeout=1)
    assert open(f"/proc/sys/net/ipv6/conf/{br}/disable_ipv6").read().strip() == "1"
    # The guard off, on purpose (IPv6 on, the kernel's accept_ra=1): the same
    # frame makes the container the host's IPv6 default router.
    with open(f"/proc/sys/net/ipv6/conf/{br}/disable_ipv6", "w") as f:
        f.write("0")
    ra = router_advertisement(attacker["mac"])
    assert wait_for(lambda: send(attacker, ra) or "default" in _ipv6_routes(br), timeout=10), _ipv6_routes(br)


def test_a_containers_end_has_no_ipv6(attacker):
    r = labkit("exec", "lk-attacker", "--", "cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6")
    assert r.stdout.strip() == "1", r.stdout + r.stderr
