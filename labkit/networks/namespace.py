"""Which network namespace a network belongs to.

A network's bridge, addresses and nftables rules live in one network
namespace: the one it was made in (a test's own `unshare -n`, a student's
host, a VM). Docker gets this by running one daemon per namespace, each with
its own state; labkit keeps one $LABKIT_HOME, so each network.json records
its namespace, and a command elsewhere never makes that network's bridge or
renders its rules in a namespace of its own without saying so:

  - made in this namespace                    used as it is
  - made before a reboot (another boot id),   taken over quietly: its namespace is
    or by a labkit too old to record it       gone and a bridge is a cache of the file
  - its namespace still has a process or a    refused, with the way to reach it
    /run/netns name (on another namespace)    (nsenter --net=...) or remove it
  - its namespace is gone (no process, no     taken over, with one line saying so
    name holds it any more)

A namespace is named by its cookie (SO_NETNS_COOKIE, socket(7): a 64-bit
number the kernel never gives twice while it runs) and found alive by its
inode, which `ls -l /proc/PID/ns/net` shows as net:[INODE].
"""

import os
import socket
import sys

from labkit.errors import LabkitError

SO_NETNS_COOKIE = 71        # linux/asm-generic/socket.h; Python names it from 3.13 only


def here():
    """The calling thread's network namespace (a test's thread may have
    unshared its own): {cookie, inode, boot}."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            cookie = int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), sys.byteorder)
    except OSError:              # before Linux 5.14: the inode alone
        cookie = None
    return {"cookie": cookie, "inode": os.stat("/proc/thread-self/ns/net").st_ino, "boot": _boot_id()}


def _boot_id():
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def same(recorded, now):
    if recorded["cookie"] is not None and now["cookie"] is not None:
        return recorded["cookie"] == now["cookie"]
    return recorded["inode"] == now["inode"]


def holder(inode):
    """A process, or a /run/netns name, whose network namespace has
    ``inode``: how to reach it. None when the namespace is gone."""
    for top in ("/run/netns", "/var/run/netns"):
        try:
            for name in os.listdir(top):
                if _inode(os.path.join(top, name)) == inode:
                    return f"--net={os.path.join(top, name)}"
        except OSError:
            continue
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if _inode(f"/proc/{pid}/ns/net") == inode:
            return f"--net=/proc/{pid}/ns/net"
    return None


def _inode(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def is_here(net, now=None):
    """Whether ``net`` belongs to this namespace (or to none any more)."""
    recorded = net.get("netns")
    now = now or here()
    return recorded is None or recorded.get("boot") != now["boot"] or same(recorded, now)


def elsewhere(net, now=None):
    """Refuse ``net`` when another namespace that still exists has it.
    Returns True when it was made in a namespace that is gone (this boot)."""
    now = now or here()
    recorded = net.get("netns")
    if recorded is None or recorded.get("boot") != now["boot"] or same(recorded, now):
        return False
    way = holder(recorded["inode"])
    if way is not None:
        raise LabkitError(
            f"network '{net['name']}' belongs to another network namespace (net:[{recorded['inode']}]), "
            "where its bridge and rules are",
            f"run the command there (nsenter {way} labkit ...), or make a network of this "
            "namespace's own with another name")
    return True


def claim(net, save):
    """Make sure ``net`` may be used here, taking it over from a namespace
    that is gone; ``save(net)`` writes its file. Call with the networks'
    lock held. Returns ``net``."""
    now = here()
    recorded = net.get("netns")
    if elsewhere(net, now):
        print(f"labkit: network '{net['name']}' was made in a network namespace that is gone "
              f"(net:[{recorded['inode']}]): its bridge and rules are made in this one (net:[{now['inode']}])",
              file=sys.stderr)
    if recorded != now:
        net["netns"] = now
        save(net)
    return net
