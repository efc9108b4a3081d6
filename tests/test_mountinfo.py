"""labkit.linux.mountinfo on crafted lines: no root needed."""

import pytest

from labkit.linux import mountinfo

# proc(5)'s own example, then the kernel's escapes: a space (\040), a tab
# (\011), a newline (\012) and a backslash (\134) in paths and the source.
TEXT = (
    "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"
    "40 36 0:45 / /srv/my\\040disk ro,nosuid shared:7 master:3 propagate_from:2 - "
    "tmpfs my\\011tmp rw,size=1024k\n"
    "41 36 0:46 /sub\\012dir /mnt/back\\134slash rw - overlay over\\134lay "
    "rw,lowerdir=/a:/b,upperdir=/u,workdir=/w\n"
    "\n"
    "42 36 0:47 / /mnt/unbindable rw unbindable - proc  rw\n"
)


def test_fields_and_optional_fields():
    first, spaced, back, empty = mountinfo.parse(TEXT)
    assert (first.mount_id, first.parent_id, first.dev) == (36, 35, "98:0")
    assert (first.root, first.mount_point, first.options) == ("/mnt1", "/mnt2", "rw,noatime")
    assert first.optional == ("master:1",)
    assert (first.fstype, first.source, first.super_options) == ("ext3", "/dev/root", "rw,errors=continue")
    assert spaced.optional == ("shared:7", "master:3", "propagate_from:2")
    assert back.optional == ()
    assert empty.optional == ("unbindable",) and empty.source == "" and empty.super_options == "rw"


def test_escapes_are_undone_in_root_mount_point_and_source():
    _, spaced, back, _ = mountinfo.parse(TEXT)
    assert spaced.mount_point == "/srv/my disk"
    assert spaced.source == "my\ttmp"
    assert back.root == "/sub\ndir"
    assert back.mount_point == "/mnt/back\\slash"
    assert back.source == "over\\lay"
    # Options are not paths: left as the kernel wrote them.
    assert back.super_options == "rw,lowerdir=/a:/b,upperdir=/u,workdir=/w"


def test_unescape_any_octal_and_leaves_the_rest():
    assert mountinfo.unescape("a\\101b") == "aAb"
    assert mountinfo.unescape("\\134\\040") == "\\ "
    assert mountinfo.unescape("no escape") == "no escape"
    assert mountinfo.unescape("\\9ab\\04") == "\\9ab\\04"       # not three octal digits


def test_read_only_and_equality():
    first, spaced, _, _ = mountinfo.parse(TEXT)
    assert spaced.read_only and not first.read_only
    assert mountinfo.parse_line(TEXT.splitlines()[0]) == first != spaced


def test_not_a_mountinfo_line():
    with pytest.raises(ValueError, match="not a mountinfo line"):
        mountinfo.parse_line("36 35 98:0 /mnt1 /mnt2 rw,noatime ext3 /dev/root rw")


def test_reads_this_process():
    mounts = mountinfo.read()
    assert any(m.mount_point == "/" for m in mounts)
    assert all(isinstance(m.mount_id, int) and ":" in m.dev for m in mounts)
