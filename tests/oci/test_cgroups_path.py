"""linux.cgroupsPath as runc's cgroupfs driver takes it: an absolute path
below each hierarchy's root (podman's /libpod_parent/libpod-ID), a relative
one under labkit/; systemd's slice:prefix:name refused in one line. The
same bundle under runc lands in the same cgroup."""

import os
import shutil
import subprocess
import time

import pytest

from labkit.linux.cgroups import hierarchy

pytestmark = pytest.mark.root
PARENT = "labkit-matrix-cgpath"        # the leak check reports anything left under this name


def cgroup_of(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.strip().split(":", 2) for line in f]
    layout = hierarchy.detect()
    want = "memory" if layout.version == 1 else ""
    return next(path for _, ctls, path in lines if (want in ctls.split(",") if want else ctls == ""))


def memory_dir(rel):
    layout = hierarchy.detect()
    base = layout.v1["memory"] if layout.version == 1 else layout.v2
    return os.path.join(base, rel.strip("/"))


def created_pid(bundle, cid, runtime=None):
    if runtime is None:
        assert bundle.create(cid).returncode == 0
        return bundle.state(cid)["pid"]
    bundle.config["root"] = {"path": os.path.realpath(os.path.join(bundle.path, "rootfs"))}
    bundle.write()
    with open(os.path.join(bundle.path, f"{cid}.log"), "w") as log:
        subprocess.run([runtime, "create", "--bundle", bundle.path, cid], check=True, stdout=log, stderr=log)
    import json
    return json.loads(subprocess.run([runtime, "state", cid], capture_output=True, text=True).stdout)["pid"]


@pytest.mark.parametrize("path, expected", [
    (f"/{PARENT}/cg-abs", f"/{PARENT}/cg-abs"),
    ("cg-rel/inner", "/labkit/cg-rel/inner"),
])
def test_the_container_lands_in_its_cgroups_path(bundle, path, expected):
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.config["linux"]["cgroupsPath"] = path
    bundle.config["linux"]["resources"]["memory"] = {"limit": 64 << 20}
    cid = "cgp-" + path.strip("/").split("/")[-1]
    pid = created_pid(bundle, cid)
    try:
        assert cgroup_of(pid) == expected
        limit = "memory.limit_in_bytes" if hierarchy.detect().version == 1 else "memory.max"
        with open(os.path.join(memory_dir(expected), limit)) as f:
            assert int(f.read()) == 64 << 20
    finally:
        assert bundle.runtime("delete", "-f", cid).returncode == 0
    assert not os.path.exists(memory_dir(expected))
    assert not os.path.exists(memory_dir(os.path.dirname(expected))) or os.path.dirname(expected) == "/labkit"


def test_an_absolute_path_is_where_runc_puts_it(bundle):
    if not shutil.which("runc"):
        pytest.fail("runc is missing: `make test` installs it")
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.config["linux"]["cgroupsPath"] = f"/{PARENT}/cg-runc"
    pid = created_pid(bundle, "cgp-runc", runtime="runc")
    try:
        assert cgroup_of(pid) == f"/{PARENT}/cg-runc"
    finally:
        subprocess.run(["runc", "delete", "-f", "cgp-runc"], capture_output=True)
        layout = hierarchy.detect()
        for base in list(layout.v1_mounts) + ([layout.v2] if layout.v2 else []):
            for d in (os.path.join(base, PARENT, "cg-runc"), os.path.join(base, PARENT)):
                for _ in range(100):          # runc leaves the parents it made: this test removes them
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.02)


def test_systemds_form_is_one_line(bundle):
    bundle.config["linux"]["cgroupsPath"] = "system.slice:lab:x"
    bundle.write()
    r = bundle.runtime("run", "cgp-sd")
    assert r.returncode != 0 and "linux.cgroupsPath" in r.stderr and "systemd" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2
