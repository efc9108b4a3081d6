"""`labkit save` and `labkit load`: images as one tar, an OCI image layout
(what `skopeo copy ... oci-archive:FILE:REF` writes and reads).

    oci-layout, index.json      the tags saved (ref.name annotations)
    blobs/sha256/<hex>          their manifests, configs and layers

A tar to load is untrusted input: only those names are read (nothing is
extracted as a path), each blob is stored through store.put_stream, which
checks its sha256 against its name, and the tags are set only once every
blob they need is stored and sound.
"""

import io
import json
import os
import tarfile

from labkit.errors import LabkitError
from labkit.images import image, store


def save(refs, out):
    """Write the images ``refs`` to the tar ``out``; returns the tags written."""
    imgs = [image.get(r) for r in refs]
    manifests, blobs = [], []
    for img in imgs:
        desc = dict(img["descriptor"])
        manifests.append(desc)
        for d in [desc["digest"], img["manifest"]["config"]["digest"]] + \
                 [layer["digest"] for layer in img["manifest"]["layers"]]:
            if d not in blobs:
                blobs.append(d)
    tmp = f"{out}.{os.getpid()}.tmp"
    try:
        with tarfile.open(tmp, "w") as tar:
            for name, data in (("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
                               ("index.json", store.canonical({"schemaVersion": 2, "mediaType": store.MEDIA_INDEX,
                                                               "manifests": manifests}))):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            for d in blobs:
                tar.add(store.blob_path(d), arcname="blobs/sha256/" + d.split(":", 1)[1], recursive=False)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return [img["ref"] for img in imgs]


def load(path):
    """Store every blob of the layout tar ``path`` and set its tags; returns them."""
    try:
        tar = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as e:
        raise LabkitError(f"{path}: not a tar archive ({e})", "give a file `labkit save` or skopeo's oci-archive wrote")
    with tar:
        with store.Lock():
            try:
                loaded = _load(tar, path)
            finally:
                store.collect()   # what the tar brought that no tag needs, also after a refusal
    if not loaded:
        raise LabkitError(f"{path}: no tagged image in its index.json",
                          "labkit loads images whose index entry has org.opencontainers.image.ref.name")
    return loaded


_LAYOUT = "a tar `labkit save` or skopeo's oci-archive wrote holds a sound one"


def _ref_name(desc):
    annotations = desc.get("annotations")
    ref = annotations.get(store.REF_NAME) if isinstance(annotations, dict) else None
    return ref if isinstance(ref, str) and ref else None


def _load(tar, path):
    index = None
    for m in tar:
        name = m.name[2:] if m.name.startswith("./") else m.name
        if name == "index.json" and m.isfile():
            index = store.json_object(tar.extractfile(m).read(), f"{path}: index.json", _LAYOUT)
        elif name.startswith("blobs/sha256/") and m.isfile():
            store.put_stream(tar.extractfile(m), expected="sha256:" + name.rsplit("/", 1)[1], size=m.size)
        elif name in ("oci-layout", "blobs", "blobs/sha256", ".", "") or m.isdir():
            continue
        else:
            raise LabkitError(f"{path}: '{m.name}' has no place in an OCI image layout",
                              "only oci-layout, index.json and blobs/sha256/* are loaded")
    if index is None:
        raise LabkitError(f"{path}: no index.json", "this is not an OCI image layout tar")
    loaded = []
    for desc in store.descriptors(index, "manifests", f"{path}: index.json", _LAYOUT):
        ref = _ref_name(desc)
        if not ref:
            continue
        image.normalize(ref)                           # a sound name, or this raises
        what = f"{path}: the manifest of {ref}"
        data = store.read_blob(desc["digest"])         # present and sound, or this raises
        manifest = store.json_object(data, what, _LAYOUT)
        if desc.get("mediaType") not in store.IMAGE_MANIFESTS or desc.get("size") != len(data):
            raise LabkitError(f"{what}: its descriptor's mediaType or size is wrong", _LAYOUT)
        if "platform" in desc and not isinstance(desc["platform"], dict):
            raise LabkitError(f"{what}: its descriptor's platform is not an object", _LAYOUT)
        config = store.descriptor(manifest.get("config"), f"{what}: config", _LAYOUT)
        for d in [config["digest"]] + [layer["digest"] for layer in store.descriptors(manifest, "layers", what,
                                                                                       _LAYOUT)]:
            if not store.has(d):
                raise LabkitError(f"{path}: {ref} needs blob {d}, which the tar lacks",
                                  "save the image again")
        store.set_tag(image.normalize(ref), desc)
        loaded.append(image.normalize(ref))
    return loaded
