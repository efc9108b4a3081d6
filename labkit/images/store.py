"""The local image store: an OCI image layout (image-spec/image-layout.md).

    $LABKIT_HOME/images/oci-layout          {"imageLayoutVersion": "1.0.0"}
    $LABKIT_HOME/images/index.json          one entry per tag: a manifest's descriptor with
                                            the annotation org.opencontainers.image.ref.name
    $LABKIT_HOME/images/blobs/sha256/<hex>  manifests, configs and layers, by digest

The same directory is what `skopeo copy oci:$LABKIT_HOME/images:REF ...` and
`umoci unpack --image $LABKIT_HOME/images:REF` read. A blob is written under
a temporary name, its sha256 and size checked while it is written, and
renamed to its digest only when both match: a blob whose digest fails is
never stored. index.json changes under one lock and by rename.
"""

import hashlib
import json
import os

from labkit import home
from labkit.errors import LabkitError, NotFound

REF_NAME = "org.opencontainers.image.ref.name"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
# Docker's schema 2, which registries still serve (and docker pushes): read as well.
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MANIFESTS = (MEDIA_MANIFEST, MEDIA_DOCKER_MANIFEST)
_CHUNK = 1 << 20


class DigestError(LabkitError):
    """Bytes whose sha256 or size is not what their descriptor says."""


def root(*parts):
    return os.path.join(home.home(), "images", *parts)


def blob_path(digest):
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        raise DigestError(f"'{digest}' is not a sha256 digest", "digests look like sha256:<64 hex digits>")
    return root("blobs", "sha256", hexd)


def init():
    os.makedirs(root("blobs", "sha256"), exist_ok=True)
    if not os.path.exists(root("oci-layout")):
        _write(root("oci-layout"), json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    if not os.path.exists(root("index.json")):
        _write(root("index.json"), canonical({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": []}))


def _write(path, data):
    home.write_atomic(path, data)


def canonical(obj):
    """JSON bytes as labkit writes every manifest and config: compact, keys
    sorted, so that the same content always has the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Lock:
    def __enter__(self):
        import fcntl
        init()
        self.fd = os.open(root(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


# ---- blobs -------------------------------------------------------------

def has(digest):
    return os.path.isfile(blob_path(digest))


def put_stream(stream, expected=None, size=None):
    """Store the bytes of ``stream`` (a file object); return (digest, size).
    With ``expected`` (a digest) and ``size``, bytes that do not match are
    refused and nothing is kept."""
    init()
    tmp = root("blobs", "sha256", f".incoming-{os.getpid()}-{os.urandom(4).hex()}")
    h, n = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as out:
            while chunk := stream.read(_CHUNK):
                n += len(chunk)
                if size is not None and n > size:
                    raise DigestError(f"blob {expected}: more than the {size} bytes its descriptor gives",
                                      "the source is corrupt or lies about the size: nothing was stored")
                h.update(chunk)
                out.write(chunk)
        digest = "sha256:" + h.hexdigest()
        if expected is not None and digest != expected:
            raise DigestError(f"blob {expected}: its bytes hash to {digest}",
                              "the blob was corrupted or tampered with: nothing was stored")
        if size is not None and n != size:
            raise DigestError(f"blob {digest}: {n} bytes, its descriptor says {size}",
                              "the source is corrupt: nothing was stored")
        os.rename(tmp, blob_path(digest))
        return digest, n
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def put_file(path, expected=None):
    with open(path, "rb") as f:
        return put_stream(f, expected)


def put_json(obj):
    import io
    data = canonical(obj)
    return put_stream(io.BytesIO(data))


# -- documents from outside: an archive's, a registry's ------------------------

def json_object(data, what, hint):
    """The JSON object in ``data``, or one line saying it is none."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise LabkitError(f"{what} is not JSON", hint) from None
    if not isinstance(doc, dict):
        raise LabkitError(f"{what} is not a JSON object", hint)
    return doc


def descriptor(d, what, hint):
    """``d`` if it is a descriptor: an object with a sha256 digest and, if
    any, a size that is a number of bytes; else one line."""
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
        raise LabkitError(f"{what}: not a descriptor with a digest", hint)
    blob_path(d["digest"])          # anything but sha256:<64 hex digits> is refused
    size = d.get("size")
    if size is not None and (type(size) is not int or size < 0):
        raise LabkitError(f"{what} {d['digest']}: size {str(size)[:40]!r} is not a number of bytes", hint)
    return d


def descriptors(doc, key, what, hint):
    """doc[key] (none: []) as a list of descriptors, each checked."""
    items = doc.get(key, [])
    if not isinstance(items, list):
        raise LabkitError(f"{what}: '{key}' is not a list", hint)
    return [descriptor(d, f"{what}: {key}", hint) for d in items]


def read_json(digest):
    """A manifest or config blob, checked against its digest when read."""
    data = read_blob(digest)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise DigestError(f"blob {digest} in {root()} is not JSON",
                          "a manifest or a config is JSON: `labkit rmi` the image and pull or build it again") from None


def read_blob(digest):
    """A blob's bytes, checked against its digest when read."""
    path = blob_path(digest)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise NotFound(f"blob {digest} is not in the image store {root()}",
                       "pull or build the image again") from None
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise DigestError(f"blob {digest} in {root()} does not hash to its name",
                          "the store was changed by hand: `labkit rmi` the image and pull or build it again")
    return data


# ---- the index: tags ---------------------------------------------------------

def index():
    init()
    with open(root("index.json")) as f:
        return json.load(f)


def tags():
    """[(ref name, descriptor)] of every tag, in index order."""
    return [(m.get("annotations", {}).get(REF_NAME), m) for m in index().get("manifests", [])
            if m.get("annotations", {}).get(REF_NAME)]


def lookup(ref):
    """The manifest descriptor tagged ``ref`` (a string), or None."""
    for name, desc in tags():
        if name == ref:
            return desc
    return None


def set_tag(ref, descriptor):
    """Point ``ref`` at ``descriptor`` (a manifest's); call with the Lock held."""
    idx = index()
    keep = [m for m in idx["manifests"] if m.get("annotations", {}).get(REF_NAME) != ref]
    entry = {k: descriptor[k] for k in ("mediaType", "digest", "size")}
    entry["annotations"] = {REF_NAME: ref}
    if "platform" in descriptor:
        entry["platform"] = descriptor["platform"]
    idx["manifests"] = keep + [entry]
    _write(root("index.json"), canonical(idx))


def remove_tag(ref):
    idx = index()
    before = len(idx["manifests"])
    idx["manifests"] = [m for m in idx["manifests"] if m.get("annotations", {}).get(REF_NAME) != ref]
    if len(idx["manifests"]) == before:
        return False
    _write(root("index.json"), canonical(idx))
    return True


def reachable():
    """Every blob digest some tag still needs."""
    keep = set()
    for _, desc in tags():
        keep.add(desc["digest"])
        try:
            manifest = read_json(desc["digest"])
        except LabkitError:
            continue
        keep.add(manifest["config"]["digest"])
        keep.update(layer["digest"] for layer in manifest.get("layers", []))
    return keep


def collect():
    """Remove the blobs no tag reaches; returns their digests."""
    keep = reachable()
    top = root("blobs", "sha256")
    gone = []
    for hexd in os.listdir(top) if os.path.isdir(top) else ():
        if hexd.startswith("."):
            continue
        if "sha256:" + hexd not in keep:
            os.unlink(os.path.join(top, hexd))
            gone.append("sha256:" + hexd)
    return gone
