"""Notebook 09's exercises: confine a container yourself, and prove it."""

import os
import stat
import subprocess

from labkit.i18n import _
from labkit.course.lab import Exercise, env, own_namespace, rm_line, running

# Opened in place (<>, never > which would create a file where none is).
DISK_CHECK = ("[ -b /dev/lab-check ] || exit 1; (exec 3</dev/lab-check) 2>/dev/null && echo read=yes; "
              "(exec 3<>/dev/lab-check) 2>/dev/null && echo write=yes")


def _status(pid, field):
    return _fields(pid).get(field, [])


def least_caps_verdict(status):
    """(done, why) for 09.least-caps from a /proc/PID/status read as
    {field: [values]}: CAP_NET_BIND_SERVICE effective, and no other
    capability anywhere it could come back from — the permitted set, or the
    bounding set that a setuid-root program would fill its sets from."""
    from labkit.linux.process import capability_names
    want = ["CAP_NET_BIND_SERVICE"]
    effective, permitted, bounding = (capability_names(status[f][0]) for f in ("CapEff", "CapPrm", "CapBnd"))
    extra = [n for n in effective + permitted if n not in want]
    if extra:
        extra = sorted(set(extra))
        return False, _("it still holds {n} more: {names}{more}", n=len(extra), names=', '.join(extra[:5]),
                        more=' ...' if len(extra) > 5 else '')
    if effective != want:
        return False, _("it holds no capability at all: a web server could not bind port 80")
    spare = [n for n in bounding if n not in want]
    if spare:
        return False, _("its effective set is right, but its bounding set still has {n} more ({names}{more}): "
                        "a setuid-root program it runs would get them back", n=len(spare),
                        names=", ".join(spare[:3]), more=" ..." if len(spare) > 3 else "")
    return True, _("its init holds CAP_NET_BIND_SERVICE and nothing else, in every set")


def _fields(pid):
    with open(f"/proc/{pid}/status") as f:
        return {k: v.split() for k, _sep, v in (line.partition(":") for line in f)}


def _least_caps():
    pid, why = running("lab09-caps")
    if pid is None:
        return False, why
    return least_caps_verdict(_fields(pid))


def _no_new_privs():
    pid, why = running("lab09-nnp")
    if pid is None:
        return False, why
    if _status(pid, "NoNewPrivs") != ["1"]:
        return False, _("NoNewPrivs is 0: a setuid program inside would run as its owner")
    # The flag must be the container's, not only its init's: a process that
    # enters later (labkit exec, docker exec) gets it from the runtime.
    later = subprocess.run(["labkit", "exec", "lab09-nnp", "grep", "NoNewPrivs", "/proc/self/status"],
                           capture_output=True, text=True, timeout=60, env=env()).stdout.split()
    if later[-1:] != ["1"]:
        return False, _("its init has NoNewPrivs 1, but a process that enters it later (labkit exec) has "
                        "{value}: the flag is the init's own doing, not the container's", value=later[-1:] or "?")
    return True, _("NoNewPrivs: 1, in its init and in every process that enters — no setuid program can raise it")


def _userns():
    pid, why = running("lab09-remap")
    if pid is None:
        return False, why
    uid = _status(pid, "Uid")[0]
    if not own_namespace(pid, "user"):
        return False, _("it has no user namespace of its own: its uid {uid} is the host's uid {uid}, and a "
                        "root inside it would be the host's root", uid=uid)
    root = None
    with open(f"/proc/{pid}/uid_map") as f:
        for line in f:
            inside, outside, count = map(int, line.split())
            if inside <= 0 < inside + count:
                root = outside - inside
    if root is None:
        return False, _("its user namespace maps no uid 0: nothing inside can be root")
    if root == 0:
        return False, _("its user namespace maps uid 0 to the host's 0: root inside is root outside")
    return True, _("root inside is uid {root} on the host (its init runs as host uid {uid})", root=root, uid=uid)


def _disk_read_only():
    pid, why = running("lab09-disk")
    if pid is None:
        return False, why
    # The node is made from the host, in the container's /dev (its tmpfs):
    # what is judged is the device cgroup, not whether the container may mknod.
    dev = os.open(f"/proc/{pid}/root/dev", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        try:
            os.unlink("lab-check", dir_fd=dev)
        except FileNotFoundError:
            pass
        os.mknod("lab-check", stat.S_IFBLK | 0o600, os.makedev(7, 0), dir_fd=dev)
        r = subprocess.run(["labkit", "exec", "lab09-disk", "sh", "-c", DISK_CHECK], capture_output=True,
                           text=True, timeout=60, env=env())
    finally:
        try:
            os.unlink("lab-check", dir_fd=dev)
        except FileNotFoundError:
            pass
        os.close(dev)
    seen = set(r.stdout.split())
    if seen == {"read=yes"}:
        return True, _("a loop device opens for reading and not for writing")
    if "write=yes" in seen:
        return False, _("a loop device opens for writing too: the rule allows more than reading")
    return False, _("a loop device does not open at all: the device cgroup still refuses it")


def _no_raw():
    pid, why = running("lab09-noraw")
    if pid is None:
        return False, why
    with open(f"/proc/{pid}/net/dev") as f:
        links = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    if links == ["lo"] or not links:
        return False, _("it has no network but lo: start it on the network labkit (--network labkit), "
                        "where a frame of its own would reach its neighbours")
    from labkit.course.facts.security import decode
    from labkit.security.defaults import DEFAULT_CAPABILITIES
    bounding = decode(_status(pid, "CapBnd")[0])
    if "CAP_NET_RAW" in bounding:
        return False, _("CAP_NET_RAW is still in its bounding set: a process in it opens a packet socket "
                        "and can spoof ARP")
    effective = decode(_status(pid, "CapEff")[0])
    lost = [c for c in DEFAULT_CAPABILITIES if c != "CAP_NET_RAW" and c not in effective]
    if lost:
        return False, _("it lost more than CAP_NET_RAW: {names} too; drop only that one",
                        names=", ".join(sorted(lost)))
    from labkit.networks import frames
    if frames.packet_socket_opens(pid):
        return False, _("the kernel still gives it a packet socket")
    return True, _("the kernel refuses it a packet socket; it keeps Docker's other {n} capabilities",
                   n=len(DEFAULT_CAPABILITIES) - 1)


EXERCISES = [
    Exercise("09.least-caps", "only the capability a web server needs",
             "Start a detached container named lab09-caps (running `sleep 600`) whose init keeps "
             "CAP_NET_BIND_SERVICE and no other capability.",
             ["capabilities(7): which capability lets a process bind a port below 1024?",
              "--cap-drop ALL takes every capability away; --cap-add gives one back",
              "sudo labkit run -d --name lab09-caps --cap-drop ALL --cap-add NET_BIND_SERVICE -- sleep 600"],
             _least_caps,
             ["labkit run -d --name lab09-caps --cap-drop ALL --cap-add NET_BIND_SERVICE -- sleep 600"],
             [rm_line("lab09-caps")]),
    Exercise("09.no-new-privs", "setuid gains nothing",
             "Start a detached container named lab09-nnp (running `sleep 600`) in which no program can "
             "gain privileges at execve: NoNewPrivs 1.",
             ["prctl(2), PR_SET_NO_NEW_PRIVS; grep NoNewPrivs /proc/PID/status",
              "Docker's flag for it is a --security-opt",
              "sudo labkit run -d --name lab09-nnp --security-opt no-new-privileges -- sleep 600"],
             _no_new_privs,
             ["labkit run -d --name lab09-nnp --security-opt no-new-privileges -- sleep 600"],
             [rm_line("lab09-nnp")]),
    Exercise("09.userns", "root inside, nobody outside",
             "Start a detached container named lab09-remap (running `sleep 600`) whose root is an "
             "unprivileged user of the host.",
             ["user_namespaces(7); compare /proc/PID/status Uid with /proc/PID/uid_map",
              "labkit run has a --userns mode for it",
              "sudo labkit run -d --name lab09-remap --userns remap -- sleep 600"],
             _userns,
             ["labkit run -d --name lab09-remap --userns remap -- sleep 600"],
             [rm_line("lab09-remap"), "labkit rmi lab09/user:1000 >/dev/null 2>&1 || true",
              "labkit builder prune >/dev/null", "rm -rf /tmp/lab09-user"]),
    Exercise("09.device-rule", "a disk it may read, never write",
             "Start a detached container named lab09-disk (running `sleep 600`) whose device cgroup "
             "lets it open loop block devices (major 7) for reading, and for nothing else.",
             ["the kernel's Documentation/admin-guide/cgroup-v1/devices.rst: a rule is TYPE MAJOR:MINOR ACCESS",
              "docker run's --device-cgroup-rule adds one rule to the defaults",
              "sudo labkit run -d --name lab09-disk --device-cgroup-rule 'b 7:* r' -- sleep 600"],
             _disk_read_only,
             ["labkit run -d --name lab09-disk --device-cgroup-rule 'b 7:* r' -- sleep 600"],
             [rm_line("lab09-disk")]),
    Exercise("09.no-raw", "no hand-made frames on the bridge",
             "Start a detached container named lab09-noraw (running `sleep 600`) on the network labkit "
             "that cannot open a packet socket, and so cannot spoof ARP, but keeps Docker's other default "
             "capabilities.",
             ["capabilities(7): which capability lets a process use RAW and PACKET sockets?",
              "--cap-drop takes one capability away and leaves the others",
              "sudo labkit run -d --name lab09-noraw --network labkit --cap-drop NET_RAW -- sleep 600"],
             _no_raw,
             ["labkit run -d --name lab09-noraw --network labkit --cap-drop NET_RAW -- sleep 600"],
             [rm_line("lab09-noraw"), "labkit network rm labkit >/dev/null 2>&1 || true"]),
]


OTHERS = ("CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT MKNOD "
          "AUDIT_WRITE SETFCAP").split()

ALTERNATIVES = {
    "09.least-caps": {
        "lowercase names, with the CAP_ prefix": [
            "labkit run -d --name lab09-caps --cap-drop all --cap-add cap_net_bind_service -- sleep 600"],
        "--flag=value, the flags in another order": [
            "labkit run --cap-add=NET_BIND_SERVICE -d --cap-drop=ALL --name=lab09-caps -- busybox sleep 600"],
    },
    "09.no-new-privs": {
        "no-new-privileges:true": ["labkit run -d --name lab09-nnp --security-opt no-new-privileges:true -- sleep 600"],
        "--security-opt=no-new-privileges=true": [
            "labkit run -d --security-opt=no-new-privileges=true --name lab09-nnp -- /bin/sleep 600"],
    },
    "09.userns": {
        "--userns=remap": ["labkit run -d --name lab09-remap --userns=remap -- sleep 600"],
        "the image named, busybox's sleep": [
            "labkit run -d --userns remap --name lab09-remap labkit/base busybox sleep 600"],
    },
    "09.device-rule": {
        "--cap-drop ALL too": ["labkit run -d --name lab09-disk --cap-drop ALL --device-cgroup-rule 'b 7:* r' -- sleep 600"],
        "the loop device's minor 0 named, --flag=value": [
            "labkit run -d --name=lab09-disk --device-cgroup-rule='b 7:0 r' -- sleep 600"],
    },
    "09.no-raw": {
        "lowercase, without the prefix": ["labkit run -d --name lab09-noraw --network labkit --cap-drop net_raw -- sleep 600"],
        "CAP_NET_RAW, --network= after it": ["labkit run -d --name lab09-noraw --cap-drop CAP_NET_RAW --network=labkit -- sleep 600"],
        "every capability dropped, the others given back": [
            "labkit run -d --name lab09-noraw --network labkit --cap-drop ALL "
            + " ".join(f"--cap-add {c}" for c in OTHERS) + " -- sleep 600"],
    },
}

NEAR_MISSES = {
    "09.least-caps": {
        "every capability dropped": (["labkit run -d --name lab09-caps --cap-drop ALL -- sleep 600"], "no capability"),
        "NET_BIND_SERVICE added to the defaults": (
            ["labkit run -d --name lab09-caps --cap-add NET_BIND_SERVICE -- sleep 600"], "it still holds 13 more"),
    },
    "09.no-new-privs": {
        "nothing asked": (["labkit run -d --name lab09-nnp -- sleep 600"], "NoNewPrivs is 0"),
        "set by the init itself (setpriv --nnp)": (["labkit run -d --name lab09-nnp -- setpriv --nnp sleep 600"],
                                                   "the flag is the init's own doing"),
        "no-new-privileges:false": (
            ["labkit run -d --name lab09-nnp --security-opt no-new-privileges:false -- sleep 600"], "NoNewPrivs is 0"),
    },
    "09.userns": {
        "nothing asked": (["labkit run -d --name lab09-remap -- sleep 600"], "no user namespace of its own"),
        "an unprivileged user, no user namespace": (
            ["mkdir -p /tmp/lab09-user && printf 'FROM labkit/base\\nUSER 1000\\n' > /tmp/lab09-user/Containerfile",
             "labkit build -t lab09/user:1000 /tmp/lab09-user && rm -rf /tmp/lab09-user",
             "labkit run -d --name lab09-remap lab09/user:1000 sleep 600"], "its uid 1000 is the host's uid 1000"),
    },
    "09.device-rule": {
        "read and write": (["labkit run -d --name lab09-disk --device-cgroup-rule 'b 7:* rw' -- sleep 600"],
                           "for writing too"),
        "no rule": (["labkit run -d --name lab09-disk -- sleep 600"], "does not open at all"),
        "a character device rule": (["labkit run -d --name lab09-disk --device-cgroup-rule 'c 7:* r' -- sleep 600"],
                                    "does not open at all"),
    },
    "09.no-raw": {
        "nothing dropped": (["labkit run -d --name lab09-noraw --network labkit -- sleep 600"],
                            "still in its bounding set"),
        "no network": (["labkit run -d --name lab09-noraw --cap-drop NET_RAW -- sleep 600"], "no network but lo"),
        "every capability dropped": (["labkit run -d --name lab09-noraw --network labkit --cap-drop ALL -- sleep 600"],
                                     "lost more than CAP_NET_RAW"),
    },
}
