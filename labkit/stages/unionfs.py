"""Stage 4, the union filesystem: the container's root as an overlay.

The base rootfs is the lowest layer; ``config.layers`` go on top of it in
order (each a directory, or a layer tar unpacked once into
$LABKIT_HOME/layers/<sha256>/); a fresh upper and work dir under the
container's state dir take every write. The overlay is mounted at
``<state_dir>/merged`` in the host's mount namespace, like docker's
``overlay2/<id>/merged``: it can be looked at from outside while the
container runs, and the child enters it with pivot_root or chroot.

    <state_dir>/upper   the container's own changes (what `commit` saves)
    <state_dir>/work    overlay's scratch space, same filesystem as upper
    <state_dir>/merged  the view the container sees as /
"""

import json
import os
import time

from .. import overlay
from . import Stage

STATE_FILE = "overlay.json"


def _layer_dir(layer):
    """A configured layer as a directory an overlay can stack."""
    if os.path.isfile(layer):
        from .. import layers                 # tarfile/hashlib only when a tar is given
        return layers.unpacked(layer)
    return os.path.abspath(layer)


def paths(state_dir):
    return {k: os.path.join(state_dir, k) for k in ("upper", "work", "merged")}


class UnionFS(Stage):
    name = "unionfs"

    def wanted(self, config):
        return bool(config.layers)

    def prepare(self, c):
        lowers = [os.path.abspath(c.rootfs)] + [_layer_dir(layer) for layer in c.config.layers]
        p = paths(c.state_dir)
        for d in p.values():
            os.makedirs(d, exist_ok=True)
        overlay.mount(p["merged"], lowers, p["upper"], p["work"])
        try:
            # What is stacked, bottom first: for `commit`, for provenance, for gc.
            with open(os.path.join(c.state_dir, STATE_FILE), "w") as f:
                json.dump({"lowers": lowers, **p}, f)
        except BaseException:
            overlay.unmount(p["merged"])
            raise
        c.rootfs = p["merged"]

    def teardown(self, c):
        overlay.unmount(paths(c.state_dir)["merged"])


def layers_of(state_dir):
    """The lowers (bottom first), upper, work and merged of a container's overlay."""
    with open(os.path.join(state_dir, STATE_FILE)) as f:
        return json.load(f)


def commit(state_dir, dest=None, compress=False):
    """The container's upper dir as a new layer tar in $LABKIT_HOME/layers (or ``dest``).

    A later container stacks it with ``layers=[<returned path>]``."""
    from .. import layers
    return layers.commit(paths(state_dir)["upper"], dest=dest, compress=compress)


def _alive(state_dir):
    """Whether a container still owns its overlay: its monitor (the process
    that tears the stages down) runs, or it is being created right now."""
    from ..runtime import container as ct
    try:
        with open(os.path.join(state_dir, "state.json")) as f:
            state = json.load(f)
    except FileNotFoundError:
        try:
            return time.time() - os.stat(state_dir).st_mtime < 30    # no state.json yet: creating
        except FileNotFoundError:
            return False
    except (OSError, ValueError):
        return False
    return state.get("status") == "running" and ct.alive(state.get("monitor"), state.get("monitor_start"))


def gc(containers_dir=None, alive=_alive):
    """Unmount every overlay under ``containers_dir`` whose container is gone.

    ``alive(state_dir)`` decides; by default a container is alive while its
    monitor runs (state.json) or for 30 s after its directory appeared without
    one (being created). Returns the mount points unmounted."""
    from .. import home
    top = os.path.abspath(containers_dir or home.containers_dir()).rstrip("/") + "/"
    done = []
    # Deepest first, so a mount inside another comes off before its parent.
    for mp, _ in sorted(overlay.mounts(), key=lambda m: -len(m[0])):
        if not mp.startswith(top):
            continue
        state_dir = top + mp[len(top):].split("/", 1)[0]
        if not alive(state_dir):
            overlay.unmount(mp)
            done.append(mp)
    return done
