"""Stage 2 facts: each namespace of the seed text, inside against outside,
and the namespace inodes that prove it."""

import os
import re
import socket
import subprocess

from labkit import api
from labkit.linux import mountinfo, namespaces
from labkit.i18n import _
from labkit.linux.netdevice import link_names
from labkit.course.facts import fact, host_link, lines

LAYER = "2 namespaces"


def pid_one(rootfs="base"):
    """PID + MNT: the shell is PID 1 and ps (reading a fresh /proc) sees only
    the container's processes."""
    out = lines(api.run("echo $$; ps -e -o pid=", ns="pid,mnt", rootfs=rootfs, check=True).stdout)
    shell, pids = int(out[0]), [int(p) for p in out[1:]]
    host = sum(1 for d in os.listdir("/proc") if d.isdigit())
    return fact("pid_is_one", LAYER, _("PID ns: the first process is PID 1; ps shows only the container"),
                _("pid {pid}, ps lists {n}", pid=shell, n=len(pids)), _("ps lists {n}", n=host),
                shell == 1 and 1 in pids and len(pids) <= 3 and host > len(pids),
                ps_inside=len(pids), ps_outside=host)


def pid_without_mnt(rootfs="base"):
    """PID alone: the shell is PID 1, but ps still reads the host's /proc."""
    out = lines(api.run("echo $$; ps -e -o pid= | wc -l", ns="pid", rootfs=rootfs, check=True).stdout)
    shell, count = int(out[0]), int(out[1])
    host = sum(1 for d in os.listdir("/proc") if d.isdigit())
    return fact("pid_needs_own_proc", LAYER, _("PID ns alone: PID 1, yet ps shows the host's /proc"),
                _("pid {pid}, ps lists {n}", pid=shell, n=count), _("ps lists {n}", n=host),
                shell == 1 and count > 0.8 * host)


def uts(rootfs="base", hostname="labkit-box"):
    before = socket.gethostname()
    inside = api.run("hostname", ns="uts", hostname=hostname, rootfs=rootfs, check=True).stdout.strip()
    after = socket.gethostname()
    return fact("uts_hostname", LAYER, _("UTS ns: hostname changes inside only"), inside, after,
                inside == hostname and after == before != hostname)


def net(rootfs="base"):
    with host_link() as extra:    # an interface added on the host just now
        r = api.run("ip -o link; ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-answers", ns="net",
                    rootfs=rootfs, check=True)
        outside = link_names(subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout)
    inside = link_names(r.stdout)
    return fact("net_only_lo", LAYER, _("NET ns: ip link shows only lo (up: 127.0.0.1 answers)"),
                inside, outside, inside == ["lo"] and "lo-answers" in r.stdout
                and (extra is None or extra in outside), host_link=extra)


def ipc(rootfs="base"):
    """A System V shared-memory segment made on the host is invisible in a
    new IPC namespace (and visible without one)."""
    made = subprocess.run(["ipcmk", "-M", "4096"], capture_output=True, text=True, check=True).stdout
    shmid = re.search(r"(\d+)", made).group(1)
    try:
        inside = api.run("ipcs -m", ns="ipc", rootfs=rootfs, check=True).stdout
        control = api.run("ipcs -m", ns="none", rootfs=rootfs, check=True).stdout
    finally:
        subprocess.run(["ipcrm", "-m", shmid], capture_output=True)
    seen_inside = re.search(rf"\b{shmid}\b", inside) is not None
    seen_outside = re.search(rf"\b{shmid}\b", control) is not None
    return fact("ipc_private", LAYER, _("IPC ns: ipcs does not see the host's shm segment"),
                _("segment visible") if seen_inside else _("segment not listed"),
                _("segment visible") if seen_outside else _("segment not listed"),
                not seen_inside and seen_outside, shmid=int(shmid))


def mnt(rootfs="base"):
    # mount(2) needs CAP_SYS_ADMIN, which a default container lacks: this
    # lesson is about the namespace, so the guard is off (--privileged).
    r = api.run("mount -t tmpfs lab-tmpfs /mnt && grep -c lab-tmpfs /proc/self/mounts", ns="mnt",
                rootfs=rootfs, check=True, privileged=True)
    host = sum(1 for m in mountinfo.read() if m.source == "lab-tmpfs")
    return fact("mnt_private", LAYER, _("MNT ns: a mount made inside does not appear on the host"),
                _("{n} tmpfs mounted", n=r.stdout.strip()), _("{n} on the host", n=host),
                r.stdout.strip() == "1" and host == 0)


def user(rootfs="base"):
    with api.Container("sleep 300", ns="user,mnt,pid,uts,ipc,net", rootfs=rootfs) as c:
        inside = c.exec("id -u; cat /proc/self/uid_map").stdout.split()
        with open(f"/proc/{c.pid}/status") as f:
            uid = next(line.split()[1] for line in f if line.startswith("Uid:"))
    return fact("user_root_unprivileged", LAYER, _("USER ns: uid 0 inside is an unprivileged uid outside"),
                f"uid {inside[0]}", f"uid {uid}", inside[0] == "0" and int(uid) >= 1000,
                uid_map=" ".join(inside[1:]))


def inodes(chosen, rootfs="base"):
    """Start a container with exactly ``chosen`` namespaces; the inodes of
    /proc/PID/ns/* differ from the host's for those and no others."""
    chosen = frozenset(chosen)
    with api.Container("sleep 300", ns=",".join(sorted(chosen)) or "none", rootfs=rootfs) as c:
        inside = namespaces.inodes(c.pid)
    outside = namespaces.inodes("self")
    differ = {n for n in inside if inside[n] != outside[n]}
    label = "+".join(sorted(chosen)) or "none"
    return fact(f"ns_inodes_{label}", LAYER, _("/proc/PID/ns inodes differ for exactly: {label}", label=label),
                _("new: {kinds}", kinds=" ".join(sorted(differ)) or _("none")),
                _("shared: {kinds}", kinds=" ".join(sorted(set(inside) - differ))), differ == chosen,
                chosen=sorted(chosen), differ=sorted(differ), inodes_inside=inside, inodes_outside=outside)


def exec_joins(rootfs="base"):
    """`labkit exec` lands in the container's namespaces (setns)."""
    with api.Container("sleep 300", rootfs=rootfs) as c:
        names = sorted(c.state["config"]["namespaces"])
        out = c.exec("for n in " + " ".join(names) + "; do readlink /proc/self/ns/$n; done").stdout
        seen = dict(re.findall(r"(\w+):\[(\d+)\]", out))
        init = namespaces.inodes(c.pid)
    equal = [n for n in names if int(seen.get(n, -1)) == init[n]]
    return fact("exec_joins", LAYER, _("exec joins the init's namespaces (setns), as nsenter does"),
                _("{equal}/{n} inodes equal to the init's", equal=len(equal), n=len(names)),
                _("init: {kinds}", kinds=" ".join(names)),
                equal == names, seen=seen, init={n: init[n] for n in names})


def vm_beside_container(rootfs="base"):
    """The seed's "aislación de kernel", measured: a container runs on the
    host's kernel (uname -r is the host's, and it starts in milliseconds); a
    virtual machine boots a kernel of its own — here user-mode Linux, a real
    Linux kernel run as a process (labkit/course/uml), booted to run one shell."""
    import time
    from labkit.course import uml
    t0 = time.monotonic()
    inside = api.run("uname -r", ns="pid,net,ipc,mnt,uts", rootfs=rootfs, check=True).stdout.strip()
    container_s = time.monotonic() - t0
    host = os.uname().release
    if not uml.available():
        return fact("vm_beside_container", LAYER, _("a container runs the host's kernel; a VM boots its own"),
                    inside, _("{path} is not installed (apt-get install user-mode-linux)", path=uml.LINUX_UML), None,
                    applies=False, host=host)
    vm = uml.boot(['uname -r > "$OUT/release"'], timeout=120, mem="256M")
    release = vm.files.get("release", "").strip() or None
    return fact("vm_beside_container", LAYER, _("a container runs the host's kernel; a VM boots its own"),
                _("container: uname -r {release}, started and gone in {seconds:.2f} s", release=inside,
                  seconds=container_s),
                _("VM (user-mode Linux): uname -r {release}, booted in {boot} s, {total} s in all", release=release,
                  boot=vm.boot_seconds, total=vm.total_seconds),
                inside == host and release is not None and release != host and vm.total_seconds > container_s,
                applies=True, host=host, container_release=inside, vm_release=release,
                container_seconds=round(container_s, 2), vm_boot_seconds=vm.boot_seconds,
                vm_total_seconds=vm.total_seconds)


def all_facts(rootfs="base"):
    facts = [pid_one(rootfs), pid_without_mnt(rootfs), uts(rootfs), net(rootfs), ipc(rootfs),
             mnt(rootfs), user(rootfs), exec_joins(rootfs)]
    for chosen in ({"pid"}, {"net"}, {"ipc"}, {"mnt"}, {"uts"}, {"cgroup"}, {"time"},
                   {"user", "mnt", "pid"}, {"pid", "net", "ipc", "mnt", "uts", "cgroup"}):
        if set(chosen) <= set(namespaces.available()):
            facts.append(inodes(chosen, rootfs))
    return facts
