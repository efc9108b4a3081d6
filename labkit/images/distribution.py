"""`labkit pull` and `labkit push`: the distribution API (OCI distribution-spec,
Docker Registry HTTP API V2), with the standard library's http.client.

    GET  /v2/                                    is this a registry? (401: how to log in)
    GET  /v2/NAME/manifests/REF                  with Accept: the manifest types labkit reads
    GET  /v2/NAME/blobs/DIGEST                   a config or a layer (may redirect)
    HEAD /v2/NAME/blobs/DIGEST                   push: does the registry have it already?
    POST /v2/NAME/blobs/uploads/?mount=D&from=R  push: take it from another repository there
    POST /v2/NAME/blobs/uploads/                 push: start an upload -> Location
    PATCH LOCATION (Content-Range: 0-8388607)    push: a chunk of a large blob -> the next Location
    PUT  LOCATION?digest=DIGEST                  push: the (rest of the) blob, the digest to check it by
    PUT  /v2/NAME/manifests/TAG                  push: the manifest, once its blobs are there

Everything a registry sends is untrusted: each blob is streamed into the
store, its sha256 and size checked against its descriptor (store.put_stream:
nothing is kept on a mismatch), each layer's uncompressed stream against
the config's diff_id, the manifest against the digest it was asked by (or
the one the registry names). Plain HTTP only for 127.0.0.0/8, ::1 and
localhost, as docker; HTTPS otherwise. A 401 with a Bearer challenge gets
an (anonymous, or basic-authenticated) token from the realm; Basic uses the
credentials of $LABKIT_REGISTRY_AUTH (user:password).
"""

import base64
import http.client
import io
import ipaddress
import json
import os
import sys
import urllib.parse

from labkit.images import layers
from labkit.errors import LabkitError, NotFound
from labkit.i18n import N_
from labkit.images import image, reference, store

MANIFESTS = store.IMAGE_MANIFESTS
INDEXES = (store.MEDIA_INDEX, store.MEDIA_DOCKER_LIST)
ACCEPT = ", ".join(MANIFESTS + INDEXES)
MAX_MANIFEST = 4 << 20      # a manifest larger than this is refused (the spec's suggested limit)
CHUNK = 1 << 20
UPLOAD_CHUNK = 8 << 20      # a blob larger than this is pushed in PATCH chunks, each a Content-Range


def insecure(host):
    """Plain HTTP: only for this machine's own addresses."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:host.index("]")]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Registry:
    def __init__(self, host, repository):
        self.host, self.repository = host, repository
        self.token = None

    def _connect(self, host=None, secure=None):
        host = host or self.host
        secure = not insecure(host) if secure is None else secure
        cls = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        return cls(host, timeout=60)

    def request(self, method, path, headers=None, body=None, redirects=3):
        """One request, with a token fetched once on a 401 and redirects followed
        (a registry may send blobs from elsewhere). Returns (response, connection)."""
        headers = dict(headers or {})
        url = path
        for attempt in range(redirects + 2):
            parsed = urllib.parse.urlsplit(url)
            host = parsed.netloc or self.host
            secure = parsed.scheme == "https" if parsed.scheme else None
            if self.token and host == self.host:
                headers["Authorization"] = self.token
            target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
            conn = self._connect(host, secure)
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
            except OSError as e:
                conn.close()
                raise LabkitError(f"registry {self.host}: {e.strerror or e}",
                                  "is it running? `labkit registry start` serves one on 127.0.0.1:5000") from None
            if resp.status == 401 and self.token is None and attempt == 0:
                challenge = resp.getheader("WWW-Authenticate") or ""
                resp.read()
                conn.close()
                self.token = self._authenticate(challenge)
                if self.token is None:
                    raise LabkitError(f"registry {self.host} asks for credentials",
                                      "set LABKIT_REGISTRY_AUTH=user:password")
                continue
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                url = urllib.parse.urljoin(f"{'http' if insecure(host) else 'https'}://{host}{target}",
                                           resp.getheader("Location"))
                resp.read()
                conn.close()
                if parsed.netloc != urllib.parse.urlsplit(url).netloc:
                    headers.pop("Authorization", None)
                continue
            return resp, conn
        raise LabkitError(f"registry {self.host}: too many redirects for {path}", "check the registry's configuration")

    def _authenticate(self, challenge):
        creds = os.environ.get("LABKIT_REGISTRY_AUTH")
        basic = "Basic " + base64.b64encode(creds.encode()).decode() if creds else None
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            return basic
        if scheme.lower() != "bearer":
            return None
        fields = dict(p.split("=", 1) for p in _split_params(params))
        fields = {k: v.strip('"') for k, v in fields.items()}
        realm = fields.pop("realm", None)
        if not realm:
            return None
        query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
        # A realm without a host is the registry's own (as a browser resolves a link).
        parsed = urllib.parse.urlsplit(urllib.parse.urljoin(
            f"{'http' if insecure(self.host) else 'https'}://{self.host}/", realm))
        conn = self._connect(parsed.netloc, parsed.scheme == "https")
        conn.request("GET", f"{parsed.path}?{query}", headers={"Authorization": basic} if basic else {})
        resp = conn.getresponse()
        data = resp.read(1 << 20)
        conn.close()
        if resp.status != 200:
            return None
        try:
            answer = json.loads(data)
        except ValueError:
            return None
        token = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
        return f"Bearer {token}" if isinstance(token, str) and token else None


def _split_params(text):
    out, cur, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return [p for p in out if "=" in p]


def _target(text):
    ref = reference.parse(text)
    if not ref.registry:
        raise LabkitError(f"'{ref}' names no registry",
                          "name it with the registry first, e.g. 127.0.0.1:5000/lab/web:v1 (labkit tag it)")
    return ref


def _fail(resp, what, hint):
    body = resp.read(4096).decode(errors="replace")
    try:
        errors = json.loads(body).get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or body
    except (ValueError, AttributeError, TypeError):     # not the spec's {"errors": [{...}]}
        detail = body.strip()[:200] or resp.reason
    raise LabkitError(f"{what}: HTTP {resp.status} {detail[:300]}", hint)


GARBAGE = N_("the registry answered something that is no image: nothing was stored")


def _expect(resp, conn, status, what, hint):
    """The answer must have ``status`` (else one line naming ``what``); it is
    drained and its connection closed. Returns it: its headers stay readable."""
    try:
        if resp.status != status:
            _fail(resp, what, hint)
        resp.read()
    finally:
        conn.close()
    return resp


def say(text):
    print(text, file=sys.stderr, flush=True)


class Progress:
    """A file-like wrapper that counts what is read through it, and on a
    terminal redraws one line: 'pulling sha256:ab12… 3.2/14.3 MB'."""

    def __init__(self, stream, label, total):
        self.stream, self.label, self.total, self.done = stream, label, total or 0, 0
        self.tty = sys.stderr.isatty() and self.total > CHUNK

    def read(self, n=-1):
        data = self.stream.read(n)
        self.done += len(data)
        if self.tty:
            end = "\n" if not data or self.done >= self.total else ""
            print(f"\r  {self.label} {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB", end=end,
                  file=sys.stderr, flush=True)
        return data


# ---- pull ----------------------------------------------------------------

def _get_manifest(reg, ref_or_digest):
    resp, conn = reg.request("GET", f"/v2/{reg.repository}/manifests/{ref_or_digest}", {"Accept": ACCEPT})
    try:
        if resp.status == 404:
            resp.read()
            raise NotFound(f"{reg.host}/{reg.repository}:{ref_or_digest}: no such manifest in the registry",
                           f"`curl http://{reg.host}/v2/{reg.repository}/tags/list` lists its tags")
        if resp.status != 200:
            _fail(resp, f"manifest {reg.repository}:{ref_or_digest}", "check the name and the registry")
        data = resp.read(MAX_MANIFEST + 1)
        if len(data) > MAX_MANIFEST:
            raise LabkitError(f"manifest {reg.repository}:{ref_or_digest}: larger than {MAX_MANIFEST} bytes",
                              "the registry sent something that is no manifest")
        media = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        named = resp.getheader("Docker-Content-Digest")
    finally:
        conn.close()
    import hashlib
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    expected = ref_or_digest if ref_or_digest.startswith("sha256:") else named
    if expected and expected != digest:
        raise store.DigestError(f"manifest {reg.repository}:{ref_or_digest}: its bytes hash to {digest}, "
                                f"not {expected}", "the registry sent a corrupted or tampered manifest: nothing stored")
    doc = store.json_object(data, f"manifest {reg.repository}:{ref_or_digest}", GARBAGE)
    media = doc.get("mediaType") or media
    if not isinstance(media, str):
        raise LabkitError(f"manifest {reg.repository}:{ref_or_digest}: its mediaType is not a name", GARBAGE)
    if media not in MANIFESTS + INDEXES:
        raise LabkitError(f"manifest {reg.repository}:{ref_or_digest}: media type '{media}' is not one labkit reads",
                          f"labkit reads {', '.join(MANIFESTS + INDEXES)}")
    return doc, data, digest, media


def _blob(reg, desc, what):
    if store.has(desc["digest"]):
        return
    resp, conn = reg.request("GET", f"/v2/{reg.repository}/blobs/{desc['digest']}")
    try:
        if resp.status != 200:
            _fail(resp, f"{what} {desc['digest']}", "the registry lacks a blob its manifest names")
        store.put_stream(Progress(resp, f"pulling {desc['digest'][:19]}…", desc.get("size")),
                         expected=desc["digest"], size=desc.get("size"))
    finally:
        conn.close()


def _platform(m):
    p = m.get("platform")
    return (p.get("os"), p.get("architecture")) if isinstance(p, dict) else (None, None)


def pull(text):
    ref = _target(text)
    reg = Registry(ref.registry, ref.repository)
    try:
        return _pull(ref, reg)
    except (http.client.HTTPException, ConnectionError, TimeoutError) as e:
        # An answer cut short, a lying Content-Length, a connection dropped mid-blob.
        raise LabkitError(f"registry {reg.host}: the answer broke off ({type(e).__name__})",
                          "nothing was stored; try again, or check the registry") from None


def _pull(ref, reg):
    doc, data, digest, media = _get_manifest(reg, ref.digest or ref.tag)
    if media in INDEXES:
        arch = image.architecture()
        chosen = [m for m in store.descriptors(doc, "manifests", f"{ref}: index", GARBAGE)
                  if _platform(m) == ("linux", arch)]
        if not chosen:
            raise NotFound(f"{ref}: no image for linux/{arch} in its index", "push one for this machine's platform")
        doc, data, digest, media = _get_manifest(reg, chosen[0]["digest"])
        if media not in MANIFESTS:
            raise LabkitError(f"{ref}: an index inside an index", "labkit reads one level of index")
    with store.Lock():
        try:
            _store_image(ref, reg, doc, data, digest, media)
        except BaseException:
            store.collect()   # what came before the failure: no half-stored image
            raise
    return {"ref": str(ref), "digest": digest}


def _store_image(ref, reg, doc, data, digest, media):
    """Config, layers (each checked against its diff_id), then the manifest and the tag."""
    _blob(reg, store.descriptor(doc.get("config"), f"{ref}: config", GARBAGE), "config")
    config = store.read_json(doc["config"]["digest"])
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    diff_ids = (rootfs.get("diff_ids") if isinstance(rootfs, dict) else None) or []
    if not isinstance(config, dict) or not isinstance(diff_ids, list) or \
            not all(isinstance(d, str) for d in diff_ids):
        raise LabkitError(f"{ref}: the config is not an image config (rootfs.diff_ids)", GARBAGE)
    found = store.descriptors(doc, "layers", f"{ref}: manifest", GARBAGE)
    if len(diff_ids) != len(found):
        raise LabkitError(f"{ref}: {len(found)} layers but {len(diff_ids)} diff_ids",
                          "the image is inconsistent: nothing was tagged")
    for i, (desc, diff_id) in enumerate(zip(found, diff_ids)):
        fresh = not store.has(desc["digest"])
        say(f"{ref}: layer {i + 1}/{len(diff_ids)} {desc['digest'][:19]}… "
            f"{(desc.get('size') or 0) / 1e6:.1f} MB {'pulling' if fresh else 'present'}")
        _blob(reg, desc, "layer")
        if fresh and layers.diff_id(store.blob_path(desc["digest"])) != diff_id:
            os.unlink(store.blob_path(desc["digest"]))
            raise store.DigestError(f"{ref}: layer {desc['digest']} does not unpack to its diff_id {diff_id}",
                                    "the image is corrupt: nothing was tagged")
    stored, size = store.put_stream(io.BytesIO(data), expected=digest)
    store.set_tag(str(ref), {"mediaType": media, "digest": stored, "size": size,
                             "platform": {"architecture": str(config.get("architecture", "")),
                                          "os": str(config.get("os", ""))}})


# ---- push ----------------------------------------------------------------

def _has_blob(reg, digest):
    resp, conn = reg.request("HEAD", f"/v2/{reg.repository}/blobs/{digest}")
    resp.read()
    conn.close()
    return resp.status == 200


def _mount(reg, digest, sources):
    """Cross-repository mount: the registry links a blob it has under another name."""
    for other in sources:
        query = urllib.parse.urlencode({"mount": digest, "from": other})
        resp, conn = reg.request("POST", f"/v2/{reg.repository}/blobs/uploads/?{query}", {"Content-Length": "0"})
        resp.read()
        conn.close()
        if resp.status == 201:
            return other
    return None


def _upload(reg, digest, path):
    """POST starts an upload; a small blob goes in one PUT (monolithic), a
    large one in PATCH chunks (each with its Content-Range, each answered
    with the next Location), then a PUT with the digest closes it."""
    resp, conn = reg.request("POST", f"/v2/{reg.repository}/blobs/uploads/", {"Content-Length": "0"})
    location = resp.getheader("Location")
    resp.read()
    conn.close()
    if resp.status != 202 or not location:
        raise LabkitError(f"push {digest}: the registry did not start an upload (HTTP {resp.status})",
                          "check that the registry accepts pushes")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        body = Progress(f, f"pushing {digest[:19]}…", size)
        if size > UPLOAD_CHUNK:
            offset = 0
            while offset < size:
                chunk = body.read(UPLOAD_CHUNK)
                resp, conn = reg.request("PATCH", location, {
                    "Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}, body=chunk)
                _expect(resp, conn, 202, f"push {digest}: chunk at {offset}", "the registry refused a chunk")
                location = resp.getheader("Location") or location
                offset += len(chunk)
            body, length = b"", 0
        else:
            length = size
        sep = "&" if "?" in location else "?"
        resp, conn = reg.request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}",
                                 {"Content-Type": "application/octet-stream", "Content-Length": str(length)},
                                 body=body)
    _expect(resp, conn, 201, f"push {digest}", "the registry refused the blob")


def push(text):
    ref = _target(text)
    img = image.get(str(ref))
    reg = Registry(ref.registry, ref.repository)
    # Repositories of the same registry this store has pulled from or pushed to: mount sources.
    sources = sorted({reference.parse(name).repository for name, _ in store.tags()
                      if name.startswith(ref.registry + "/") and reference.parse(name).repository != ref.repository})
    blobs = [(d["digest"], "layer") for d in img["manifest"]["layers"]] + [(img["manifest"]["config"]["digest"], "config")]
    for digest, kind in blobs:
        size = os.path.getsize(store.blob_path(digest))
        if _has_blob(reg, digest):
            say(f"{ref}: {kind} {digest[:19]}… present")
            continue
        mounted = _mount(reg, digest, sources)
        if mounted:
            say(f"{ref}: {kind} {digest[:19]}… mounted from {mounted}")
            continue
        say(f"{ref}: {kind} {digest[:19]}… {size / 1e6:.1f} MB pushing")
        _upload(reg, digest, store.blob_path(digest))
    with open(store.blob_path(img["descriptor"]["digest"]), "rb") as f:
        data = f.read()
    media = img["manifest"].get("mediaType") or store.MEDIA_MANIFEST
    resp, conn = reg.request("PUT", f"/v2/{reg.repository}/manifests/{ref.tag or ref.digest}",
                             {"Content-Type": media, "Content-Length": str(len(data))}, body=data)
    _expect(resp, conn, 201, f"push manifest {ref}", "the registry refused the manifest")
    return {"ref": str(ref), "digest": img["descriptor"]["digest"]}
