"""The network inside a new NET namespace.

A new network namespace has one interface, lo, and it is down: even
127.0.0.1 does not answer. Docker brings it up; so does labkit, with the
SIOCSIFFLAGS ioctl that `ip link set lo up` sends over netlink, through the
syscall layer (this is on the container start path: labkit/startpath.py).
"""

import ctypes
import os
import sys

from labkit.linux import syscalls

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ_SIZE = 40     # struct ifreq: a 16-byte name, then a union (flags: a short)


def link_up(name="lo"):
    """Set the IFF_UP flag on an interface (ip link set NAME up)."""
    req = ctypes.create_string_buffer(name.encode(), _IFREQ_SIZE)
    fd = syscalls.socket(syscalls.AF_INET, syscalls.SOCK_DGRAM | syscalls.SOCK_CLOEXEC)
    try:
        syscalls.ioctl(fd, SIOCGIFFLAGS, req)
        flags = int.from_bytes(req.raw[16:18], sys.byteorder) | IFF_UP
        req[16:18] = flags.to_bytes(2, sys.byteorder)
        syscalls.ioctl(fd, SIOCSIFFLAGS, req)
    finally:
        os.close(fd)


def link_names(text):
    """Interface names in `ip -o link` output: "2: eth0@if7: <...>" -> "eth0"."""
    names = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) > 2:
            names.append(parts[1].strip().split("@")[0])
    return names
