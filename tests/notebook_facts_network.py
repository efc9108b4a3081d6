"""Facts notebooks/06-network.ipynb must record (each dict fact must hold),
read by tests/test_notebooks.py, which runs this notebook in a network
namespace of its own (NETNS); relations across facts are checked below."""

EXPECTED = {
    "06-network": ["net_by_hand", "net_trace", "net_addr_route", "net_by_name", "net_published", "net_same_port",
                   "net_ruleset", "net_isolated", "net_shared_ns", "net_topology", "net_cni", "net_left"],
}
NETNS = ["06-network"]


def check_relations(f):
    # The runner typed what the student typed by hand: a veth, moved by pid, addressed from inside.
    by_hand = [step["cmd"].split()[:3] for step in f["net_by_hand"]["ran"]]
    assert ["ip", "link", "add"] in by_hand
    assert any(c.startswith("ip link add lkv") and " netns " in c for c in f["net_trace"]["outside"])
    # Every container's route goes through the bridge that holds the gateway.
    gw = f["net_addr_route"]["gateway"]
    assert f["net_topology"]["bridge"]["address"].split("/")[0] == gw
    ips = [c["ip"] for c in f["net_topology"]["containers"]]
    assert len(set(ips)) == len(ips) == 2
    # Each container's eth0@ifN is a host veth whose master is the bridge.
    veths = {v["index"]: v for v in f["net_topology"]["veths"]}
    for c in f["net_topology"]["containers"]:
        assert veths[c["peer_index"]]["master"] == f["net_topology"]["bridge"]["name"]
        assert c["net_ns"] != f["net_topology"]["host_ns"]
    assert f["net_published"]["host_listener"] == ""   # no process listens: the DNAT rule answers
    assert f["net_cni"]["plugins"] == ["bridge"] and f["net_cni"]["ip"] in f["net_cni"]["outside"]
    assert f["net_left"]["inside"] == []
