"""A bundle gets its network from OCI hooks, as Docker's and podman's do:
runc itself does no networking. The same config.json, with `labkit network
connect NET -` as its createRuntime hook and `disconnect` as poststop, runs
under labkit-runtime and under runc: both containers get an eth0 on the
network and reach its gateway, and both endpoints are gone after."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from labkit.images import builder
from labkit import home
from labkit.oci import spec
from net_helpers import ROOT, ok

RUNTIMES = {"labkit-runtime": [sys.executable, "-m", "labkit.cli.runtime"], "runc": ["runc"]}


def hook(action):
    return {"path": sys.executable, "args": [sys.executable, "-m", "labkit", "network", action, "lk-oci", "-"],
            "env": [f"PYTHONPATH={ROOT}", f"PATH={os.environ['PATH']}", f"LABKIT_HOME={home.home()}"]}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_network_from_hooks(netns, tmp_path, runtime):
    if runtime == "runc" and not shutil.which("runc"):
        pytest.skip("runc is not installed")
    net = json.loads(ok("network", "create", "--subnet", "10.77.60.0/24", "lk-oci") and
                     ok("network", "inspect", "lk-oci"))[0]
    gateway = net["IPAM"]["Config"][0]["Gateway"]
    config = spec.default(args=["sh", "-c", f"ip -o -4 addr show eth0; ping -c1 -W2 {gateway} >/dev/null && echo reached"],
                          terminal=False)
    for kind in ("bounding", "effective", "permitted"):   # ping needs a raw socket
        config["process"]["capabilities"][kind].append("CAP_NET_RAW")
    # The shared base rootfs, read-only: runc refuses a symlinked root, and nothing may write to it.
    config["root"] = {"path": os.path.realpath(builder.resolve("base")), "readonly": True}
    config["hooks"] = {"createRuntime": [hook("connect")], "poststop": [hook("disconnect")]}
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(config))
    try:
        r = subprocess.run([*RUNTIMES[runtime], "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle),
                            f"lk-oci-{runtime}"], capture_output=True, text=True, timeout=60, cwd=str(bundle),
                           env=dict(os.environ, PYTHONPATH=ROOT), stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        first, *rest = r.stdout.splitlines()
        assert first.split()[1] == "eth0" and first.split()[3].startswith("10.77.60."), first
        assert rest == ["reached"]
        # poststop ran: no endpoint is left on the network
        assert json.loads(ok("network", "inspect", "lk-oci"))[0]["Containers"] == {}
        assert not os.listdir(os.path.join(home.home(), "networks", "lk-oci", "endpoints"))
    finally:
        ok("network", "rm", "lk-oci")
