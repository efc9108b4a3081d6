"""Two $LABKIT_HOMEs on one host — a test suite's beside the student's
/var/lib/labkit, or two suites at once: what a command of one home removes
is its own. A container's cgroup (labkit/<name>) is host-wide and names no
home, so each home's containers directory is named in /run/labkit-roots
(labkit/home.py) and `labkit gc` leaves alone the ids another home records."""

import os

import pytest
from proc_helper import wait_for

from labkit import home
from labkit.runtime import container as ct

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _running(cid, env):
    old = os.environ.get("LABKIT_HOME")
    os.environ["LABKIT_HOME"] = env["LABKIT_HOME"]
    try:
        return ct.load(cid)["status"] == "running"
    finally:
        os.environ["LABKIT_HOME"] = old


def test_gc_and_rm_of_one_home_leave_another_homes_container(rootfs, labkit_cli, tmp_path):
    other = {"LABKIT_HOME": str(tmp_path / "other-home")}
    base = home.rootfs_dir(rootfs)
    r = labkit_cli("run", "-d", "--name", "hometwin", "--rootfs", base, "--", "sleep", "300", env=other)
    assert r.returncode == 0, r.stderr
    try:
        assert wait_for(lambda: _running("hometwin", other))
        # This home: a container of its own comes and goes, then its gc.
        r = labkit_cli("run", "--rm", "--name", "homeself", "--rootfs", base, "--", "true")
        assert r.returncode == 0, r.stderr
        r = labkit_cli("gc")
        assert r.returncode == 0 and "hometwin" not in r.stdout, r.stdout
        assert _running("hometwin", other), "a command of this home killed another home's container"
        assert os.path.isdir(os.path.join(tmp_path, "other-home", "containers", "hometwin"))
    finally:
        labkit_cli("rm", "-f", "hometwin", env=other)
    # That home gone, its name in /run/labkit-roots goes at the next look.
    os.rename(tmp_path / "other-home", tmp_path / "gone")
    home.others()
    assert str(tmp_path / "other-home" / "containers") not in \
        [os.readlink(os.path.join(home.ROOTS, n)) for n in os.listdir(home.ROOTS)]
