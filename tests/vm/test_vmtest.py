"""vagrant/vmtest.py (`make vm-test`), the parts that need no guest: the whole
run boots a VM for 20-60 minutes and is not part of `make test`."""

import importlib.util
import os
import subprocess
import sys

import pytest

from .conftest import REPO, need, run

spec = importlib.util.spec_from_file_location("vmtest", REPO / "vagrant" / "vmtest.py")
vmtest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vmtest)


def test_the_uploaded_script_exports_the_env_then_runs_the_inline(tmp_path):
    script = vmtest.vagrant_shell_script('printf "%s|%s" "$VENV" "$ODD"',
                                         {"VENV": "/opt/labkit/venv", "ODD": "a b 'c' $HOME"})
    path = tmp_path / "vagrant-shell"
    path.write_text(script)
    r = run(["bash", path])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "/opt/labkit/venv|a b 'c' $HOME"


@pytest.mark.root
def test_the_provisioners_it_runs_are_the_vagrantfiles():
    need("vagrant")
    before = set(os.listdir(REPO))
    inline, env = vmtest.vagrant_provisioner("labkit")
    assert "vagrant/provision.sh --service" in inline
    assert env["VENV"] == "/opt/labkit/venv"
    inline, env = vmtest.vagrant_provisioner("url")
    assert "labkit-url.sh" in inline
    assert set(os.listdir(REPO)) == before, "reading the Vagrantfile left files in the repository"
    with pytest.raises(vmtest.Failed, match="no provisioner named 'nope'"):
        vmtest.vagrant_provisioner("nope")


def test_the_guest_gets_the_packages_provision_names():
    listed = vmtest.provision_packages()
    assert "python3-venv" in listed and "lxcfs" in listed
    assert "vagrant" not in listed, "the guest runs provision.sh without --test-tools"
    r = run(["bash", REPO / "vagrant/provision.sh", "--list-packages", "--vm-tools"])
    assert r.returncode == 0, r.stderr
    assert {"debootstrap", "qemu-system-x86", "qemu-utils"} <= set(r.stdout.split())


@pytest.mark.root
def test_remove_tree_unmounts_what_is_below_first(tmp_path):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("labkit\n")
    subprocess.run(["mount", "-t", "tmpfs", "none", root / "proc"], check=True)
    (root / "proc" / "inside").write_text("x")
    vmtest.remove_tree(str(root))
    assert not root.exists()
    with open("/proc/self/mountinfo") as f:
        assert str(root) not in f.read()


def test_the_table_has_a_row_a_step_and_the_totals():
    out = vmtest.table([("boot", 17.4, True, "tcg, 2 vCPUs"),
                        ("labkit tour", 301.0, False, "exited 1:\nlast line")], 318.4)
    lines = out.splitlines()
    assert lines[2].split() == ["boot", "17s", "pass", "tcg,", "2", "vCPUs"]
    assert lines[3].split()[:4] == ["labkit", "tour", "301s", "FAIL"]
    assert "last line" not in out, "a row shows a failure's first line only"
    assert lines[-1].split() == ["total", "318s", "1", "passed,", "1", "failed"]


def test_not_root_gets_one_line():
    # The script on standard input and the system's Python: the checkout
    # may be readable by root only (a clone under /root).
    r = run(["/usr/bin/python3", "-"], input=(REPO / "vagrant/vmtest.py").read_text(),
            stdin=None, user=65534, cwd="/")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "vm-test: needs root (debootstrap, chroot); run 'sudo make vm-test'"]


def test_a_bad_accelerator_is_refused_by_name():
    r = run([sys.executable, REPO / "vagrant/vmtest.py", "--accel", "hvf"])
    assert r.returncode == 2
    assert "invalid choice: 'hvf'" in r.stderr
