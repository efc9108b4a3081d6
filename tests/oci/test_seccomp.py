"""linux.seccomp under labkit-runtime, against runc: the same bundle, the
same calls refused. The profile real clients send is podman's own
(containers/common's seccomp.json, unpacked by `provision.sh --test-tools`),
turned into config.json's form for the bundle's capabilities as podman does."""

import json
import os

import pytest

from labkit.linux import seccomp

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


CALL_C = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
/* call NR [NR ...]: each system call with zero arguments, and its errno */
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        long r = syscall(atol(argv[i]), 0, 0, 0, 0, 0, 0);
        printf("%s=%d\n", argv[i], r == -1 ? errno : 0);
    }
    return 0;
}
"""
# A number no kernel has given a call yet, and kexec_load (246 on x86_64),
# which the profile knows and refuses without CAP_SYS_BOOT.
BEYOND, KNOWN_REFUSED = 1000, 246


@pytest.fixture
def call_binary(tmp_path):
    import shutil
    import subprocess
    if os.uname().machine != "x86_64":
        pytest.skip("the call numbers here are x86_64's")
    cc = shutil.which("cc")
    if not cc:
        pytest.fail("cc is missing: `make test` installs gcc (provision.sh --test-tools)")
    src = tmp_path / "call.c"
    src.write_text(CALL_C)
    subprocess.run([cc, "-static", "-O2", "-o", str(tmp_path / "call"), str(src)], check=True)
    return str(tmp_path / "call")


def test_a_call_newer_than_the_profile_is_enosys_as_under_runc(bundle, tmp_path, call_binary):
    """runc's ENOSYS stub: a call the profile does not know is "not there"
    (glibc then falls back), one it knows and refuses is EPERM. podman's
    profile answers ENOSYS by default already (defaultErrnoRet 38); with
    EPERM as the default (Docker 20.10's), only the stub tells them apart."""
    bundle.config["mounts"].append({"destination": "/call", "type": "bind", "source": call_binary,
                                    "options": ["bind", "ro"]})
    bundle.config["process"]["args"] = ["/call", str(BEYOND), str(KNOWN_REFUSED)]
    bundle.config["linux"]["seccomp"] = dict(podman_profile(bundle.config), defaultErrnoRet=1)
    mine, runc = bundle.run_both(tmp_path)
    assert runc.returncode == 0 and mine.returncode == 0, (mine.stderr, runc.stderr)
    assert mine.stdout == runc.stdout == f"{BEYOND}=38\n{KNOWN_REFUSED}=1\n"


def test_the_stub_is_left_out_where_the_default_allows():
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    with_errno = dict(spec, defaultAction="SCMP_ACT_ERRNO")
    plain, stubbed = seccomp.Filter(spec).program, seccomp.Filter(with_errno).program
    stub = seccomp.enosys_stub({0xC000003E: 83})
    assert stub and stubbed.startswith(stub) and not plain.startswith(stub[:8 * 2])
