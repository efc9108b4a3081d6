"""Layer tarballs: diff an upper into a tar, apply it, digests, commit, stacking."""

import gzip
import io
import hashlib
import os
import shutil
import stat
import tarfile

import pytest

from labkit.images import layers
from labkit.linux import overlay
from unionfs_helpers import read, snapshot, write

pytestmark = pytest.mark.root


@pytest.fixture
def changed(scratch):
    """A lower image and an overlay whose container changed it in every way a layer records."""
    lower = scratch / "lower"
    write(lower / "etc/motd", "hello\n")
    write(lower / "etc/doomed", "bye\n")
    write(lower / "etc/conf.d/a.conf", "a\n")
    write(lower / "etc/conf.d/b.conf", "b\n")
    write(lower / "var/cache/big", "cache\n")
    write(lower / "bin/tool", "#!/bin/sh\n", mode=0o755)
    os.symlink("tool", lower / "bin/alias")
    up, wk, mg = (scratch / n for n in ("upper", "work", "merged"))
    for d in (up, wk, mg):
        d.mkdir()
    overlay.mount(str(mg), [str(lower)], str(up), str(wk))
    try:
        write(mg / "etc/motd", "hello, changed\n")                     # copy-up
        os.unlink(mg / "etc/doomed")                                     # whiteout
        shutil.rmtree(mg / "etc/conf.d")                                 # opaque dir
        write(mg / "etc/conf.d/c.conf", "c\n")
        shutil.rmtree(mg / "var/cache")                                  # a whole dir deleted
        write(mg / "srv/new/data", "new\n", mode=0o640)                 # new tree
        os.link(mg / "srv/new/data", mg / "srv/new/data.link")           # hardlink
        os.symlink("/etc/motd", mg / "srv/motd")                         # symlink
        os.chmod(mg / "bin/tool", 0o700)                                 # metadata-only copy-up
        os.unlink(mg / "bin/alias")
        os.symlink("/bin/tool", mg / "bin/alias")                        # replaced symlink
        yield {"lower": lower, "upper": up, "work": wk, "merged": mg, "scratch": scratch}
    finally:
        overlay.unmount(str(mg))


def test_diff_writes_oci_whiteouts(changed, scratch):
    tar_path = scratch / "layer.tar"
    summary = layers.diff(str(changed["upper"]), str(tar_path))
    with tarfile.open(tar_path) as t:
        names = t.getnames()
        hard = t.getmember("srv/new/data.link")
    assert "etc/.wh.doomed" in names and "var/.wh.cache" in names
    assert "etc/conf.d/.wh..wh..opq" in names
    assert "etc/doomed" not in names and "var/cache" not in names
    assert names.index("etc/conf.d") < names.index("etc/conf.d/.wh..wh..opq")
    assert hard.islnk() and hard.linkname == "srv/new/data"
    assert sorted(summary["whiteouts"]) == ["etc/doomed", "var/cache"]
    assert summary["opaque"] == ["etc/conf.d"]
    assert len(names) == summary["entries"] == len(set(names))
    for i, n in enumerate(names):                                # a directory comes before its entries
        parent = os.path.dirname(n)
        assert not parent or names.index(parent) < i


def test_round_trip_apply_onto_lower_copy_equals_merged(changed, scratch):
    tar_path = scratch / "layer.tar"
    layers.diff(str(changed["upper"]), str(tar_path))
    copy = scratch / "copy"
    shutil.copytree(changed["lower"], copy, symlinks=True)
    before = snapshot(copy)
    result = layers.apply(str(tar_path), str(copy))
    assert snapshot(copy) == snapshot(changed["merged"]) != before
    assert os.stat(copy / "srv/new/data").st_ino == os.stat(copy / "srv/new/data.link").st_ino
    assert set(result["whiteouts"]) >= {"etc/doomed", "var/cache"}


def test_overlay_form_as_a_lowerdir_gives_the_same_view(changed, scratch):
    """commit + start a new container on the stacked layers: it sees what the old one saw."""
    tar_path = scratch / "layer.tar.gz"
    layers.diff(str(changed["upper"]), str(tar_path), compress=True)
    unpacked = layers.unpacked(str(tar_path), cache=str(scratch / "cache"))
    assert os.path.basename(unpacked) == layers.digest(str(tar_path)).split(":")[1]
    st = os.lstat(os.path.join(unpacked, "etc/doomed"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(unpacked, "etc/conf.d"), "trusted.overlay.opaque") == b"y"
    up2, wk2, mg2 = (scratch / n for n in ("up2", "wk2", "mg2"))
    for d in (up2, wk2, mg2):
        d.mkdir()
    with overlay.mounted(str(mg2), [str(changed["lower"]), unpacked], str(up2), str(wk2)):
        assert snapshot(mg2) == snapshot(changed["merged"])
    assert layers.unpacked(str(tar_path), cache=str(scratch / "cache")) == unpacked   # unpacked once
    assert not [n for n in os.listdir(scratch / "cache") if n.endswith(".tmp")]


def test_digest_and_diff_id(changed, scratch):
    plain, packed = scratch / "l.tar", scratch / "l.tar.gz"
    layers.diff(str(changed["upper"]), str(plain))
    layers.diff(str(changed["upper"]), str(packed), compress=True)
    raw = plain.read_bytes()
    assert layers.digest(str(plain)) == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert layers.diff_id(str(plain)) == layers.digest(str(plain))
    assert layers.diff_id(str(packed)) == layers.digest(str(plain))          # same tar inside
    assert layers.digest(str(packed)) != layers.diff_id(str(packed))
    assert gzip.decompress(packed.read_bytes()) == raw
    d = layers.describe(str(packed))
    assert d["media_type"].endswith("+gzip") and d["size"] == packed.stat().st_size
    again = scratch / "again.tar"
    layers.diff(str(changed["upper"]), str(again))
    assert layers.digest(str(again)) == layers.digest(str(plain))           # reproducible


def test_commit_names_the_layer_by_its_digest(changed, home):
    info = layers.commit(str(changed["upper"]))
    assert os.path.dirname(info["path"]) == os.path.join(str(home), "layers")
    assert os.path.basename(info["path"]) == info["digest"].split(":")[1] + ".tar"
    assert layers.digest(info["path"]) == info["digest"]
    assert "etc/doomed" in info["whiteouts"]
    assert os.listdir(home / "layers") == [os.path.basename(info["path"])]


def test_apply_flattens_layers_in_order(scratch):
    """Applying layers bottom first builds the image; a later layer's whiteout removes an earlier file."""
    def layer(name, entries):
        path = scratch / name
        with tarfile.open(path, "w") as t:
            for n, data in entries:
                info = tarfile.TarInfo(n)
                if data is None:
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    t.addfile(info)
                else:
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
        return str(path)
    l1 = layer("1.tar", [("etc", None), ("etc/a", b"1"), ("etc/b", b"1"), ("opt", None), ("opt/x", b"1")])
    l2 = layer("2.tar", [("etc/.wh.a", b""), ("etc/a2", b"2"), ("opt/.wh..wh..opq", b""), ("opt/y", b"2"),
                         ("./etc/b", b"2")])
    root = scratch / "root"
    root.mkdir()
    layers.apply(l1, str(root))
    layers.apply(l2, str(root))
    assert sorted(os.listdir(root / "etc")) == ["a2", "b"]
    assert read(root / "etc/b") == "2"
    assert os.listdir(root / "opt") == ["y"]      # opaque hid x (lower) but not y (same layer)
