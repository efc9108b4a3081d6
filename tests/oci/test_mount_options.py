"""Mount options as runc takes them: filesystem data (mode=, size=, uid=)
passed to mount(2), runc's recursive r-options (rro, rnosuid ...) through
mount_setattr(2) with AT_RECURSIVE — a read-only bind whose sub-mount is
read-only too, where plain ro leaves it writable — each compared with runc."""

import os
import subprocess
import tempfile

import pytest

from labkit.linux import syscalls as sc

pytestmark = pytest.mark.root

PROBE = ("touch /data/top 2>/dev/null && echo top=rw || echo top=ro; "
         "touch /data/sub/x 2>/dev/null && echo sub=rw || echo sub=ro; "
         "stat -c mode=%a /tmp; grep ' /tmp ' /proc/self/mounts | grep -o 'size=[0-9a-z]*'")


@pytest.fixture
def host_tree():
    """A host directory with a tmpfs mounted below it (removed after)."""
    top = tempfile.mkdtemp(prefix="lab-rbind-")
    os.mkdir(os.path.join(top, "sub"))
    sc.mount("lab-rbind", os.path.join(top, "sub"), "tmpfs", 0, "size=1m")
    try:
        yield top
    finally:
        sc.umount2(os.path.join(top, "sub"), sc.MNT_DETACH)
        for name in os.listdir(top):
            path = os.path.join(top, name)
            if os.path.isfile(path):
                os.unlink(path)
        os.rmdir(os.path.join(top, "sub"))
        os.rmdir(top)


@pytest.mark.parametrize("options, expected", [
    (["rbind", "rro"], {"top": "ro", "sub": "ro"}),
    (["rbind", "ro"], {"top": "ro", "sub": "rw"}),
    (["rbind", "rro", "rrw"], {"top": "ro", "sub": "ro"}),      # runc sets what any r-option sets
])
def test_recursive_options_as_runc(bundle, tmp_path, host_tree, options, expected):
    bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": host_tree,
                                    "options": options})
    bundle.config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "lab",
                                    "options": ["nosuid", "mode=1777", "size=2m"]})
    bundle.config["process"]["args"] = ["sh", "-c", PROBE]
    mine, runc = bundle.run_both(tmp_path)
    assert mine.returncode == 0 and runc.returncode == 0, (mine.stderr, runc.stderr)
    seen = dict(line.split("=", 1) for line in mine.stdout.split() if "=" in line)
    assert {k: seen[k] for k in expected} == expected
    assert seen["mode"] == "1777" and seen["size"] == "2048k"         # data options reach mount(2)
    assert mine.stdout == runc.stdout
    for name in ("top",):
        path = os.path.join(host_tree, name)
        if os.path.exists(path):
            os.unlink(path)


def test_an_unknown_word_on_a_bind_is_one_line(bundle, host_tree):
    bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": host_tree,
                                    "options": ["rbind", "rreadonly"]})
    bundle.write()
    r = bundle.runtime("run", "mo-bad")
    assert r.returncode != 0 and "'rreadonly' is not a mount option" in r.stderr and "Traceback" not in r.stderr


def _root_line(stdout):
    return next(line for line in stdout.splitlines() if line.split()[4] == "/")


@pytest.mark.parametrize("propagation, flags", [("slave", "MS_SLAVE"), ("private", "MS_PRIVATE")])
def test_rootfs_propagation_as_runc(bundle, tmp_path, propagation, flags):
    """The root's propagation is set with mount(2) as the option says (the
    trace shows the call), and / inside has the same propagation fields as
    under runc."""
    import json
    import subprocess
    import sys
    from .conftest import ROOT
    bundle.config["linux"]["rootfsPropagation"] = propagation
    bundle.config["process"]["args"] = ["cat", "/proc/self/mountinfo"]
    mine, runc = bundle.run_both(tmp_path)
    assert mine.returncode == 0 and runc.returncode == 0, (mine.stderr, runc.stderr)
    fields = [_root_line(r.stdout).split(" - ")[0].split()[6:] for r in (mine, runc)]
    assert [sorted(f.split(":")[0] for f in fs) for fs in fields][0] == \
        [sorted(f.split(":")[0] for f in fs) for fs in fields][1]
    traced = subprocess.run([sys.executable, "-m", "labkit.cli.runtime", "--root", str(tmp_path / "t"), "run",
                             "--bundle", bundle.path, "mo-trace"], capture_output=True, text=True, timeout=60,
                            env=dict(__import__("os").environ, PYTHONPATH=ROOT, LABKIT_TRACE="1"))
    assert f'mount(none, "/", none, {flags}) = 0' in traced.stderr, traced.stderr[-2000:]


def test_shared_rootfs_propagation_is_one_line(bundle):
    bundle.config["linux"]["rootfsPropagation"] = "shared"
    bundle.write()
    r = bundle.runtime("run", "mo-shared")
    assert r.returncode != 0 and "linux.rootfsPropagation" in r.stderr and "Traceback" not in r.stderr
