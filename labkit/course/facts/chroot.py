"""Stage 1 facts: what chroot isolates (the view of files) and what it does
not (processes, hostname, network), and the breakout that pivot_root stops."""

import json
import os
import socket
import subprocess
import sys
import tempfile

from labkit import api
from labkit.images import builder
from labkit.linux.netdevice import link_names
from labkit.i18n import _
from labkit.course.facts import fact, host_link, lines

LAYER = "1 chroot"


def ls_root(rootfs="base"):
    inside = lines(api.run("ls /", ns="none", rootfs=rootfs, check=True).stdout)
    expected = sorted(n for n in os.listdir(builder.resolve(rootfs)) if not n.startswith("."))
    outside = sorted(n for n in os.listdir("/") if not n.startswith("."))
    return fact("chroot_ls_root", LAYER, _("ls / shows the rootfs, not the host's /"),
                inside, outside, sorted(inside) == expected and inside != outside)


def ps_sees_host(rootfs="base"):
    """With /proc mounted in a plain chroot, ps lists every host process."""
    r = api.run("echo $$; ps -e -o pid=", ns="none", rootfs=rootfs, check=True)
    out = lines(r.stdout)
    shell, pids = int(out[0]), {int(p) for p in out[1:]}
    host = {int(d) for d in os.listdir("/proc") if d.isdigit()}
    seen = len(pids & host) / max(1, len(host))
    return fact("chroot_ps_sees_host", LAYER, _("ps inside lists the host's processes (PID 1 included)"),
                _("{n} processes, shell pid {pid}", n=len(pids), pid=shell), _("{n} processes", n=len(host)),
                1 in pids and shell != 1 and seen > 0.8, shell_pid=shell)


def hostname_shared(rootfs="base"):
    inside = api.run("hostname", ns="none", rootfs=rootfs, check=True).stdout.strip()
    outside = socket.gethostname()
    return fact("chroot_hostname_shared", LAYER, _("hostname is the host's"), inside, outside,
                inside == outside)


def network_shared(rootfs="base"):
    with host_link() as extra:    # an interface added on the host just now
        inside = link_names(api.run("ip -o link", ns="none", rootfs=rootfs, check=True).stdout)
        outside = link_names(subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout)
    return fact("chroot_network_shared", LAYER, _("ip link shows the host's interfaces"),
                inside, outside, sorted(inside) == sorted(outside) and (extra is None or extra in inside),
                host_link=extra)


def _marker():
    fd, path = tempfile.mkstemp(prefix="outside-the-rootfs-", dir="/tmp")
    os.write(fd, b"a file on the host\n")
    os.close(fd)
    return path


def proc_root_escape(rootfs="base"):
    """/proc/PID/root of any process outside the chroot (here the parent,
    `labkit run` itself) is the host's root: a chrooted root user reads host
    files through it. Only with the guards off (--privileged): reading another
    process's /proc/PID/root needs CAP_SYS_PTRACE over it, which a default
    container lacks (labkit/security/defaults.py); chroot by itself stops nothing."""
    marker = _marker()
    try:
        r = api.run(f"cat /proc/$PPID/root{marker}", ns="none", rootfs=rootfs, privileged=True)
        outside = (_("{path} exists", path=marker) if os.path.exists(marker)
                   else _("{path} missing", path=marker))
        return fact("chroot_proc_root_escape", LAYER, _("a chroot reads host files via /proc/$PPID/root"),
                    r.stdout.strip() or r.stderr.strip(), outside,
                    r.returncode == 0 and "a file on the host" in r.stdout)
    finally:
        os.unlink(marker)


def breakout(rootfs="base"):
    """The classic escape, after chroot and after pivot_root (two facts)."""
    root = builder.resolve(rootfs)
    marker = _marker()
    try:
        results = {}
        for method in ("chroot", "pivot_root"):
            out = subprocess.run([sys.executable, "-m", "labkit.course.facts.breakout", root, marker, method],
                                 capture_output=True, text=True, check=True)
            results[method] = json.loads(out.stdout)
    finally:
        os.unlink(marker)
    c, p = results["chroot"], results["pivot_root"]
    return [
        fact("chroot_breakout", LAYER, _("a root process escapes a chroot (chroot + chdir ..)"),
             _("escaped, sees {n} host entries", n=len(c["listing"])) if c["escaped"] else _("stayed inside"),
             _("marker file on the host"), c["escaped"], listing=c["listing"]),
        fact("pivot_root_breakout_fails", LAYER, _("the same escape after pivot_root stays inside"),
             _("escaped") if p["escaped"] else _("stayed inside: / is still the rootfs"),
             _("marker file on the host"), not p["escaped"] and "error" not in p, listing=p.get("listing")),
    ]


def all_facts(rootfs="base"):
    return [ls_root(rootfs), ps_sees_host(rootfs), hostname_shared(rootfs),
            network_shared(rootfs), proc_root_escape(rootfs)] + breakout(rootfs)
