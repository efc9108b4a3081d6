"""What a container with CAP_NET_RAW (Docker's default set has it) can send
to the host through its network's bridge, as an attacker would: hand-made
frames from a packet socket in the container's network namespace. Each
guard is shown both ways: the escape works with the guard taken off on
purpose, and fails by default (labkit/networks/firewall.py, links.py).

The frames are labkit/networks/frames.py's. Traffic stays in the test's own
network namespace (the `netns` fixture)."""

import json
import socket
import subprocess

import pytest

from labkit.networks import frames
from labkit.networks.frames import router_advertisement, tcp_syn, udp as udp_frame
from net_helpers import labkit, ok
from proc_helper import wait_for

pytestmark = pytest.mark.root


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
               "bridge_mac": frames.gateway_mac(gateway)}
    finally:
        ok("rm", "-f", cid)
        ok("network", "rm", "labkit")


def send(attacker, frame):
    r = frames.send_from(attacker["pid"], frame)
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
