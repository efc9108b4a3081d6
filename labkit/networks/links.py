"""The links of a network, made with `ip`: the commands a student types.

    ip link add labkit0 type bridge            a virtual switch, one per network
    ip addr add 10.77.0.1/24 dev labkit0       the bridge is the containers' gateway
    ip link set labkit0 up
    sysctl net.ipv4.ip_forward=1               the host routes between them and out
    ip link add lkv1a2b3c4d type veth peer name eth0 address 02:42:0a:4d:00:02 netns PID
                                               a pair of linked interfaces: one end
                                               stays here, the other is born inside
                                               the container's network namespace
    ip link set lkv1a2b3c4d master labkit0 up  plugged into the switch
    nsenter --net=/proc/PID/ns/net ip addr add 10.77.0.2/24 dev eth0
    nsenter --net=/proc/PID/ns/net ip link set eth0 up
    nsenter --net=/proc/PID/ns/net ip route add default via 10.77.0.1

Each call runs `ip -batch -` (several commands, one process). With
LABKIT_TRACE=1 every command is written to stderr as it runs. The sysctls
are written to /proc/sys, which shows the network namespace of the process
that reads it: that of the caller (in the tests, a namespace of their own).
"""

import os
import subprocess

from labkit.errors import LabkitError


def trace(argv, script=""):
    """LABKIT_TRACE=1: each command as a student would type it: `ip -batch -`'s
    lines one by one; nft's whole table as one line (`nft list table ip labkit` shows it)."""
    if os.environ.get("LABKIT_TRACE") != "1":
        return
    from labkit.linux.syscalls.trace import emit
    if argv[:3] == ["nft", "-f", "-"]:
        table = " ".join(script.split("\n", 1)[0].split()[1:4])   # "add table ip labkit"
        emit(f"$ nft -f - < ruleset   # {table}, replaced whole in one transaction")
        return
    prefix = " ".join(argv[:-2]) if argv[-2:] == ["-batch", "-"] else " ".join(argv)
    for line in script.splitlines() or [""]:
        emit(f"$ {prefix} {line}".rstrip())


def run(argv, script="", check=True):
    """``argv`` with ``script`` on stdin; a failure names the command."""
    trace(argv, script)
    try:
        r = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise LabkitError(f"{argv[0]}: command not found",
                          "install iproute2, util-linux and nftables (make lab installs them)") from None
    if check and r.returncode != 0:
        what = " ".join(argv) if not script else f"{' '.join(argv)} <<< {script.strip()!r}"
        raise LabkitError(f"{what}: {r.stderr.strip() or f'exit status {r.returncode}'}",
                          "`labkit network inspect` shows what labkit expected; `ip link` what there is")
    return r


def ip(script, pid=None, check=True):
    """`ip -batch -` here, or inside the network namespace of process ``pid``."""
    argv = ["ip", "-batch", "-"]
    if pid is not None:
        argv = ["nsenter", f"--net=/proc/{pid}/ns/net"] + argv
    return run(argv, script, check=check)


def exists(name):
    """Whether this network namespace has a link ``name`` (if_nametoindex asks
    the kernel through the caller's namespace; /sys/class/net would show the
    namespace sysfs was mounted in)."""
    import socket
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False


def sysctl(key, value=None):
    path = "/proc/sys/" + key.replace(".", "/")
    if value is None:
        with open(path) as f:
            return f.read().strip()
    if os.environ.get("LABKIT_TRACE") == "1":
        from labkit.linux.syscalls.trace import emit
        emit(f"$ sysctl {key}={value}")
    with open(path, "w") as f:
        f.write(str(value))


def prefix(subnet):
    return subnet.split("/")[1]


def ensure_bridge(net):
    """The network's bridge, with the gateway's address, up; and the host
    forwarding. Idempotent: done again on every connect.

    Its MAC address is set, from the gateway's IP as a container's is (as
    Docker's libnetwork sets docker0's): a bridge left to choose takes the
    lowest MAC of its ports, so it changes when a container's veth comes or
    goes, and every other container's ARP entry for the gateway and the
    virtual IPs then points at no one until it is probed again — seconds in
    which their connections hang (seen as a front that found its API
    "unavailable" after a scale)."""
    br = net["bridge"]
    if not exists(br):
        _forget_vips(net)
        ip(f"link add {br} address {mac_of(net['gateway'])} type bridge\n"
           f"addr add {net['gateway']}/{prefix(net['subnet'])} dev {br}\n"
           f"link set {br} up\n")
    no_ipv6(br)
    forward_on()
    allow_localnet(br)


def no_ipv6(link, pid=None):
    """labkit's networks are IPv4: no IPv6 on ``link`` (in the network
    namespace of ``pid``, if given). Left on, a bridge takes router
    advertisements (accept_ra=1 while forwarding is off): one sent by a
    container makes it the host's IPv6 default router (CVE-2020-13401,
    closed in Docker 19.03.11); on a container's end, a neighbour's. Docker
    turns IPv6 off the same way on networks made without --ipv6."""
    key = f"net.ipv6.conf.{link}.disable_ipv6"
    if not os.path.exists("/proc/sys/net/ipv6"):
        return                                   # a kernel without IPv6
    if pid is None:
        sysctl(key, 1)
    else:       # /proc/sys/net is the reader's network namespace's
        run(["nsenter", f"--net=/proc/{pid}/ns/net", "sysctl", "-q", "-w", f"{key}=1"])


def allow_localnet(bridge):
    """Published ports answer on 127.0.0.1: a packet from 127.0.0.1 routed out
    to a container is a "martian" unless its link allows it (CNI's portmap
    sets the same)."""
    key = f"net.ipv4.conf.{bridge}.route_localnet"
    if sysctl(key) != "1":
        sysctl(key, 1)


def _forward_saved():
    from labkit.networks.store import root
    return os.path.join(root(), ".ip_forward")


def forward_on():
    """net.ipv4.ip_forward=1, as Docker sets it: without it the host routes
    nothing between the bridge and other links. The value found first is kept,
    and restore_forward() puts it back once the last network is removed."""
    if sysctl("net.ipv4.ip_forward") == "1":
        return
    saved = _forward_saved()
    if not os.path.exists(saved):
        with open(saved, "w") as f:
            f.write("0")
    sysctl("net.ipv4.ip_forward", 1)


def restore_forward():
    saved = _forward_saved()
    try:
        with open(saved) as f:
            value = f.read().strip()
    except FileNotFoundError:
        return
    sysctl("net.ipv4.ip_forward", value)
    os.unlink(saved)


def _vips_file(net):
    from labkit.networks.store import root
    return os.path.join(root(net["name"]), ".vips")


def _forget_vips(net):
    try:
        os.unlink(_vips_file(net))
    except FileNotFoundError:
        pass


def set_vips(net, wanted):
    """The services' virtual IPs as /32s on the bridge, so that the host
    answers ARP for them and the nat rules see them (vips.py); the bridge's
    other addresses are left alone. What was set is kept beside the network's
    file, so that a network without services costs no `ip` call here."""
    done = _vips_file(net)
    try:
        with open(done) as f:
            have = f.read().split()
    except FileNotFoundError:
        have = []
    if sorted(have) == sorted(wanted) or net["driver"] != "bridge" or not exists(net["bridge"]):
        return
    script = "".join(f"addr del {a}/32 dev {net['bridge']}\n" for a in have if a not in wanted)
    script += "".join(f"addr add {a}/32 dev {net['bridge']}\n" for a in wanted if a not in have)
    ip(script, check=False)   # "already there" or "not there": the state wanted either way
    with open(done, "w") as f:
        f.write(" ".join(wanted))


def remove_bridge(net):
    _forget_vips(net)
    if exists(net["bridge"]):
        ip(f"link del {net['bridge']}\n", check=False)


def mac_of(address):
    """02:42 and the IPv4 address, as Docker derives it: locally administered,
    and the same address always gets the same MAC (no stale ARP entries)."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in address.split("."))


def add_veth(net, ep, pid):
    """A veth pair: ep['veth'] on the bridge here, ep['ifname'] inside the
    namespace of ``pid``, addressed, with the gateway as default route."""
    host, inside = ep["veth"], ep["ifname"]
    ip(f"link add {host} type veth peer name {inside} address {ep['mac']} netns {pid}\n"
       f"link set {host} master {net['bridge']} up\n")
    script = f"addr add {ep['ip']}/{prefix(net['subnet'])} dev {inside}\nlink set {inside} up\n"
    if inside == "eth0":   # the first network is the way out; a second one adds its subnet only
        script += f"route add default via {net['gateway']}\n"
    try:
        no_ipv6(inside, pid)
        ip(script, pid=pid)
    except LabkitError:
        delete(host)
        raise


def delete(name):
    """Deleting one end of a veth pair deletes both. Gone already (the
    container's namespace died and took its end with it) is fine."""
    if exists(name):
        ip(f"link del {name}\n", check=False)
