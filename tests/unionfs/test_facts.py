"""The facts notebook 04 records, asserted as relations."""

import os
import stat

import pytest

from labkit import builder, overlay
from labkit.facts import overlay as facts
from unionfs_helpers import snapshot, write

pytestmark = pytest.mark.root


def test_copy_up(scratch):
    f = facts.fact_copy_up(str(scratch))
    assert not f["in_upper_before_write"] and f["in_upper_after_write"]
    assert f["merged_content"] == f["upper_content"] != f["lower_content"]
    assert f["upper_content"].startswith(f["lower_content"])       # the whole file was copied up
    assert f["upper_inode"] != f["lower_inode"]
    assert not overlay.is_mounted(scratch / "c" / "merged")


def test_whiteout(scratch):
    f = facts.fact_whiteout(str(scratch))
    assert not f["in_merged_after_delete"] and f["in_lower_after_delete"]
    assert f["upper_is_char_device"] and f["upper_rdev"] == [0, 0]


def test_opaque(scratch):
    f = facts.fact_opaque(str(scratch))
    assert f["upper_etc_opaque_xattr"] == "y"
    assert f["merged_etc"] == f["upper_etc"]
    assert not set(f["merged_etc"]) & set(f["lower_etc"])            # the lower entries stay hidden
    assert f["lower_etc"]                                             # ... and untouched


def test_isolation(scratch):
    f = facts.fact_isolation(str(scratch))
    a, b, lower = f["a"], f["b"], f["lower"]
    assert a["shared"] != b["shared"] == lower["shared"]             # a's change: a only
    assert a["only-a"] and not b["only-a"] and not lower["only-a"]
    assert not b["doomed"] and a["doomed"] and lower["doomed"]       # b's delete: b only


def test_disk_usage_shared_layers_against_copies(scratch):
    lower = scratch / "image"
    for i in range(16):
        write(lower / f"usr/lib/lib{i}.so", os.urandom(64 << 10).hex())   # 128 KiB each
    f = facts.fact_disk_usage(str(scratch / "w"), str(lower), counts=(1, 2, 4))
    assert f["lower_bytes"] == facts.disk_blocks(str(lower)) >= 16 * (128 << 10)
    rows = {r["n"]: r for r in f["rows"]}
    for n, r in rows.items():
        # N copies cost about N images; N containers cost one image plus N small uppers.
        assert r["copies_bytes"] >= n * f["lower_bytes"]
        assert r["shared_bytes"] - f["lower_bytes"] < 0.1 * f["lower_bytes"] * n
        if n > 1:
            assert r["shared_bytes"] < r["copies_bytes"]
    assert rows[4]["copies_bytes"] > 3 * rows[1]["copies_bytes"]
    assert not any(mp.startswith(str(scratch)) for mp, _ in overlay.mounts())
    assert sorted(os.listdir(scratch / "w")) == ["c0", "c1", "c2", "c3"]   # copies removed


def test_provenance(scratch):
    l0, l1 = scratch / "l0", scratch / "l1"
    write(l0 / "bin/sh", "base sh")
    write(l0 / "etc/os-release", "base")
    write(l1 / "etc/os-release", "layer 1")
    write(l1 / "app/run", "app")
    up, wk, mg = scratch / "up", scratch / "wk", scratch / "mg"
    for d in (up, wk, mg):
        d.mkdir()
    with overlay.mounted(str(mg), [str(l0), str(l1)], str(up), str(wk)):
        write(mg / "app/log", "written")
        os.unlink(mg / "bin/sh")
        origin = facts.provenance(str(mg), [str(l0), str(l1)], str(up))
    assert origin["etc/os-release"] == "lower1"
    assert origin["app/run"] == "lower1"
    assert origin["app/log"] == "upper"
    assert origin["bin"] == "upper"            # copied up to hold the whiteout
    assert "bin/sh" not in origin


def test_full_copy_makes_device_nodes_and_keeps_hardlinks(scratch):
    src = scratch / "rootfs"
    write(src / "bin/busybox", "elf")
    os.link(src / "bin/busybox", src / "bin/sh")
    os.symlink("busybox", src / "bin/ls")
    os.symlink("bin", src / "sbin")
    (src / "dev").mkdir()
    os.mknod(src / "dev/zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    os.mkfifo(src / "dev/fifo")
    dst = scratch / "copy"
    builder.full_copy(str(src), str(dst))
    assert snapshot(dst) == snapshot(src)
    assert os.stat(dst / "bin/sh").st_ino == os.stat(dst / "bin/busybox").st_ino != os.stat(src / "bin/sh").st_ino
    assert os.path.getsize(dst / "dev/zero") == 0 and (dst / "dev/zero").is_char_device()
