"""overlay mounts: stacking, clean unmount, and errors that name the option."""

import os
import shutil
import subprocess

import pytest

from labkit.linux import overlay, syscalls
from labkit.errors import Conflict, LabkitError, NotFound, Unsupported
from unionfs_helpers import read, write

pytestmark = pytest.mark.root


def dirs(base, *names):
    out = []
    for n in names:
        p = base / n
        p.mkdir(parents=True, exist_ok=True)
        out.append(str(p))
    return out


def test_layers_stack_top_wins_and_unmount_is_clean(scratch):
    l0, l1, l2, up, wk, mg = dirs(scratch, "l0", "l1", "l2", "up", "wk", "mg")
    for i, layer in enumerate((l0, l1, l2)):
        write(f"{layer}/who", f"layer {i}\n")
        write(f"{layer}/only{i}", f"{i}\n")
    overlay.mount(mg, [l0, l1, l2], up, wk)
    try:
        assert overlay.is_mounted(mg)
        assert read(f"{mg}/who") == read(f"{l2}/who")          # bottom first: the last is on top
        assert sorted(os.listdir(mg)) == ["only0", "only1", "only2", "who"]
        assert overlay.fs_type(mg) == "overlay"
    finally:
        assert overlay.unmount(mg) == "unmounted"
    assert not overlay.is_mounted(mg)
    assert os.listdir(mg) == []
    assert overlay.unmount(mg) == "not mounted"                # idempotent


def test_read_only_overlay_without_upper(scratch):
    l0, l1, mg = dirs(scratch, "l0", "l1", "mg")
    write(f"{l0}/a")
    write(f"{l1}/b")
    with overlay.mounted(mg, [l0, l1]):
        assert sorted(os.listdir(mg)) == ["a", "b"]
        with pytest.raises(OSError) as e:
            write(f"{mg}/c")
        assert e.value.errno == 30                              # EROFS
    assert not overlay.is_mounted(mg)


def test_busy_mount_is_detached(scratch):
    l0, up, wk, mg = dirs(scratch, "l0", "up", "wk", "mg")
    write(f"{l0}/f")
    overlay.mount(mg, [l0], up, wk)
    fd = os.open(f"{mg}/f", os.O_RDONLY)
    try:
        assert overlay.unmount(mg) == "detached"
        assert not overlay.is_mounted(mg)
        assert os.read(fd, 10) == b"x\n"                       # the open file still works
    finally:
        os.close(fd)


def test_missing_lower_is_named(scratch):
    l0, up, wk, mg = dirs(scratch, "l0", "up", "wk", "mg")
    with pytest.raises(NotFound) as e:
        overlay.mount(mg, [l0, str(scratch / "nope")], up, wk)
    assert "lowerdir[1]" in str(e.value) and "nope" in str(e.value)
    assert not overlay.is_mounted(mg)


def test_missing_upper_and_separator_in_path_are_named(scratch):
    l0, wk, mg = dirs(scratch, "l0", "wk", "mg")
    with pytest.raises(NotFound, match="upperdir"):
        overlay.mount(mg, [l0], str(scratch / "gone"), wk)
    (odd,) = dirs(scratch, "a:b")
    with pytest.raises(LabkitError, match=r"lowerdir\[1\] .*':'"):
        overlay.mount(mg, [l0, odd])
    assert not overlay.is_mounted(mg)


def test_lowerdir_list_longer_than_a_page_is_refused_before_mount(scratch):
    up, wk, mg = dirs(scratch, "up", "wk", "mg")
    deep = scratch / ("d" * 200)
    lowers = dirs(deep, *[f"layer{i:03d}" for i in range(30)])
    data_len = len(overlay.options(lowers, up, wk)) + 1
    assert data_len > overlay.PAGE_SIZE
    with pytest.raises(LabkitError) as e:
        overlay.mount(mg, lowers, up, wk)
    msg = str(e.value)
    assert "lowerdir" in msg and str(overlay.PAGE_SIZE) in msg and "fewer layers" in msg
    assert not overlay.is_mounted(mg)
    # The same layers fit with short paths: the fix the message offers.
    short = scratch / "s"
    short.mkdir()
    links = []
    for i, p in enumerate(lowers):
        os.symlink(p, short / str(i))
        links.append(str(short / str(i)))
    with overlay.mounted(mg, links, up, wk):
        assert overlay.is_mounted(mg)


def test_upper_on_an_overlay_names_upperdir(scratch):
    l0, up, wk, mg, mg2 = dirs(scratch, "l0", "up", "wk", "mg", "mg2")
    with overlay.mounted(mg, [l0], up, wk):
        os.mkdir(f"{mg}/u2")
        os.mkdir(f"{mg}/w2")
        with pytest.raises(Unsupported) as e:
            overlay.mount(mg2, [l0], f"{mg}/u2", f"{mg}/w2")
        assert "upperdir" in str(e.value) and "on overlay" in str(e.value)
        assert not overlay.is_mounted(mg2)


def test_upper_without_xattrs_names_upperdir(scratch):
    l0, rd, mg = dirs(scratch, "l0", "ramfs", "mg")
    syscalls.mount("none", rd, "ramfs")
    try:
        up, wk = dirs(scratch / "ramfs", "up", "wk")
        with pytest.raises(Unsupported) as e:
            overlay.mount(mg, [l0], up, wk)
        assert "upperdir" in str(e.value) and "ramfs" in str(e.value) and "xattr" in str(e.value)
        assert not overlay.is_mounted(mg)
    finally:
        syscalls.umount2(rd)


@pytest.mark.skipif(not shutil.which("mkfs.ext4") or not os.path.exists("/dev/loop-control"),
                    reason="needs mkfs.ext4 and loop devices")
def test_upper_without_d_type_names_upperdir(scratch):
    l0, ext, mg = dirs(scratch, "l0", "ext", "mg")
    img = scratch / "nofiletype.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^filetype", str(img)], check=True)
    subprocess.run(["mount", "-o", "loop", str(img), ext], check=True)
    try:
        up, wk = dirs(scratch / "ext", "up", "wk")
        with pytest.raises(Unsupported) as e:
            overlay.mount(mg, [l0], up, wk)
        assert "upperdir" in str(e.value) and "d_type" in str(e.value)
        assert not overlay.is_mounted(mg)
    finally:
        subprocess.run(["umount", "-d", ext], check=True)


def test_upper_shared_by_two_overlays_is_a_conflict(scratch):
    l0, up, wk, mg, mg2 = dirs(scratch, "l0", "up", "wk", "mg", "mg2")
    with overlay.mounted(mg, [l0], up, wk):
        with pytest.raises(Conflict, match="upperdir"):
            overlay.mount(mg2, [l0], up, wk)
        assert not overlay.is_mounted(mg2)


def test_workdir_rules_are_named(scratch):
    l0, up, mg = dirs(scratch, "l0", "up", "mg")
    (inner,) = dirs(scratch / "up", "work")
    with pytest.raises(LabkitError, match="nested"):
        overlay.mount(mg, [l0], up, inner)
    with pytest.raises(LabkitError, match="upperdir and workdir go together"):
        overlay.mount(mg, [l0], up)
    assert not overlay.is_mounted(mg)
