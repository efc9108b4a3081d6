"""Bad config.json files are refused with one line naming the field path,
before anything is created on the host; an untrusted bundle never mounts
outside its rootfs."""

import copy
import os

import pytest

from labkit import home
from labkit.oci import validate
from labkit.linux.rootfs import secure_join


def _edit(path, value):
    """An edit setting config[path...] = value (path: keys and indexes)."""
    def edit(cfg):
        obj = cfg
        for key in path[:-1]:
            obj = obj[key]
        if value is _DELETE:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return edit


_DELETE = object()

BAD = [
    ("wrong type", _edit(["process", "args"], "sh"), "process.args"),
    ("unknown ns type", _edit(["linux", "namespaces", 2], {"type": "pidd"}), "linux.namespaces[2]"),
    ("missing args", _edit(["process", "args"], []), "process.args: must not be empty"),
    ("no process", _edit(["process"], _DELETE), "process"),
    ("unsupported field", _edit(["linux", "intelRdt"], {"closID": "lab"}),
     "linux.intelRdt: not supported by labkit"),
    ("unsupported process field", _edit(["process", "apparmorProfile"], "x"),
     "process.apparmorProfile: not supported by labkit"),
    ("escaping mount", _edit(["mounts", 0, "destination"], "/../../../etc/x"),
     "mounts[0].destination"),
    ("relative cwd", _edit(["process", "cwd"], "tmp"), "process.cwd"),
    ("no rootfs", _edit(["root", "path"], "nowhere"), "root.path"),
    ("bad rlimit", _edit(["process", "rlimits", 0, "type"], "RLIMIT_FOO"), "process.rlimits[0].type"),
    ("host sysctl", _edit(["linux", "sysctl"], {"vm.swappiness": "10"}), "linux.sysctl['vm.swappiness']"),
    ("sysctl path", _edit(["linux", "sysctl"], {"net/../../x": "1"}), "linux.sysctl['net/../../x']"),
    ("userns without maps", lambda c: c["linux"]["namespaces"].append({"type": "user"}), "linux.uidMappings"),
    ("cgroupsPath of systemd", _edit(["linux", "cgroupsPath"], "system.slice:docker:x"), "linux.cgroupsPath"),
    ("cgroupsPath climbing", _edit(["linux", "cgroupsPath"], "/a/../../x"), "linux.cgroupsPath"),
    ("hook not absolute", _edit(["hooks"], {"prestart": [{"path": "sh"}]}), "hooks.prestart[0].path"),
]


@pytest.mark.parametrize("name,edit,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_refused_naming_the_field(bundle, name, edit, expected):
    cfg = copy.deepcopy(bundle.config)
    edit(cfg)
    bundle.write(cfg)
    cid = "bad-" + name.replace(" ", "-")
    r = bundle.runtime("create", cid)
    assert r.returncode != 0
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert expected in line, line
    assert not os.path.exists(home.containers_dir(cid))   # nothing half-created


def test_not_json(bundle):
    with open(os.path.join(bundle.path, "config.json"), "w") as f:
        f.write("{not json")
    r = bundle.runtime("run", "x")
    assert r.returncode != 0 and "not valid JSON" in r.stderr


def test_schema_check_is_cached(bundle):
    bundle.write()
    with open(os.path.join(bundle.path, "config.json"), "rb") as f:
        raw = f.read()
    cached = validate._cache_path(raw)
    if os.path.exists(cached):
        os.unlink(cached)
    assert bundle.runtime("run", "cache1").returncode == 0
    assert os.path.exists(cached)
    # The meaning checks run every time, cache or not.
    assert validate.meaning_errors(bundle.config, bundle.path) == []


def test_the_cache_keeps_at_most_its_size(tmp_path, monkeypatch):
    """A client writing a new config.json per container (dockerd) never hits
    the cache: it keeps the CACHE_SIZE most recently written, no more."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    monkeypatch.setattr(validate, "CACHE_SIZE", 5)
    paths = []
    for n in range(8):
        paths.append(validate._cache_path(b'{"n": %d}' % n))
        validate._remember(paths[-1], {"n": n})
        os.utime(paths[-1], ns=(n * 10**9, n * 10**9))     # written in this order
    left = sorted(os.listdir(os.path.dirname(paths[0])))
    assert left == sorted(os.path.basename(p) for p in paths[-5:])


def test_schema_errors_come_from_the_schema():
    errors = validate.schema_errors({"ociVersion": "1.0.2", "process": {"cwd": 5, "args": ["x"]},
                                     "root": {"path": "r"}})
    assert any(e.startswith("process.cwd:") for e in errors), errors


def test_secure_join_stays_inside(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/", root / "up")
    os.symlink("../../../../tmp", root / "etc" / "rel")
    for path in ("/../../x", "/up/etc/passwd", "/etc/rel/y", "up/../../z"):
        joined = secure_join(str(root), path)
        assert (joined + "/").startswith(str(root) + "/"), (path, joined)


def test_symlink_in_rootfs_cannot_lead_a_mount_out(bundle, rootfs_copy, tmp_path):
    """A link in the (untrusted) rootfs pointing at a host directory: the
    mount lands inside the rootfs, the host directory stays untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    link = os.path.join(rootfs_copy, "tmp", "escape")
    os.symlink(str(outside), link)
    try:
        bundle.config["mounts"].append({"destination": "/tmp/escape", "type": "tmpfs", "source": "tmpfs",
                                        "options": ["size=1m"]})
        bundle.config["process"]["args"] = ["/bin/sh", "-c", "echo inside > /tmp/escape/f"]
        bundle.write()
        r = bundle.runtime("run", "esc1")
        assert r.returncode == 0, r.stderr
        assert os.listdir(outside) == []
    finally:
        os.unlink(link)
        leftover = os.path.join(rootfs_copy, str(outside).lstrip("/"))
        if os.path.isdir(leftover):   # the mount point made inside the copy
            os.removedirs(leftover) if not os.listdir(leftover) else None


def test_an_unknown_capability_is_dropped_with_a_warning_as_runc_does(bundle, tmp_path):
    """A capability name this kernel has not (a config.json written for a
    newer one): runc warns and runs without it, and so does labkit-runtime."""
    caps = bundle.config["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = caps[kind] + ["CAP_FLY"]
    bundle.config["process"]["args"] = ["sh", "-c", "grep -E '^Cap(Bnd|Eff|Prm)' /proc/self/status"]
    ours, runc = bundle.run_both(tmp_path)
    assert ours.returncode == runc.returncode == 0, (ours.stderr, runc.stderr)
    assert ours.stdout == runc.stdout
    assert "CAP_FLY" in ours.stderr and "CAP_FLY" in runc.stderr and "\n" not in ours.stderr.strip()


@pytest.mark.parametrize("field, value", [
    (["linux", "resources", "memory", "disableOOMKiller"], False),
    (["linux", "resources", "blockIO"], {"weight": 0}),
    (["linux", "resources", "cpu"], {"shares": 0}),
    (["linux", "resources", "memory"], {"limit": 0, "swap": 0}),
], ids=["disableOOMKiller false", "blockIO weight 0", "cpu shares 0", "memory limit 0"])
def test_a_zero_value_is_not_set_as_runc_reads_it(bundle, tmp_path, field, value):
    """dockerd writes these into every config.json; runc (Go: a field left out
    and a zero value read the same) runs it with no such limit, and so does labkit."""
    obj = bundle.config
    for key in field[:-1]:
        obj = obj.setdefault(key, {})
    obj[field[-1]] = value
    bundle.config["process"]["args"] = ["sh", "-c", "cd /sys/fs/cgroup; cat memory.max cpu.weight 2>/dev/null"
                                        " || cat memory/memory.limit_in_bytes cpu/cpu.shares"]
    ours, runc = bundle.run_both(tmp_path)
    assert ours.returncode == runc.returncode == 0, (ours.stderr, runc.stderr)
    assert ours.stdout == runc.stdout



def test_the_memory_fields_runc_supports_are_written_as_runc_writes_them(bundle, tmp_path):
    """reservation (v1's soft limit, v2's memory.low), swappiness and
    disableOOMKiller (v1 only), kernel and kernelTCP (ignored by runc 1.1,
    with a warning): the same files hold the same values under
    labkit-runtime and runc."""
    bundle.config["linux"]["resources"] = {"memory": {
        "limit": 128 << 20, "reservation": 64 << 20, "swappiness": 10, "kernelTCP": 32 << 20,
        "disableOOMKiller": True, "kernel": 96 << 20}}
    bundle.config["process"]["args"] = ["sh", "-c", "cd /sys/fs/cgroup; if [ -d memory ]; then cd memory; "
                                        "cat memory.soft_limit_in_bytes memory.swappiness "
                                        "memory.kmem.tcp.limit_in_bytes; grep oom_kill_disable memory.oom_control; "
                                        "else cat memory.low; fi"]
    ours, runc = bundle.run_both(tmp_path)
    assert ours.returncode == runc.returncode == 0, (ours.stderr, runc.stderr)
    assert ours.stdout == runc.stdout and str(64 << 20) in ours.stdout, (ours.stdout, runc.stdout)
    assert "Kernel memory settings are ignored" in ours.stderr and "Kernel memory settings are ignored" in runc.stderr


def test_the_compiled_schema_agrees_with_jsonschema(bundle, monkeypatch, tmp_path):
    """The validator compiled once from the schema (the fast path of a
    config.json seen for the first time) may say "valid" only where
    jsonschema does: every schema case of BAD above is refused by both, the
    default config passes both."""
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    assert validate._passes_compiled(bundle.config) and validate.schema_errors(bundle.config) == []
    for name, edit, field in BAD:
        cfg = copy.deepcopy(bundle.config)
        edit(cfg)
        if validate.schema_errors(cfg):
            assert not validate._passes_compiled(cfg), name
    assert os.listdir(tmp_path / "cache" / "schema")      # compiled once, then loaded
