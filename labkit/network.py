"""The network inside a new NET namespace.

A new network namespace has one interface, lo, and it is down: even
127.0.0.1 does not answer. Docker brings it up; so does labkit, with the
SIOCSIFFLAGS ioctl that `ip link set lo up` sends over netlink. Stdlib
``_socket`` and ``fcntl`` only: this is on the container start path.
"""

import fcntl
import struct

import _socket

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def link_up(name="lo"):
    """Set the IFF_UP flag on an interface (ip link set NAME up)."""
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        # struct ifreq: a 16-byte name, then a union whose first member for
        # these ioctls is a short of flags; 40 bytes cover it on every arch.
        req = struct.pack("16sH22x", name.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", name.encode(), flags | IFF_UP))
    finally:
        sock.close()


def link_names(text):
    """Interface names in `ip -o link` output: "2: eth0@if7: <...>" -> "eth0"."""
    names = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) > 2:
            names.append(parts[1].strip().split("@")[0])
    return names
