"""`labkit image unpack IMAGE DIR`: an image as an OCI runtime bundle, as
`umoci unpack` writes one: DIR/rootfs (every layer applied in order, the
whiteouts deleting what they name) and DIR/config.json (labkit-runtime's
default spec with the image's Entrypoint + Cmd, Env, WorkingDir and User),
for `labkit-runtime run` or `runc run` in DIR."""

import json
import os

from labkit.images import layers
from labkit.errors import Conflict
from labkit.images import image, store
from labkit.oci import spec


def unpack(ref, target):
    img = image.get(ref)
    if os.path.exists(target) and os.listdir(target):
        raise Conflict(f"{target} is not empty", "give a new or empty directory for the bundle")
    rootfs = os.path.join(target, "rootfs")
    os.makedirs(rootfs, mode=0o755)
    for desc in img["manifest"]["layers"]:
        layers.apply(store.blob_path(desc["digest"]), rootfs, whiteouts="delete")
    entrypoint, cmd, env, cwd, user = image.run_config(img)
    cfg = spec.default(args=(entrypoint + cmd) or ["/bin/sh"], terminal=False)
    names = {e.split("=", 1)[0] for e in env}
    cfg["process"]["env"] = [e for e in cfg["process"]["env"] if e.split("=", 1)[0] not in names] + env
    cfg["process"]["cwd"] = cwd
    ids = image.user_ids(user, [rootfs])
    if ids:
        cfg["process"]["user"] = {"uid": ids[0], "gid": ids[1]}
    cfg["annotations"] = {"org.opencontainers.image.ref.name": img["ref"],
                          "org.opencontainers.image.manifest.digest": img["descriptor"]["digest"]}
    with open(os.path.join(target, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return target
