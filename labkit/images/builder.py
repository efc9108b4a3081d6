"""`labkit rootfs build`: the base root filesystem every container starts from.

busybox-static gives a shell and ~300 applets in one static file. On top of it
go the real tools the labs compare inside and outside: procps (`ps`, `free`,
`top`), iproute2 (`ip`) and a few util-linux commands, copied from the host
with the shared libraries their own ELF headers ask for (read with ldd, never
a hand-written list of .so files).

procps matters: busybox `free` takes its totals from sysinfo(2), which no file
bind-mounted over /proc/meminfo can change, so only procps `free` can show a
container's memory limit (stage 3, lxcfs).
"""

import os
import stat
import sys
import time

# shutil, subprocess and re are imported where a build needs them: `labkit
# run` imports this module for resolve() alone, on the container start path.

from labkit import home
from labkit.errors import LabkitError, NotFound

BUSYBOX = "/bin/busybox"
# Real tools copied from the host, by command name (found on PATH). The shells
# come from the host too: Debian's busybox-static is built with
# FEATURE_SH_STANDALONE, so its `sh` runs its own applets before searching PATH
# and `free` typed at a busybox prompt would never reach procps.
REAL_TOOLS = ["dash", "bash", "ps", "free", "top", "pgrep", "pkill", "kill", "ip", "mount", "umount",
              "nsenter", "unshare", "lsns", "ipcs", "ipcmk", "ipcrm", "findmnt"]
TERMINFO = ["l/linux", "x/xterm", "x/xterm-256color", "v/vt100", "s/screen", "d/dumb"]
MANIFEST = ".labkit-rootfs"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

ETC_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hostname": "labkit\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    "etc/resolv.conf": "",
    "etc/profile": "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\h:\\w\\$ '\n",
    "etc/os-release": 'NAME="labkit base"\nID=labkit\nPRETTY_NAME="labkit base (busybox + procps + iproute2)"\n',
}


def resolve(name_or_path):
    """A rootfs given by name (under $LABKIT_HOME/rootfs) or by path."""
    if "/" in name_or_path or name_or_path in (".", ".."):
        path = os.path.abspath(name_or_path)
        label = path
    else:
        path = home.rootfs_dir(name_or_path)
        label = name_or_path
    if not os.path.isdir(path):
        hint = (f"build it with `labkit rootfs build {name_or_path}`" if "/" not in name_or_path
                else "give a directory that holds a root filesystem (bin/sh inside)")
        raise NotFound(f"rootfs '{label}' not found", hint)
    if not os.path.lexists(os.path.join(path, "bin/sh")):
        raise NotFound(f"rootfs '{label}' has no /bin/sh", "rebuild it with `labkit rootfs build --force`")
    return path


def list_rootfs():
    base = home.rootfs_dir()
    if not os.path.isdir(base):
        return []
    return sorted(n for n in os.listdir(base)
                  if os.path.isdir(os.path.join(base, n)) and ".tmp-" not in n)


def remove(name):
    import shutil
    path = home.rootfs_dir(name)
    if not os.path.isdir(path):
        raise NotFound(f"rootfs '{name}' not found", "`labkit rootfs ls` lists them")
    shutil.rmtree(path)


def _which(cmd):
    import shutil
    found = shutil.which(cmd, path=HOST_PATH)
    if not found:
        raise NotFound(f"host tool '{cmd}' not found",
                       "install procps, iproute2 and util-linux (apt-get install procps iproute2 util-linux)")
    return found


_LDD_LINE = r"(?:=>\s*)?(/\S+)\s+\(0x"


def shared_libraries(binary):
    """The shared objects a binary loads, as the dynamic loader resolves them."""
    import re
    import subprocess
    out = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if out.returncode != 0:  # "not a dynamic executable": a static binary
        return []
    return [m.group(1) for m in map(re.compile(_LDD_LINE).search, out.stdout.splitlines()) if m]


def _copy_into(root, host_path, dest=None):
    """Copy a host file to the same path inside ``root`` (following links)."""
    import shutil
    dest = os.path.join(root, (dest or host_path).lstrip("/"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.lexists(dest):
        os.unlink(dest)
    shutil.copy2(os.path.realpath(host_path), dest)
    return dest


def _layout(root):
    # Merged /usr, as Debian 12 and Ubuntu 24.04 have: /bin is usr/bin, etc.
    for d in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "proc", "sys", "dev",
              "tmp", "root", "run", "var/tmp", "home", "mnt", "opt", "srv"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for link, target in [("bin", "usr/bin"), ("sbin", "usr/sbin"),
                         ("lib", "usr/lib"), ("lib64", "usr/lib64")]:
        os.symlink(target, os.path.join(root, link))
    # Real device nodes, as debootstrap makes them: a plain chroot (stage 1,
    # no mount namespace) has no /dev of its own, and a shell needs /dev/null.
    # With a mount namespace a fresh tmpfs /dev covers these (labkit/linux/rootfs.py).
    for name, major, minor in [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
                               ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]:
        path = os.path.join(root, "dev", name)
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(path, 0o666)
        except PermissionError:
            pass  # not root: a rootfs for pivot_root containers only
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    os.chmod(os.path.join(root, "var/tmp"), 0o1777)
    os.chmod(os.path.join(root, "root"), 0o700)


def _busybox(root):
    if not os.path.exists(BUSYBOX):
        raise NotFound("busybox not found at /bin/busybox", "apt-get install busybox-static")
    if shared_libraries(BUSYBOX):
        raise LabkitError("/bin/busybox is dynamically linked", "apt-get install busybox-static")
    _copy_into(root, BUSYBOX, "/usr/bin/busybox")
    import subprocess
    applets = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = os.path.join(root, applet)
        if not os.path.lexists(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink("/usr/bin/busybox", link)
    return len(applets)


def _real_tools(root):
    libs = set()
    for cmd in REAL_TOOLS:
        host = _which(cmd)
        # Replace busybox's applet of the same name wherever it sits.
        for d in ("usr/bin", "usr/sbin"):
            applet = os.path.join(root, d, cmd)
            if os.path.islink(applet):
                os.unlink(applet)
        _copy_into(root, host, host if host.startswith("/usr/") else "/usr" + host)
        libs.update(shared_libraries(host))
    sh = os.path.join(root, "usr/bin/sh")
    if os.path.lexists(sh):
        os.unlink(sh)
    os.symlink("dash", sh)
    for lib in sorted(libs):
        _copy_into(root, lib)
    for entry in TERMINFO:
        for base in ("/usr/share/terminfo", "/lib/terminfo", "/usr/lib/terminfo"):
            if os.path.exists(os.path.join(base, entry)):
                _copy_into(root, os.path.join(base, entry), "/usr/share/terminfo/" + entry)
                break
    return len(REAL_TOOLS), len(libs)


def _etc(root):
    for rel, text in ETC_FILES.items():
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)
    os.symlink("/proc/self/mounts", os.path.join(root, "etc/mtab"))


def build(name="base", force=False, progress=None):
    """Build the base rootfs as ``name``; returns (path, seconds, built)."""
    say = progress or (lambda msg: None)
    dest = home.rootfs_dir(name)
    if os.path.isdir(dest) and not force:
        return dest, 0.0, False
    if "/" in name or name.startswith("."):
        raise LabkitError(f"bad rootfs name '{name}'", "use a plain name such as 'base'")
    import shutil
    start = time.monotonic()
    tmp = f"{dest}.tmp-{os.getpid()}"
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        say(f"[1/4] layout (merged /usr) in {tmp}")
        _layout(tmp)
        say("[2/4] busybox-static")
        applets = _busybox(tmp)
        say(f"      {applets} applets linked")
        say("[3/4] real tools and their shared libraries: " + " ".join(REAL_TOOLS))
        tools, libs = _real_tools(tmp)
        say(f"      {tools} tools, {libs} shared libraries")
        say("[4/4] /etc")
        _etc(tmp)
        seconds = time.monotonic() - start
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            f.write(f"built {time.strftime('%Y-%m-%dT%H:%M:%S')} in {seconds:.2f}s "
                    f"from busybox {applets} applets, {tools} real tools, {libs} libraries\n")
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest, seconds, True


def main_progress(msg):
    print(msg, file=sys.stderr, flush=True)
