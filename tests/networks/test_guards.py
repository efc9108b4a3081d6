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
import threading

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


# -- the way in, from beyond the host and from another network ---------------

PAGE = "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www"


def _serving(name, text, *extra):
    """A container of the network labkit serving ``text`` on port 80, and its
    address, once its page answers (from the host, a bounded wait)."""
    from labkit.course.facts.network import host_fetch
    cid = ok("run", "-d", "--name", name, "--network", "labkit", *extra, "--", "sh", "-c",
             PAGE.format(text=text)).strip()
    ip = json.loads(ok("network", "inspect", "labkit"))[0]["Containers"][cid]["IPv4Address"].split("/")[0]
    assert host_fetch(f"http://{ip}/") == text
    return cid, ip


def test_from_beyond_the_host_only_a_published_port_answers(outside):
    """A machine on the host's LAN that routes the network's subnet through
    the host (here: the `outside` namespace) reaches a port published on all
    the host's addresses, and no container's own address: not an unpublished
    port, nor one published on 127.0.0.1 only (moby/moby#45610)."""
    pub, pub_ip = _serving("lk-pub", "published", "-p", "0.0.0.0:8080:80")
    local, local_ip = _serving("lk-local", "local-only", "-p", "127.0.0.1:8081:80")
    try:
        subnet = json.loads(ok("network", "inspect", "labkit"))[0]["IPAM"]["Config"][0]["Subnet"]
        outside.route_through_the_host(subnet)
        assert outside.get(f"http://{outside.HERE}:8080/") == "published"
        assert outside.get(f"http://{local_ip}/") == ""
        assert outside.get(f"http://{pub_ip}/") == ""
        # The guard off, on purpose: the container's own address is open to the LAN.
        subprocess.run(["nft", "flush", "chain", "ip", "labkit", "forward"], check=True)
        assert outside.get(f"http://{local_ip}/") == "local-only"
    finally:
        ok("rm", "-f", pub, local)
        ok("network", "rm", "labkit")


def test_another_network_reaches_neither_a_published_port_nor_a_service(netns):
    """From a container of another network, the host's address on that
    network (its gateway) DNATs a published port to a container it may not
    reach: the isolation drops it, as Docker's does without its userland
    proxy (moby/moby#38784); a service's virtual IP the same."""
    pub, _ = _serving("lk-pub", "published", "-p", "0.0.0.0:8080:80")
    ok("service", "create", "--name", "lk-svc", "--network", "labkit", "labkit/base", "sh", "-c",
       PAGE.format(text="service"))
    ok("network", "create", "lk-other")
    far = ok("run", "-d", "--network", "lk-other", "--", "sleep", "300").strip()
    try:
        other = json.loads(ok("network", "inspect", "lk-other"))[0]["IPAM"]["Config"][0]["Gateway"]
        vip = json.loads(ok("service", "inspect", "lk-svc"))[0]["Spec"]["vip"]
        near = ok("run", "--rm", "--network", "labkit", "--", "sh", "-c",
                  f"for i in $(seq 30); do timeout 2 wget -q -O- http://{vip}/ && break; sleep 0.2; done")
        assert near.strip() == "service"          # the virtual IP answers its own network
        for url in (f"http://{other}:8080/", f"http://{vip}/"):
            r = labkit("exec", far, "--", "timeout", "3", "wget", "-q", "-O-", url)
            assert r.returncode != 0 and not r.stdout, (url, r.stdout)
    finally:
        ok("rm", "-f", pub, far)
        ok("service", "rm", "-t", "0", "lk-svc")
        ok("network", "rm", "labkit", "lk-other")


def test_a_host_service_on_every_address_is_reachable_as_with_docker(netns):
    """Not a guard: a host process that listens on 0.0.0.0 is reached by a
    container through any of the host's addresses, its own gateway or
    another network's bridge, as in Docker (which filters nothing coming in
    to the host). Only the loopback is kept out (the guard above)."""
    ok("network", "create", "lk-other")
    c = ok("run", "-d", "--network", "labkit", "--", "sleep", "300").strip()
    there = ok("run", "-d", "--network", "lk-other", "--", "sleep", "300").strip()   # its bridge is made with it
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    listener.settimeout(3)
    try:
        port = listener.getsockname()[1]
        other = json.loads(ok("network", "inspect", "lk-other"))[0]["IPAM"]["Config"][0]["Gateway"]
        # busybox nc reads until the host closes: the host answers first.
        sender = threading.Thread(target=labkit, args=("exec", c, "--", "sh", "-c",
                                                       f"echo from-the-container | nc -w 3 {other} {port}"))
        sender.start()
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(3)
                assert conn.recv(100).strip() == b"from-the-container"
        finally:
            sender.join(timeout=60)
    finally:
        listener.close()
        ok("rm", "-f", c, there)
        ok("network", "rm", "labkit", "lk-other")


def test_each_container_has_its_own_hosts_file(netns):
    """/etc/hosts is a file per container (labkit/networks/hosts.py): what
    one container writes into its own, to send a name elsewhere, no other
    container reads; labkit's next rewrite puts the truth back."""
    a = ok("run", "-d", "--name", "lk-a", "--network", "labkit", "--", "sleep", "300").strip()
    b = ok("run", "-d", "--name", "lk-b", "--network", "labkit", "--", "sleep", "300").strip()
    try:
        r = labkit("exec", a, "--", "sh", "-c", "echo '6.6.6.6 lk-b' >> /etc/hosts")
        assert r.returncode == 0, r.stderr
        assert "6.6.6.6" not in labkit("exec", b, "--", "cat", "/etc/hosts").stdout
        c = ok("run", "-d", "--name", "lk-c", "--network", "labkit", "--", "sleep", "300").strip()
        ok("rm", "-f", c)
        assert "6.6.6.6" not in labkit("exec", a, "--", "cat", "/etc/hosts").stdout
    finally:
        ok("rm", "-f", a, b)
        ok("network", "rm", "labkit")


def test_a_link_local_address_is_reached_as_with_docker(outside):
    """Not a guard: a cloud's metadata address, 169.254.169.254, here held by
    the `outside` namespace the test made, is routed and masqueraded like
    any other address beyond the host, as in Docker (docs/security.md)."""
    r = outside.run("ip", "addr", "add", "169.254.169.254/32", "dev", "eth0")
    assert r.returncode == 0, r.stderr
    subprocess.run(["ip", "route", "add", "169.254.169.254/32", "via", outside.THERE], check=True)
    c = ok("run", "-d", "--network", "labkit", "--", "sleep", "300").strip()
    try:
        seen = labkit("exec", c, "--", "nc", "-w", "3", "169.254.169.254", str(outside.PORT)).stdout.strip()
        assert seen == outside.HERE        # it got there, as the host
    finally:
        ok("rm", "-f", c)
        ok("network", "rm", "labkit")
