"""Where labkit keeps things on the host.

Everything lives under one directory, ``$LABKIT_HOME`` (default
/var/lib/labkit), so that a test can point it elsewhere and `labkit gc` knows
exactly what is its own:

    rootfs/<name>/        base root filesystems (labkit rootfs build)
    containers/<id>/      one directory per container: state.json, mounts
"""

import os


def home():
    return os.environ.get("LABKIT_HOME", "/var/lib/labkit")


def rootfs_dir(name=""):
    return os.path.join(home(), "rootfs", name)


def containers_dir(cid=""):
    # labkit-runtime --root DIR keeps its containers' state in DIR instead.
    root = os.environ.get("LABKIT_STATE_ROOT")
    return os.path.join(root or os.path.join(home(), "containers"), cid)


class Lock:
    """An exclusive flock(2) on DIRECTORY/.lock, held for a with block: what
    the networks' and the services' stores serialise their changes with.
    Closing the last fd releases it, also when the holder is killed."""

    def __init__(self, directory):
        self.directory = directory

    def __enter__(self):
        import fcntl
        os.makedirs(self.directory, exist_ok=True)
        self.fd = os.open(os.path.join(self.directory, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
