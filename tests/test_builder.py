"""The base rootfs: busybox plus the real procps/iproute2/util-linux, with
the shared libraries their ELF headers ask for."""

import os
import subprocess
import time

import pytest

from labkit.images import builder

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("LABKIT_HOME")
    os.environ["LABKIT_HOME"] = str(home)
    try:
        start = time.monotonic()
        path, seconds, was_built = builder.build("t")
        yield path, time.monotonic() - start, was_built
    finally:
        if old is None:
            del os.environ["LABKIT_HOME"]
        else:
            os.environ["LABKIT_HOME"] = old


def test_build_is_fast_and_cached(built):
    path, seconds, was_built = built
    assert was_built and seconds < 3.0
    again = builder.build("t")
    assert again[2] is False     # cached: nothing rebuilt


def test_real_tools_not_busybox(built):
    path = built[0]
    for tool in ("usr/bin/ps", "usr/bin/free", "usr/bin/top", "usr/bin/sh"):
        assert os.path.realpath(os.path.join(path, tool)) != os.path.join(path, "usr/bin/busybox"), tool
    assert os.path.islink(os.path.join(path, "usr/bin/ls"))   # a busybox applet


def test_every_shared_library_is_inside(built):
    path = built[0]
    for tool in builder.REAL_TOOLS:
        host = builder._which(tool)
        for lib in builder.shared_libraries(host):
            assert os.path.exists(os.path.join(path, lib.lstrip("/"))), (tool, lib)


def test_tools_run_in_the_rootfs(built):
    path = built[0]
    out = subprocess.run(["chroot", path, "/bin/sh", "-c", "ps --version; ip -V; free --version"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "procps" in out.stdout and "iproute2" in out.stdout


def test_missing_rootfs_is_a_clear_error(built):
    with pytest.raises(builder.NotFound) as info:
        builder.resolve("no-such-rootfs")
    assert "labkit rootfs build no-such-rootfs" in str(info.value)
