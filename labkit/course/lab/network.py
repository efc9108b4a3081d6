"""Notebook 06's exercises: wire namespaces by hand, publish a port, find a
container by name. Each check asks the real system: a ping from inside a
namespace, a connection to the host's port, a lookup from a container."""

import os
import subprocess

from labkit.course.lab import Exercise, env, rm_line, running
from labkit.errors import LabkitError
from labkit.i18n import _

PAGE = "mkdir -p /www && echo lab06 > /www/index.html && exec httpd -f -p 80 -h /www"


def _sh(cmd, timeout=60):
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout, env=env())


def _veth_pair():
    for ns in ("lk-a", "lk-b"):
        if not os.path.exists(f"/run/netns/{ns}"):
            return False, _("there is no network namespace {ns} (`ip netns list` lists them)", ns=ns)
    b = _sh("ip -n lk-b -4 -o addr").stdout
    if "10.78.1.2/" not in b:
        return False, _("lk-b has no address 10.78.1.2 (`ip -n lk-b addr`)")
    if "10.78.1.2/" in _sh("ip -n lk-a -4 -o addr").stdout:
        return False, _("10.78.1.2 is an address of lk-a itself: a ping to it would never leave lk-a")
    if _sh("ip netns exec lk-a ping -c1 -W1 10.78.1.2").returncode != 0:
        return False, _("lk-a cannot reach 10.78.1.2: is there a veth pair between them, both ends up?")
    a, b = _holder("lk-a", "10.78.1.1"), _holder("lk-b", "10.78.1.2")
    if a is None:
        return False, _("lk-a has no address 10.78.1.1 (`ip -n lk-a addr`)")
    for mine, ns, other, theirs in ((a, "lk-a", "lk-b", b), (b, "lk-b", "lk-a", a)):
        if mine.get("linkinfo", {}).get("info_kind") != "veth":
            return False, _("{dev} in {ns} is not a veth (ip -n {ns} -d link show {dev})", dev=mine["ifname"], ns=ns)
        if _peer_netns(ns, mine) != other or mine.get("link_index") != theirs["ifindex"]:
            return False, _("the other end of {dev} in {ns} is not {peer} in {other}: the task wants one cable "
                            "between the two, no bridge in between", dev=mine["ifname"], ns=ns,
                            peer=theirs["ifname"], other=other)
    return True, _("lk-a pings 10.78.1.2, an address of lk-b, over their veth pair ({a} in lk-a, {b} in lk-b)",
                   a=a["ifname"], b=b["ifname"])


def _holder(ns, ip):
    """`ip -d link` of the interface of namespace ``ns`` that has address ``ip``, or None."""
    import json
    for dev in json.loads(_sh(f"ip -n {ns} -j addr").stdout or "[]"):
        if any(a.get("local") == ip for a in dev.get("addr_info", ())):
            return json.loads(_sh(f"ip -n {ns} -j -d link show dev {dev['ifname']}").stdout)[0]
    return None


def _peer_netns(ns, dev):
    """The name of the namespace the other end of ``dev`` (in ``ns``) is in,
    as `ip netns list-id` names the ids `ip link` shows; None when unnamed."""
    import json
    ids = {e["nsid"]: e.get("name") for e in json.loads(_sh(f"ip -n {ns} -j netns list-id").stdout or "[]")}
    return ids.get(dev.get("link_netnsid"))


def _published():
    pid, why = running("lab06-web")
    if pid is None:
        return False, why
    from labkit.course.facts.network import host_fetch
    own = _sh("labkit exec lab06-web -- sh -c 'timeout 2 wget -q -O- http://127.0.0.1/'").stdout.strip()
    if not own:
        return False, _("lab06-web serves nothing on its own port 80")
    page = host_fetch("http://127.0.0.1:8080/", tries=10)
    if page is None:
        return False, _("nothing answers on the host's 127.0.0.1:8080")
    if page != own:
        return False, _("127.0.0.1:8080 answers, but not with lab06-web's page")
    return True, _("the host's 127.0.0.1:8080 answers with lab06-web's page")


def _by_name():
    from labkit.networks import endpoints, store
    try:
        store.load("lab06-net")
    except LabkitError:
        return False, _("there is no network lab06-net (`labkit network ls`)")
    pid, why = running("lab06-db")
    if pid is None:
        return False, why
    mine = [ep for ep in endpoints.attached("lab06-net") if ep["owner"] == "lab06-db"]
    if not mine:
        return False, _("lab06-db is not on network lab06-net")
    r = _sh("labkit run --rm --network lab06-net -- ping -c1 -W2 db")
    if f"({mine[0]['ip']})" not in r.stdout:
        return False, _("a container of lab06-net does not find `db`: {seen}",
                        seen=((r.stdout + r.stderr).strip().splitlines() or [_("no answer")])[0])
    return True, _("`ping db` from lab06-net reaches lab06-db at {ip}", ip=mine[0]["ip"])


EXERCISES = [
    Exercise("06.veth-pair", "two namespaces, one cable",
             "Make two network namespaces, lk-a and lk-b, joined by one veth pair (no bridge), with "
             "10.78.1.1/24 in lk-a and 10.78.1.2/24 in lk-b, so that lk-a pings 10.78.1.2.",
             ["ip-netns(8) makes named namespaces; ip-link(8), TYPE veth: a pair whose two ends may live "
              "in two namespaces",
              "ip link add NAME netns lk-a type veth peer name NAME netns lk-b; then ip -n NS addr add … "
              "and ip -n NS link set … up",
              "sudo ip netns add lk-a; sudo ip netns add lk-b; sudo ip link add eth0 netns lk-a type veth "
              "peer name eth0 netns lk-b; sudo ip -n lk-a addr add 10.78.1.1/24 dev eth0; …"],
             _veth_pair,
             ["ip netns add lk-a", "ip netns add lk-b",
              "ip link add eth0 netns lk-a type veth peer name eth0 netns lk-b",
              "ip -n lk-a addr add 10.78.1.1/24 dev eth0", "ip -n lk-b addr add 10.78.1.2/24 dev eth0",
              "ip -n lk-a link set eth0 up", "ip -n lk-b link set eth0 up"],
             ["ip netns del lk-a 2>/dev/null || true", "ip netns del lk-b 2>/dev/null || true",
              "ip link del lab06-br 2>/dev/null || true"]),
    Exercise("06.publish", "a web server on the host's 127.0.0.1:8080",
             "Start a detached container named lab06-web on the network labkit running the web server "
             f"`sh -c '{PAGE}'` (port 80 inside), so that http://127.0.0.1:8080/ on the host answers with its page.",
             ["the container's port 80 is in its own network namespace: the host needs a rule that sends "
              "its port 8080 there (DNAT)",
              "docker run's -p HOSTPORT:CONTAINERPORT; labkit's binds to 127.0.0.1 by default",
              f"sudo labkit run -d --name lab06-web --network labkit -p 8080:80 -- sh -c '{PAGE}'"],
             _published,
             [f"labkit run -d --name lab06-web --network labkit -p 8080:80 -- sh -c '{PAGE}'"],
             [rm_line("lab06-web"), "labkit network rm labkit >/dev/null 2>&1 || true"]),
    Exercise("06.by-name", "find the database by its name",
             "Make a network lab06-net and start a detached container named lab06-db on it (running "
             "`sleep 600`) that the other containers of lab06-net reach as `db`.",
             ["containers of one network find each other by name: each one's /etc/hosts lists the others",
              "labkit network create; labkit run --network NET --network-alias NAME",
              "sudo labkit network create lab06-net; sudo labkit run -d --name lab06-db --network lab06-net "
              "--network-alias db -- sleep 600"],
             _by_name,
             ["labkit network create lab06-net",
              "labkit run -d --name lab06-db --network lab06-net --network-alias db -- sleep 600"],
             [rm_line("lab06-db"), "labkit network rm lab06-net >/dev/null 2>&1 || true",
              "labkit network rm lab06-other >/dev/null 2>&1 || true"]),
]


_WEB = f"sh -c '{PAGE}'"
_NETS = ["ip netns add lk-a", "ip netns add lk-b"]

ALTERNATIVES = {
    "06.veth-pair": {
        "made in the host, then moved; up before addressed": _NETS + [
            "ip link add va type veth peer name vb", "ip link set va netns lk-a", "ip link set vb netns lk-b",
            "ip -n lk-a link set va up", "ip -n lk-b link set vb up",
            "ip -n lk-a addr add 10.78.1.1/24 dev va", "ip -n lk-b addr add 10.78.1.2/24 dev vb"],
        "ip netns exec, peer made from inside lk-a": _NETS + [
            "ip netns exec lk-a ip link add left type veth peer name right netns lk-b",
            "ip netns exec lk-a ip address add 10.78.1.1/24 dev left",
            "ip netns exec lk-b ip address add 10.78.1.2/24 dev right",
            "ip netns exec lk-a ip link set left up", "ip netns exec lk-b ip link set right up"],
    },
    "06.publish": {
        "the address and protocol spelled out": [
            f"labkit run -d --name lab06-web --network=labkit -p 127.0.0.1:8080:80/tcp -- {_WEB}"],
        "published when connected to the network": [
            f"labkit run -d --name lab06-web -- {_WEB}", "labkit network connect -p 8080:80 labkit lab06-web"],
    },
    "06.by-name": {
        "the alias given when connected": [
            "labkit network create lab06-net", "labkit run -d --name lab06-db -- sleep 600",
            "labkit network connect --alias db lab06-net lab06-db"],
        "a subnet of its own, --flag=value spellings": [
            "labkit network create --subnet 10.77.66.0/24 lab06-net",
            "labkit run -d --name=lab06-db --network=lab06-net --network-alias=db -- busybox sleep 600"],
    },
}

NEAR_MISSES = {
    "06.veth-pair": {
        "the namespaces, no cable": (_NETS, "lk-b has no address"),
        "both addresses in lk-a": (_NETS + [
            "ip -n lk-a link add x0 type veth peer name x1", "ip -n lk-a addr add 10.78.1.1/24 dev x0",
            "ip -n lk-a addr add 10.78.1.2/24 dev x0", "ip -n lk-a link set x0 up",
            "ip -n lk-b link add x0 type veth peer name x1", "ip -n lk-b addr add 10.78.1.2/24 dev x0"],
            "is an address of lk-a itself"),
        "two cables through a bridge": (_NETS + [
            "ip link add lab06-br type bridge", "ip link set lab06-br up",
            "ip link add ha type veth peer name eth0 netns lk-a", "ip link add hb type veth peer name eth0 netns lk-b",
            "ip link set ha master lab06-br up", "ip link set hb master lab06-br up",
            "ip -n lk-a addr add 10.78.1.1/24 dev eth0", "ip -n lk-b addr add 10.78.1.2/24 dev eth0",
            "ip -n lk-a link set eth0 up", "ip -n lk-b link set eth0 up"], "no bridge in between"),
    },
    "06.publish": {
        "no port published": ([f"labkit run -d --name lab06-web --network labkit -- {_WEB}"], "nothing answers"),
        "8080 published to the wrong port inside": (
            [f"labkit run -d --name lab06-web --network labkit -p 8080:8000 -- {_WEB}"], "nothing answers"),
    },
    "06.by-name": {
        "no alias": (["labkit network create lab06-net",
                      "labkit run -d --name lab06-db --network lab06-net -- sleep 600"], "does not find `db`"),
        "the alias on another network": (
            ["labkit network create lab06-net", "labkit network create lab06-other",
             "labkit run -d --name lab06-db --network lab06-other --network-alias db -- sleep 600"],
            "is not on network lab06-net"),
    },
}
