"""Notebook 02's exercises: one namespace at a time, made by the student
with unshare(1) (or their own script calling unshare(2)). Each check
compares the inodes of /proc/PID/ns/* with the checker's own and looks
inside with nsenter(1), as `lsns` and `docker exec` would."""

import os
import socket

from labkit.i18n import _

LOG = "/tmp/lab02/{}.log"     # where each exercise's start line keeps what it prints
from labkit.course.lab import PROC_RECOVER, Exercise, background, kill_line, nsenter, own_namespace, started


def _alone(number, kind, shared):
    """The pid of `sleep NUMBER` when it has a ``kind`` namespace of its own,
    or (None, why not): ``shared`` says what sharing the host's means."""
    pid, why = started("sleep", number)
    if pid is None:
        return None, why
    if not own_namespace(pid, kind):
        return None, _("sleep {number} {shared}", number=number, shared=shared)
    return pid, None


def _pid_alone():
    pid, why = _alone("1021", "pid", _("is in the host's PID namespace (compare readlink /proc/PID/ns/pid "
                                       "with /proc/self/ns/pid)"))
    if pid is None:
        return False, why
    nspid = open(f"/proc/{pid}/status").read().split("NSpid:")[1].split("\n")[0].split()
    if nspid[-1] != "1":
        return False, _("sleep 1021 is PID {n} of its namespace, not 1: a new PID namespace's PID 1 is the first "
                        "process started in it, not the one that made it", n=nspid[-1])
    # Whose /proc it sees: the PID namespace of PID 1 in it must be its own.
    try:
        theirs = os.stat(f"/proc/{pid}/root/proc/1/ns/pid").st_ino
    except OSError:
        theirs = None
    if theirs != os.stat(f"/proc/{pid}/ns/pid").st_ino:
        return False, _("its /proc is not its PID namespace's (in it, PID 1 is another process): ps inside "
                        "would list the processes of another namespace — the host's, most likely")
    return True, _("sleep 1021 (host pid {pid}) is PID 1 of its own PID namespace, and its /proc shows only it",
                   pid=pid)


def _hostname():
    pid, why = _alone("1022", "uts", _("shares the host's UTS namespace: a hostname set there would rename the host"))
    if pid is None:
        return False, why
    name = nsenter(pid, "--uts", "hostname").stdout.strip()
    if name != "lab02":
        return False, _("in the namespace of sleep 1022 the hostname is {name}, not 'lab02'", name=repr(name))
    if socket.gethostname() == "lab02":
        return False, _("the host is called lab02 too: the name was set outside the namespace (hostname it back)")
    release = nsenter(pid, "--uts", "uname -r").stdout.strip()
    return True, _("hostname lab02 inside, {host} outside — and uname -r is {release} on both sides",
                   host=socket.gethostname(), release=release)


def _loopback():
    pid, why = _alone("1023", "net", _("is in the host's network namespace (it sees every interface of the host)"))
    if pid is None:
        return False, why
    if nsenter(pid, "--net", "ping -c1 -W1 127.0.0.1").returncode != 0:
        return False, _("in its namespace 127.0.0.1 does not answer: lo starts down")
    links = nsenter(pid, "--net", "ip -o link").stdout.splitlines()
    names = [line.split(":")[1].strip().split("@")[0] for line in links if ":" in line]
    return True, _("sleep 1023 has a network namespace of its own ({names}), where lo is up and 127.0.0.1 "
                   "answers", names=", ".join(names))


EXERCISES = [
    Exercise("02.pid-alone", "PID 1, with a /proc of its own",
             "Start `sleep 1021` in the background as PID 1 of a new PID namespace, with a /proc of that "
             "namespace mounted in a mount namespace of its own (so that `ps` inside would list only it), what it "
             "prints kept in /tmp/lab02/pid-alone.log.",
             ["pid_namespaces(7): the first process of a new PID namespace is its PID 1; /proc shows the PID "
              "namespace of whoever mounted it",
              "unshare(1): --pid with --fork (the namespace applies to children), --mount-proc (implies --mount)",
              "sudo mkdir -p /tmp/lab02; sudo nohup setsid -f unshare --pid --fork --mount-proc sleep 1021 >/tmp/lab02/pid-alone.log 2>&1"],
             _pid_alone,
             background("unshare --pid --fork --mount-proc sleep 1021", "sleep", "1021", log=LOG.format("pid-alone")),
             [PROC_RECOVER, kill_line("sleep", "1021"),
              "rm -f /tmp/lab02/mycontainer.py; rmdir /tmp/lab02 2>/dev/null || true"], log=LOG.format("pid-alone")),
    Exercise("02.hostname", "a hostname of its own",
             "Start `sleep 1022` in the background in a UTS namespace of its own whose hostname is lab02; "
             "the host keeps its name; what it prints kept in /tmp/lab02/hostname.log.",
             ["uts_namespaces(7): the hostname and the NIS domain name, nothing else (uname -r is the kernel's)",
              "unshare --uts sh -c '…': set the name inside the new namespace, then exec the sleep",
              "sudo mkdir -p /tmp/lab02; sudo nohup setsid -f unshare --uts sh -c 'hostname lab02; exec sleep 1022' >/tmp/lab02/hostname.log 2>&1"],
             _hostname,
             background("unshare --uts sh -c 'hostname lab02; exec sleep 1022'", "sleep", "1022",
                        log=LOG.format("hostname")),
             [kill_line("sleep", "1022")], log=LOG.format("hostname")),
    Exercise("02.loopback", "a network of one: lo",
             "Start `sleep 1023` in the background in a network namespace of its own in which 127.0.0.1 "
             "answers a ping, what it prints kept in /tmp/lab02/loopback.log.",
             ["network_namespaces(7): a new one has lo (and, on some kernels, fallback tunnel devices), "
              "and lo starts down",
              "unshare --net sh -c '…': bring lo up (ip link set lo up), then exec the sleep",
              "sudo mkdir -p /tmp/lab02; sudo nohup setsid -f unshare --net sh -c 'ip link set lo up; exec sleep 1023' >/tmp/lab02/loopback.log 2>&1"],
             _loopback,
             background("unshare --net sh -c 'ip link set lo up; exec sleep 1023'", "sleep", "1023",
                        log=LOG.format("loopback")),
             [kill_line("sleep", "1023")], log=LOG.format("loopback")),
]


ALTERNATIVES = {
    "02.pid-alone": {
        "short flags and busybox's sleep": background("unshare -pf --mount-proc busybox sleep 1021", "sleep", "1021"),
        "/proc mounted by hand, after making / private": background(
            "unshare --pid --fork --mount sh -c 'mount --make-rprivate / && mount -t proc proc /proc && "
            "exec sleep 1021'", "sleep", "1021"),
    },
    "02.hostname": {
        "busybox's hostname, sleep by its path": background(
            "unshare -u sh -c 'busybox hostname lab02 && exec /bin/sleep 1022'", "sleep", "1022"),
        "the name set afterwards, with nsenter": background("unshare --uts sleep 1022", "sleep", "1022") + [
            "nsenter -t $(pgrep -f '^sleep 1022$') --uts hostname lab02"],
    },
    "02.loopback": {
        "busybox's ifconfig": background("unshare -n sh -c 'busybox ifconfig lo 127.0.0.1 up; exec sleep 1023'",
                                         "sleep", "1023"),
        "lo brought up afterwards, with nsenter": background("unshare --net sleep 1023", "sleep", "1023") + [
            "nsenter -t $(pgrep -f '^sleep 1023$') --net ip link set lo up"],
        "a namespace with another device besides lo": background(
            "unshare --net sh -c 'ip link set lo up && ip link add v0 type veth peer name v1 && exec sleep 1023'",
            "sleep", "1023"),
    },
}

NEAR_MISSES = {
    "02.pid-alone": {
        "no /proc of its own": (background("unshare --pid --fork sleep 1021", "sleep", "1021"),
                                "its /proc is not its PID namespace's"),
        "no --fork: the sleep stays in the host's PID namespace": (
            background("unshare --pid --mount-proc sleep 1021", "sleep", "1021"), "is in the host's PID namespace"),
    },
    "02.hostname": {
        "a UTS namespace, but no name set": (background("unshare --uts sleep 1022", "sleep", "1022"), "not 'lab02'"),
        "no UTS namespace": (background("sleep 1022", "sleep", "1022"), "shares the host's UTS namespace"),
    },
    "02.loopback": {
        "lo left down": (background("unshare --net sleep 1023", "sleep", "1023"), "lo starts down"),
        "no network namespace": (background("sleep 1023", "sleep", "1023"), "host's network namespace"),
    },
}
