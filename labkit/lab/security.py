"""Notebook 09's exercises: confine a container yourself, and prove it."""

import subprocess

from ..i18n import _
from . import Exercise, env, rm_line, running

DISK_CHECK = ("mknod /dev/lab-check b 7 0 2>/dev/null; (exec 3</dev/lab-check) 2>/dev/null && echo read=yes; "
              "(exec 3>/dev/lab-check) 2>/dev/null && echo write=yes; rm -f /dev/lab-check")


def _status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split()[1:]
    return []


def _least_caps():
    pid, why = running("lab09-caps")
    if pid is None:
        return False, why
    from ..facts.security import decode
    names = decode(_status(pid, "CapEff")[0])
    if names == ["CAP_NET_BIND_SERVICE"]:
        return True, _("its init holds CAP_NET_BIND_SERVICE and nothing else")
    extra = [n for n in names if n != "CAP_NET_BIND_SERVICE"]
    if extra:
        return False, _("it still holds {n} more: {names}{more}", n=len(extra), names=', '.join(extra[:5]),
                         more=' ...' if len(extra) > 5 else '')
    return False, _("it holds no capability at all: a web server could not bind port 80")


def _no_new_privs():
    pid, why = running("lab09-nnp")
    if pid is None:
        return False, why
    if _status(pid, "NoNewPrivs") == ["1"]:
        return True, _("NoNewPrivs: 1 — no setuid program can raise it")
    return False, _("NoNewPrivs is 0: a setuid program inside would run as its owner")


def _userns():
    pid, why = running("lab09-remap")
    if pid is None:
        return False, why
    uid = _status(pid, "Uid")[0]
    with open(f"/proc/{pid}/uid_map") as f:
        first = f.read().split()[:2]
    if uid != "0" and first[:1] == ["0"]:
        return True, _("root inside is uid {uid} on the host", uid=uid)
    return False, _("its init is uid {uid} on the host: root inside is root outside", uid=uid)


def _disk_read_only():
    pid, why = running("lab09-disk")
    if pid is None:
        return False, why
    r = subprocess.run(["labkit", "exec", "lab09-disk", "sh", "-c", DISK_CHECK], capture_output=True,
                       text=True, timeout=60, env=env())
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
    from ..facts.security import decode
    from ..security import DEFAULT_CAPABILITIES
    bounding = decode(_status(pid, "CapBnd")[0])
    if "CAP_NET_RAW" in bounding:
        return False, _("CAP_NET_RAW is still in its bounding set: a process in it opens a packet socket "
                        "and can spoof ARP")
    effective = decode(_status(pid, "CapEff")[0])
    lost = [c for c in DEFAULT_CAPABILITIES if c != "CAP_NET_RAW" and c not in effective]
    if lost:
        return False, _("it lost more than CAP_NET_RAW: {names} too; drop only that one",
                        names=", ".join(sorted(lost)))
    from ..networks import frames
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
             [rm_line("lab09-remap")]),
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
