"""The CNI driver: a network whose links are made by the Container Network
Interface's plugins, the way podman (3.x) and Kubernetes set up a pod.

A plugin is a program. The runtime executes it with the container's
namespace, an interface name and a command in environment variables, the
network's configuration as JSON on stdin, and reads a JSON result on stdout
(github.com/containernetworking/cni, SPEC.md):

    CNI_COMMAND=ADD CNI_CONTAINERID=web CNI_NETNS=/proc/PID/ns/net \\
    CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge < conf.json

`bridge` makes the bridge and the veth pair (as links.py does by hand) and
asks an IPAM plugin, `host-local`, for the address: it keeps its leases as
files, one per address, under the network's directory. DEL undoes it. The
network's configuration list is written once, at `network create`, to
$LABKIT_HOME/networks/<name>/cni.conflist: read it beside links.py.
"""

import json
import os
import subprocess

from labkit.errors import LabkitError
from labkit.networks import store
from labkit.networks.links import trace

CNI_PATH = "/usr/lib/cni"
VERSION = "1.0.0"


def conflist_path(name):
    return os.path.join(store.root(name), "cni.conflist")


def write_conflist(net):
    conf = {
        "cniVersion": VERSION, "name": net["name"],
        "plugins": [{
            "type": "bridge", "bridge": net["bridge"], "isGateway": True,
            # No iptables: labkit's own nftables table masquerades (firewall.py).
            "ipMasq": False, "hairpinMode": False,
            "ipam": {"type": "host-local",
                     "ranges": [[{"subnet": net["subnet"], "gateway": net["gateway"]}]],
                     "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": os.path.join(store.root(net["name"]), "cni-ipam")},
        }],
    }
    store.write_json(conflist_path(net["name"]), conf)


def _exec(command, conf, plugin, owner, ifname, netns, ip=None, prev=None):
    conf = dict(plugin, cniVersion=conf["cniVersion"], name=conf["name"])
    if prev is not None:
        conf["prevResult"] = prev
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": owner, "CNI_NETNS": netns,
           "CNI_IFNAME": ifname, "CNI_PATH": CNI_PATH, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if ip:
        env["CNI_ARGS"] = f"IgnoreUnknown=1;IP={ip}"
    exe = os.path.join(CNI_PATH, plugin["type"])
    data = json.dumps(conf)
    trace([" ".join(f"{k}={v}" for k, v in env.items() if k != "PATH"), exe, "<", "conf.json"])
    try:
        r = subprocess.run([exe], input=data, env=env, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise LabkitError(f"CNI plugin {exe} is not installed",
                          "install containernetworking-plugins (make lab does)") from None
    if r.returncode != 0:
        try:
            err = json.loads(r.stdout)
            msg = err.get("msg", "") + (f": {err['details']}" if err.get("details") else "")
        except ValueError:
            msg = (r.stderr or r.stdout).strip()
        raise LabkitError(f"CNI {command} with {plugin['type']} on network '{conf['name']}': {msg}",
                          f"the plugin's configuration is {conflist_path(conf['name'])}")
    return json.loads(r.stdout) if r.stdout.strip() else None


def _conf(name):
    with open(conflist_path(name)) as f:
        return json.load(f)


def add(net, ep, pid):
    """ADD through every plugin of the list; the address goes into ``ep``."""
    conf = _conf(net["name"])
    result = None
    for plugin in conf["plugins"]:
        result = _exec("ADD", conf, plugin, ep["owner"], ep["ifname"], f"/proc/{pid}/ns/net",
                       ip=ep.get("wanted_ip"), prev=result)
    inside = [i for i, link in enumerate(result.get("interfaces", [])) if link.get("sandbox")]
    address = next(a["address"] for a in result["ips"]
                   if a.get("interface") in inside or not inside)
    ep["ip"] = address.split("/")[0]
    if inside:
        ep["mac"] = result["interfaces"][inside[0]].get("mac")
    host = [link["name"] for link in result.get("interfaces", []) if not link.get("sandbox")
            and link["name"] != net["bridge"]]
    ep["veth"] = host[0] if host else None
    ep["cni_result"] = result


def delete(net, ep, pid=None):
    """DEL in reverse order. Without a live namespace (the container has
    exited: its end of the veth went with it) CNI_NETNS is empty, which the
    spec allows for DEL; host-local still releases the address."""
    conf = _conf(net["name"])
    netns = f"/proc/{pid}/ns/net" if pid else ""
    for plugin in reversed(conf["plugins"]):
        _exec("DEL", conf, plugin, ep["owner"], ep["ifname"], netns, prev=ep.get("cni_result"))
