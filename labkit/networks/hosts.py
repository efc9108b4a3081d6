"""Names: every container on a network finds the others by name.

Docker's user-defined networks answer names from a DNS server inside the
engine (127.0.0.11); its default bridge, and this lab, use /etc/hosts
instead: a file per container, in its state directory, bind-mounted over the
container's /etc/hosts, and rewritten in place (the bind mount pins the
inode: a rename would leave the container reading the old file) whenever a
container joins or leaves the network. `cat /etc/hosts` inside shows it all.
"""

import os

HEADER = ("127.0.0.1\tlocalhost\n"
          "::1\tlocalhost ip6-localhost ip6-loopback\n")


def names_of(ep):
    seen = []
    for n in [ep["name"], ep.get("hostname"), *(ep.get("aliases") or ())]:
        if n and n not in seen:
            seen.append(n)
    return seen


def render(endpoints, services=()):
    """The hosts file of a container: its network peers, and the services of
    its networks by their virtual IPs (labkit/networks/vips.py)."""
    lines = [HEADER]
    for ep in endpoints:
        lines.append(f"{ep['ip']}\t{' '.join(names_of(ep))}\n")
    for vip in services:
        lines.append(f"{vip['vip']}\t{' '.join(vip['names'])}\n")
    return "".join(lines)


def write(path, text):
    """In place: truncate and write the same inode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


