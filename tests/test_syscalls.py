"""The syscall layer: errors name the call, its paths and flags, keep errno,
and carry a hint. These run for real against the kernel."""

import errno
import os

import pytest

from labkit.linux import syscalls as sc


def test_flag_names():
    assert sc.flag_names(sc.MS_BIND | sc.MS_REC, sc._MS_NAMES) == "MS_BIND|MS_REC"
    assert sc.flag_names(0, sc._MS_NAMES) == "0"
    assert sc.flag_names(sc.CLONE_NEWPID | 0x1, sc._CLONE_NAMES) == "CLONE_NEWPID|0x1"


def test_mount_error_names_everything(tmp_path):
    target = tmp_path / "missing" / "proc"
    with pytest.raises(OSError) as info:
        sc.mount("proc", str(target), "proc", sc.MS_NOSUID | sc.MS_NODEV)
    e = info.value
    assert e.errno in (errno.ENOENT, errno.EPERM)
    text = str(e)
    assert text.startswith(f"mount(proc -> {target}, proc, MS_NOSUID|MS_NODEV): ")
    assert errno.errorcode[e.errno] in text
    assert e.hint and e.hint in text


def test_umount_of_a_non_mount_point(tmp_path):
    with pytest.raises(OSError) as info:
        sc.umount2(str(tmp_path))
    assert info.value.errno in (errno.EINVAL, errno.EPERM)
    assert str(info.value).startswith(f"umount2({tmp_path}, 0): ")


def test_unshare_bad_flag_is_an_oserror():
    with pytest.raises(OSError) as info:
        sc.unshare(0x1)   # not a namespace flag: EINVAL
    assert info.value.errno == errno.EINVAL
    assert "unshare(0x1)" in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_pivot_root_error_has_the_fix_as_hint():
    # A directory that is not a mount point of its own cannot be the new
    # root: the hint says to bind-mount it onto itself.
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sc.unshare(sc.CLONE_NEWNS)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            try:
                sc.pivot_root("/tmp", "/tmp")
            except OSError as e:
                code = 0 if (e.errno == errno.EBUSY and "bind-mount it onto itself" in str(e)) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_sethostname_in_a_new_uts_namespace():
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sc.unshare(sc.CLONE_NEWUTS)
            sc.sethostname("inside")
            code = 0 if os.uname().nodename == "inside" else 3
        finally:
            os._exit(code)
    before = os.uname().nodename
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.uname().nodename == before
