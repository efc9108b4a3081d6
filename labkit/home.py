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
