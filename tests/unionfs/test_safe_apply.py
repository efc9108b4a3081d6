"""Safe apply: crafted layer tarballs never write outside their target.

Every attack is a tar built here with tarfile; each test asserts the error
names the entry AND that the sentinel directory next to the target is
exactly as it was (names, contents, modes, link counts)."""

import io
import os
import stat
import tarfile

import pytest

from labkit.images import layers
from labkit.images.layers import LayerError
from unionfs_helpers import write

pytestmark = pytest.mark.root


def entry(name, kind="file", data=b"pwned\n", link=None, mode=0o644, dev=(0, 0)):
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                 "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
                 "fifo": tarfile.FIFOTYPE}[kind]
    if link is not None:
        info.linkname = link
    info.devmajor, info.devminor = dev
    return info, (data if kind == "file" else None)


@pytest.fixture
def box(scratch):
    """target/ (empty) next to outside/ (the sentinel), and a tar builder."""
    target, outside = scratch / "target", scratch / "outside"
    target.mkdir()
    write(outside / "secret", "do not touch\n", mode=0o600)
    write(outside / "sub/keep", "keep\n")

    def state():
        out = {}
        for root, dirs, files in os.walk(outside):
            for n in dirs + files:
                p = os.path.join(root, n)
                st = os.lstat(p)
                body = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
                out[os.path.relpath(p, outside)] = (st.st_mode, st.st_nlink, st.st_uid, st.st_mtime_ns, body)
        return out

    def tar(*entries):
        path = scratch / f"crafted{len(os.listdir(scratch))}.tar"
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
            for info, data in entries:
                if data is not None:
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
                else:
                    t.addfile(info)
        return str(path)

    before = state()
    ns = type("Box", (), {})()
    ns.target, ns.outside, ns.tar, ns.state, ns.before = target, outside, tar, state, before
    yield ns
    assert state() == before                       # every test, also the ones that apply fine


def refused(box, tar_path, *words, mode="delete"):
    with pytest.raises(LayerError) as e:
        layers.apply(tar_path, str(box.target), whiteouts=mode)
    msg = str(e.value)
    for w in words:
        assert w in msg, msg
    assert box.state() == box.before
    return msg


@pytest.mark.parametrize("mode", ["delete", "overlay"])
def test_dotdot_is_refused(box, mode):
    refused(box, box.tar(entry("../outside/pwned")), "../outside/pwned", "..", mode=mode)
    assert not (box.outside / "pwned").exists()


def test_dotdot_in_the_middle_is_refused(box):
    refused(box, box.tar(entry("a/b/../../../outside/secret")), "a/b/../../../outside/secret")


def test_absolute_path_is_refused(box):
    name = str(box.outside / "pwned")
    refused(box, box.tar(entry(name)), name, "absolute")
    assert not (box.target / name.lstrip("/")).exists()        # refused, not stripped


def test_static_checks_write_nothing(box):
    refused(box, box.tar(entry("fine"), entry("../outside/pwned")), "../outside/pwned")
    assert os.listdir(box.target) == []


@pytest.mark.parametrize("link", ["OUTSIDE", "../outside", "/"])
def test_write_through_symlink_is_refused(box, link):
    link = str(box.outside) if link == "OUTSIDE" else link
    # Through "/" the path goes on to the sentinel, so a failure shows there.
    name = "evil" + (str(box.outside / "secret") if link == "/" else "/secret")
    msg = refused(box, box.tar(entry("evil", "symlink", link=link), entry(name, data=b"overwritten\n")),
                  name, "symlink 'evil'")
    assert link in msg


def test_write_through_symlink_deeper_is_refused(box):
    refused(box, box.tar(entry("a", "dir", mode=0o755), entry("a/b", "symlink", link="../../outside/sub"),
                         entry("a/b/keep", data=b"overwritten\n")), "a/b/keep", "'a/b'")


@pytest.mark.parametrize("mode", ["delete", "overlay"])
def test_whiteout_through_symlink_is_refused(box, mode):
    # If whiteouts followed the symlink, this would delete outside/secret.
    (box.target / "evil").symlink_to(box.outside)
    refused(box, box.tar(entry("evil/.wh.secret", data=b"")), "evil/.wh.secret", "symlink", mode=mode)


@pytest.mark.parametrize("mode", ["delete", "overlay"])
def test_opaque_through_symlink_is_refused(box, mode):
    (box.target / "evil").symlink_to(box.outside)
    refused(box, box.tar(entry("evil/.wh..wh..opq", data=b"")), "evil/.wh..wh..opq", "symlink", mode=mode)


def test_symlink_in_the_target_is_not_written_through(box):
    """A symlink already in the target (from a lower layer) is met the same way."""
    (box.target / "etc").symlink_to(box.outside)
    refused(box, box.tar(entry("etc/secret")), "etc/secret", "symlink 'etc'")


def test_entry_landing_on_a_symlink_replaces_the_symlink(box):
    (box.target / "motd").symlink_to(box.outside / "secret")
    layers.apply(box.tar(entry("motd", data=b"new\n")), str(box.target))
    assert not (box.target / "motd").is_symlink()
    assert (box.target / "motd").read_bytes() == b"new\n"


def test_hardlink_with_dotdot_is_refused(box):
    refused(box, box.tar(entry("hl", "hardlink", link="../outside/secret")), "hl", "..")
    assert not (box.target / "hl").exists()


def test_hardlink_to_absolute_path_is_refused(box):
    refused(box, box.tar(entry("hl", "hardlink", link=str(box.outside / "secret"))), "hl", "absolute")


def test_hardlink_through_symlink_is_refused(box):
    refused(box, box.tar(entry("s", "symlink", link=str(box.outside)), entry("hl", "hardlink", link="s/secret")),
            "hl", "symlink 's'")
    assert not (box.target / "hl").exists()


def test_hardlink_to_a_missing_file_is_refused(box):
    refused(box, box.tar(entry("hl", "hardlink", link="not/there")), "hl", "not/there", "not in the target")


def test_hardlink_to_a_symlink_links_the_symlink_not_its_target(box):
    layers.apply(box.tar(entry("s", "symlink", link=str(box.outside / "secret")),
                         entry("hl", "hardlink", link="s")), str(box.target))
    assert os.readlink(box.target / "hl") == str(box.outside / "secret")
    assert os.lstat(box.target / "hl").st_ino == os.lstat(box.target / "s").st_ino


@pytest.mark.parametrize("kind,dev", [("chr", (1, 3)), ("blk", (8, 0))])
def test_device_nodes_are_refused(box, kind, dev):
    refused(box, box.tar(entry("dev/node", kind, dev=dev)), "dev/node", "device", f"{dev[0]}:{dev[1]}")
    assert not (box.target / "dev/node").exists()


def test_0_0_char_device_is_a_whiteout(box):
    write(box.target / "gone", "lower\n")
    layers.apply(box.tar(entry("gone", "chr", dev=(0, 0))), str(box.target))
    assert not (box.target / "gone").exists()


def test_setuid_and_setgid_bits_are_stripped(box):
    result = layers.apply(box.tar(entry("bin/su", data=b"\x7fELF", mode=0o4755),
                                  entry("bin/wall", data=b"\x7fELF", mode=0o2755),
                                  entry("tmp", "dir", mode=0o1777)), str(box.target))
    assert stat.S_IMODE(os.stat(box.target / "bin/su").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(box.target / "bin/wall").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(box.target / "tmp").st_mode) == 0o1777      # sticky kept
    assert sorted(result["stripped_setid"]) == ["bin/su", "bin/wall"]


@pytest.mark.parametrize("name", ["etc/.wh..", "etc/.wh.", "etc/.wh..wh.x"])
def test_malformed_whiteouts_are_refused(box, name):
    refused(box, box.tar(entry(name, data=b"")), name, "whiteout")
