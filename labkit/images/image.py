"""Images in the local store: made from layer tars, read back, unpacked
once per layer as overlay lower directories, saved and loaded as tars.

    manifest --config-->  config  (Env, Cmd, Entrypoint, WorkingDir, User;
             --layers-->  rootfs.diff_ids; history)
                          layer 0, layer 1, ...  (tar or tar+gzip blobs)

A layer is unpacked once, into $LABKIT_HOME/images/unpacked/<diff_id hex>/,
and every container and image that has it stacks that same directory
(overlay lowers are read-only: nothing a container does reaches it). When
it is first unpacked its uncompressed stream is checked against the
config's diff_id.
"""

import os
import platform
import time

from labkit import home
from labkit.images import layers
from labkit.errors import Conflict, LabkitError, NotFound
from labkit.images import reference, store

BASE = "labkit/base:latest"
MEDIA_LAYER = layers.MEDIA_TAR
ROOTFS_STAMP = "org.labkit.rootfs"


def architecture():
    """GOARCH's names, as image configs and registries use them."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def normalize(text):
    return str(reference.parse(text))


def get(ref):
    """{ref, descriptor, manifest, config} of the image tagged ``ref``."""
    name = normalize(ref)
    desc = store.lookup(name)
    if desc is None and name == BASE and os.geteuid() == 0 and os.path.isdir(home.rootfs_dir("base")):
        return ensure_base(home.rootfs_dir("base"))      # made on first use from the base rootfs
    if desc is None:
        raise NotFound(f"no such image '{name}'", "`labkit images` lists the local ones")
    manifest = store.read_json(desc["digest"])
    if manifest.get("mediaType", store.MEDIA_MANIFEST) not in store.IMAGE_MANIFESTS or "config" not in manifest:
        raise LabkitError(f"image '{name}': {desc['digest']} is not an OCI image manifest",
                          "labkit runs single-platform OCI images")
    config = store.read_json(manifest["config"]["digest"])
    return {"ref": name, "descriptor": desc, "manifest": manifest, "config": config}


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def create(ref, layer_files=(), parent=None, config=None, history=None, annotations=None, empty_history=None):
    """Tag ``ref``: the image ``parent`` (or nothing: FROM scratch) plus
    ``layer_files`` (tars, bottom first), with ``config`` (Env, Cmd, ...) over
    the parent's. ``history``: one entry per new layer (created_by);
    ``empty_history``: the entry of a step that made no layer. Returns the
    manifest's digest."""
    name = normalize(ref)
    with store.Lock():
        base = get(parent) if parent else None
        cfg = dict(base["config"]) if base else {"architecture": architecture(), "os": "linux",
                                                 "config": {}, "rootfs": {"type": "layers", "diff_ids": []},
                                                 "history": []}
        cfg["config"] = dict(config) if config is not None and empty_history else \
            dict(cfg.get("config") or {}, **(config or {}))
        cfg["rootfs"] = {"type": "layers", "diff_ids": list(cfg["rootfs"]["diff_ids"])}
        cfg["history"] = list(cfg.get("history") or [])
        cfg["created"] = _now()
        descs = list(base["manifest"]["layers"]) if base else []
        for i, path in enumerate(layer_files):
            digest, size = store.put_file(path)
            gz = layers.is_gzip(path)
            descs.append({"mediaType": MEDIA_LAYER + ("+gzip" if gz else ""), "digest": digest, "size": size})
            cfg["rootfs"]["diff_ids"].append(layers.diff_id(path))
            entry = (history or [{}] * len(layer_files))[i]
            cfg["history"].append(dict({"created": cfg["created"]}, **entry))
        if empty_history:
            cfg["history"].append(dict({"created": cfg["created"], "empty_layer": True}, **empty_history))
        cdigest, csize = store.put_json(cfg)
        manifest = {"schemaVersion": 2, "mediaType": store.MEDIA_MANIFEST,
                    "config": {"mediaType": store.MEDIA_CONFIG, "digest": cdigest, "size": csize},
                    "layers": descs}
        if annotations:
            manifest["annotations"] = dict(annotations)
        mdigest, msize = store.put_json(manifest)
        store.set_tag(name, {"mediaType": store.MEDIA_MANIFEST, "digest": mdigest, "size": msize,
                             "platform": {"architecture": cfg["architecture"], "os": cfg["os"]}})
    return mdigest


def tag(source, target):
    src = get(source)
    with store.Lock():
        store.set_tag(normalize(target), src["descriptor"])


def users_of(ref):
    """Containers (any state) whose config names image ``ref``."""
    from labkit.containers import all_ids, load
    found = []
    for cid in all_ids():
        try:
            if (load(cid).get("config") or {}).get("image") == ref:
                found.append(cid)
        except LabkitError:
            continue
    return found


def remove(ref, force=False):
    """Untag ``ref``; blobs and unpacked layers no other tag needs go too."""
    name = normalize(ref)
    if store.lookup(name) is None:
        raise NotFound(f"no such image '{name}'", "`labkit images` lists the local ones")
    using = users_of(name)
    if using and not force:
        raise Conflict(f"image '{name}' is used by container {', '.join(using)}",
                       f"remove it first (`labkit rm -f {' '.join(using)}`), or use rmi -f")
    with store.Lock():
        store.remove_tag(name)
        gone = store.collect()
        collect_unpacked()
    return gone


def collect_unpacked():
    """Unpacked layers that no remaining image lists and no container stacks."""
    from labkit.containers import all_ids, load
    keep = set()
    for name, _ in store.tags():
        try:
            keep.update(d.split(":", 1)[1] for d in get(name)["config"]["rootfs"]["diff_ids"])
        except LabkitError:
            continue
    stacked = set()
    for cid in all_ids():
        cfg = load(cid).get("config") or {}
        stacked.update([cfg.get("rootfs") or ""] + list(cfg.get("layers") or []))
    top = store.root("unpacked")
    for hexd in os.listdir(top) if os.path.isdir(top) else ():
        path = os.path.join(top, hexd)
        if hexd not in keep and "." not in hexd and path not in stacked:
            from labkit.startpath import remove_tree
            remove_tree(path)


def lowers(img):
    """The image's layers as directories, bottom first, each unpacked once."""
    dirs = []
    for desc, diff_id in zip(img["manifest"]["layers"], img["config"]["rootfs"]["diff_ids"]):
        blob = store.blob_path(desc["digest"])
        final = store.root("unpacked", diff_id.split(":", 1)[1])
        if not os.path.isdir(final):
            if not os.path.exists(blob):
                raise NotFound(f"image '{img['ref']}': layer {desc['digest']} is missing from the store",
                               "pull or build the image again")
            actual = layers.diff_id(blob)
            if actual != diff_id:
                raise store.DigestError(f"image '{img['ref']}': layer {desc['digest']} unpacks to {actual}, "
                                        f"its config says {diff_id}", "the image is corrupt: pull or build it again")
            layers.unpacked(blob, cache=store.root("unpacked"), key=diff_id.split(":", 1)[1])
        dirs.append(final)
    return dirs


def run_config(img):
    """What `labkit run IMAGE` takes from the image: (entrypoint, cmd, env, cwd, user)."""
    c = img["config"].get("config") or {}
    return (list(c.get("Entrypoint") or []), list(c.get("Cmd") or []), list(c.get("Env") or []),
            c.get("WorkingDir") or "/", c.get("User") or "")


# ---- labkit/base: the base rootfs as an image --------------------------------

def _stamp(rootfs):
    st = os.stat(rootfs)
    return f"{st.st_ino}-{st.st_mtime_ns}"


def ensure_base(rootfs):
    """The image labkit/base:latest: the base rootfs as one layer, made again
    whenever the rootfs was rebuilt."""
    stamp = _stamp(rootfs)
    desc = store.lookup(BASE)
    if desc is not None:
        if (store.read_json(desc["digest"]).get("annotations") or {}).get(ROOTFS_STAMP) == stamp:
            return get(BASE)
    elif os.geteuid() != 0:
        raise NotFound(f"no such image '{BASE}'", "it is made from the base rootfs by root: sudo labkit images")
    import tempfile
    tmp = tempfile.mkdtemp(prefix=".base-", dir=_ensure_dir(store.root()))
    try:
        layer = layers.commit(rootfs, dest=tmp)["path"]
        create(BASE, [layer], config={"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                      "Cmd": ["/bin/sh"], "WorkingDir": "/"},
               history=[{"created_by": "labkit rootfs build (busybox + procps + iproute2 + util-linux)"}],
               annotations={ROOTFS_STAMP: stamp})
    finally:
        from labkit.startpath import remove_tree
        remove_tree(tmp)
    with store.Lock():
        store.collect()
    return get(BASE)


def _ensure_dir(path):
    store.init()
    return path


def history(ref):
    img = get(ref)
    return img["config"].get("history") or []


def images():
    """[(ref, manifest digest, created, size of the layers)] of every tag
    (labkit/base among them, made first if there is a base rootfs)."""
    if os.geteuid() == 0 and os.path.isdir(home.rootfs_dir("base")):
        ensure_base(home.rootfs_dir("base"))
    rows = []
    for name, desc in store.tags():
        if name.startswith("labkit/build-cache:"):   # a build's steps: `labkit builder prune`
            continue
        try:
            img = get(name)
        except LabkitError:
            continue
        size = sum(layer["size"] for layer in img["manifest"]["layers"])
        rows.append((name, desc["digest"], img["config"].get("created", ""), size))
    return rows


def _find(dirs, rel):
    """The file ``rel`` as the stacked ``dirs`` (bottom first) show it: the top-most copy."""
    for d in reversed(dirs):
        path = os.path.join(d, rel)
        if os.path.lexists(path):
            return path if os.path.isfile(path) else None
    return None


def _lookup(path, name):
    if path:
        with open(path) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if fields[0] == name and len(fields) > 3:
                    return fields
    return None


def user_ids(user, dirs):
    """An image's User ("uid", "uid:gid", "name", "name:group") as (uid, gid),
    names looked up in the image's own /etc/passwd and /etc/group."""
    if not user:
        return None
    name, _, group = user.partition(":")
    if name.isdigit():
        uid, gid = int(name), int(name) if not group else None
    else:
        entry = _lookup(_find(dirs, "etc/passwd"), name)
        if entry is None:
            raise LabkitError(f"image user '{name}' is not in the image's /etc/passwd",
                              "give a uid, or a user the image defines")
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            entry = _lookup(_find(dirs, "etc/group"), group)
            if entry is None:
                raise LabkitError(f"image group '{group}' is not in the image's /etc/group",
                                  "give a gid, or a group the image defines")
            gid = int(entry[2])
    return uid, gid if gid is not None else uid
