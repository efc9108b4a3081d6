"""`labkit run --layer` and `labkit commit` end to end, through the CLI: a
layer's files show inside, writes land in the container's upper dir, the top
layer wins, tars and committed layers stack, bad layers are refused with one
line and leave the host as it was — and no overlay mount outlives a test,
not even a SIGKILL of the runner (then `labkit gc` removes it)."""

import io
import os
import signal
import subprocess
import tarfile
import time

import pytest

from labkit.course.leaks import leftovers as labkit_leftovers
from labkit import api, home
from labkit.images import layers
from labkit.linux import overlay
from labkit.runtime import container as ct

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def overlays_under_home():
    top = home.home().rstrip("/") + "/"
    return [mp for mp, _ in overlay.mounts() if mp.startswith(top)]


@pytest.fixture(autouse=True)
def clean(rootfs):
    """After each test: no overlay mount under $LABKIT_HOME, and the layer
    store holds only what it held before (commits and unpacked tars of the
    test are removed)."""
    store = layers.layers_dir()
    before = set(os.listdir(store)) if os.path.isdir(store) else set()
    yield
    left = overlays_under_home()
    if os.path.isdir(store):
        import shutil
        for name in set(os.listdir(store)) - before:
            path = os.path.join(store, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    assert left == []


def one_line_error(r, *words):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("labkit: "), r.stderr
    for w in words:
        assert w in err[0], (w, err[0])
    return err[0]


def write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def read(path):
    with open(path) as f:
        return f.read()


def make_tar(path, entries):
    """entries: (TarInfo fields as a dict, bytes or None)."""
    with tarfile.open(path, "w") as t:
        for fields, data in entries:
            info = tarfile.TarInfo(fields.pop("name"))
            for k, v in fields.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return str(path)


def state_dir(cid):
    return home.containers_dir(cid)


def test_layer_dir_is_seen_and_writes_land_in_upper(labkit_cli, tmp_path):
    layer = tmp_path / "layer"
    write(layer / "etc/motd", "from the layer\n")
    r = labkit_cli("run", "-d", "--name", "lkwrite", "--layer", str(layer), "--", "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        upper = os.path.join(state_dir("lkwrite"), "upper")
        assert labkit_cli("exec", "lkwrite", "cat", "/etc/motd").stdout == "from the layer\n"
        assert not os.path.exists(os.path.join(upper, "etc/motd"))       # not yet copied up
        r = labkit_cli("exec", "lkwrite", "sh", "-c", "echo more >> /etc/motd; echo new > /new")
        assert r.returncode == 0, r.stderr
        assert read(os.path.join(upper, "etc/motd")) == "from the layer\nmore\n"   # copied up, then written
        assert read(os.path.join(upper, "new")) == "new\n"
        assert read(layer / "etc/motd") == "from the layer\n"
        assert not os.path.exists(os.path.join(home.rootfs_dir("base"), "new"))
        assert overlay.is_mounted(os.path.join(state_dir("lkwrite"), "merged"))
    finally:
        labkit_cli("rm", "-f", "lkwrite")
    assert "lkwrite" not in ct.all_ids()


def test_the_top_layer_wins(labkit_cli, tmp_path):
    low, high = tmp_path / "low", tmp_path / "high"
    write(low / "etc/app.conf", "low\n")
    write(low / "only-low", "only low\n")
    write(high / "etc/app.conf", "high\n")
    cmd = ["--", "cat", "/etc/app.conf", "/only-low"]
    r = labkit_cli("run", "--rm", "--layer", str(low), "--layer", str(high), *cmd)
    assert r.stdout.splitlines() == ["high", "only low"], r.stderr
    r = labkit_cli("run", "--rm", "--layer", str(high), "--layer", str(low), *cmd)
    assert r.stdout.splitlines() == ["low", "only low"], r.stderr


def test_a_tar_layer_with_a_whiteout(labkit_cli, tmp_path):
    base_hostname = os.path.join(home.rootfs_dir("base"), "etc/hostname")
    assert os.path.exists(base_hostname)
    tar = make_tar(tmp_path / "layer.tar", [({"name": "etc/app.conf", "mode": 0o644}, b"from the tar\n"),
                                            ({"name": "etc/.wh.hostname", "mode": 0o644}, b"")])
    r = labkit_cli("run", "--rm", "--layer", tar, "--", "sh", "-c",
                   "cat /etc/app.conf; [ -e /etc/hostname ] || echo hidden")
    assert r.stdout.splitlines() == ["from the tar", "hidden"], r.stderr
    assert os.path.exists(base_hostname)                                 # the base is never written
    digest = subprocess.run(["sha256sum", tar], capture_output=True, text=True).stdout.split()[0]
    cached = layers.layers_dir(digest)                                   # unpacked once, by digest
    assert read(os.path.join(cached, "etc/app.conf")) == "from the tar\n"
    assert overlay.is_whiteout(os.path.join(cached, "etc/hostname"))


def test_commit_then_a_new_container_sees_the_change(labkit_cli, tmp_path):
    layer = tmp_path / "layer"
    write(layer / "etc/secret", "in the layer\n")
    r = labkit_cli("run", "-d", "--name", "lkcommit", "--layer", str(layer), "--", "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        labkit_cli("exec", "lkcommit", "sh", "-c", "echo kept > /etc/committed; rm /etc/secret")
        r = labkit_cli("commit", "lkcommit")
        assert r.returncode == 0, r.stderr
        digest = r.stdout.strip()
        tar = layers.layers_dir(digest.split(":")[1] + ".tar")
        assert digest == "sha256:" + subprocess.run(["sha256sum", tar], capture_output=True,
                                                    text=True).stdout.split()[0]
        names = subprocess.run(["tar", "-tf", tar], capture_output=True, text=True).stdout.split()
        assert "etc/committed" in names and "etc/.wh.secret" in names
        out = tmp_path / "saved.tar"
        r = labkit_cli("commit", "lkcommit", "--output", str(out))
        assert r.returncode == 0 and r.stdout.strip() == layers.digest(str(out)) == digest   # same bytes
    finally:
        labkit_cli("rm", "-f", "lkcommit")
    check = ["--", "sh", "-c", "cat /etc/committed; [ -e /etc/secret ] || echo secret-gone"]
    for top in (digest, str(out)):
        r = labkit_cli("run", "--rm", "--layer", str(layer), "--layer", top, *check)
        assert r.stdout.splitlines() == ["kept", "secret-gone"], r.stderr
    r = labkit_cli("run", "--rm", "--layer", str(layer), *check)
    assert r.stdout == "" and "committed" in r.stderr                     # the layer alone: no change
    # Removed with its state dir: nothing left to commit.
    one_line_error(labkit_cli("commit", "lkcommit"), "lkcommit", "commit before")


def test_commit_needs_a_container_with_layers(labkit_cli):
    """A rootfs given as a directory is used as it is: no layer of its own."""
    from labkit.images import builder
    store = layers.layers_dir()
    before = sorted(os.listdir(store)) if os.path.isdir(store) else []
    r = labkit_cli("run", "-d", "--name", "lkplain", "--rootfs", builder.resolve("base"), "--", "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        one_line_error(labkit_cli("commit", "lkplain"), "lkplain", "--layer")
    finally:
        labkit_cli("rm", "-f", "lkplain")
    assert (sorted(os.listdir(store)) if os.path.isdir(store) else []) == before


def test_a_default_container_writes_to_its_own_layer(labkit_cli):
    """The base rootfs is shared by every container: a write, even an rm -rf,
    lands in the container's upper dir, and commit finds it there."""
    from labkit.images import builder
    base = builder.resolve("base")
    before = sorted(os.listdir(base))
    r = labkit_cli("run", "-d", "--name", "lkown", "--", "sh", "-c",
                   "rm -rf /bin /etc/passwd; echo mine > /written; sleep 300")
    assert r.returncode == 0, r.stderr
    try:
        import time
        for _ in range(100):   # bounded: the container's first command is an rm
            if os.path.exists(os.path.join(layers_upper("lkown"), "written")):
                break
            time.sleep(0.05)
        c = labkit_cli("commit", "lkown")
        assert c.returncode == 0, c.stderr
    finally:
        labkit_cli("rm", "-f", "lkown")
    assert sorted(os.listdir(base)) == before
    assert os.path.isdir(os.path.join(base, "bin")) and os.path.exists(os.path.join(base, "etc", "passwd"))
    assert not os.path.exists(os.path.join(base, "written"))


def layers_upper(cid):
    from labkit import home
    return os.path.join(home.containers_dir(cid), "upper")


def test_missing_layer_is_one_line_and_creates_nothing(labkit_cli, tmp_path):
    before = labkit_leftovers()
    missing = str(tmp_path / "no-such-layer")
    one_line_error(labkit_cli("run", "--rm", "--layer", missing, "--", "true"), missing)
    one_line_error(labkit_cli("run", "--rm", "--layer", "sha256:" + "0" * 64, "--", "true"), "labkit commit")
    assert labkit_leftovers() == before


@pytest.mark.parametrize("case", ["dotdot", "absolute", "through-symlink", "device", "hardlink-out"])
def test_malicious_tar_is_refused_and_writes_nothing_outside(labkit_cli, tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    rel = os.path.relpath(outside, "/")
    payload = b"planted by a layer\n"
    entries = {
        "dotdot": [({"name": "../" * 16 + rel + "/planted"}, payload)],
        "absolute": [({"name": str(outside / "planted")}, payload)],
        "through-symlink": [({"name": "etc/link", "type": tarfile.SYMTYPE, "linkname": str(outside)}, None),
                            ({"name": "etc/link/planted"}, payload)],
        "device": [({"name": "dev/sda", "type": tarfile.BLKTYPE, "devmajor": 8, "devminor": 0}, None)],
        "hardlink-out": [({"name": "etc/shadow-copy", "type": tarfile.LNKTYPE,
                           "linkname": "../" * 16 + "etc/shadow"}, None)],
    }[case]
    tar = make_tar(tmp_path / "evil.tar", entries)
    before = labkit_leftovers()
    err = one_line_error(labkit_cli("run", "--rm", "--layer", tar, "--", "true"), "layer entry")
    assert os.listdir(outside) == [], err
    assert not os.path.exists(layers.layers_dir(layers.digest(tar).split(":")[1]))
    assert not [n for n in os.listdir(layers.layers_dir()) if n.endswith(".tmp")] \
        if os.path.isdir(layers.layers_dir()) else True
    assert labkit_leftovers() == before


def test_sigkill_of_the_runner_then_gc_unmounts_the_overlay(labkit_cli, tmp_path):
    layer = tmp_path / "layer"
    write(layer / "x", "x\n")
    proc = subprocess.Popen(api.labkit_argv("run", "--name", "lkorphan", "--layer", str(layer),
                                            "--", "sleep", "300"))
    merged = os.path.join(state_dir("lkorphan"), "merged")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if ct.load("lkorphan")["status"] == "running":
                    break
            except Exception:
                pass
            time.sleep(0.05)
        assert overlay.is_mounted(merged)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert overlay.is_mounted(merged)           # nobody tore the stage down ...
        r = labkit_cli("gc")                        # ... which is what gc is for
        assert r.returncode == 0 and "removed container lkorphan" in r.stdout, r.stdout + r.stderr
        assert not overlay.is_mounted(merged)
        assert "lkorphan" not in ct.all_ids()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        labkit_cli("gc")


def test_check_layers_refuses_before_anything_exists(tmp_path):
    """What `labkit run` can call before it creates the container: a missing
    layer and an unsafe tar are refused, and nothing is written anywhere."""
    from labkit.errors import LabkitError, NotFound
    from labkit.stages import unionfs
    good = tmp_path / "good"
    good.mkdir()
    unionfs.check_layers([str(good)])
    with pytest.raises(NotFound, match="no-such"):
        unionfs.check_layers([str(good), str(tmp_path / "no-such")])
    evil = make_tar(tmp_path / "evil.tar", [({"name": "/etc/planted"}, b"x")])
    store = layers.layers_dir()
    before = sorted(os.listdir(store)) if os.path.isdir(store) else None
    with pytest.raises(LabkitError, match="absolute"):
        unionfs.check_layers([evil])
    assert (sorted(os.listdir(store)) if os.path.isdir(store) else None) == before
