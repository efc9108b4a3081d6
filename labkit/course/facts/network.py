"""Stage 6 facts: virtual networks, measured with ip, ping, wget and nft
inside the containers and on the host.

Each fact starts the containers it needs and removes them; the default
network `labkit` is removed again only if the fact made it. Run them on a
lab machine (the classroom VM), or inside a network namespace of your own
(`unshare -n`, as the tests do): they make bridges and firewall rules.
"""

import contextlib
import json
import os
import shlex
import subprocess

from labkit import api
from labkit.course.facts import fact, lines
from labkit.i18n import _

LAYER = "6 networks"
DEFAULT = "labkit"

# Section 1 of notebook 06: two "containers" by hand, with only ip and nft.
BY_HAND = [
    "ip netns add lk-red",
    "ip netns add lk-blue",
    "ip link add lk-br0 type bridge",
    "ip addr add 10.78.0.1/24 dev lk-br0",
    "ip link set lk-br0 up",
    "ip link add lk-red0 type veth peer name eth0 netns lk-red",
    "ip link add lk-blue0 type veth peer name eth0 netns lk-blue",
    "ip link set lk-red0 master lk-br0 up",
    "ip link set lk-blue0 master lk-br0 up",
    "ip -n lk-red addr add 10.78.0.2/24 dev eth0",
    "ip -n lk-blue addr add 10.78.0.3/24 dev eth0",
    "ip -n lk-red link set eth0 up",
    "ip -n lk-blue link set eth0 up",
    "ip -n lk-red route add default via 10.78.0.1",
    "ip netns exec lk-red ip -4 -o addr show eth0",
    "ip netns exec lk-red ip route",
    "ip netns exec lk-red ping -c1 -W2 10.78.0.3",
    "ip netns exec lk-red ping -c1 -W2 10.78.0.1",
    "nft add table ip lkhand",
    "nft add chain ip lkhand post '{ type nat hook postrouting priority srcnat; }'",
    "nft add rule ip lkhand post ip saddr 10.78.0.0/24 oifname != lk-br0 masquerade",
    "nft list table ip lkhand",
]
BY_HAND_CLEANUP = ["ip netns del lk-red", "ip netns del lk-blue", "ip link del lk-br0",
                   "nft delete table ip lkhand"]


def sh(cmd, timeout=60):
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)


def shell_line(cmd, detach=False, **options):
    """The command a student types for an api call with these options."""
    return "sudo labkit " + shlex.join(api.run_args(cmd, detach=detach, **options))


def by_hand():
    """Every command of BY_HAND, in order, and what it printed; then the cleanup."""
    ran = []
    try:
        for cmd in BY_HAND:
            r = sh(cmd)
            ran.append({"cmd": cmd, "rc": r.returncode, "out": (r.stdout + r.stderr).strip()})
            if r.returncode != 0:
                break
    finally:
        cleanup = [sh(cmd).returncode for cmd in BY_HAND_CLEANUP]
    pings = [x for x in ran if x["cmd"].startswith("ip netns exec lk-red ping")]
    ok = len(ran) == len(BY_HAND) and all(x["rc"] == 0 for x in ran) and len(pings) == 2
    return fact("net_by_hand", LAYER, _("by hand: two namespaces, a bridge, veths; red pings blue and the gateway"),
                pings[0]["out"].splitlines()[1] if pings and pings[0]["rc"] == 0 else ran[-1]["out"],
                f"{len(ran)} commands", ok, ran=ran, cleanup=cleanup)


@contextlib.contextmanager
def network(name=DEFAULT, subnet=None):
    """Network ``name``, removed at the end only if this made it."""
    listed = {n["Name"] for n in inspect_all()}
    made = name not in listed
    if made and name != DEFAULT:
        api.call(["network", "create", name] + (["--subnet", subnet] if subnet else []), check=True)
    try:
        yield name
    finally:
        if made and name in {n["Name"] for n in inspect_all()}:
            api.call(["network", "rm", name])


def inspect_all():
    names = [line.split()[1] for line in api.call(["network", "ls"], check=True).stdout.splitlines()[1:]]
    if not names:
        return []
    return json.loads(api.call(["network", "inspect", *names], check=True).stdout)


def inspect(name=DEFAULT):
    return json.loads(api.call(["network", "inspect", name], check=True).stdout)[0]


def endpoint(cid, name=DEFAULT):
    return inspect(name)["Containers"][cid]


def fetch(container, url):
    """From inside ``container``, the page at ``url`` (bounded retries: a server starts in the background)."""
    r = container.exec(f"for i in $(seq 50); do timeout 2 wget -q -O- {url} && exit 0; sleep 0.1; done; exit 1")
    return r.stdout.strip() if r.returncode == 0 else None


def host_fetch(url, tries=50):
    import time
    import urllib.request
    for _attempt in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode().strip()
        except OSError:
            time.sleep(0.1)
    return None


SERVE = "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www"


def server(name, text, **options):
    """A container serving ``text`` on port 80 with busybox httpd."""
    return api.Container(SERVE.format(text=text), name=name, **options)


def addresses():
    """Each container gets its own eth0, address and default route; the host's
    bridge holds the gateway."""
    with network() as net, api.Container("sleep 300", name="lk-one", network=net) as a, \
            api.Container("sleep 300", name="lk-two", network=net) as b:
        seen = {c.id: lines(c.exec("ip -o -4 addr show eth0 | awk '{print $4}'; ip route").stdout) for c in (a, b)}
        info = inspect(net)
        gw = info["IPAM"]["Config"][0]["Gateway"]
        bridge = info["Options"]["bridge"]
        host = sh(f"ip -o -4 addr show {bridge} | awk '{{print $4}}'").stdout.strip()
    own = [seen[c][0] for c in seen]
    routes_ok = all(f"default via {gw} dev eth0" in seen[c] for c in seen)
    return fact("net_addr_route", LAYER, _("each container: its own eth0 address, a default route via the bridge"),
                {c: seen[c] for c in seen}, f"{bridge} {host}",
                len(set(own)) == 2 and routes_ok and host.split("/")[0] == gw, gateway=gw, bridge=bridge)


def by_name():
    with network() as net, server("lk-web", "hello", network=net) as web:
        ip = endpoint(web.id, net)["IPv4Address"].split("/")[0]
        r = api.run("grep -w lk-web /etc/hosts; ping -c1 -W2 lk-web | head -1; "
                    "for i in $(seq 50); do timeout 2 wget -q -O- http://lk-web/ && break; sleep 0.1; done",
                    network=net, name="lk-client")
    out = lines(r.stdout)
    return fact("net_by_name", LAYER, _("ping web: a container finds another by name (its /etc/hosts)"),
                out, f"lk-web is {ip}", bool(out) and out[0].split()[0] == ip and f"({ip})" in r.stdout
                and out[-1] == "hello", shell=[shell_line(SERVE.format(text="hello"), True, name="lk-web",
                                                          network=DEFAULT), "sudo " + r.command])


def published():
    with network() as net, server("lk-pub", "published", network=net, publish=["8080:80"]) as web:
        page = host_fetch("http://127.0.0.1:8080/")
        port = endpoint(web.id, net)["Ports"]
        listening = sh("ss -ltn 'sport = :8080' | tail -n +2").stdout.strip()
    return fact("net_published", LAYER, _("-p 8080:80: the host's 127.0.0.1:8080 reaches the container's port 80"),
                port, f"curl http://127.0.0.1:8080/ -> {page}", page == "published" and port == ["127.0.0.1:8080->80/tcp"],
                shell=[shell_line(SERVE.format(text="published"), True, name="lk-pub", network=DEFAULT,
                                  publish=["8080:80"])],
                host_listener=listening)


def same_port():
    with network() as net, server("lk-web1", "one", network=net, publish=["8081:80"]) as w1, \
            server("lk-web2", "two", network=net, publish=["8082:80"]) as w2:
        pages = [host_fetch("http://127.0.0.1:8081/"), host_fetch("http://127.0.0.1:8082/")]
        ips = [endpoint(c.id, net)["IPv4Address"] for c in (w1, w2)]
    return fact("net_same_port", LAYER, _("port 80 in two containers at once (each its own namespace)"),
                ips, f"8081 -> {pages[0]}, 8082 -> {pages[1]}", pages == ["one", "two"] and ips[0] != ips[1])


def isolated():
    with network() as net, network("lk-other") as other, server("lk-web", "near", network=net) as web, \
            api.Container("sleep 300", name="lk-near", network=net) as near, \
            api.Container("sleep 300", name="lk-far", network=other) as far:
        ip = endpoint(web.id, net)["IPv4Address"].split("/")[0]
        same = fetch(near, f"http://{ip}/")
        r = far.exec(f"timeout 1 wget -q -O- http://{ip}/; echo rc=$?")
    return fact("net_isolated", LAYER, _("a container on another network cannot reach it"),
                f"from lk-other: {r.stdout.strip().splitlines()[-1]}", f"from {net}: {same}",
                same == "near" and "near" not in r.stdout and not r.stdout.strip().endswith("rc=0"))


def shared_ns():
    """--network container:ID: two containers, one network namespace (a pod)."""
    with network() as net, server("lk-pod", "pod", network=net) as web:
        r = api.run("stat -L -c %i /proc/self/ns/net; "
                    "for i in $(seq 50); do timeout 2 wget -q -O- http://127.0.0.1/ && break; sleep 0.1; done",
                    network=f"container:{web.id}")
        pid = web.pid
        theirs = os.stat(f"/proc/{pid}/ns/net").st_ino
    out = lines(r.stdout)
    return fact("net_shared_ns", LAYER, _("--network container:ID: the same net namespace, localhost between them"),
                out, f"lk-pod's net ns {theirs}", len(out) == 2 and int(out[0]) == theirs and out[1] == "pod")


def ruleset():
    with network() as net, server("lk-rules", "x", network=net, publish=["8083:80"]) as web:
        ip = endpoint(web.id, net)["IPv4Address"].split("/")[0]
        table = sh("nft list table ip labkit").stdout
    info = inspect_all()
    dnat = f"dnat to {ip}:80"
    return fact("net_ruleset", LAYER, _("nft list ruleset: masquerade out, DNAT for the published port"),
                [line.strip() for line in table.splitlines() if "dnat" in line or "masquerade" in line],
                "table ip labkit", dnat in table and "masquerade" in table, table=table, networks=len(info))


def topology():
    """The real links: the bridge, each veth's host end (its master, its
    index) and each container's eth0, whose peer index (eth0@ifN) is the host
    end's: the figure in notebook 06 is drawn from this."""
    with network() as net, api.Container("sleep 300", name="lk-a", network=net) as a, \
            api.Container("sleep 300", name="lk-b", network=net) as b:
        bridge = inspect(net)["Options"]["bridge"]
        host = json.loads(sh("ip -j addr").stdout)
        containers = []
        for c in (a, b):
            inside = json.loads(c.exec("ip -j addr show eth0").stdout)[0]
            ep = endpoint(c.id, net)
            containers.append({"name": c.id, "ip": ep["IPv4Address"], "ifname": inside["ifname"],
                               "peer_index": inside.get("link_index"), "veth": ep["HostVeth"],
                               "net_ns": os.stat(f"/proc/{c.pid}/ns/net").st_ino})
    links = {x["ifname"]: x for x in host}
    br = links.get(bridge, {})
    veths = [{"name": x["ifname"], "index": x["ifindex"], "master": x.get("master")} for x in host
             if x["ifname"].startswith("lkv")]
    by_name_ = {v["name"]: v for v in veths}
    ok = all(c["veth"] in by_name_ and by_name_[c["veth"]]["index"] == c["peer_index"]
             and by_name_[c["veth"]]["master"] == bridge for c in containers)
    gw = [a["local"] + "/" + str(a["prefixlen"]) for a in br.get("addr_info", []) if a.get("family") == "inet"]
    return fact("net_topology", LAYER, _("each eth0@ifN is the host veth with index N, plugged into the bridge"),
                [f"{c['name']}: {c['ifname']}@if{c['peer_index']} {c['ip']}" for c in containers],
                [f"{v['name']} index {v['index']} master {v['master']}" for v in veths],
                ok and bool(containers), bridge={"name": bridge, "address": gw[0] if gw else None},
                containers=containers, veths=veths, host_ns=os.stat("/proc/self/ns/net").st_ino)


def trace():
    """LABKIT_TRACE=1: the ip commands `labkit run --network` types for the student."""
    argv = api.labkit_argv(*api.run_args("ip -o -4 addr show eth0", network=DEFAULT))
    with network():
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, LABKIT_TRACE="1"))
    cmds = [line.split(": $ ", 1)[1] for line in r.stderr.splitlines() if ": $ " in line]
    return fact("net_trace", LAYER, _("labkit run --network: the same ip commands as by hand"),
                r.stdout.strip(), cmds, r.returncode == 0 and any(c.startswith("ip link add lkv") for c in cmds)
                and any(c.startswith("nsenter --net=/proc/") for c in cmds), shell="LABKIT_TRACE=1 " + shell_line(
                    "ip -o -4 addr show eth0", network=DEFAULT))


def cni():
    """The same network made by CNI's plugins: bridge and host-local."""
    from labkit import home
    api.call(["network", "create", "-d", "cni", "lk-cni"], check=True)
    try:
        with server("lk-cweb", "via-cni", network="lk-cni") as web:
            r = api.run("for i in $(seq 50); do timeout 2 wget -q -O- http://lk-cweb/ && break; sleep 0.1; done",
                        network="lk-cni")
            ip = endpoint(web.id, "lk-cni")["IPv4Address"].split("/")[0]
            top = os.path.join(home.home(), "networks", "lk-cni")
            leases = sorted(os.listdir(os.path.join(top, "cni-ipam", "lk-cni")))
            with open(os.path.join(top, "cni.conflist")) as f:
                conflist = json.load(f)
    finally:
        api.call(["network", "rm", "lk-cni"])
    return fact("net_cni", LAYER, _("a CNI network (bridge + host-local plugins): the same reach by name"),
                r.stdout.strip(), leases, r.stdout.strip() == "via-cni" and ip in leases,
                conflist=conflist, ip=ip, plugins=[p["type"] for p in conflist["plugins"]])


def left():
    """What of the networks is left on this machine: nothing."""
    from labkit.course.leaks import network_leftovers
    from labkit.linux.netdevice import link_names
    links = [n for n in link_names(sh("ip -o link").stdout) if n.startswith("lk") or "labkit" in n]
    netns = [n for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else ()) if n.startswith("lk")]
    found = network_leftovers() + [f"link {n}" for n in links] + [f"netns {n}" for n in netns]
    return fact("net_left", LAYER, _("nothing left: no network, endpoint, link, namespace or nft table"),
                found, "", not found)


def all_facts(rootfs="base"):
    return [by_hand(), trace(), addresses(), by_name(), published(), same_port(), isolated(), shared_ns(),
            ruleset(), cni()]
