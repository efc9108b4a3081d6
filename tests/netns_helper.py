"""A network namespace of its own for the calling thread (pytest's), so that
every process a test starts (labkit, a notebook's kernel) makes its bridges,
veths and firewall rules there, never on the machine's own interfaces."""

import contextlib
import os
import subprocess

from labkit.linux import syscalls


@contextlib.contextmanager
def private_netns():
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    syscalls.unshare(syscalls.CLONE_NEWNET)
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        yield
    finally:
        syscalls.setns(own, syscalls.CLONE_NEWNET)
        os.close(own)
