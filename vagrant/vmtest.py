"""`make vm-test`: the classroom VM's path, booted for real and checked inside.

What `vagrant up` does on a student's laptop, done here without Vagrant, a box
or a network, so that an instructor preparing a class (and we, before a
release) can see the whole path work on a clean machine:

1. a Debian guest image (--suite: trixie, Debian 13, the default box's
   release, or bookworm, Debian 12; --arch: amd64, or arm64 as on Apple
   Silicon) is built offline with debootstrap: the packages provision.sh
   names, preinstalled, plus a kernel, systemd, sshd and a `vagrant` user
   with passwordless sudo (what a Vagrant box has); an arm64 root is built
   by mmdebstrap, its maintainer scripts run through qemu-user (a
   binfmt_misc entry of its own, removed afterwards);
2. the wheels for requirements.txt are downloaded on the host for the
   guest's Python and machine (the guest gets them through PIP_FIND_LINKS,
   with PIP_NO_INDEX: it has no network); the pins are also resolved for
   Python 3.12 (Ubuntu 24.04, the documented other box);
3. QEMU boots it, with KVM when KVM works and full emulation otherwise, on
   user-mode networking with `restrict=on`: the guest reaches no network, not
   even the host; only ssh and JupyterLab's port are forwarded, on 127.0.0.1;
4. the repository is copied to /lab (as Vagrant's rsync folder would be) and
   the Vagrantfile's own provisioner is run the way Vagrant runs a shell
   provisioner: uploaded to /tmp/vagrant-shell, with its env, under
   `sudo -E -H bash -l`;
5. then `labkit doctor`, `labkit tour`, JupyterLab through the forwarded port,
   the lab's language (LABKIT_LANG=es make vm-test: JupyterLab's menus and
   labkit's hints in Spanish, as `LABKIT_LANG=es vagrant up` makes them),
   `sudo make -C /lab setup` (it must find /opt/labkit/venv, never make
   /lab/.venv), the notebook tests, the cgroup and namespace tests, and the
   leak scan, which must be empty.

Each step's wall time and result go into a table; the guest is shut down and
everything made here is removed, on success, failure, Ctrl-C or SIGTERM
(--keep keeps the image and the wheels for the next run). --until STEP stops
after that guest step (then the leak scan and the shutdown): `--arch arm64
--until tour` is what full emulation of another machine can do in an hour.

Usage: vmtest.py [--suite trixie|bookworm] [--arch amd64|arm64] [--until STEP] [--keep]
                 [--tests EXPR] [--dir DIR] [--accel auto|kvm|tcg] [--cpus N] [--memory MiB]
"""
import argparse
import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import lzma
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The Debian releases a guest can be, with the python3 each ships (the wheels
# are that version's). trixie is the default box's (bento/debian-13).
SUITES = {"trixie": "3.13", "bookworm": "3.11"}
DEFAULT_SUITE = "trixie"


class Arch:
    """A guest machine: Debian's name for it, QEMU's, the kernel package,
    the wheels' platform tags, the serial console's name."""

    def __init__(self, debian, qemu, machine, cpu, wheel, console, user_static=None, magic=None):
        self.debian, self.qemu, self.machine, self.cpu = debian, qemu, machine, cpu
        self.wheels = [f"manylinux2014_{wheel}", f"manylinux_2_17_{wheel}",
                       f"manylinux_2_28_{wheel}", "any"]
        self.console, self.user_static, self.magic = console, user_static, magic
        self.kernel_package = f"linux-image-{debian}"


# aarch64 ELF executables, for binfmt_misc (the e_machine field is 0xb7).
_AARCH64_ELF = (r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
                r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff")
ARCHES = {
    "amd64": Arch("amd64", "qemu-system-x86_64", "q35", "max", "x86_64", "ttyS0"),
    # cortex-a72 (ARMv8.0, what the wheels need) rather than -cpu max: full
    # emulation of max's pointer authentication costs a third of the speed.
    "arm64": Arch("arm64", "qemu-system-aarch64", "virt", "cortex-a72", "aarch64", "ttyAMA0",
                  user_static="qemu-aarch64-static", magic=_AARCH64_ELF),
}
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine)
# What a Vagrant box has beside the lab's own packages: a kernel and an initrd
# that mounts /dev/vda, systemd as init (networkd for the NAT interface), sshd
# and sudo for the provisioner, e2fsprogs for the root's fsck.
BOX_PACKAGES = ["systemd-sysv", "udev", "dbus", "openssh-server", "sudo", "e2fsprogs",
                "ca-certificates"]
# The tests run inside: every notebook (both ways) and the kernel-facing
# cgroup and namespace files. The clients, images and networks suites need
# podman, registries and more packages; they run in `make test` on a host.
GUEST_TESTS = ["tests/test_notebooks.py", "tests/cgroups", "tests/test_cgroups_run.py",
               "tests/test_isolation_facts.py"]
VENV = "/opt/labkit/venv"
WHEELS = "/var/cache/labkit/wheels"      # in the guest
SSH_WAIT = {"kvm": 120, "tcg": 900}       # seconds for sshd to answer after qemu starts
KVM_PROBE = 30                            # seconds to see the guest kernel print under KVM


def say(msg):
    print(f"vm-test: {msg}", flush=True)


class Failed(Exception):
    """A step's check did not hold: the message says what was seen."""


def run(cmd, log, timeout=None, **kw):
    """Run cmd with its output appended to the file log; raise Failed with the
    log's tail if it exits non-zero."""
    with open(log, "ab") as f:
        f.write(f"$ {shlex.join(cmd)}\n".encode())
        f.flush()
        # Its own process group: on a timeout, Ctrl-C or SIGTERM the whole
        # tree goes (debootstrap's chroot and qemu-user children too).
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)
        try:
            proc.wait(timeout)
        except BaseException as e:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            if isinstance(e, subprocess.TimeoutExpired):
                raise Failed(f"{cmd[0]} did not finish in {timeout} s; see {log}") from None
            raise
        r = proc
    if r.returncode != 0:
        raise Failed(f"{shlex.join(cmd)[:120]} exited {r.returncode}:\n{tail(log)}")


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


def pip_download(python, dest, log, arch=ARCHES["amd64"]):
    """The wheels of requirements.txt for CPython PYTHON on ARCH's Linux,
    wheels only: an sdist would need a compiler in the guest."""
    os.makedirs(dest, exist_ok=True)
    platforms = arch.wheels
    run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "--only-binary=:all:", "--python-version", python,
         *[a for p in platforms for a in ("--platform", p)],
         "-d", dest, "-r", os.path.join(REPO, "requirements.txt"), "setuptools>=70.1"],
        log, timeout=1800)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provision_packages(which="--list-packages"):
    out = subprocess.run(["bash", os.path.join(REPO, "vagrant/provision.sh"), which],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def archive_packages(mirror, suite, arch):
    """The names of the binary packages in SUITE's main for ARCH, from the
    archive's own index (a few MiB): debootstrap stops at a name it cannot
    find, and an optional package is not built for every machine."""
    url = f"{mirror.rstrip('/')}/dists/{suite}/main/binary-{arch}/Packages.xz"
    with urllib.request.urlopen(url, timeout=120) as r:
        text = lzma.decompress(r.read()).decode(errors="replace")
    return {line[9:].strip() for line in text.splitlines() if line.startswith("Package: ")}


def guest_packages(available):
    """provision.sh's packages that the guest's archive has: all of the
    required ones (a missing one is a failure, named), the optional ones
    (provision.sh --list-optional) where they exist."""
    optional = set(provision_packages("--list-optional"))
    wanted = provision_packages()
    missing = [p for p in wanted if p not in available and p not in optional]
    if missing:
        raise Failed(f"the archive has no {', '.join(missing)}: provision.sh would fail there too")
    return [p for p in wanted if p in available], sorted(optional - available)


def vagrant_provisioner(name="labkit"):
    """The Vagrantfile's provisioner NAME as Vagrant itself compiles it (inline
    script and env), read with tests/vm/vagrant_config.rb."""
    # Vagrant's data dir, the project's .vagrant dir and HOME in a temp dir,
    # the version check (a network call) off: nothing is left behind.
    with tempfile.TemporaryDirectory(prefix="labkit-vm-test-vagrant-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAGRANT_")}
        env.update(HOME=tmp, VAGRANT_HOME=f"{tmp}/vagrant.d", VAGRANT_DOTFILE_PATH=f"{tmp}/dot",
                   VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_CWD=REPO)
        out = subprocess.run(["ruby", os.path.join(REPO, "tests/vm/vagrant_config.rb"), REPO],
                             capture_output=True, text=True, cwd=REPO, env=env,
                             stdin=subprocess.DEVNULL, timeout=300)
    if out.returncode != 0:
        raise Failed(f"reading the Vagrantfile: {out.stderr.strip()[-400:]}")
    for p in json.loads(out.stdout)["provisioners"]:
        if p["name"] == name:
            return p["inline"], p["env"] or {}
    raise Failed(f"the Vagrantfile has no provisioner named {name!r}")


def vagrant_shell_script(inline, env):
    """The file Vagrant's shell provisioner uploads: the env exported, then the
    inline script."""
    lines = [f"export {k}={shlex.quote(str(v))}" for k, v in env.items()]
    return "\n".join(lines + [inline]) + "\n"


DEFAULT_MIRROR = "http://deb.debian.org/debian/"


def host_mirror():
    """The Debian archive this host's apt uses (a local mirror stays local;
    it serves every release, not only the host's), or Debian's own."""
    try:
        out = subprocess.run(["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)"],
                             capture_output=True, text=True).stdout
    except OSError:
        return DEFAULT_MIRROR
    for line in out.splitlines():
        uri, _, release = line.partition(" ")
        if "security" not in uri and "-" not in release and "/debian" in uri:
            return uri
    return DEFAULT_MIRROR


class Binfmt:
    """A binfmt_misc entry of our own that runs ARCH's executables through
    qemu-user while the foreign root is built (its maintainer scripts,
    useradd in the chroot). F: the interpreter is opened now, so it need not
    be inside the chroot. Removed by close(), and binfmt_misc unmounted if
    it was mounted here."""

    DIR = "/proc/sys/fs/binfmt_misc"

    def __init__(self, arch):
        self.name = f"labkit-vm-test-{arch.debian}"
        self.entry = os.path.join(self.DIR, self.name)
        self.mounted = False
        if not os.path.exists(os.path.join(self.DIR, "register")):
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", self.DIR], check=True)
            self.mounted = True
        interpreter = shutil.which(arch.user_static)
        if interpreter is None:
            raise Failed(f"{arch.user_static} is missing: apt-get install qemu-user-static")
        if os.path.exists(self.entry):
            self._remove()
        magic, mask = arch.magic
        with open(os.path.join(self.DIR, "register"), "w") as f:
            f.write(f":{self.name}:M::{magic}:{mask}:{interpreter}:F")

    def _remove(self):
        with open(self.entry, "w") as f:
            f.write("-1")

    def close(self):
        if os.path.exists(self.entry):
            self._remove()
        if self.mounted:
            subprocess.run(["umount", self.DIR])
            self.mounted = False


def umount_below(path):
    """Unmount everything mounted at or below path, deepest first (debootstrap
    leaves proc and sys mounted in the target when it is interrupted)."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for p in sorted({p for p in points if p == path or p.startswith(path + "/")},
                    key=len, reverse=True):
        subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL)


def remove_tree(path):
    if os.path.lexists(path):
        umount_below(path)
        subprocess.run(["rm", "-rf", "--one-file-system", path])


def die_with_parent():
    """prctl(PR_SET_PDEATHSIG, SIGKILL) in the child, before exec."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


class Guest:
    """A QEMU guest: the process, its ports and an ssh to it as `vagrant`."""

    def __init__(self, work, image, kernel, initrd, key, cpus, memory, arch=ARCHES["amd64"]):
        self.work, self.image, self.kernel, self.initrd, self.key = work, image, kernel, initrd, key
        self.cpus, self.memory, self.arch = cpus, memory, arch
        self.proc = None
        self.ssh_port = self.jupyter_port = None
        self.console = os.path.join(work, "console.log")

    def start(self, accel):
        self.stop()
        overlay = os.path.join(self.work, "run.qcow2")
        # The guest writes into a copy-on-write overlay: the image stays as
        # built, for --keep and for a second boot after a failed KVM probe.
        if os.path.exists(overlay):
            os.unlink(overlay)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", self.image,
                        overlay], check=True)
        self.ssh_port, self.jupyter_port = free_port(), free_port()
        net = (f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,"
               f"hostfwd=tcp:127.0.0.1:{self.jupyter_port}-:8888")
        cmd = [self.arch.qemu, "-nodefaults", "-no-user-config", "-display", "none",
               "-machine", self.arch.machine, "-m", str(self.memory), "-smp", str(self.cpus),
               "-kernel", self.kernel, "-initrd", self.initrd,
               "-append", f"root=/dev/vda rw console={self.arch.console} "
                          "systemd.unified_cgroup_hierarchy=1 net.ifnames=0 panic=-1",
               "-drive", f"file={overlay},format=qcow2,if=virtio,cache=unsafe",
               "-netdev", net, "-device", "virtio-net-pci,netdev=net0",
               "-device", "virtio-rng-pci",
               "-serial", f"file:{self.console}", "-no-reboot"]
        if accel == "kvm":
            cmd += ["-accel", "kvm", "-cpu", "host"]
        else:
            # amd64's -cpu max: the wheels' baseline (numpy wants SSE4.2 and
            # more) is there; one host thread per vCPU.
            cmd += ["-accel", "tcg,thread=multi", "-cpu", self.arch.cpu]
        log = open(os.path.join(self.work, "qemu.log"), "ab")
        # Its own process group, so that cleanup ends it whatever happens here;
        # and killed by the kernel if this script is (SIGKILL runs no cleanup).
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True, preexec_fn=die_with_parent)
        log.close()

    def console_text(self):
        try:
            with open(self.console, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_console(self, marker, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            if marker in self.console_text():
                return True
            time.sleep(1)
        return False

    def ssh_cmd(self, command):
        return ["ssh", "-i", self.key, "-p", str(self.ssh_port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                "-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=10",
                "vagrant@127.0.0.1", command]

    def wait_ssh(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise Failed(f"qemu exited {self.proc.returncode}:\n{tail(self.console)}")
            r = subprocess.run(self.ssh_cmd("true"), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=60)
            if r.returncode == 0:
                return
            time.sleep(3)
        raise Failed(f"no ssh answer in {seconds} s; the console's end:\n{tail(self.console)}")

    def sh(self, script, log, timeout, root=True, stdin=None):
        """Run a shell script in the guest, as root through sudo the way
        Vagrant does (-E keeps the env, -H root's home, bash -l a login shell)."""
        wrapped = f"sudo -E -H bash -l -c {shlex.quote(script)}" if root else script
        cmd = self.ssh_cmd(wrapped)
        if stdin is None:
            return run(cmd, log, timeout=timeout)
        with open(log, "ab") as f:
            r = subprocess.run(cmd, input=stdin, stdout=f, stderr=subprocess.STDOUT,
                               timeout=timeout)
        if r.returncode != 0:
            raise Failed(f"exited {r.returncode}:\n{tail(log)}")

    def output(self, script, timeout=120):
        r = subprocess.run(self.ssh_cmd(f"sudo -H bash -l -c {shlex.quote(script)}"),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise Failed(f"{script!r} exited {r.returncode}: {r.stderr.strip()[-300:]}")
        return r.stdout

    def shutdown(self, seconds=120):
        if self.proc is None or self.proc.poll() is not None:
            return True
        subprocess.run(self.ssh_cmd("sudo systemctl poweroff"), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)
        try:
            self.proc.wait(seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


class VMTest:
    def __init__(self, args):
        self.args = args
        self.arch = ARCHES[args.arch]
        self.work = os.path.abspath(args.dir)
        self.logs = os.path.join(self.work, "logs")
        self.image = os.path.join(self.work, f"{args.suite}-{args.arch}.img")
        self.root = os.path.join(self.work, "root")
        self.key = os.path.join(self.work, "id_ed25519")
        self.results = []          # (step, seconds, ok, detail)
        self.guest = None

    # -- the steps ---------------------------------------------------------

    def image_stamp(self, packages):
        h = hashlib.sha256()
        # What the image is made of: a change to any of it builds a new one.
        for part in [self.args.suite, self.arch.debian, " ".join(packages),
                     inspect.getsource(VMTest.configure_guest)]:
            h.update(part.encode() + b"\0")
        return h.hexdigest()

    def build_image(self, log):
        mirror = host_mirror()
        lab, absent = guest_packages(archive_packages(mirror, self.args.suite, self.arch.debian))
        packages = sorted(set(lab + BOX_PACKAGES + [self.arch.kernel_package]))
        stamp_file = self.image + ".stamp"
        stamp = self.image_stamp(packages)
        if all(os.path.exists(p) for p in (self.image, self.key, self.image + ".kernel",
                                           self.image + ".initrd")) and read(stamp_file) == stamp:
            return "kept from the last --keep run"
        for p in (self.image, stamp_file, self.key, self.key + ".pub", self.image + ".kernel",
                  self.image + ".initrd"):
            if os.path.exists(p):
                os.unlink(p)
        remove_tree(self.root)
        foreign = self.arch.debian != HOST_ARCH
        # Another machine's root: mmdebstrap unpacks with the host's apt and
        # dpkg and runs only the maintainer scripts under qemu-user, where
        # debootstrap's second stage would run all of itself emulated (its
        # Packages parsing alone took over half an hour).
        cmd = (["mmdebstrap", "--variant=minbase", f"--architectures={self.arch.debian}"] if foreign
               else ["debootstrap", "--variant=minbase", f"--arch={self.arch.debian}"])
        cmd += [f"--include={','.join(packages)}", self.args.suite, self.root, mirror]
        binfmt = None
        try:
            if foreign:
                binfmt = Binfmt(self.arch)
            run(cmd, log, timeout=7200)
            self.configure_guest(log)
            boot = os.path.join(self.root, "boot")
            kernels = sorted(f for f in os.listdir(boot) if f.startswith("vmlinuz-"))
            if not kernels:
                raise Failed("debootstrap installed no kernel in /boot")
            version = kernels[-1][len("vmlinuz-"):]
            shutil.copy(os.path.join(boot, kernels[-1]), self.image + ".kernel")
            shutil.copy(os.path.join(boot, f"initrd.img-{version}"), self.image + ".initrd")
            # mke2fs fills the file system from the directory: no loop device,
            # no mount. Sparse: 16 GiB apparent, what is written on disk.
            run(["mke2fs", "-q", "-t", "ext4", "-L", "labkit", "-d", self.root, self.image, "16G"],
                log, timeout=1800)
        finally:
            if binfmt is not None:
                binfmt.close()
            remove_tree(self.root)
        with open(stamp_file, "w") as f:
            f.write(stamp)
        said = f"{self.args.suite}/{self.arch.debian}, {len(packages)} packages named, kernel {version}"
        return said + (f"; not in this archive, left out: {', '.join(absent)}" if absent else "")

    def configure_guest(self, log):
        """What a Vagrant box has: the vagrant user with our key and
        passwordless sudo, DHCP on the NAT interface, a root fstab."""
        r = self.root

        def write(path, text, mode=0o644):
            path = os.path.join(r, path.lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, mode)

        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labkit-vm-test", "-f", self.key],
            log)
        write("/etc/hostname", "labkit\n")
        write("/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 labkit\n")
        write("/etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
        write("/etc/systemd/network/10-nat.network", "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n")
        write("/etc/sudoers.d/vagrant", "vagrant ALL=(ALL) NOPASSWD: ALL\n", 0o440)
        run(["chroot", r, "useradd", "-m", "-s", "/bin/bash", "vagrant"], log)
        ssh_dir = os.path.join(r, "home/vagrant/.ssh")
        os.makedirs(ssh_dir, mode=0o700)
        shutil.copy(self.key + ".pub", os.path.join(ssh_dir, "authorized_keys"))
        run(["chroot", r, "chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh"], log)
        run(["systemctl", f"--root={r}", "enable", "systemd-networkd", "ssh"], log)
        # No password for root and no getty to log into: ssh with the key only.
        run(["systemctl", f"--root={r}", "mask", "serial-getty@ttyS0.service"], log)

    def wheels(self, log):
        dest = os.path.join(self.work, "wheels")
        python = SUITES[self.args.suite]   # the guest's, as this host's may not be
        # A kept folder may hold another release's or machine's: start afresh.
        remove_tree(dest)
        pip_download(python, dest, log, self.arch)
        return f"{len(os.listdir(dest))} wheels for Python {python} on {self.arch.debian}"

    def wheels_312(self, log):
        dest = os.path.join(self.work, "wheels-3.12")
        try:
            pip_download("3.12", dest, log, self.arch)
            return f"{len(os.listdir(dest))} wheels resolve for Python 3.12"
        finally:
            remove_tree(dest)

    def boot(self, log):
        self.guest = Guest(self.work, self.image, self.image + ".kernel", self.image + ".initrd",
                           self.key, self.args.cpus, self.args.memory, self.arch)
        accel = self.args.accel
        if accel == "kvm" and self.arch.debian != HOST_ARCH:
            raise Failed(f"KVM runs {HOST_ARCH} guests here, not {self.arch.debian}: --accel tcg")
        if accel == "auto":
            accel = "kvm" if (os.access("/dev/kvm", os.R_OK | os.W_OK)
                              and self.arch.debian == HOST_ARCH) else "tcg"
            if accel == "kvm":
                # A nested KVM may accept the guest and never run it: the
                # kernel's first line on the console tells.
                self.guest.start("kvm")
                if not self.guest.wait_console("Linux version", KVM_PROBE):
                    with open(log, "a") as f:
                        f.write(f"KVM: no kernel output in {KVM_PROBE} s; full emulation\n")
                    accel = "tcg"
        if self.guest.proc is None or accel != "kvm":
            self.guest.start(accel)
        self.guest.wait_ssh(SSH_WAIT[accel])
        cpu = self.guest.output("grep -c ^processor /proc/cpuinfo").strip()
        fs = self.guest.output("stat -f -c %T /sys/fs/cgroup").strip()
        os_line = self.guest.output(". /etc/os-release && echo $PRETTY_NAME $(dpkg --print-architecture)")
        return (f"{os_line.strip()}, {accel}, {cpu} vCPUs, {self.args.memory} MiB, "
                f"/sys/fs/cgroup is {fs}")

    def copy_repo(self, log):
        files = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others",
                                "--exclude-standard"], capture_output=True, check=True).stdout
        files = b"\0".join(f for f in files.split(b"\0") if f and os.path.lexists(
            os.path.join(REPO, os.fsdecode(f))))
        tar = subprocess.run(["tar", "-C", REPO, "--null", "-T", "-", "-c"], input=files,
                             capture_output=True, check=True).stdout
        # Owned by vagrant, as a synced folder is.
        self.guest.sh("install -d -o vagrant -g vagrant /lab", log, 60)
        self.guest.sh("tar -x -C /lab", log, 600, root=False, stdin=tar)
        wheels = subprocess.run(["tar", "-C", os.path.join(self.work, "wheels"), "-c", "."],
                                capture_output=True, check=True).stdout
        self.guest.sh(f"mkdir -p {WHEELS} && tar -x -C {WHEELS}", log, 600, stdin=wheels)
        return f"{len(tar) >> 10} KiB of repository, {len(wheels) >> 20} MiB of wheels"

    def provision(self, log):
        inline, env = vagrant_provisioner("labkit")
        # The guest's only difference from a student's VM: pip's index is the
        # wheel folder, since the guest has no network.
        env = {**env, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELS}
        script = vagrant_shell_script(inline, env)
        self.guest.sh("cat > /tmp/vagrant-shell", log, 60, root=False, stdin=script.encode())
        self.guest.sh("chmod +x /tmp/vagrant-shell && /tmp/vagrant-shell", log, 3600)
        self.provision_url(log)
        return "provision.sh --service exit 0"

    def provision_url(self, log):
        inline, env = vagrant_provisioner("url")
        script = vagrant_shell_script(inline, env)
        self.guest.sh("cat > /tmp/vagrant-shell", log, 60, root=False, stdin=script.encode())
        self.guest.sh("chmod +x /tmp/vagrant-shell && /tmp/vagrant-shell", log, 600)

    def doctor(self, log):
        self.guest.sh("labkit doctor", log, 600)
        return tail(log, 1)

    def tour(self, log):
        self.guest.sh("labkit tour", log, 1800)
        return tail(log, 1)

    def jupyter(self, log):
        url = self.guest.output("labkit url").strip().splitlines()[-1]
        token = url.partition("token=")[2]
        if not token:
            raise Failed(f"labkit url printed no token: {url!r}")
        # Through the forward, from the host, as the student's browser does.
        req = urllib.request.Request(f"http://127.0.0.1:{self.guest.jupyter_port}/api/status",
                                     headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            status = json.load(r)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.guest.jupyter_port}/api",
                                    timeout=30) as r:
            version = json.load(r).get("version", "?")
        with open(log, "a") as f:
            f.write(json.dumps(status) + "\n")
        page = urllib.request.urlopen(
            f"http://127.0.0.1:{self.guest.jupyter_port}/lab?token={token}", timeout=30).read()
        if b"jupyter" not in page.lower():
            raise Failed("the forwarded port answered, but not with JupyterLab")
        return f"jupyter_server {version} answers on the forwarded port with the token"

    def language(self, log):
        """The lab's language as provisioned (LABKIT_LANG of `vagrant up`, kept
        in /etc/labkit/lang): JupyterLab's locale through the forward, the
        menus' Spanish in the bundle it serves, the service's LABKIT_LANG
        (its kernels' and terminals'), and labkit's own words."""
        lang = self.guest.output("cat /etc/labkit/lang").strip()
        url = self.guest.output("labkit url").strip().splitlines()[-1]
        token = url.partition("token=")[2]
        base = f"http://127.0.0.1:{self.guest.jupyter_port}"

        def get(path):
            req = urllib.request.Request(base + path, headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.load(r)
        plugin = get("/lab/api/settings/@jupyterlab/translation-extension:plugin")
        locale = plugin["schema"]["properties"]["locale"]["default"]
        want = {"es": "es_ES", "en": "en"}.get(lang)
        if locale != want:
            raise Failed(f"/etc/labkit/lang says {lang!r}, JupyterLab's locale is {locale!r}")
        service = self.guest.output("systemctl show labkit-jupyter -p Environment").strip()
        if f"LABKIT_LANG={lang}" not in service.split():
            raise Failed(f"the service's environment has no LABKIT_LANG={lang}: {service}")
        said = f"lab language {lang}: JupyterLab locale {locale}, the service's LABKIT_LANG={lang}"
        if lang == "es":
            menu = get("/lab/api/translations/es_ES")["data"]["jupyterlab"].get("menu\u0004File")
            hint = self.guest.output(f"LABKIT_LANG={lang} labkit lab hint 02.hostname 1").strip()
            if menu != ["Archivo"] or not hint.startswith("pista 1:"):
                raise Failed(f"Spanish expected: the File menu is {menu}, a hint says {hint[:40]!r}")
            said += f", File menu {menu[0]!r}, hints {hint[:8]!r}"
        with open(log, "a") as f:
            f.write(said + "\n")
        return said

    def make_setup(self, log):
        self.guest.sh("make -C /lab setup", log, 1800)
        if self.guest.output("test -e /lab/.venv && echo yes || echo no").strip() != "no":
            raise Failed("sudo make -C /lab setup made /lab/.venv instead of using " + VENV)
        return f"used {VENV}, no /lab/.venv"

    def pytest(self, log, paths):
        only = f" -k {shlex.quote(self.args.tests)}" if self.args.tests else ""
        self.guest.sh(f"cd /lab && {VENV}/bin/python -m pytest -q -p no:cacheprovider{only} "
                      + " ".join(paths), log, 3600)
        summary = [line for line in tail(log, 40).splitlines() if " passed" in line or " failed" in line]
        return summary[-1].strip("= ") if summary else tail(log, 1)

    def leaks(self, log):
        out = self.guest.output(f"cd /lab && {VENV}/bin/python -c "
                                + shlex.quote("from labkit.course.leaks import leftovers; "
                                              "print('\\n'.join(leftovers()))"))
        with open(log, "a") as f:
            f.write(out)
        left = [line for line in out.splitlines() if line.strip()]
        if left:
            raise Failed("left on the guest: " + "; ".join(left))
        return "nothing of labkit's left"

    def shutdown(self, log):
        if not self.guest.shutdown():
            raise Failed("the guest did not power off in 120 s")
        return "powered off"

    # -- running them -------------------------------------------------------

    def step(self, name, fn, *a):
        n = len(self.results) + 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
        log = os.path.join(self.logs, f"{n:02d}-{slug}.log")
        say(f"[{n}] {name} …")
        t0 = time.monotonic()
        try:
            detail, ok = fn(log, *a), True
        except Failed as e:
            detail, ok = str(e), False
        except subprocess.TimeoutExpired as e:
            detail, ok = f"timed out after {e.timeout} s: {tail(log)}", False
        except (OSError, subprocess.CalledProcessError, ValueError) as e:
            detail, ok = f"{type(e).__name__}: {e}", False
        seconds = time.monotonic() - t0
        self.results.append((name, seconds, ok, detail))
        say(f"[{n}] {name}: {'ok' if ok else 'FAILED'} in {seconds:.0f} s — {detail}")
        return ok

    def guest_steps(self, until=None):
        """The checks after provision, in order (UNTIL names them), up to and
        with UNTIL."""
        steps = [
            ("labkit doctor", self.doctor),
            ("labkit tour", self.tour),
            ("JupyterLab through the forwarded port", self.jupyter),
            ("the lab's language (LABKIT_LANG)", self.language),
            ("sudo make -C /lab setup", self.make_setup),
            ("notebook tests", self.pytest, GUEST_TESTS[:1]),
            ("cgroup and namespace tests", self.pytest, GUEST_TESTS[1:]),
        ]
        return steps[:UNTIL.index(until) + 1] if until else steps

    def main(self):
        # A kept work dir holds the last run's logs: start this run's afresh,
        # so no old log is read as this run's.
        remove_tree(self.logs)
        os.makedirs(self.logs)
        steps = [
            (f"guest image ({self.args.suite}/{self.arch.debian}, "
             f"{'debootstrap' if self.arch.debian == HOST_ARCH else 'mmdebstrap'})", self.build_image),
            (f"wheels for the guest (Python {SUITES[self.args.suite]})", self.wheels),
            ("wheels for Python 3.12 (Ubuntu 24.04)", self.wheels_312),
            ("boot", self.boot),
            ("copy the repository to /lab", self.copy_repo),
            ("provision as Vagrant does", self.provision),
            *self.guest_steps(self.args.until),
            ("leak scan", self.leaks),
            ("shutdown", self.shutdown),
        ]
        t0 = time.monotonic()
        for name, fn, *a in steps:
            ok = self.step(name, fn, *a)
            # A step the next ones stand on: stop at its failure.
            if not ok and fn in (self.build_image, self.wheels, self.boot, self.copy_repo,
                                 self.provision):
                break
        total = time.monotonic() - t0
        print(table(self.results, total), flush=True)
        return 0 if all(ok for _, _, ok, _ in self.results) and len(self.results) == len(steps) else 1

    def cleanup(self):
        if self.guest is not None:
            self.guest.stop()
        remove_tree(self.root)
        image = os.path.basename(self.image)
        keep = {image, image + ".stamp", image + ".kernel", image + ".initrd",
                "id_ed25519", "id_ed25519.pub", "wheels"}
        if self.args.keep:
            for name in os.listdir(self.work) if os.path.isdir(self.work) else []:
                if name not in keep and name != "logs":
                    remove_tree(os.path.join(self.work, name))
            say(f"kept the image and the wheels in {self.work} (logs in {self.logs})")
        else:
            remove_tree(self.work)


def table(results, total):
    width = max(len(name) for name, *_ in results)
    lines = [f"{'step':<{width}}  {'time':>7}  result", "-" * (width + 18)]
    for name, seconds, ok, detail in results:
        first = detail.splitlines()[0] if detail else ""
        lines.append(f"{name:<{width}}  {seconds:>6.0f}s  {'pass' if ok else 'FAIL'}  {first}")
    passed = sum(ok for _, _, ok, _ in results)
    lines.append("-" * (width + 18))
    lines.append(f"{'total':<{width}}  {total:>6.0f}s  {passed} passed, {len(results) - passed} failed")
    return "\n".join(lines)


# The guest steps by a short name, in their order (VMTest.guest_steps).
UNTIL = ["doctor", "tour", "jupyter", "language", "setup", "notebooks", "cgroups"]


def parse(argv):
    p = argparse.ArgumentParser(prog="make vm-test", description=__doc__.split("\n")[0])
    p.add_argument("--suite", choices=list(SUITES), default=DEFAULT_SUITE,
                   help="the guest's Debian release (default: %(default)s, the default box's)")
    p.add_argument("--arch", choices=list(ARCHES), default=HOST_ARCH or "amd64",
                   help="the guest's machine; another than the host's is emulated "
                        "(default: this host's, %(default)s)")
    p.add_argument("--until", choices=UNTIL,
                   help="stop after this guest step, then the leak scan and the shutdown")
    p.add_argument("--keep", action="store_true",
                   help="keep the guest image and the wheels for the next run")
    p.add_argument("--dir", default="/var/tmp/labkit-vm-test",
                   help="where the image, the logs and the guest's disk go (default: %(default)s)")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto",
                   help="KVM, full emulation (tcg) or KVM when it works (default)")
    p.add_argument("--tests", metavar="EXPR",
                   help="only the guest tests pytest -k EXPR selects (e.g. \"09-security\"), to look at one again")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--memory", type=int, default=4096, help="MiB (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if os.geteuid() != 0:
        print("vm-test: needs root (debootstrap, chroot); run 'sudo make vm-test'", file=sys.stderr)
        return 1
    arch = ARCHES[args.arch]
    tools = ["debootstrap", arch.qemu, "qemu-img", "ssh", "ssh-keygen", "mke2fs", "ruby"]
    if arch.debian != HOST_ARCH:
        tools += [arch.user_static, "mmdebstrap"]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        print(f"vm-test: missing {', '.join(missing)}; run it as 'sudo make vm-test', which installs "
              "them", file=sys.stderr)
        return 1
    test = VMTest(args)

    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    try:
        return test.main()
    except KeyboardInterrupt:
        print("vm-test: interrupted; removing what it made", file=sys.stderr)
        return 130
    finally:
        test.cleanup()


if __name__ == "__main__":
    sys.exit(main())
