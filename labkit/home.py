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


# Every directory of container states in use on this host, as a symlink
# named by the directory's device and inode (no hashing on the start path): $LABKIT_HOME/containers, and each
# `labkit-runtime --root` (podman's, containerd's). A container's cgroup,
# labkit/<id>, is host-wide and says nothing of the home it belongs to:
# `labkit gc` of one home must leave alone the containers of another (a test
# suite's home beside the student's /var/lib/labkit). /run goes at boot, as
# the cgroups do.
ROOTS = "/run/labkit-roots"


def register():
    """Name this home's containers directory in ROOTS (once: a stat and a
    readlink on every later start)."""
    mine = containers_dir()
    st = os.stat(mine)
    link = os.path.join(ROOTS, f"{st.st_dev:x}-{st.st_ino:x}")
    try:
        if os.readlink(link) == mine:
            return
        os.unlink(link)             # a directory removed since had this inode
    except FileNotFoundError:
        pass
    os.makedirs(ROOTS, mode=0o755, exist_ok=True)
    try:
        os.symlink(mine, link)
    except FileExistsError:
        pass


def others():
    """The ids of the containers recorded in the other containers
    directories of ROOTS (those gone are dropped from it)."""
    mine, found = os.path.realpath(containers_dir()), set()
    try:
        names = os.listdir(ROOTS)
    except FileNotFoundError:
        return found
    for name in names:
        link = os.path.join(ROOTS, name)
        try:
            target = os.readlink(link)
            if os.path.realpath(target) != mine:
                found.update(os.listdir(target))
        except FileNotFoundError:      # that home was removed: so is its name here
            try:
                os.unlink(link)
            except FileNotFoundError:
                pass
        except OSError:
            continue
    return found


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


def write_atomic(path, data):
    """Write ``data`` (str or bytes) as the file ``path``, whole: into a name of
    this process's beside it, then rename(2) over ``path``, so that a reader
    sees the old file or the new one, never half of one (a container's
    state.json, a network's file, a pid file a client polls)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path, data):
    """A JSON file of labkit's own (networks, services), replaced whole."""
    import json
    write_atomic(path, json.dumps(data, indent=1))


def source_tree():
    """The directory that holds the labkit package: a checkout's top, where
    examples/ and notebooks/ are (a server's `python -I -S` puts it first on
    its sys.path)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
