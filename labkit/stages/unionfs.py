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

import os

from labkit.linux import overlay
from labkit.errors import LabkitError, NotFound
from labkit.containers import CREATING, RUNNING
from labkit.startpath import dumps
from labkit.stages import Stage

STATE_FILE = "overlay.json"
DIGEST_PREFIX = "sha256:"
_LAYER_HINT = "give a directory, a layer .tar/.tar.gz, or the sha256: digest `labkit commit` printed"


def resolve(layer):
    """The path of a configured layer: a directory, a tar, or a digest
    (``sha256:<hex>``, as `labkit commit` prints it) of a tar in $LABKIT_HOME/layers."""
    if layer.startswith(DIGEST_PREFIX):
        from labkit.images import layers
        hexd = layer[len(DIGEST_PREFIX):]
        if len(hexd) == 64 and all(ch in "0123456789abcdef" for ch in hexd):
            for ext in (".tar", ".tar.gz"):
                path = layers.layers_dir(hexd + ext)
                if os.path.isfile(path):
                    return path
        raise NotFound(f"layer '{layer}' is not in {layers.layers_dir()}",
                       "`labkit commit ID` stores layers there and prints their digest")
    return os.path.abspath(layer)


def check_layers(layer_list):
    """Check every configured layer before anything is created: it exists, and
    a tar passes the header checks of layers.apply (no absolute or '..' names,
    no device nodes...). Raises NotFound / LabkitError naming the layer."""
    for layer in layer_list:
        path = resolve(layer)
        if os.path.isfile(path):
            from labkit.images import layers
            if not os.path.isdir(layers.layers_dir(layers.digest(path).split(":", 1)[1])):
                layers.check(path)               # unpacked already means checked already
        elif not os.path.isdir(path):
            what = "does not exist" if not os.path.lexists(path) else "is neither a directory nor a file"
            raise NotFound(f"layer '{layer}' {what}", _LAYER_HINT)


def _layer_dir(layer):
    """A configured layer as a directory an overlay can stack."""
    path = resolve(layer)
    if os.path.isfile(path):
        from labkit.images import layers                 # tarfile/hashlib only when a tar is given
        return layers.unpacked(path)
    if not os.path.isdir(path):
        what = "does not exist" if not os.path.lexists(path) else "is neither a directory nor a file"
        raise NotFound(f"layer '{layer}' {what}", _LAYER_HINT)
    return path


def paths(state_dir):
    return {k: os.path.join(state_dir, k) for k in ("upper", "work", "merged")}


class UnionFS(Stage):
    name = "unionfs"

    def wanted(self, config, options=None):
        return bool(config.layers) or config.writable_layer

    def prepare(self, c):
        lowers = [os.path.abspath(c.rootfs)] + [_layer_dir(layer) for layer in c.config.layers]
        p = paths(c.state_dir)
        for d in p.values():
            os.makedirs(d, exist_ok=True)
        stacked = lowers
        try:
            if c.config.idmapped_layers:
                stacked = _idmapped(c.config, lowers, c.state_dir, p["upper"])
            overlay.mount(p["merged"], stacked, p["upper"], p["work"])
            # What is stacked, bottom first: for `commit`, for provenance, for gc.
            with open(os.path.join(c.state_dir, STATE_FILE), "w") as f:
                f.write(dumps({"lowers": lowers, **p}))
        except BaseException:
            self.teardown(c)
            raise
        c.rootfs = p["merged"]

    def teardown(self, c):
        overlay.unmount(paths(c.state_dir)["merged"])
        _unmount_idmapped(c.state_dir)


IDMAPPED = "idmapped"     # <state_dir>/idmapped/<n>: the shifted views of the lowers


def _idmapped(config, lowers, state_dir, upper):
    """With a user namespace, each lower seen through its id maps
    (labkit/linux/idmap.py), so that root inside owns the rootfs; the upper dir's
    root belongs to root inside too. Returns the views, bottom first."""
    from labkit.linux import idmap
    ns = idmap.userns_fd(config.id_map("uid"), config.id_map("gid"))
    try:
        views = []
        for i, lower in enumerate(lowers):
            view = os.path.join(state_dir, IDMAPPED, str(i))
            os.makedirs(view, exist_ok=True)
            idmap.bind(lower, view, ns)
            views.append(view)
    finally:
        os.close(ns)
    root_uid, root_gid = (int(config.id_map(n).split()[1]) for n in ("uid", "gid"))
    os.chown(upper, root_uid, root_gid)
    return views


def _unmount_idmapped(state_dir):
    top = os.path.join(state_dir, IDMAPPED)
    if not os.path.isdir(top):
        return
    from labkit.linux import syscalls as sc
    for name in os.listdir(top):
        view = os.path.join(top, name)
        try:
            sc.umount2(view, sc.MNT_DETACH)
        except OSError:
            pass                  # not mounted (a failed start)
        os.rmdir(view)
    os.rmdir(top)


def layers_of(state_dir):
    """The lowers (bottom first), upper, work and merged of a container's overlay."""
    import json
    with open(os.path.join(state_dir, STATE_FILE)) as f:
        return json.load(f)


def commit(state_dir, dest=None, compress=False, out=None):
    """The container's upper dir as a new layer tar in $LABKIT_HOME/layers (or ``dest``,
    or the file ``out``).

    A later container stacks it with ``layers=[<returned path>]``."""
    from labkit.images import layers
    return layers.commit(paths(state_dir)["upper"], dest=dest, compress=compress, out=out)


def commit_container(cid, output=None):
    """`labkit commit ID [--output FILE]`: the container's changes as a layer tar.

    Works on a running or stopped container, as long as its state dir exists
    (`labkit rm`, or the end of a --rm container, removes the upper dir with it).
    A running container is not paused: what it writes during the commit may
    be caught halfway. Returns layers.commit()'s description plus ``lowers``
    (the configured layers below the committed one, bottom first)."""
    from labkit import containers, home
    try:
        state = containers.load(cid)
    except NotFound as e:
        raise NotFound(e.message, "`labkit ps -a` lists the containers; a removed container's changes "
                       "went with it: commit before `labkit rm` (a --rm container is removed when it exits)") from None
    state_dir = home.containers_dir(cid)
    if state["status"] == CREATING:
        raise LabkitError(f"container '{cid}' is still being created", "wait a moment and commit again")
    if not os.path.isfile(os.path.join(state_dir, STATE_FILE)):
        raise LabkitError(f"container '{cid}' has no union filesystem, so no changes to commit: "
                          "it ran on a --rootfs directory as it is, without --layer",
                          "run it on a named rootfs (the default, base), or add `--layer DIR_OR_TAR` "
                          "to give it a writable upper dir; an empty directory will do as the layer")
    upper = paths(state_dir)["upper"]
    if not os.path.isdir(upper):
        raise NotFound(f"container '{cid}' has lost its upper dir '{upper}'", "nothing to commit")
    compress = False
    if output is not None:
        output = os.path.abspath(output)
        parent = os.path.dirname(output)
        if not os.path.isdir(parent):
            raise NotFound(f"--output '{output}': directory '{parent}' does not exist", "create it first")
        if os.path.isdir(output):
            raise LabkitError(f"--output '{output}' is a directory", "give a file name, e.g. layer.tar")
        if (output + "/").startswith(state_dir.rstrip("/") + "/"):
            raise LabkitError(f"--output '{output}' is inside the container's own state dir",
                              "write the layer elsewhere, e.g. in the current directory")
        compress = output.endswith((".gz", ".tgz"))
    result = commit(state_dir, compress=compress, out=output)
    config = state.get("config", {})
    result["lowers"] = list(config.get("layers") or [])
    result["rootfs"] = config.get("rootfs")
    return result


def _alive(state_dir):
    """Whether a container still owns its overlay: its monitor (the process
    that tears the stages down) runs, or it is being created right now."""
    from labkit.containers import alive
    try:
        import json
        with open(os.path.join(state_dir, "state.json")) as f:
            state = json.load(f)
    except FileNotFoundError:
        try:
            import time
            return time.time() - os.stat(state_dir).st_mtime < 30    # no state.json yet: creating
        except FileNotFoundError:
            return False
    except (OSError, ValueError):
        return False
    return state.get("status") == RUNNING and alive(state.get("monitor"), state.get("monitor_start"))


def gc(containers_dir=None, alive=_alive):
    """Unmount every overlay (and idmapped view) under ``containers_dir``
    whose container is gone.

    ``alive(state_dir)`` decides; by default a container is alive while its
    monitor runs (state.json) or for 30 s after its directory appeared without
    one (being created). Returns the mount points unmounted."""
    from labkit import home
    top = os.path.abspath(containers_dir or home.containers_dir()).rstrip("/") + "/"
    done = []
    # Deepest first, so a mount inside another comes off before its parent.
    for mp, _ in sorted(overlay.mounts(None), key=lambda m: -len(m[0])):
        if not mp.startswith(top):
            continue
        state_dir = top + mp[len(top):].split("/", 1)[0]
        if not alive(state_dir):
            overlay.unmount(mp)
            done.append(mp)
    return done
