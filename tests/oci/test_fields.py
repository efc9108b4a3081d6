"""Each supported config.json field, observed from inside the container and
compared with what the config asked for (or with the host, for relations)."""

import json
import os
import socket

from labkit.linux.process import CAPABILITIES


def _run(bundle, script, cid, **process):
    bundle.config["process"].update(process)
    bundle.config["process"]["args"] = ["/bin/sh", "-c", script]
    bundle.write()
    r = bundle.runtime("run", cid)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _status(text, key):
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{key} not in {text!r}")


def _mask(names):
    bits = 0
    for n in names:
        bits |= 1 << CAPABILITIES.index(n)
    return bits


def test_capabilities_and_no_new_privs(bundle):
    caps = {"bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_NET_BIND_SERVICE", "CAP_KILL"], "permitted": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "inheritable": ["CAP_NET_BIND_SERVICE"], "ambient": ["CAP_NET_BIND_SERVICE"]}
    out = _run(bundle, "cat /proc/self/status", "f-caps", capabilities=caps, noNewPrivileges=True)
    with open("/proc/self/status") as f:
        host = f.read()
    assert int(_status(out, "CapEff"), 16) == _mask(caps["effective"]) != int(_status(host, "CapEff"), 16)
    assert int(_status(out, "CapBnd"), 16) == _mask(caps["bounding"])
    assert int(_status(out, "CapInh"), 16) == _mask(caps["inheritable"])
    assert int(_status(out, "CapAmb"), 16) == _mask(caps["ambient"])
    assert _status(out, "NoNewPrivs") == "1"


def test_user_and_groups(bundle):
    out = _run(bundle, "id -u; id -g; cat /proc/self/status", "f-user",
               user={"uid": 1000, "gid": 1001, "additionalGids": [2000, 3000]})
    lines = out.splitlines()
    assert lines[:2] == ["1000", "1001"]
    assert _status(out, "Groups").split() == ["2000", "3000"]


def test_rlimits_and_oom_score(bundle):
    out = _run(bundle, "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj", "f-rlim",
               rlimits=[{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}], oomScoreAdj=123)
    assert out.split() == ["321", "654", "123"]


def test_hostname_env_cwd(bundle):
    bundle.config["hostname"] = "lk-oci-test"
    out = _run(bundle, "hostname; pwd; echo $GREETING", "f-host", cwd="/tmp",
               env=["PATH=/bin:/usr/bin", "GREETING=hola"])
    assert out.split() == ["lk-oci-test", "/tmp", "hola"]
    assert socket.gethostname() != "lk-oci-test"


def test_masked_and_readonly_paths(bundle):
    linux = bundle.config["linux"]
    linux["maskedPaths"] = ["/proc/kallsyms", "/sys/firmware"]
    linux["readonlyPaths"] = ["/proc/sys"]
    out = _run(bundle, "wc -c < /proc/kallsyms; ls /sys/firmware | wc -l; "
               "(echo x > /proc/sys/kernel/domainname) 2>/dev/null && echo writable || echo readonly",
               "f-mask")
    assert out.split() == ["0", "0", "readonly"]
    assert os.path.getsize("/proc/kallsyms") == 0 or open("/proc/kallsyms").read(1) != ""


def test_sysctl_inside_only(bundle):
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
    out = _run(bundle, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni", "f-sysctl")
    assert out.split() == ["1", "1234"]
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read().strip() != "1234"


def test_readonly_root_and_mounts(bundle, tmp_path):
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "hello").write_text("from the host\n")
    bundle.config["mounts"] += [
        {"destination": "/mnt", "type": "bind", "source": str(host), "options": ["rbind", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]},
    ]
    bundle.config["root"]["readonly"] = True
    out = _run(bundle, "cat /mnt/hello; (touch /mnt/x) 2>/dev/null && echo w || echo ro; "
               "(touch /x) 2>/dev/null && echo w || echo ro; echo data > /tmp/f && cat /tmp/f; "
               "grep -c ' /sys/fs/cgroup/' /proc/self/mountinfo", "f-mounts")
    lines = out.split("\n")
    assert lines[:5] == ["from the host", "ro", "ro", "data", lines[4]]
    assert int(lines[4]) >= 1            # the cgroup hierarchies
    assert os.listdir(host) == ["hello"]


def _pids_hierarchy():
    """The host's v1 pids hierarchy, or on v2 the whole tree: (host dir, dir inside)."""
    if os.path.isdir("/sys/fs/cgroup/pids"):
        return "/sys/fs/cgroup/pids", "/sys/fs/cgroup/pids"
    return "/sys/fs/cgroup", "/sys/fs/cgroup"


def test_cgroup_mount_is_the_containers_own(bundle):
    """Without a cgroup namespace the init binds its cgroup directories
    before the monitor has moved it there (it knows them from the monitor):
    what it sees must still be its own cgroup, limit and member list alike,
    never the monitor's or the host's root."""
    host, inside = _pids_hierarchy()
    bundle.config["linux"]["resources"] = {"pids": {"limit": 77}}
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"] if n["type"] != "cgroup"]
    for cid, cgroupns in (("f-cgmount", False), ("f-cgmount-ns", True)):
        if cgroupns:
            bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
        # sh's own read: a cat would be a member too
        out = _run(bundle, f"cat {inside}/pids.max; while read p; do echo $p; done < {inside}/cgroup.procs; "
                   "echo $$", cid)
        limit, *members, me = out.split()
        assert limit == "77", (cgroupns, out)
        assert members == [me] == ["1"], (cgroupns, out)     # the init alone: not the host's root cgroup
    # A cgroup namespace and no cgroup mount: the namespace is made only
    # after the move (stages/namespaces.py), and its root is the container's cgroup.
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["type"] != "cgroup"]
    out = _run(bundle, "cat /proc/self/cgroup", "f-cgns-nomount")
    lines = dict(line.split(":", 1)[1].split(":", 1) for line in out.split())
    assert lines.get("pids", lines.get("")) == "/", out
    assert not os.path.exists(os.path.join(host, "labkit", "f-cgmount"))


def test_namespaces_new_and_joined(bundle):
    """pid/net/ipc/uts/mount new; the network namespace joined by path is the host's."""
    bundle.config["linux"]["namespaces"] = [
        {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
        {"type": "network", "path": f"/proc/{os.getpid()}/ns/net"}]
    out = _run(bundle, "for n in net pid uts; do readlink /proc/self/ns/$n; done; echo $$", "f-ns")
    net, pid, uts, me = out.split()
    assert net == os.readlink("/proc/self/ns/net")
    assert pid != os.readlink("/proc/self/ns/pid") and uts != os.readlink("/proc/self/ns/uts")
    assert me == "1"


def test_user_namespace_mappings(bundle):
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    bundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["type"] != "cgroup"]
    out = _run(bundle, "cat /proc/self/uid_map /proc/self/gid_map; id -u", "f-userns")
    assert out.split() == ["0", "200000", "65536", "0", "200000", "65536", "0"]


def test_hooks_get_the_state(bundle):
    out = os.path.join(bundle.path, "hook.json")
    stop = os.path.join(bundle.path, "poststop.json")
    bundle.config["hooks"] = {
        "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}"]}],
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {stop}"]}],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /dev/null"]}],
    }
    bundle.config["annotations"] = {"org.example.k": "v"}
    bundle.config["process"]["args"] = ["/bin/true"]
    bundle.write()
    assert bundle.create("f-hook").returncode == 0
    pid = bundle.state("f-hook")["pid"]
    with open(out) as f:
        st = json.load(f)
    assert st["id"] == "f-hook" and st["pid"] == pid > 0 and st["bundle"] == bundle.path
    assert st["annotations"] == {"org.example.k": "v"}
    assert bundle.runtime("start", "f-hook").returncode == 0
    assert bundle.runtime("delete", "-f", "f-hook").returncode == 0
    with open(stop) as f:
        assert json.load(f)["id"] == "f-hook"


def test_failing_hook_stops_create(bundle):
    from labkit import home
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    r = bundle.create("f-hookfail")
    assert r.returncode != 0 and "hooks.createRuntime[0]" in r.stderr
    assert not os.path.exists(home.containers_dir("f-hookfail"))
