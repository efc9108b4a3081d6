"""A default `labkit run` container is as confined as `docker run`'s:
Docker's 14 capabilities, masked and read-only /proc paths, a read-only
/sys; each guard is lifted by the switch that names it, and --privileged
lifts them all."""

import json
import os

import pytest

from labkit import api
from labkit.linux import process
from labkit.security import defaults as security

pytestmark = pytest.mark.root


def status(field, **options):
    r = api.run(f"grep '^{field}:' /proc/self/status", check=True, **options)
    return r.stdout.split()[1]


def expected_mask(names):
    known = [n for n in names if process.CAPABILITIES.index(n) <= process.last_cap()]
    return f"{process.cap_bits(known):016x}"


def test_default_capabilities_are_dockers(rootfs):
    assert status("CapEff") == expected_mask(security.DEFAULT_CAPABILITIES)
    assert status("CapBnd") == expected_mask(security.DEFAULT_CAPABILITIES)
    assert status("CapInh") == "0" * 16


def test_cap_add_and_drop(rootfs):
    wanted = set(security.DEFAULT_CAPABILITIES) - {"CAP_CHOWN"} | {"CAP_NET_ADMIN"}
    got = status("CapEff", extra=["--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN"])
    assert got == expected_mask(wanted)
    assert status("CapEff", extra=["--cap-drop", "ALL"]) == "0" * 16


def test_privileged_keeps_what_the_host_root_has(rootfs):
    host = [line.split()[1] for line in open("/proc/self/status") if line.startswith("CapEff:")][0]
    assert status("CapEff", privileged=True) == host


def test_mount_needs_the_guard_off(rootfs):
    cmd = "mount -t tmpfs lab-sec /mnt && echo mounted"
    assert api.run(cmd).stdout.strip() == ""
    assert api.run(cmd, privileged=True).stdout.strip() == "mounted"
    assert api.run(cmd, extra=["--cap-add", "SYS_ADMIN"]).stdout.strip() == "mounted"


def test_proc_sys_and_sys_are_read_only_by_default(rootfs):
    # kernel/domainname belongs to the container's own UTS namespace: writing
    # it with the guard off changes nothing on the host.
    cmd = "echo lab > /proc/sys/kernel/domainname && cat /proc/sys/kernel/domainname"
    assert api.run(cmd).returncode != 0
    assert api.run(cmd, privileged=True).stdout.strip() == "lab"
    ro = "grep ' /sys ' /proc/self/mounts | cut -d' ' -f4 | cut -d, -f1"
    assert api.run(ro).stdout.strip() == "ro"
    assert api.run(ro, privileged=True).stdout.strip() == "rw"


def test_masked_paths_read_as_nothing(rootfs):
    import os
    present = [p for p in ("/proc/keys", "/proc/timer_list", "/proc/sched_debug") if os.path.exists(p)]
    assert present, "this kernel has none of the masked files to compare"
    for path in present:
        with open(path) as f:
            assert f.read(), f"{path} is empty on the host too: nothing to compare"
        assert api.run(f"cat {path}", check=True).stdout == ""
        assert api.run(f"cat {path}", privileged=True, check=True).stdout != ""


def test_no_new_privileges(rootfs):
    assert status("NoNewPrivs") == "0"
    assert status("NoNewPrivs", extra=["--security-opt", "no-new-privileges"]) == "1"


@pytest.mark.parametrize("flags, word", [
    (["--cap-add", "CAP_FLY"], "CAP_FLY"),
    (["--cap-drop", "nope"], "nope"),
    (["--security-opt", "apparmor=x"], "apparmor"),
    (["--device-cgroup-rule", "x 1:3 r"], "'x 1:3 r'"),
    (["--device-cgroup-rule", "c 1:3 rx"], "'rx'"),
    (["--userns", "keep-id"], "--userns keep-id"),
])
def test_bad_security_options_are_one_line(rootfs, labkit_cli, flags, word):
    r = labkit_cli("run", "--rm", *flags, "--", "true")
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and word in r.stderr and "Traceback" not in r.stderr


def test_security_opt_seccomp_profile(rootfs, tmp_path):
    """A profile in Docker's format, its rules by capability: mkdir refused
    for a process without CAP_SYS_ADMIN, allowed with it (includes.caps)."""
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                      "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}))
    cmd = "mkdir /made && echo made; grep Seccomp: /proc/self/status"
    confined = api.run(cmd, extra=["--security-opt", f"seccomp={profile}"]).stdout
    assert "made" not in confined and "Seccomp:\t2" in confined
    with_cap = api.run(cmd, extra=["--security-opt", f"seccomp={profile}", "--cap-add", "SYS_ADMIN"]).stdout
    assert "made" in with_cap and "Seccomp:\t2" in with_cap
    plain = api.run(cmd, extra=["--security-opt", "seccomp=unconfined"]).stdout
    assert "made" in plain and "Seccomp:\t0" in plain


@pytest.mark.parametrize("content, word", [("not json", "not JSON"), ('{"x": 1}', "defaultAction"),
                                           ('{"defaultAction": "SCMP_ACT_NOPE"}', "SCMP_ACT_NOPE")])
def test_a_bad_seccomp_profile_is_one_line(rootfs, labkit_cli, tmp_path, content, word):
    profile = tmp_path / "bad.json"
    profile.write_text(content)
    r = labkit_cli("run", "--rm", "--security-opt", f"seccomp={profile}", "--", "true")
    assert r.returncode != 0 and word in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_default_seccomp_refuses_a_user_namespace(rootfs):
    """Docker's effect: no namespace (nor mount, keyring, module...) without
    CAP_SYS_ADMIN; each way out lifts it on purpose."""
    cmd = "unshare -U true && echo unshared; grep Seccomp: /proc/self/status"
    default = api.run(cmd).stdout
    assert "unshared" not in default and "Seccomp:\t2" in default
    for extra in (["--security-opt", "seccomp=unconfined"], ["--cap-add", "SYS_ADMIN"], ["--privileged"]):
        assert "unshared" in api.run(cmd, extra=extra).stdout, extra
    assert "Seccomp:\t0" in api.run(cmd, privileged=True).stdout


def test_default_seccomp_lets_ordinary_programs_run(rootfs):
    """A denylist: what a shell, ps, ip and ping need all passes."""
    r = api.run("ps -e >/dev/null && ip -o link >/dev/null && ping -c1 -W1 127.0.0.1 >/dev/null "
                "&& sh -c 'sleep 0 &' && echo fine")
    assert r.stdout.strip() == "fine", r.stderr


REMAP = ["--userns", "remap"]


def test_userns_remap_root_owns_its_rootfs_and_is_uid_100000_outside(rootfs):
    inside = api.run("id -u; stat -c %u /etc/passwd; touch /etc/lab-x && echo wrote; "
                     "cat /proc/self/uid_map", extra=REMAP, check=True).stdout.split()
    assert inside[:3] == ["0", "0", "wrote"]          # root inside, owner of its files, may write
    assert inside[3:] == ["0", "100000", "65536"]     # ... as uid 100000 of the host
    host_map = api.run("cat /proc/self/uid_map", check=True).stdout.split()
    assert host_map[:2] == ["0", "0"]                 # without it, root inside is root outside
    with api.Container("sleep 60", extra=REMAP) as c:
        with open(f"/proc/{c.pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert uids == ["100000"] * 4
        c.exec("touch /etc/lab-y")
        from labkit import home
        upper = os.path.join(home.containers_dir(c.id), "upper", "etc", "lab-y")
        assert os.stat(upper).st_uid == 100000        # what it writes is the unprivileged user's


def test_userns_remap_all_capabilities_reach_no_device(rootfs):
    """Every capability, but in its own user namespace: mknod is still the
    host's to grant (a device is not owned by any namespace)."""
    cmd = "mknod /tmp/kmsg c 1 11 && echo made"
    assert api.run(cmd, privileged=True).stdout.strip() == "made"
    assert api.run(cmd, privileged=True, extra=REMAP).stdout.strip() == ""
