"""push and pull against a real registry (Debian's docker-registry, started
by `labkit registry start` on a free loopback port and removed after), and
interop both ways with skopeo; a registry that lies (a tampered blob,
garbage, an unknown media type) gets nothing stored. Traffic only to 127.0.0.1."""

import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from labkit.images import image, registry, store
from test_images import ROOT, labkit, ok

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not shutil.which("docker-registry"), reason="needs docker-registry")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def reg(rootfs):
    """A registry of this test's own; its storage and every lktest tag go at the end."""
    assert registry.status() is None, "a lab registry is running already"
    port = free_port()
    out = ok("registry", "start", "--port", str(port))
    assert f"127.0.0.1:{port}" in out
    try:
        yield f"127.0.0.1:{port}"
    finally:
        ok("registry", "stop")
        shutil.rmtree(registry.root(), ignore_errors=True)
        for ref, _ in store.tags():
            if "lktest/" in ref:
                labkit("rmi", "-f", ref)


def get(host, path, headers=None, method="GET"):
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r, body


def test_push_look_with_the_v2_api_pull_back(reg):
    ok("tag", "labkit/base", f"{reg}/lktest/base:v1")
    ok("push", f"{reg}/lktest/base:v1")
    local = store.lookup(f"{reg}/lktest/base:v1")["digest"]
    # The base layer is larger than one upload chunk: the registry's own log shows the PATCHes.
    size = image.get(f"{reg}/lktest/base:v1")["manifest"]["layers"][0]["size"]
    from labkit.images import distribution
    log = open(registry.root("log"), errors="replace").read()
    assert size > distribution.UPLOAD_CHUNK and log.count('http.request.method=PATCH') >= 2, log[-2000:]
    assert "lktest/base" in json.loads(get(reg, "/v2/_catalog")[1])["repositories"]
    assert json.loads(get(reg, "/v2/lktest/base/tags/list")[1])["tags"] == ["v1"]
    r, body = get(reg, "/v2/lktest/base/manifests/v1", {"Accept": store.MEDIA_MANIFEST})
    assert r.getheader("Docker-Content-Digest") == local == "sha256:" + hashlib.sha256(body).hexdigest()
    ok("rmi", f"{reg}/lktest/base:v1")
    assert store.lookup(f"{reg}/lktest/base:v1") is None
    err = labkit("pull", f"{reg}/lktest/base:v1").stderr
    assert "pulling" in err or "present" in err
    assert store.lookup(f"{reg}/lktest/base:v1")["digest"] == local
    assert "ID=labkit" in ok("run", "--rm", f"{reg}/lktest/base:v1", "cat", "/etc/os-release")


def test_run_pulls_what_it_lacks(reg):
    ok("tag", "labkit/base", f"{reg}/lktest/lazy:v1")
    ok("push", f"{reg}/lktest/lazy:v1")
    ok("rmi", f"{reg}/lktest/lazy:v1")
    r = labkit("run", "--rm", f"{reg}/lktest/lazy:v1", "cat", "/etc/os-release")
    assert r.returncode == 0 and "ID=labkit" in r.stdout and "lktest/lazy:v1: layer 1/1" in r.stderr, r.stderr
    assert store.lookup(f"{reg}/lktest/lazy:v1") is not None


def test_a_second_repository_mounts_the_blobs(reg):
    ok("tag", "labkit/base", f"{reg}/lktest/a:v1")
    ok("push", f"{reg}/lktest/a:v1")
    ok("tag", "labkit/base", f"{reg}/lktest/b:v1")
    r = labkit("push", f"{reg}/lktest/b:v1")
    assert r.returncode == 0 and "mounted from lktest/a" in r.stderr, r.stderr


@pytest.mark.skipif(not (shutil.which("skopeo") and shutil.which("umoci") and shutil.which("runc")),
                    reason="needs skopeo, umoci and runc")
def test_skopeo_umoci_runc_take_what_labkit_pushed(reg, tmp_path):
    ok("tag", "labkit/base", f"{reg}/lktest/out:v1")
    ok("push", f"{reg}/lktest/out:v1")
    layout = tmp_path / "layout"
    r = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{reg}/lktest/out:v1", f"oci:{layout}:x"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    bundle = tmp_path / "bundle"
    assert subprocess.run(["umoci", "unpack", "--image", f"{layout}:x", str(bundle)], capture_output=True).returncode == 0
    cfg = json.load(open(bundle / "config.json"))
    cfg["process"]["args"], cfg["process"]["terminal"] = ["cat", "/etc/os-release"], False
    json.dump(cfg, open(bundle / "config.json", "w"))
    r = subprocess.run(["runc", "--root", str(tmp_path / "runc"), "run", "-b", str(bundle), "lk-reg-runc"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "ID=labkit" in r.stdout, r.stderr


@pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo")
@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_labkit_pulls_what_skopeo_pushed(reg, fmt):
    """skopeo pushes labkit/base (as OCI, and converted to Docker's schema 2, gzip layers); labkit pulls and runs it."""
    ok("images")
    r = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--format", fmt,
                        f"oci:{store.root()}:labkit/base:latest", f"docker://{reg}/lktest/skopeo-{fmt}:v1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ok("pull", f"{reg}/lktest/skopeo-{fmt}:v1")
    img = image.get(f"{reg}/lktest/skopeo-{fmt}:v1")
    if fmt == "v2s2":
        assert img["manifest"]["mediaType"] == store.MEDIA_DOCKER_MANIFEST
    assert "ID=labkit" in ok("run", "--rm", f"{reg}/lktest/skopeo-{fmt}:v1", "cat", "/etc/os-release")


def test_a_tampered_registry_blob_is_never_stored(reg):
    ok("tag", "labkit/base", f"{reg}/lktest/t:v1")
    ok("push", f"{reg}/lktest/t:v1")
    layer = image.get(f"{reg}/lktest/t:v1")["manifest"]["layers"][0]["digest"]
    ok("rmi", f"{reg}/lktest/t:v1", "labkit/base")           # the layer is in no local image now
    assert not store.has(layer)
    data = os.path.join(registry.root("data"), "docker", "registry", "v2", "blobs", "sha256",
                        layer[7:9], layer[7:], "data")
    with open(data, "r+b") as f:     # same size, one byte changed
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    r = labkit("pull", f"{reg}/lktest/t:v1")
    assert r.returncode != 0 and layer in r.stderr and "Traceback" not in r.stderr
    assert store.lookup(f"{reg}/lktest/t:v1") is None and not store.has(layer)


class Liar(http.server.BaseHTTPRequestHandler):
    """A "registry" on loopback that answers /v2/ and then lies."""
    body, media = b"", ""

    def do_GET(self):
        if self.path == "/v2/":
            self.send_response(200)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", self.media)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *a):
        pass


@pytest.mark.parametrize("body, media, words", [
    (b"<html>not a manifest</html>", "text/html", "is not JSON"),
    (json.dumps({"schemaVersion": 2, "mediaType": "application/x-weird"}).encode(), "application/x-weird",
     "is not one labkit reads"),
    (json.dumps({"schemaVersion": 1, "name": "x"}).encode(), "application/vnd.docker.distribution.manifest.v1+json",
     "is not one labkit reads"),
])
def test_a_registry_answering_garbage(rootfs, body, media, words):
    handler = type("H", (Liar,), {"body": body, "media": media})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        r = labkit("pull", f"{host}/lktest/liar:v1")
        assert r.returncode != 0 and words in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert store.lookup(f"{host}/lktest/liar:v1") is None
    finally:
        server.shutdown()
        server.server_close()


def test_push_with_no_registry(rootfs):
    port = free_port()
    ok("tag", "labkit/base", f"127.0.0.1:{port}/lktest/none:v1")
    try:
        r = labkit("push", f"127.0.0.1:{port}/lktest/none:v1")
        assert r.returncode != 0 and "labkit registry start" in r.stderr and "Traceback" not in r.stderr
        r = labkit("push", "labkit/base")
        assert r.returncode != 0 and "names no registry" in r.stderr
    finally:
        ok("rmi", f"127.0.0.1:{port}/lktest/none:v1")


class Guarded(Liar):
    """Asks for a Bearer token (as Docker Hub does), hands one out at /token,
    then answers garbage: the pull must get as far as the manifest."""
    seen = []

    def do_GET(self):
        if self.path.startswith("/token"):
            Guarded.seen.append(self.path)
            body = json.dumps({"token": "lab-token"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.headers.get("Authorization") != "Bearer lab-token":
            host = f"127.0.0.1:{self.server.server_address[1]}"
            self.send_response(401)
            self.send_header("WWW-Authenticate",
                             f'Bearer realm="http://{host}/token",service="lab",scope="repository:lktest/g:pull"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            Guarded.seen.append("authorized " + self.path)
            super().do_GET()


def test_a_bearer_token_is_fetched_and_sent(rootfs):
    handler = type("G", (Guarded,), {"body": b"garbage", "media": "text/plain"})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Guarded.seen.clear()
    try:
        r = labkit("pull", f"127.0.0.1:{server.server_address[1]}/lktest/g:v1")
        assert r.returncode != 0 and "is not JSON" in r.stderr, r.stderr
        assert Guarded.seen[0].startswith("/token?") and "service=lab" in Guarded.seen[0] \
            and "scope=repository%3Alktest%2Fg%3Apull" in Guarded.seen[0]
        assert Guarded.seen[1] == "authorized /v2/lktest/g/manifests/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(not (shutil.which("skopeo") and shutil.which("umoci") and shutil.which("runc")),
                    reason="needs skopeo, umoci and runc")
def test_built_pushed_then_skopeo_umoci_runc(reg, tmp_path):
    """An image labkit builds and pushes is pulled by skopeo, unpacked by umoci and run by runc."""
    from labkit.build import build as builder
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "note.txt").write_text("built by labkit\n")
    (ctx / "Containerfile").write_text("FROM labkit/base\nCOPY note.txt /etc/note.txt\n"
                                       "RUN echo ran >> /etc/note.txt\nCMD [\"cat\", \"/etc/note.txt\"]\n")
    try:
        ok("build", "-t", f"{reg}/lktest/built:v1", str(ctx))
        ok("push", f"{reg}/lktest/built:v1")
        layout = tmp_path / "layout"
        r = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{reg}/lktest/built:v1",
                            f"oci:{layout}:b"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        bundle = tmp_path / "bundle"
        r = subprocess.run(["umoci", "unpack", "--image", f"{layout}:b", str(bundle)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        cfg = json.load(open(bundle / "config.json"))
        assert cfg["process"]["args"] == ["cat", "/etc/note.txt"]     # the image's CMD, as umoci read it
        cfg["process"]["terminal"] = False
        json.dump(cfg, open(bundle / "config.json", "w"))
        r = subprocess.run(["runc", "--root", str(tmp_path / "runc"), "run", "-b", str(bundle), "lk-built-runc"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert (r.returncode, r.stdout) == (0, "built by labkit\nran\n"), r.stderr
    finally:
        builder.prune()


class Sizes(Liar):
    """Serves one manifest whose config descriptor lies about its size."""
    blob, declared = b"", 0

    def do_GET(self):
        if self.path == "/v2/":
            return super().do_GET()
        digest = "sha256:" + hashlib.sha256(self.blob).hexdigest()
        if "/manifests/" in self.path:
            body = json.dumps({"schemaVersion": 2, "mediaType": store.MEDIA_MANIFEST,
                               "config": {"mediaType": store.MEDIA_CONFIG, "digest": digest, "size": self.declared},
                               "layers": []}).encode()
            media = store.MEDIA_MANIFEST
        else:
            body, media = self.blob, "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("size, declared, words", [
    (64, 10 ** 12, "its descriptor says 1000000000000"),       # far beyond the blob
    (1 << 20, 10, "more than the 10 bytes"),                     # the stream is cut off at the size given
])
def test_a_size_that_lies(rootfs, size, declared, words):
    blob = os.urandom(size)
    handler = type("S", (Sizes,), {"blob": blob, "declared": declared})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        r = labkit("pull", f"{host}/lktest/sizes:v1")
        assert r.returncode != 0 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not store.has("sha256:" + hashlib.sha256(blob).hexdigest())
        assert not [n for n in os.listdir(store.root("blobs", "sha256")) if n.startswith(".incoming")]
    finally:
        server.shutdown()
        server.server_close()
