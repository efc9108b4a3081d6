"""Every network test runs in a network namespace of its own: the test
process's thread unshares one (its children, `labkit` among them, inherit it),
so bridges, veths and nftables rules are made there and the machine's own
interfaces are never touched. Traffic goes only to loopback and to
namespaces the test made. At the end the test must have left nothing in its
namespace (links, the labkit table, networks and endpoints on disk), checked
before the namespace is dropped (which would hide a leak)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from labkit.leaks import network_leftovers  # noqa: E402
from labkit.network import link_names  # noqa: E402
from net_helpers import Outside  # noqa: E402
from netns_helper import private_netns  # noqa: E402


def own_leftovers():
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found = [f"link {n}" for n in link_names(links) if n.startswith("lk") or "labkit" in n]
    return sorted(found + network_leftovers())


@pytest.fixture
def netns(rootfs):
    """A fresh network namespace for this test (lo up), checked clean at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with private_netns():
        before = own_leftovers()
        yield
        left = sorted(set(own_leftovers()) - set(before))
        if left:   # clean up for the next test, then fail this one
            subprocess.run([sys.executable, "-m", "labkit", "gc"], capture_output=True)
            for line in left:
                if line.startswith("network "):
                    subprocess.run([sys.executable, "-m", "labkit", "network", "rm", line.split()[1]],
                                   capture_output=True)
        assert not left, f"the test left in its network namespace: {left}"


@pytest.fixture
def outside(netns):
    o = Outside()
    yield o
    o.close()
