"""What `labkit run IMAGE` needs of an image: its layers as overlay lower
directories (each unpacked once) and how to run it: Entrypoint + Cmd, Env,
WorkingDir, User. `labkit/base` is the base rootfs as an image, made (again)
from the rootfs when it is missing or the rootfs was rebuilt."""

import os

from labkit import home
from labkit.errors import LabkitError, NotFound
from labkit.images import image, reference


def for_run(ref):
    name = image.normalize(ref)
    if name == image.BASE and os.path.isdir(home.rootfs_dir("base")):
        img = image.ensure_base(home.rootfs_dir("base"))   # made again if the rootfs was rebuilt
    else:
        try:
            img = image.get(name)
        except NotFound:
            if reference.parse(name).registry is None:
                raise
            from labkit.images import distribution
            distribution.pull(name)     # docker run pulls what it lacks
            img = image.get(name)
    lowers = image.lowers(img)
    if not lowers:
        raise LabkitError(f"image '{name}' has no layers: there is no root filesystem to run",
                          "build it FROM an image with files, or COPY some in")
    entrypoint, cmd, env, cwd, user = image.run_config(img)
    ids = image.user_ids(user, lowers)
    return {"ref": name, "lowers": lowers, "entrypoint": entrypoint, "cmd": cmd, "env": env, "cwd": cwd,
            "user": {"uid": ids[0], "gid": ids[1]} if ids else None}


def merge_env(defaults, overrides):
    """``defaults`` with every NAME of ``overrides`` replaced (docker: the image's Env wins)."""
    names = {e.split("=", 1)[0] for e in overrides}
    return [e for e in defaults if e.split("=", 1)[0] not in names] + list(overrides)
