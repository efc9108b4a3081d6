"""What OCI clients ask a runtime besides create/start/delete, compared
with runc: `features` (its JSON shape and what it claims), and the error
texts clients match on word for word."""

import json
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.root


def keys(obj, prefix=""):
    if not isinstance(obj, dict):
        return set()
    out = set()
    for k, v in obj.items():
        out.add(prefix + k)
        out |= keys(v, prefix + k + ".")
    return out


def test_features_has_runcs_shape_and_claims_nothing_runc_lacks(bundle):
    if not shutil.which("runc"):
        pytest.fail("runc is missing: `make test` installs it")
    mine = json.loads(bundle.runtime("features", check=True).stdout)
    runc = json.loads(subprocess.run(["runc", "features"], capture_output=True, text=True, check=True).stdout)
    assert keys(mine) - {"annotations.io.github.seccomp.libseccomp.version"} <= keys(runc)
    assert set(mine["hooks"]) == set(runc["hooks"])
    assert set(mine["mountOptions"]) <= set(runc["mountOptions"])
    # labkit knows the time namespace (runtime spec 1.1), runc 1.1.5 does not yet.
    assert set(runc["linux"]["namespaces"]) <= set(mine["linux"]["namespaces"])
    assert set(mine["linux"]["namespaces"]) - set(runc["linux"]["namespaces"]) <= {"time"}
    assert set(mine["linux"]["capabilities"]) == set(runc["linux"]["capabilities"])
    sc, rsc = mine["linux"]["seccomp"], runc["linux"]["seccomp"]
    assert sc["enabled"] and set(sc["actions"]) <= set(rsc["actions"])
    assert set(sc["operators"]) == set(rsc["operators"])
    assert set(sc["archs"]) - {"SCMP_ARCH_RISCV64"} <= set(rsc["archs"])
    assert mine["annotations"]["io.github.seccomp.libseccomp.version"] == \
        runc["annotations"]["io.github.seccomp.libseccomp.version"]


def test_the_mount_options_it_claims_are_accepted(bundle, tmp_path):
    """Each option `features` lists mounts a tmpfs (or is refused by the
    kernel itself, never by labkit's validation)."""
    mine = json.loads(bundle.runtime("features", check=True).stdout)
    options = [o for o in mine["mountOptions"] if o not in ("bind", "rbind", "remount")]
    bundle.config["mounts"].append({"destination": "/mnt", "type": "tmpfs", "source": "lab",
                                    "options": [o for o in options if o not in
                                                ("private", "rprivate", "shared", "rshared", "slave",
                                                 "rslave", "unbindable", "runbindable", "ro", "mand")]})
    bundle.config["process"]["args"] = ["true"]
    bundle.write()
    r = bundle.runtime("run", "feat-mnt")
    assert r.returncode == 0, r.stderr


def test_kill_of_a_stopped_container_says_container_not_running(bundle):
    bundle.config["process"]["args"] = ["true"]
    assert bundle.create("cl-kill").returncode == 0
    assert bundle.runtime("start", "cl-kill").returncode == 0
    import time
    for _ in range(200):
        if bundle.state("cl-kill")["status"] == "stopped":
            break
        time.sleep(0.01)
    r = bundle.runtime("kill", "cl-kill", "KILL")
    assert r.returncode != 0 and "container not running" in r.stderr
    missing = bundle.runtime("kill", "cl-nope", "KILL")
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    assert bundle.runtime("delete", "cl-kill").returncode == 0
