"""linux.seccomp under labkit-runtime, against runc: the same bundle, the
same calls refused. The profile real clients send is podman's own
(containers/common's seccomp.json, unpacked by `provision.sh --test-tools`),
turned into config.json's form for the bundle's capabilities as podman does."""

import json
import os

import pytest

from labkit import seccomp

PROFILE = os.path.join(os.environ.get("LABKIT_CACHE", "/var/cache/labkit"), "containers-common",
                       "usr/share/gocode/src/github.com/containers/common/pkg/seccomp/seccomp.json")
# Each line: a command, then its exit status, so both runtimes can be compared.
PROBES = ("mkdir /tmp/probe-dir", "unshare -U true", "unshare -n true", "hostname lab-probe", "true")
SCRIPT = "; ".join(f"{p} >/dev/null 2>&1; echo {p.split()[0]}=$?" for p in PROBES) + \
    "; grep Seccomp: /proc/self/status"

pytestmark = pytest.mark.root


def podman_profile(config):
    if not os.path.exists(PROFILE):
        pytest.fail(f"{PROFILE} is missing: `make test` unpacks it (provision.sh --test-tools)")
    with open(PROFILE) as f:
        profile = json.load(f)
    return seccomp.from_profile(profile, config["process"]["capabilities"]["bounding"])


def test_podmans_default_profile_refuses_what_runc_refuses(bundle, tmp_path):
    bundle.config["process"]["args"] = ["sh", "-c", SCRIPT + "; rmdir /tmp/probe-dir"]
    bundle.config["linux"]["seccomp"] = podman_profile(bundle.config)
    mine, runc = bundle.run_both(tmp_path)
    assert runc.returncode == 0, runc.stderr
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout == runc.stdout
    seen = dict(line.split("=", 1) for line in mine.stdout.splitlines() if "=" in line)
    assert seen["mkdir"] == "0" and seen["true"] == "0"        # the profile allows the ordinary
    assert seen["unshare"] != "0"                               # not a namespace without CAP_SYS_ADMIN
    assert "Seccomp:\t2" in mine.stdout


def test_without_a_filter_the_same_calls_pass(bundle, tmp_path):
    """The other way: no linux.seccomp, and Seccomp is 0 under both."""
    bundle.config["process"]["args"] = ["sh", "-c", "grep Seccomp: /proc/self/status"]
    bundle.config["linux"].pop("seccomp", None)
    mine, runc = bundle.run_both(tmp_path)
    assert mine.stdout == runc.stdout and "Seccomp:\t0" in mine.stdout


@pytest.mark.parametrize("nnp", [True, False])
def test_an_errno_rule_with_and_without_no_new_privs(bundle, tmp_path, nnp):
    bundle.config["process"]["noNewPrivileges"] = nnp
    bundle.config["process"]["args"] = ["sh", "-c", "mkdir /tmp/denied; echo mkdir=$?"]
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["mkdir", "mkdirat", "no_such_call_in_any_kernel"],
                      "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    mine, runc = bundle.run_both(tmp_path)
    assert mine.stdout == runc.stdout == "mkdir=1\n"
    assert "no_such_call_in_any_kernel" in mine.stderr and "skipped" in mine.stderr


@pytest.mark.parametrize("edit, word", [
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "linux.seccomp.defaultAction"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}, "architectures[0]"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "args[0].index"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]},
     "args[0].op"),
])
def test_a_bad_filter_is_refused_at_create(bundle, edit, word):
    bundle.config["linux"]["seccomp"] = edit
    bundle.write()
    r = bundle.runtime("run", "sc-bad")
    assert r.returncode != 0 and word in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
