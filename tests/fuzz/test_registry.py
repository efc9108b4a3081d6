"""A registry's answers, written by an attacker: `labkit pull` from a
registry on 127.0.0.1 (a thread of this test) that answers every request
with what hypothesis makes of a real image's manifest, index, config and
layer — wrong digests, wrong sizes, wrong types, bodies cut short, a
Content-Length that lies, redirects, credentials asked for. Each pull is
answered by an image or one LabkitError line: never a traceback, no tag
for what was refused, nothing half stored, nothing outside the store.

Every address the puller is sent to is this server's: redirects and token
realms are relative paths or 127.0.0.1 (no other address is a target)."""

import copy
import hashlib
import http.server
import io
import json
import os
import tarfile
import threading

import pytest
from hypothesis import given, strategies as st

from .test_parsers import answered, json_values, mutated

pytestmark = pytest.mark.root

ANSWERS = {}          # path -> (status, headers, body); anything else is a 404


class Hostile(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"     # the body ends where the connection does: a lying length shows

    def do_GET(self):
        status, headers, body = ANSWERS.get(self.path.split("?")[0], (404, {}, b'{"errors": []}'))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def registry():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _empty_layer():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    return buf.getvalue()


LAYER = _empty_layer()
CONFIG = {"architecture": "ARCH", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [_digest(LAYER)]},
          "config": {"Cmd": ["sh"]}}
MANIFEST = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "CONFIG", "size": 0},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(LAYER),
                        "size": len(LAYER)}]}
INDEX = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "MANIFEST", "size": 0,
                        "platform": {"architecture": "ARCH", "os": "linux"}}]}
TYPES = st.sampled_from(["application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                         "application/vnd.docker.distribution.manifest.v2+json", "text/html", ""])
STATUS = st.sampled_from([200] * 12 + [404, 500, 401, 307, 206])
# Redirects and realms lead only back to this server.
LOCATIONS = st.sampled_from(["/v2/fuzz/img/blobs/elsewhere", "/", "", "//127.0.0.1:1/x", "/v2/fuzz/img/manifests/t"])
CHALLENGES = st.sampled_from(['Basic realm="fuzz"', 'Bearer realm="/token",service="fuzz"', "Bearer", "Negotiate",
                              'Bearer realm="http://127.0.0.1:1/token"', ""])


def _fill(tree, marker, digest, size):
    """The placeholders of a mutated document, where they survived, made real."""
    if isinstance(tree, dict):
        if tree.get("digest") == marker:
            tree["digest"], tree["size"] = digest, size
        for v in tree.values():
            _fill(v, marker, digest, size)
    elif isinstance(tree, list):
        for v in tree:
            _fill(v, marker, digest, size)
    return tree


def _arch(tree, arch):
    text = json.dumps(tree).replace('"ARCH"', json.dumps(arch))
    return text.encode()


@st.composite
def answer(draw, body):
    """How the server sends ``body``: a status, headers that may lie, the body or a part of it."""
    status = draw(STATUS)
    headers = {}
    if status == 307:
        headers["Location"] = draw(LOCATIONS)
    if status == 401:
        headers["WWW-Authenticate"] = draw(CHALLENGES)
    if draw(st.integers(0, 9)) == 0:
        headers["Content-Length"] = str(len(body) + draw(st.integers(-3, 50)))
    if draw(st.integers(0, 9)) == 0:
        body = body[:draw(st.integers(0, max(len(body) - 1, 0)))]
    return status, headers, body


@given(honest=st.booleans(), config=mutated(CONFIG), manifest=mutated(MANIFEST),
       index=st.none() | st.just(INDEX) | mutated(INDEX), layer=st.just(LAYER) | st.binary(max_size=64),
       raw=st.none() | st.binary(max_size=40) | json_values.map(lambda v: json.dumps(v).encode()), data=st.data())
def test_a_pull_from_a_hostile_registry_is_whole_or_refused(registry, honest, config, manifest, index, layer, raw,
                                                            data):
    from labkit.images import distribution, image, store
    if honest:          # the harness's own image, answered straight: it must get through
        config, manifest, layer, raw = CONFIG, MANIFEST, LAYER, None
        index = None if index is None else INDEX
    config, manifest, index = copy.deepcopy((config, manifest, index))
    arch = image.architecture()
    config_bytes = _arch(config, arch)
    manifest = _fill(manifest, "CONFIG", _digest(config_bytes), len(config_bytes))
    manifest_bytes = raw if raw is not None and index is None else _arch(manifest, arch)
    top = manifest_bytes
    if index is not None:
        index = _fill(index, "MANIFEST", _digest(manifest_bytes), len(manifest_bytes))
        top = raw if raw is not None else _arch(index, arch)

    def served(body, content_type=None):
        status, headers, body = (200, {}, body) if honest else data.draw(answer(body))
        if content_type is not None:
            headers.setdefault("Content-Type", content_type)
        return status, headers, body
    ANSWERS.clear()
    ANSWERS["/v2/fuzz/img/manifests/t"] = served(top, data.draw(TYPES))
    named = data.draw(st.sampled_from([_digest(top), None] + ([] if honest else [_digest(b"another")])))
    if named:
        ANSWERS["/v2/fuzz/img/manifests/t"][1]["Docker-Content-Digest"] = named
    ANSWERS[f"/v2/fuzz/img/manifests/{_digest(manifest_bytes)}"] = served(manifest_bytes, data.draw(TYPES))
    ANSWERS[f"/v2/fuzz/img/blobs/{_digest(config_bytes)}"] = served(config_bytes)
    ANSWERS[f"/v2/fuzz/img/blobs/{_digest(LAYER)}"] = served(layer)
    ANSWERS["/token"] = served(data.draw(st.sampled_from([b'{"token": "t"}', b"{}", b"[]", b"x"])))
    ref = f"{registry}/fuzz/img:t"
    store.init()
    tags_before = {r for r, _ in store.tags()}
    outside = sorted(os.listdir(os.path.dirname(store.root())))
    try:
        result = answered("registry answer", distribution.pull, ref)
        if honest:
            assert isinstance(result, dict), result.message
        if isinstance(result, dict):       # an image: whole, and what was asked for
            assert store.lookup(ref) is not None
        else:
            assert store.lookup(ref) is None, "a refused pull left a tag"
    finally:
        with store.Lock():
            for r in {r for r, _ in store.tags()} - tags_before:
                store.remove_tag(r)
            store.collect()
    assert sorted(os.listdir(os.path.dirname(store.root()))) == outside
    assert not [n for n in os.listdir(store.root("blobs", "sha256")) if n.startswith(".incoming")]
