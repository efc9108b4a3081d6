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
    assert {"debootstrap", "mmdebstrap", "qemu-system-x86", "qemu-system-arm", "qemu-utils"} <= set(r.stdout.split())


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


def test_the_defaults_are_the_default_boxs_release_on_this_machine():
    args = vmtest.parse([])
    # trixie: the Vagrantfile's default box, bento/debian-13 (test_vagrantfile.py).
    assert (args.suite, args.arch, args.until) == ("trixie", vmtest.HOST_ARCH, None)
    assert vmtest.SUITES["trixie"] == "3.13" and vmtest.SUITES["bookworm"] == "3.11"


def test_until_keeps_the_steps_up_to_it_then_the_scan_and_the_shutdown():
    test = vmtest.VMTest(vmtest.parse(["--until", "tour", "--arch", "arm64", "--suite", "bookworm"]))
    assert [name for name, *_ in test.guest_steps("tour")] == ["labkit doctor", "labkit tour"]
    assert len(test.guest_steps(None)) == len(vmtest.UNTIL)
    assert test.image.endswith("/bookworm-arm64.img")
    assert test.arch.kernel_package == "linux-image-arm64"
    assert "manylinux2014_aarch64" in test.arch.wheels


def test_an_optional_package_the_archive_lacks_is_left_out_a_required_one_named():
    optional = vmtest.provision_packages("--list-optional")
    listed = vmtest.provision_packages()
    assert optional == ["user-mode-linux"] and set(optional) <= set(listed)
    have = set(listed) - set(optional)
    assert vmtest.guest_packages(have) == (sorted(have, key=listed.index), optional)
    with pytest.raises(vmtest.Failed, match="the archive has no lxcfs"):
        vmtest.guest_packages(have - {"lxcfs"})


@pytest.mark.root
def test_the_binfmt_entry_is_its_own_and_goes(tmp_path):
    """The entry that runs a foreign root's executables (here through
    /usr/bin/true, for a machine this host is not): registered under its own
    name, removed by close(), binfmt_misc left mounted as it was found."""
    def mounted():
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == vmtest.Binfmt.DIR for line in f)
    before = mounted()
    arch = vmtest.Arch("s390x", "qemu-system-s390x", "s390-ccw-virtio", "max", "s390x", "ttysclp0",
                       user_static="true", magic=(r"\x7fELF\x02\x02\x01", r"\xff\xff\xff\xff\xff\xff\xff"))
    try:
        b = vmtest.Binfmt(arch)
    except PermissionError:
        pytest.skip("binfmt_misc cannot be registered here")
    try:
        with open(b.entry) as f:
            text = f.read()
        assert "enabled" in text and "interpreter /usr/bin/true" in text and "flags: F" in text
    finally:
        b.close()
    assert not os.path.exists(b.entry)
    assert mounted() == before


def test_a_step_that_times_out_takes_its_whole_tree_with_it(tmp_path):
    """debootstrap's chroot and qemu-user children are grandchildren: a
    timeout (or Ctrl-C) must end them too, not only the command it ran."""
    marker = f"labkit-vmtest-{os.getpid()}"
    with pytest.raises(vmtest.Failed, match="did not finish in 1 s"):
        vmtest.run(["bash", "-c", f"(exec -a {marker} sleep 300) & wait"], str(tmp_path / "log"), timeout=1)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert left == [], f"left running: {left}"
