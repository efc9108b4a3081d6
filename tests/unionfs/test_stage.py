"""The unionfs stage: stacks layers under a container's root, tears down, gc, commit."""

import io
import json
import os
import shutil
import subprocess
import tarfile
from types import SimpleNamespace

import pytest

from labkit.images import layers
from labkit.linux import overlay
from labkit.errors import NotFound
from labkit.runtime import container as ct
from labkit.runtime.config import ContainerConfig
from labkit.stages import unionfs
from unionfs_helpers import read, snapshot, write

pytestmark = pytest.mark.root


@pytest.fixture
def base(scratch):
    """A tiny rootfs: a static busybox as /bin/sh."""
    if not os.path.exists("/bin/busybox"):
        pytest.skip("needs busybox-static")
    root = scratch / "base"
    (root / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", root / "bin/busybox")
    for applet in ("sh", "cat", "ls", "rm"):
        os.symlink("busybox", root / "bin" / applet)
    write(root / "etc/os-release", "base\n")
    return root


def container(home, cid, rootfs, layer_list):
    cfg = ContainerConfig(id=cid, args=["/bin/sh"], rootfs=str(rootfs), layers=layer_list)
    state = home / "containers" / cid
    state.mkdir(parents=True)
    return SimpleNamespace(config=cfg, state_dir=str(state), rootfs=str(rootfs))


def layer_tar(path, files):
    with tarfile.open(path, "w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
    return str(path)


def sh(root, script):
    return subprocess.run(["chroot", str(root), "/bin/sh", "-c", script],
                          capture_output=True, text=True, check=True).stdout


def test_wanted_only_with_layers(base):
    assert not unionfs.UnionFS().wanted(ContainerConfig(id="x", args=[], rootfs=str(base)))
    assert unionfs.UnionFS().wanted(ContainerConfig(id="x", args=[], rootfs=str(base), layers=["/l"]))


def test_prepare_stacks_layers_commit_and_restart(home, base, scratch):
    app = scratch / "app-layer"
    write(app / "etc/os-release", "app\n")
    write(app / "app/hello", "from the app layer\n")
    tar = layer_tar(scratch / "conf.tar", {"etc/app.conf": b"from the tar layer\n", "etc/.wh.os-release": b""})
    base_before = snapshot(base)
    stage = unionfs.UnionFS()
    c = container(home, "c1", base, [str(app), tar])
    stage.prepare(c)
    try:
        merged = os.path.join(c.state_dir, "merged")
        assert c.rootfs == merged and overlay.is_mounted(merged)
        # Visible from the host, like docker's overlay2/<id>/merged.
        assert read(os.path.join(merged, "app/hello")) == "from the app layer\n"
        # The tar was unpacked once, by digest, under $LABKIT_HOME/layers.
        cached = os.path.join(str(home), "layers", layers.digest(tar).split(":")[1])
        assert unionfs.layers_of(c.state_dir)["lowers"] == [str(base), str(app), cached]
        out = sh(merged, "cat /etc/app.conf; ls /etc; echo made > /made; rm /app/hello; echo ok")
        assert out.splitlines() == ["from the tar layer", "app.conf", "ok"]   # the tar's whiteout hid os-release
        assert read(os.path.join(c.state_dir, "upper/made")) == "made\n"
        committed = unionfs.commit(c.state_dir)
    finally:
        stage.teardown(c)
    assert not overlay.is_mounted(merged)
    stage.teardown(c)                                          # idempotent
    assert snapshot(base) == base_before and os.path.exists(app / "app/hello")
    # A new container on the stacked layers, the committed one on top, sees the old one's changes.
    c2 = container(home, "c2", base, [str(app), tar, committed["path"]])
    stage.prepare(c2)
    try:
        out = sh(c2.rootfs, "cat /made; ls /app; echo end")
        assert out.splitlines() == ["made", "end"]
    finally:
        stage.teardown(c2)
    assert not overlay.is_mounted(c2.rootfs)


def test_missing_layer_mounts_nothing(home, base):
    c = container(home, "c1", base, [str(home / "no-such-layer")])
    with pytest.raises(NotFound, match="layer '.*no-such-layer' does not exist"):
        unionfs.UnionFS().prepare(c)
    assert c.rootfs == str(base)
    assert not [m for m, _ in overlay.mounts() if m.startswith(str(home))]


def test_gc_unmounts_overlays_of_gone_containers_only(home, base, scratch):
    app = scratch / "app"
    write(app / "x")
    stage = unionfs.UnionFS()
    live, gone = container(home, "live", base, [str(app)]), container(home, "gone", base, [str(app)])
    young = old = live
    stage.prepare(live)
    stage.prepare(gone)
    try:
        me = {"pid": os.getpid(), "pid_start": ct.start_time(os.getpid()),
              "monitor": os.getpid(), "monitor_start": ct.start_time(os.getpid())}
        with open(os.path.join(live.state_dir, "state.json"), "w") as f:
            json.dump(dict(me, status="running"), f)
        with open(os.path.join(gone.state_dir, "state.json"), "w") as f:
            json.dump(dict(me, status="stopped"), f)
        # No state.json: being created while young, gone when old.
        young, old = container(home, "young", base, [str(app)]), container(home, "old", base, [str(app)])
        stage.prepare(young)
        stage.prepare(old)
        os.utime(old.state_dir, (0, 0))
        done = unionfs.gc(str(home / "containers"))
        assert sorted(done) == sorted([gone.rootfs, old.rootfs])
        assert overlay.is_mounted(live.rootfs) and overlay.is_mounted(young.rootfs)
        assert not overlay.is_mounted(gone.rootfs) and not overlay.is_mounted(old.rootfs)
        assert unionfs.gc(str(home / "containers")) == []
    finally:
        for c in (live, gone, young, old):
            stage.teardown(c)
