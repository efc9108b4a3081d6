"""Stage 6 against the real kernel, in a network namespace per test
(conftest.py): containers reach each other by name, a published port
answers on 127.0.0.1, another network is out of reach, the way out is
masqueraded, and nothing is left after rm, SIGKILL + gc and network rm."""

import json
import os
import signal
import subprocess
import sys

import pytest

from labkit import home
from labkit.course.facts.network import host_fetch
from net_helpers import ROOT, labkit, ok
from proc_helper import wait_for

HTTPD = "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www"


get = host_fetch   # the page at a URL, with a bounded retry loop


def server(name, text, *extra):
    return ok("run", "-d", "--name", name, *extra, "--", "sh", "-c", HTTPD.format(text=text)).strip()


def inside(cid, cmd, **kw):
    return labkit("exec", cid, "--", "sh", "-c", cmd, **kw)


def wait_http(cid, url):
    """From inside container ``cid``, until ``url`` answers (bounded)."""
    r = inside(cid, f"for i in $(seq 50); do timeout 2 wget -q -O- {url} && exit 0; sleep 0.1; done; exit 1")
    return r.stdout.strip() if r.returncode == 0 else None


def endpoint(network, cid):
    return json.loads(ok("network", "inspect", network))[0]["Containers"][cid]


def ns_inode(pid, kind="net"):
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def test_by_name_and_published_port(netns):
    web = server("lk-web", "hello-web", "--network", "labkit", "-p", "8080:80")
    try:
        ep = endpoint("labkit", web)
        ip = ep["IPv4Address"].split("/")[0]
        assert ep["Ports"] == ["127.0.0.1:8080->80/tcp"]
        out = ok("run", "--rm", "--network", "labkit", "--name", "lk-client", "--",
                 "sh", "-c", "grep -w lk-web /etc/hosts; ping -c1 -W2 lk-web >/dev/null && echo pinged; "
                 "for i in $(seq 50); do timeout 2 wget -q -O- http://lk-web/ && break; sleep 0.1; done")
        lines = out.split()
        assert lines[0] == ip                    # /etc/hosts names it by its real address
        assert "pinged" in lines and "hello-web" in lines
        assert get("http://127.0.0.1:8080/") == "hello-web"   # the host's 127.0.0.1 reaches it
        rules = subprocess.run(["nft", "list", "table", "ip", "labkit"], capture_output=True, text=True).stdout
        assert f"ip daddr 127.0.0.1 tcp dport 8080 dnat to {ip}:80" in rules
    finally:
        ok("rm", "-f", web)
    rules = subprocess.run(["nft", "list", "table", "ip", "labkit"], capture_output=True, text=True).stdout
    assert "dport 8080" not in rules and "chain postrouting" in rules   # the port went, the network stays
    assert get("http://127.0.0.1:8080/", tries=1) is None
    ok("network", "rm", "labkit")


def test_hosts_kept_current(netns):
    a = ok("run", "-d", "--network", "labkit", "--name", "lk-a", "--", "sleep", "300").strip()
    try:
        assert "lk-b" not in inside(a, "cat /etc/hosts").stdout
        b = ok("run", "-d", "--network", "labkit", "--name", "lk-b", "--network-alias", "db",
               "--", "sleep", "300").strip()
        ip_b = endpoint("labkit", b)["IPv4Address"].split("/")[0]
        hosts = inside(a, "cat /etc/hosts").stdout
        assert f"{ip_b}\tlk-b db" in hosts       # a's file was rewritten when b joined
        assert inside(a, "ping -c1 -W2 db").returncode == 0
        ok("rm", "-f", b)
        assert "lk-b" not in inside(a, "cat /etc/hosts").stdout   # and again when b left
    finally:
        ok("rm", "-f", a)
        ok("network", "rm", "labkit")


def test_same_port_in_two_containers(netns):
    one = server("lk-one", "one", "--network", "labkit", "-p", "8081:80")
    two = server("lk-two", "two", "--network", "labkit", "-p", "8082:80")
    try:
        assert (get("http://127.0.0.1:8081/"), get("http://127.0.0.1:8082/")) == ("one", "two")
        ip1, ip2 = (endpoint("labkit", c)["IPv4Address"] for c in (one, two))
        assert ip1 != ip2
    finally:
        ok("rm", "-f", one, two)
        ok("network", "rm", "labkit")


def test_another_network_cannot_reach(netns):
    ok("network", "create", "lk-front")
    ok("network", "create", "lk-back")
    web = server("lk-web", "front-only", "--network", "lk-front")
    near = ok("run", "-d", "--network", "lk-front", "--", "sleep", "300").strip()
    far = ok("run", "-d", "--network", "lk-back", "--", "sleep", "300").strip()
    try:
        ip = endpoint("lk-front", web)["IPv4Address"].split("/")[0]
        assert wait_http(near, f"http://{ip}/") == "front-only"
        r = inside(far, f"timeout 3 wget -q -O- http://{ip}/")
        assert r.returncode != 0 and "front-only" not in r.stdout
        assert "lk-web" not in inside(far, "cat /etc/hosts").stdout   # nor its name
        rules = subprocess.run(["nft", "list", "table", "ip", "labkit"], capture_output=True, text=True).stdout
        assert "drop" in rules
    finally:
        ok("rm", "-f", web, near, far)
        ok("network", "rm", "lk-front", "lk-back")


def test_way_out_is_masqueraded(outside):
    c = ok("run", "-d", "--network", "labkit", "--", "sleep", "300").strip()
    try:
        mine = endpoint("labkit", c)["IPv4Address"].split("/")[0]
        seen = inside(c, f"nc -w 3 {outside.THERE} {outside.PORT}").stdout.strip()
        assert seen == outside.HERE and seen != mine   # the outside sees the host, not the container
        # Without the masquerade rule the outside has no way back to the container.
        subprocess.run(["nft", "flush", "chain", "ip", "labkit", "postrouting"], check=True)
        r = inside(c, f"nc -w 2 {outside.THERE} {outside.PORT}")
        assert r.stdout.strip() == ""
    finally:
        ok("rm", "-f", c)
        ok("network", "rm", "labkit")


def test_published_on_every_address(outside):
    web = server("lk-web", "from-afar", "--network", "labkit", "-p", "0.0.0.0:8090:80")
    try:
        fetch = ("import urllib.request, time\n"
                 "for i in range(50):\n"
                 "    try: print(urllib.request.urlopen('http://%s:8090/', timeout=2).read().decode().strip()); break\n"
                 "    except OSError: time.sleep(0.1)\n" % outside.HERE)
        r = subprocess.run(["nsenter", f"--net=/proc/{outside.holder.pid}/ns/net", sys.executable, "-c", fetch],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout.strip() == "from-afar"
    finally:
        ok("rm", "-f", web)
        ok("network", "rm", "labkit")


def test_container_network_shares_one_namespace(netns):
    web = server("lk-web", "same-ns", "--network", "labkit")
    try:
        pid = json.loads(ok("network", "inspect", "labkit"))[0]["Containers"][web]["Pid"]
        out = ok("run", "--rm", "--network", f"container:{web}", "--", "sh", "-c",
                 "stat -L -c %i /proc/self/ns/net; "
                 "for i in $(seq 50); do timeout 2 wget -q -O- http://127.0.0.1/ && break; sleep 0.1; done; ip -o link")
        inode, page, *links = out.splitlines()
        assert int(inode) == ns_inode(pid) and page == "same-ns"
        assert any("eth0" in line for line in links)
    finally:
        ok("rm", "-f", web)
        ok("network", "rm", "labkit")


def test_host_and_none(netns):
    here = os.stat("/proc/self/ns/net").st_ino
    assert int(ok("run", "--rm", "--network", "host", "--", "stat", "-L", "-c", "%i", "/proc/self/ns/net")) == here
    out = ok("run", "--rm", "--", "sh", "-c", "stat -L -c %i /proc/self/ns/net; ip -o link")
    inode, *links = out.splitlines()
    assert int(inode) != here and len(links) == 1 and ": lo:" in links[0]


def test_sigkill_then_gc(netns):
    monitor = subprocess.Popen([sys.executable, "-m", "labkit", "run", "--name", "lk-doomed", "--network", "labkit",
                          "-p", "8085:80", "--", "sleep", "300"], cwd="/",
                         env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        def plugged():
            r = labkit("network", "inspect", "labkit")
            return r.returncode == 0 and json.loads(r.stdout)[0]["Containers"].get("lk-doomed", {}).get("Pid")
        assert wait_for(plugged)
        veth = endpoint("labkit", "lk-doomed")["HostVeth"]
    finally:
        monitor.send_signal(signal.SIGKILL)
        monitor.wait()
    # Nobody tore it down: the endpoint is still on disk until gc.
    assert os.path.exists(os.path.join(home.home(), "networks", "labkit", "endpoints", "lk-doomed.json"))
    out = ok("gc")
    assert "disconnected lk-doomed from network labkit" in out
    assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode != 0
    assert "8085" not in subprocess.run(["nft", "list", "table", "ip", "labkit"], capture_output=True,
                                        text=True).stdout
    ok("network", "rm", "labkit")


def test_rm_refused_while_attached(netns):
    ok("network", "create", "lk-busy")
    c = ok("run", "-d", "--network", "lk-busy", "--", "sleep", "300").strip()
    try:
        r = labkit("network", "rm", "lk-busy")
        assert r.returncode != 0 and "has containers attached" in r.stderr and c in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        ok("rm", "-f", c)
    ok("network", "rm", "lk-busy")
    assert ok("network", "ls").splitlines()[1:] == []
    assert subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.count("lk-") == 0


BAD = [
    (["network", "create", "--subnet", "10.77.9.0/30", "lk-x"], "too small"),
    (["network", "create", "--subnet", "10.77.9.0/33", "lk-x"], "--subnet"),
    (["network", "create", "--subnet", "10.77.9.0/24", "--gateway", "10.78.0.1", "lk-x"], "not a host address"),
    (["network", "create", "--subnet", "10.77.0.0/16", "lk-x"], "overlaps network 'lk-taken'"),
    (["network", "create", "lk-taken"], "already in use"),
    (["network", "create", "host"], "reserved"),
    (["network", "create", "bad/name"], "bad network name"),
    (["network", "rm", "lk-nosuch"], "no such network"),
    (["run", "--rm", "--network", "lk-nosuch", "--", "true"], "no such network 'lk-nosuch'"),
    (["run", "--rm", "-p", "8080:80", "--", "true"], "-p needs a network"),
    (["run", "--rm", "--network", "host", "-p", "8080:80", "--", "true"], "-p needs a network"),
    (["run", "--rm", "--network", "lk-taken", "--ip", "10.99.0.5", "--", "true"], "outside network 'lk-taken'"),
    (["run", "--rm", "--network", "lk-taken", "-p", "80:99999", "--", "true"], "not a port number"),
    (["run", "--rm", "--network", "lk-taken", "-p", "8080:80/sctp", "--", "true"], "/tcp or /udp"),
    (["run", "--rm", "--network", "lk-taken", "-p", "8080:80", "-p", "8080:81", "--", "true"], "given twice"),
    (["run", "--rm", "--ns", "pid,mnt", "--network", "lk-taken", "--", "true"], "needs the net namespace"),
    (["run", "--rm", "--network", "container:lk-nosuch", "--", "true"], "no such container"),
    # The default network is made on first use, and not left behind when that use fails.
    (["run", "--rm", "--network", "labkit", "--ip", "10.99.0.5", "--", "true"], "outside network 'labkit'"),
    (["run", "--rm", "--network", "lk-taken", "--network-alias", "a b", "--", "true"], "bad network alias"),
    (["run", "--rm", "--network", "lk-taken", "--network-alias", "x\n10.0.0.1", "--", "true"], "bad network alias"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input(netns, args, message):
    ok("network", "create", "--subnet", "10.77.200.0/24", "lk-taken")
    try:
        before = ok("network", "ls")
        r = labkit(*args)
        assert r.returncode != 0 and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert ok("network", "ls") == before
        assert ok("ps", "-a", "-q") == ""
    finally:
        ok("network", "rm", "lk-taken")


def test_port_in_use(netns):
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 8086))
    busy.listen(1)
    web = server("lk-web", "x", "--network", "labkit", "-p", "8087:80")
    try:
        for port, text in (("8086", "is in use on this host"), ("8087", "already published by container lk-web")):
            r = labkit("run", "--rm", "--network", "labkit", "-p", f"{port}:80", "--", "true")
            assert r.returncode != 0 and text in r.stderr, r.stderr
        assert list(json.loads(ok("network", "inspect", "labkit"))[0]["Containers"]) == [web]
    finally:
        busy.close()
        ok("rm", "-f", web)
        ok("network", "rm", "labkit")


def test_connect_a_running_container(netns):
    ok("network", "create", "lk-second")
    c = ok("run", "-d", "--network", "labkit", "--", "sleep", "300").strip()
    try:
        ok("network", "connect", "lk-second", c)
        links = inside(c, "ip -o -4 addr").stdout
        ip2 = endpoint("lk-second", c)["IPv4Address"]
        assert f"eth1    inet {ip2}" in links and "eth0" in links
        ok("network", "disconnect", "lk-second", c)
        assert "eth1" not in inside(c, "ip -o link").stdout
    finally:
        ok("rm", "-f", c)
        ok("network", "rm", "labkit", "lk-second")


def test_cni_driver(netns):
    ok("network", "create", "-d", "cni", "--subnet", "10.77.50.0/24", "lk-cni")
    web = server("lk-web", "via-cni", "--network", "lk-cni")
    try:
        ep = endpoint("lk-cni", web)
        ip = ep["IPv4Address"].split("/")[0]
        assert ip.startswith("10.77.50.")
        # host-local keeps its lease as a file named by the address
        leases = os.path.join(home.home(), "networks", "lk-cni",
                              "cni-ipam", "lk-cni")
        assert ip in os.listdir(leases)
        out = ok("run", "--rm", "--network", "lk-cni", "--", "sh", "-c",
                 "for i in $(seq 50); do timeout 2 wget -q -O- http://lk-web/ && break; sleep 0.1; done")
        assert out.strip() == "via-cni"
        conflist = json.load(open(os.path.join(os.path.dirname(leases), "..", "cni.conflist")))
        assert conflist["plugins"][0]["type"] == "bridge"
    finally:
        ok("rm", "-f", web)
    assert ip not in os.listdir(leases)        # DEL released it
    ok("network", "rm", "lk-cni")


def test_parallel_runs_get_distinct_addresses(netns):
    """Six `labkit run -d` at once: the lock around the address book gives each its own."""
    procs = [subprocess.Popen([sys.executable, "-m", "labkit", "run", "-d", "--network", "labkit", "--",
                               "sleep", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd="/", env=dict(os.environ, PYTHONPATH=ROOT)) for _ in range(6)]
    ids = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            ids.append(out.strip())
        found = json.loads(ok("network", "inspect", "labkit"))[0]["Containers"]
        assert sorted(found) == sorted(ids)
        assert len({c["IPv4Address"] for c in found.values()}) == 6
    finally:
        if ids:
            ok("rm", "-f", *ids)
        ok("network", "rm", "labkit")


def test_user_namespace_on_a_network(netns):
    """--userns remap: the network namespace belongs to the container's user
    namespace; the host still plugs the veth in by pid, and names work."""
    out = ok("run", "--rm", "--userns", "remap", "--network", "labkit", "--name", "lk-remap", "--",
             "sh", "-c", "id -u; grep -w lk-remap /etc/hosts; ip -o -4 addr show eth0")
    uid, hosts, addr = out.splitlines()
    assert uid == "0" and hosts.split()[0] == addr.split()[3].split("/")[0]
    ok("network", "rm", "labkit")


@pytest.mark.parametrize("state", ['{"id": "../../escape", "pid": 1}', "not json", '{"pid": 1}'])
def test_hook_with_a_bad_state(netns, state):
    """An OCI hook's stdin is input like any other: a path for an id is refused."""
    ok("network", "create", "lk-hook")
    try:
        r = labkit("network", "connect", "lk-hook", "-", input=state)
        assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not os.path.exists(os.path.join(home.home(), "escape.json"))
        assert os.listdir(os.path.join(home.home(), "networks", "lk-hook", "endpoints")) == []
    finally:
        ok("network", "rm", "lk-hook")


def test_a_network_belongs_to_the_namespace_it_was_made_in(netns):
    """Docker keeps one daemon, and so one set of networks, per network
    namespace; labkit keeps one $LABKIT_HOME, so each network records its
    namespace (labkit/networks/namespace.py). From another namespace that
    still exists the network is refused — no bridge made there, no rule
    rendered there, no rm — with the way to reach it; from one where it was
    made in a namespace that is gone, it is taken over, and that is said."""
    from netns_helper import private_netns
    ok("network", "create", "nsown")                         # in the test's namespace, A
    keeper = subprocess.Popen(["sleep", "120"])               # A has a process: it is alive
    try:
        with private_netns():                                 # B
            r = labkit("run", "--rm", "--network", "nsown", "--", "true")
            assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert "belongs to another network namespace" in r.stderr
            assert f"nsenter --net=/proc/{keeper.pid}/ns/net labkit" in r.stderr
            r = labkit("network", "rm", "nsown")
            assert r.returncode != 0 and "belongs to another network namespace" in r.stderr
            # A network of B's own works beside it, and B's firewall holds B's rules only.
            ok("run", "--rm", "--network", "labkit", "--", "true")
            table = subprocess.run(["nft", "list", "table", "ip", "labkit"], capture_output=True, text=True).stdout
            nsown = json.loads(ok("network", "inspect", "nsown"))[0]
            assert "labkit0" in table and nsown["Options"]["bridge"] not in table, table
            links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
            assert nsown["Options"]["bridge"] not in links
            ok("network", "rm", "labkit")
            with private_netns():                             # C: made there, then gone
                ok("network", "create", "nsgone")
            r = labkit("run", "--rm", "--network", "nsgone", "--", "true")
            assert r.returncode == 0, r.stderr
            assert "was made in a network namespace that is gone" in r.stderr
            ok("network", "rm", "nsgone")
    finally:
        keeper.kill()
        keeper.wait()
    ok("network", "rm", "nsown")                              # back in A, where it lives


def _mac(link):
    out = subprocess.run(["ip", "-o", "link", "show", link], capture_output=True, text=True).stdout
    return out.split("link/ether ")[1].split()[0]


def test_the_bridge_keeps_its_mac_as_containers_come_and_go(netns):
    """A bridge left to choose its MAC takes its ports' lowest: a container's
    veth with a low MAC would become the gateway's address, and when it goes,
    every other container's ARP entry for the gateway (and the virtual IPs)
    points at no one for seconds. labkit sets it, from the gateway's IP."""
    keep = server("lk-keep", "kept", "--network", "labkit")
    try:
        br = json.loads(ok("network", "inspect", "labkit"))[0]["Options"]["bridge"]
        gateway = json.loads(ok("network", "inspect", "labkit"))[0]["IPAM"]["Config"][0]["Gateway"]
        assert _mac(br) == "02:42:" + ":".join(f"{int(b):02x}" for b in gateway.split("."))
        before = _mac(br)
        low = server("lk-low", "low", "--network", "labkit")
        subprocess.run(["ip", "link", "set", endpoint("labkit", low)["HostVeth"], "address", "00:00:00:00:00:01"],
                       check=True)                                   # the lowest MAC a port can have
        assert _mac(br) == before
        ok("rm", "-f", low)
        assert _mac(br) == before
        r = inside(keep, f"ping -c1 -W1 {gateway}")          # the gateway, where it was
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        ok("rm", "-f", keep)
        ok("network", "rm", "labkit")
