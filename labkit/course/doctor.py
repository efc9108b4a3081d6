"""`labkit doctor`: can this machine run the labs? Each line is one check;
missing things come with the command that fixes them. Exit 1 if anything
required is missing."""

import os
import platform
import shutil

from labkit.images import builder
from labkit.linux import namespaces
from labkit.i18n import _


def _cgroup_mode():
    try:
        from labkit.linux import cgroups
        return cgroups.mode()
    except Exception as e:
        return f"unknown ({e})"


def _overlay():
    with open("/proc/filesystems") as f:
        if any(line.split()[-1] == "overlay" for line in f if line.strip()):
            return True
    release = platform.release()
    return any(os.path.exists(f"/lib/modules/{release}/kernel/fs/overlayfs/overlay.ko{ext}")
               for ext in ("", ".xz", ".zst", ".gz"))


def _lxcfs():
    if not shutil.which("lxcfs"):
        return None
    return os.path.exists("/var/lib/lxcfs/proc/meminfo")


def checks():
    """(name, ok, detail, fix, required) for each check."""
    rows = []
    rel = platform.release()
    major_minor = tuple(int(x) for x in rel.split(".")[:2] if x.isdigit())
    rows.append(("kernel", major_minor >= (5, 6), rel, _("the time namespace needs Linux 5.6 or newer"), False))
    rows.append(("root", os.geteuid() == 0, f"euid {os.geteuid()}", _("run labkit with sudo"), True))
    have = namespaces.available()
    from labkit.linux.namespaces import NAMESPACES
    missing = [n for n in NAMESPACES if n not in have]
    rows.append(("namespaces", not missing, " ".join(have) + (_(" (missing: {names})", names=" ".join(missing)) if missing else ""),
                 _("a kernel built with CONFIG_*_NS for the missing ones"), True))
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            users = int(f.read())
    except OSError:
        users = 0
    rows.append(("user namespaces", users > 0, f"max_user_namespaces={users}",
                 "sysctl -w user.max_user_namespaces=15000", False))
    mode = _cgroup_mode()
    rows.append(("cgroups", mode in ("v1", "hybrid", "v2"), _("mode {mode}", mode=mode),
                 _("mount cgroup2 on /sys/fs/cgroup"), True))
    rows.append(("overlayfs", _overlay(), _("overlay filesystem"), "modprobe overlay", True))
    lx = _lxcfs()
    rows.append(("lxcfs", lx is not None, {None: _("not installed"), True: _("running"), False: _("installed, not running")}[lx],
                 "apt-get install lxcfs", False))
    for tool, package, required in [("busybox", "busybox-static", True), ("ps", "procps", True),
                                    ("free", "procps", True), ("ip", "iproute2", True),
                                    ("unshare", "util-linux", True), ("nsenter", "util-linux", True),
                                    ("nft", "nftables", False), ("ping", "iputils-ping", False),
                                    ("runc", "runc", False), ("linux.uml", "user-mode-linux", False)]:
        path = shutil.which(tool, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        rows.append((tool, path is not None, path or _("not found"), f"apt-get install {package}", required))
    cni = os.path.exists("/usr/lib/cni/bridge") and os.path.exists("/usr/lib/cni/host-local")
    rows.append(("CNI plugins", cni, "/usr/lib/cni: bridge, host-local" if cni else _("not installed"),
                 "apt-get install containernetworking-plugins", False))
    built = builder.list_rootfs()
    rows.append(("rootfs", "base" in built, " ".join(built) or _("none built"),
                 "sudo labkit rootfs build", True))
    return rows


def main():
    rows = checks()
    bad = False
    for name, ok, detail, fix, required in rows:
        mark = "ok " if ok else (_("MISSING") if required else _("warn"))
        line = f"{mark:<8}{name:<16}{detail}"
        if not ok:
            line += f"  -> {fix}"
            bad = bad or required
        print(line)
    print("\n" + (_("all required checks pass") if not bad else _("some required checks fail: see the -> fixes above")))
    return 1 if bad else 0
