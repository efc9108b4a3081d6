"""The facts notebook 04 records, asserted as relations."""

import os
import stat

import pytest

from labkit.linux import files, overlay
from labkit.course.facts import overlay as facts
from labkit.course.facts import unionfs as unionfs_facts
from unionfs_helpers import snapshot, write

pytestmark = pytest.mark.root


# Copy-up, whiteouts, opaque directories and isolation, through containers.

def test_copy_up(rootfs):
    f = unionfs_facts.copy_up(rootfs)
    assert f["ok"], f
    assert not f["in_upper_before"] and f["upper"] is not None
    assert f["inside"] == f["upper"] != f["layer_content"]
    assert f["upper"].startswith(f["layer_content"])                 # the whole file was copied up
    assert f["upper_inode"] != f["layer_inode"]
    assert not overlay.is_mounted(f["merged"])


def test_whiteout(rootfs):
    f = unionfs_facts.whiteout(rootfs)
    assert f["ok"], f
    assert not f["in_merged_after_delete"] and f["layer_content"] is not None
    assert f["upper_is_char_device"] and f["upper_rdev"] == [0, 0]


def test_opaque(rootfs):
    f = unionfs_facts.opaque(rootfs)
    assert f["ok"], f
    assert f["xattr"] == "y"
    assert f["inside"] == f["upper_entries"]
    assert not set(f["inside"]) & set(f["layer_entries"])           # the layer's entries stay hidden
    assert f["layer_entries"]                                         # ... and untouched


def test_isolation(rootfs):
    f = unionfs_facts.isolation(rootfs)
    assert f["ok"], f
    a, b = f["a"], f["b"]
    assert a[0] != b[0] == f["layer_shared"].strip()                 # a's change: a only
    assert "/only-a" in a and "/only-a" not in b and "only-a" not in f["layer_entries"]
    assert "/doomed" not in b and "/doomed" in a and "doomed" in f["layer_entries"]   # b's delete: b only


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
    files.full_copy(str(src), str(dst))
    assert snapshot(dst) == snapshot(src)
    assert os.stat(dst / "bin/sh").st_ino == os.stat(dst / "bin/busybox").st_ino != os.stat(src / "bin/sh").st_ino
    assert os.path.getsize(dst / "dev/zero") == 0 and (dst / "dev/zero").is_char_device()


def test_full_copy_of_a_rootfs_given_by_a_link_on_another_filesystem(scratch):
    """$LABKIT_HOME/rootfs/base may be a link (on a tmpfs, in the UML harness)
    to the real rootfs elsewhere: every directory is still copied, none is
    taken for a mount point."""
    import tempfile
    src = scratch / "rootfs"
    write(src / "bin/busybox", "elf")
    os.symlink("busybox", src / "bin/cat")
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(src).st_dev:
        pytest.skip("no second filesystem to put the link on")
    with tempfile.TemporaryDirectory(dir=shm) as d:
        link = os.path.join(d, "base")
        os.symlink(src, link)
        dst = scratch / "copy"
        files.full_copy(link, str(dst))
    assert os.readlink(dst / "bin/cat") == "busybox" and (dst / "bin/busybox").read_text() == "elf"
