"""linux.resources.devices under labkit-runtime, against runc: containerd's
default rules (deny all, then ten nodes), the same bundle under both, the
same opens and mknods refused. Nodes are made in the container's /dev (a
tmpfs): nothing is written to the rootfs."""

import pytest

from labkit.course.conformance.bundles import CONTAINERD_DEVICES

pytestmark = pytest.mark.root

CONTAINERD = CONTAINERD_DEVICES     # what containerd sends
# name, type, major, minor: /dev/null's twin, /dev/kmsg (the host's kernel
# log), a loop block device, /dev/mem's neighbour /dev/port.
NODES = (("lab-null", "c", 1, 3), ("lab-kmsg", "c", 1, 11), ("lab-loop", "b", 7, 0), ("lab-port", "c", 1, 4))
SCRIPT = "; ".join(
    f"mknod /dev/{n} {t} {ma} {mi}; echo {n}.m=$?; (exec 3</dev/{n}) 2>/dev/null; echo {n}.r=$?; "
    f"(exec 3>/dev/{n}) 2>/dev/null; echo {n}.w=$?" for n, t, ma, mi in NODES) + \
    "; head -c1 /dev/zero >/dev/null; echo zero=$?"


def answers(result):
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def probe(bundle, tmp_path, rules):
    bundle.config["process"]["args"] = ["sh", "-c", SCRIPT]
    caps = bundle.config["process"]["capabilities"]
    for kind in caps:
        if kind != "ambient" and "CAP_MKNOD" not in caps[kind]:
            caps[kind].append("CAP_MKNOD")
    if rules is None:     # resources with no device rules: a student's {"memory": ...} replacing them
        bundle.config["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    else:
        bundle.config["linux"].setdefault("resources", {})["devices"] = rules
    mine, runc = bundle.run_both(tmp_path)
    assert runc.returncode == 0 and mine.returncode == 0, (mine.stderr, runc.stderr)
    return answers(mine), answers(runc)


def test_containerds_rules_refuse_what_runc_refuses(bundle, tmp_path):
    mine, runc = probe(bundle, tmp_path, CONTAINERD)
    assert mine == runc
    assert mine["lab-null.r"] == "0" and mine["lab-loop.m"] == "0" and mine["zero"] == "0"
    assert mine["lab-kmsg.r"] != "0" and mine["lab-loop.r"] != "0"    # made, never opened


@pytest.mark.parametrize("rules", [None, []], ids=["no-rules", "empty-list"])
def test_no_rules_allow_no_more_than_the_defaults_as_under_runc(bundle, tmp_path, rules):
    """runc starts every device cgroup from nothing allowed, then adds its
    defaults: a config without rules does not open the host's devices."""
    mine, runc = probe(bundle, tmp_path, rules)
    assert mine == runc
    assert mine["lab-null.r"] == "0" and mine["lab-loop.m"] == "0"
    assert mine["lab-kmsg.r"] != "0" and mine["lab-loop.r"] != "0" and mine["lab-loop.w"] != "0"


def test_allow_all_lets_both_open_them(bundle, tmp_path):
    """The other way: a rule list that allows everything (privileged)."""
    mine, runc = probe(bundle, tmp_path, [{"allow": True, "access": "rwm"}])
    assert mine == runc
    # (kmsg and port also ask for CAP_SYSLOG and CAP_SYS_RAWIO, which the bundle lacks)
    assert mine["lab-loop.r"] == "0" and mine["lab-loop.w"] == "0"


@pytest.mark.parametrize("rule, field", [
    ({"allow": True, "type": "x", "access": "rwm"}, "linux.resources.devices[1].type"),
    ({"allow": True, "type": "c", "access": "rwx"}, "linux.resources.devices[1].access"),
    ({"allow": "yes", "type": "c"}, "linux.resources.devices[1].allow"),
])
def test_a_bad_rule_is_one_line_naming_the_field(bundle, rule, field):
    bundle.config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}, rule]}
    bundle.write()
    r = bundle.runtime("run", "bad-dev")
    assert r.returncode != 0 and field in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2 and "Traceback" not in r.stderr
