"""Bad input gets one line that names the thing and the fix, a non-zero
exit, no traceback, and leaves the host as it was."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from labkit.course.leaks import leftovers as labkit_leftovers
from labkit import api

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def check_clean_error(r, *words):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("labkit: ")
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture
def unchanged():
    before = labkit_leftovers()
    yield
    assert labkit_leftovers() == before


def test_missing_rootfs(labkit_cli, unchanged):
    check_clean_error(labkit_cli("run", "--rootfs", "nope", "--", "true"), "nope", "labkit rootfs build")


def test_command_not_found(rootfs, labkit_cli, unchanged):
    r = labkit_cli("run", "--rm", "--", "no-such-program")
    check_clean_error(r, "no-such-program", "not found")
    assert r.returncode == 127


def test_not_root(rootfs, labkit_cli, unchanged):
    r = labkit_cli("run", "--rm", "--", "true", user=65534)
    if "No module named labkit" in r.stderr:
        # This checkout is readable by root only (a clone under /root): no
        # user but root can import labkit from it, only its command answers.
        r = as_user(65534, LAUNCHER, "run", "--rm", "--", "true")
    check_clean_error(r, "needs root", "sudo")


LAUNCHER = "/usr/local/bin/labkit"


def as_user(uid, *argv):
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=60, cwd="/")


def test_the_command_answers_a_user_who_cannot_read_the_checkout():
    """vagrant/launcher.sh, as provision.sh writes it for a checkout only
    root can read: another user gets labkit's one line, root gets labkit."""
    top = tempfile.mkdtemp(prefix="labkit-launcher-")      # 0700 by mkdtemp: the checkout
    os.makedirs(os.path.join(top, "labkit"))
    open(os.path.join(top, "labkit", "__init__.py"), "w").close()
    command = tempfile.mktemp(prefix="labkit-command-")     # in /tmp, which any user may search
    try:
        venv = os.path.dirname(os.path.dirname(sys.executable))
        text = open(os.path.join(ROOT, "vagrant", "launcher.sh")).read()
        with open(command, "w") as f:
            f.write(text.replace("@REPO@", top).replace("@VENV@", venv))
        os.chmod(command, 0o755)
        r = as_user(65534, command, "run", "--rm", "--", "true")
        check_clean_error(r, "needs root", "sudo", top)
        mine = subprocess.run([command, "lab", "list"], capture_output=True, text=True, timeout=60)
        assert mine.returncode == 0 and "01.chroot" in mine.stdout, mine.stderr
    finally:
        shutil.rmtree(top)
        os.unlink(command)


def test_a_home_the_user_namespace_cannot_search(rootfs, labkit_cli, unchanged):
    """A $LABKIT_HOME made by mktemp -d is 0700: root in a user namespace is
    uid 100000 on the host and cannot reach its root filesystem there. One
    line names the directory and the fix; with it applied, the run works."""
    from labkit import home
    top = tempfile.mkdtemp(prefix="labkit-0700-")
    try:
        os.symlink(home.rootfs_dir(), os.path.join(top, "rootfs"))
        env = {"LABKIT_HOME": top}
        r = labkit_cli("run", "--rm", "--ns", "user,pid,mnt,uts,ipc", "--", "true", env=env)
        check_clean_error(r, top, "0700", f"chmod o+x {top}")
        assert not os.listdir(os.path.join(top, "containers"))
        os.chmod(top, 0o755)
        r = labkit_cli("run", "--rm", "--ns", "user,pid,mnt,uts,ipc", "--", "id", "-u", env=env)
        assert (r.returncode, r.stdout) == (0, "0\n"), r.stderr
    finally:
        shutil.rmtree(top)


def test_unknown_namespace(labkit_cli, unchanged):
    check_clean_error(labkit_cli("run", "--ns", "pid,nett", "--", "true"), "nett", "choose from")


def test_name_in_use(rootfs, labkit_cli):
    with api.Container("sleep 300", name="taken"):
        before = labkit_leftovers()
        check_clean_error(labkit_cli("run", "--name", "taken", "--", "true"), "taken", "already in use")
        assert labkit_leftovers() == before


def test_exec_into_a_stopped_container(rootfs, labkit_cli):
    labkit_cli("run", "--name", "done", "--", "true")
    try:
        check_clean_error(labkit_cli("exec", "done", "true"), "done", "not running")
    finally:
        labkit_cli("rm", "done")


def test_exec_into_a_missing_container(labkit_cli, unchanged):
    check_clean_error(labkit_cli("exec", "ghost", "true"), "ghost", "labkit ps")


def test_bad_memory_value(rootfs, labkit_cli, unchanged):
    check_clean_error(labkit_cli("run", "--memory", "64X", "--", "true"), "64X", "64m")


def test_bad_name(labkit_cli, unchanged):
    check_clean_error(labkit_cli("run", "--name", "../x", "--", "true"), "../x")


def test_hostname_without_uts(rootfs, labkit_cli, unchanged):
    check_clean_error(labkit_cli("run", "--ns", "pid", "--hostname", "x", "--", "true"), "uts")


def test_missing_kernel_feature(monkeypatch, capsys):
    """A kernel without the time namespace (before 5.6): simulated by hiding
    it from the list the kernel gives, since this kernel has it."""
    from labkit.cli import main as cli
    from labkit.linux import namespaces
    real = namespaces.available()
    monkeypatch.setattr(namespaces, "available", lambda: [n for n in real if n != "time"])
    code = cli.main(["run", "--rm", "--ns", "pid,time", "--", "true"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1
    assert "no time namespace" in err and "labkit doctor" in err


def test_setup_failure_names_the_call(rootfs, labkit_cli, unchanged):
    """A step the kernel refuses inside the container: one line naming the
    system call, exit 125 as docker's."""
    r = labkit_cli("run", "--rm", "--rootfs", "/", "--ns", "mnt,pid", "--", "true")
    check_clean_error(r, "mount(")
    assert r.returncode == 125


def test_doctor_passes_here(labkit_cli):
    r = labkit_cli("doctor")
    assert r.returncode == 0, r.stdout
    for check in ("kernel", "namespaces", "cgroups", "overlayfs", "rootfs"):
        assert check in r.stdout
