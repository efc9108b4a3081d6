"""Stage 7's local store against the real tools: labkit's store is an OCI
image layout that umoci and skopeo read as it is; an image umoci changed
and skopeo archived is loaded and run by labkit; labkit's image, unpacked
by umoci or by labkit, runs under runc. Digests are checked with hashlib,
never taken from labkit's own answers."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from labkit import home  # noqa: E402
from labkit.images import image, store  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
needs = lambda *tools: pytest.mark.skipif(not all(shutil.which(t) for t in tools),  # noqa: E731
                                          reason=f"needs {', '.join(tools)}")


def labkit(*args, input=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "labkit", *args], input=input, capture_output=True, text=True,
                          timeout=timeout, cwd="/", env=dict(os.environ, PYTHONPATH=ROOT))


def ok(*args, **kw):
    r = labkit(*args, **kw)
    assert r.returncode == 0, f"labkit {' '.join(args)}: {r.returncode} {r.stderr}"
    return r.stdout


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@pytest.fixture
def tags():
    """Tags a test makes (lktest/...), removed at its end."""
    made = []
    yield made
    for ref in made:
        labkit("rmi", "-f", ref)


def test_base_image_is_an_oci_layout(rootfs):
    ok("images")
    info = json.loads(ok("image", "inspect", "labkit/base"))[0]
    desc = store.lookup("labkit/base:latest")
    # Every name in the store is the sha256 of the bytes under it.
    for digest in [desc["digest"], info["Manifest"]["config"]["digest"]] + \
            [layer["digest"] for layer in info["Manifest"]["layers"]]:
        assert sha256_file(store.blob_path(digest)) == digest
    # An uncompressed layer's diff_id is its digest.
    assert info["Config"]["rootfs"]["diff_ids"] == [layer["digest"] for layer in info["Manifest"]["layers"]]
    layout = json.load(open(store.root("oci-layout")))
    assert layout == {"imageLayoutVersion": "1.0.0"}


@needs("umoci", "skopeo")
def test_umoci_and_skopeo_read_the_store(rootfs):
    ok("images")
    listed = subprocess.run(["umoci", "ls", "--layout", store.root()], capture_output=True, text=True)
    assert "labkit/base:latest" in listed.stdout.split(), listed.stderr
    r = subprocess.run(["skopeo", "inspect", f"oci:{store.root()}:labkit/base:latest"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Digest"] == store.lookup("labkit/base:latest")["digest"]


@needs("umoci", "runc")
def test_umoci_unpacks_it_and_runc_runs_it(rootfs, tmp_path):
    ok("images")
    bundle = tmp_path / "bundle"
    r = subprocess.run(["umoci", "unpack", "--image", f"{store.root()}:labkit/base:latest", str(bundle)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cfg = json.load(open(bundle / "config.json"))
    cfg["process"]["args"], cfg["process"]["terminal"] = ["cat", "/etc/os-release"], False
    json.dump(cfg, open(bundle / "config.json", "w"))
    r = subprocess.run(["runc", "--root", str(tmp_path / "runc"), "run", "-b", str(bundle), "lk-img-umoci"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert 'ID=labkit' in r.stdout


@needs("umoci", "skopeo")
def test_an_image_umoci_changed_runs_under_labkit(rootfs, tmp_path, tags):
    """skopeo copies labkit/base out; umoci adds a layer (gzip) and sets the
    config; skopeo archives it; labkit loads and runs it with that config."""
    ok("images")
    layout = tmp_path / "layout"
    run = lambda *a: subprocess.run(a, capture_output=True, text=True, timeout=120)  # noqa: E731
    r = run("skopeo", "copy", f"oci:{store.root()}:labkit/base:latest", f"oci:{layout}:t")
    assert r.returncode == 0, r.stderr
    work = tmp_path / "work"
    assert run("umoci", "unpack", "--image", f"{layout}:t", str(work)).returncode == 0
    (work / "rootfs" / "etc" / "made-by").write_text("umoci\n")
    os.unlink(work / "rootfs" / "etc" / "os-release")          # a whiteout in the new layer
    assert run("umoci", "repack", "--image", f"{layout}:t", str(work)).returncode == 0
    r = run("umoci", "config", "--image", f"{layout}:t", "--config.env", "WHO=umoci",
            "--config.workingdir", "/etc", "--config.user", "nobody",
            "--config.entrypoint", "/bin/sh", "--config.entrypoint", "-c",
            "--config.cmd", "cat made-by; echo $WHO; pwd; id -u; test -e os-release || echo whited-out")
    assert r.returncode == 0, r.stderr
    archive = tmp_path / "img.tar"
    r = run("skopeo", "copy", f"oci:{layout}:t", f"oci-archive:{archive}:lktest/umoci:v1")
    assert r.returncode == 0, r.stderr
    tags.append("lktest/umoci:v1")
    assert "Loaded image: lktest/umoci:v1" in ok("load", "-i", str(archive))
    img = image.get("lktest/umoci:v1")
    assert any(layer["mediaType"].endswith("+gzip") for layer in img["manifest"]["layers"])
    out = ok("run", "--rm", "lktest/umoci:v1").split()
    assert out == ["umoci", "umoci", "/etc", "65534", "whited-out"]


@needs("runc")
def test_unpack_to_a_bundle_runs_under_both_runtimes(rootfs, tmp_path, tags):
    tags.append("lktest/entry:v1")
    image.create("lktest/entry:v1", parent="labkit/base:latest",
                 config={"Entrypoint": ["/bin/echo", "entry"], "Cmd": ["default"]})
    assert ok("run", "--rm", "lktest/entry:v1").strip() == "entry default"
    assert ok("run", "--rm", "lktest/entry:v1", "other").strip() == "entry other"
    bundle = tmp_path / "b"
    ok("image", "unpack", "lktest/entry:v1", str(bundle))
    for argv in ([sys.executable, "-m", "labkit.cli.runtime"], ["runc"]):
        r = subprocess.run([*argv, "--root", str(tmp_path / f"st-{argv[0].rsplit('/', 1)[-1]}"), "run", "-b",
                            str(bundle), "lk-unpacked"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PYTHONPATH=ROOT), stdin=subprocess.DEVNULL)
        assert (r.returncode, r.stdout.strip()) == (0, "entry default"), r.stderr


def test_save_load_tag_rmi(rootfs, tmp_path, tags):
    ok("tag", "labkit/base", "lktest/copy:v1")
    tags.append("lktest/copy:v1")
    archive = tmp_path / "copy.tar"
    ok("save", "-o", str(archive), "lktest/copy:v1")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "index.json" in names and "oci-layout" in names
    assert all(sha256_file_in(archive, n) == "sha256:" + n.rsplit("/", 1)[1] for n in names if n.startswith("blobs/"))
    ok("rmi", "lktest/copy:v1")
    assert "lktest/copy" not in ok("images")
    assert "lktest/copy:v1" in ok("load", "-i", str(archive))
    # A container on the image keeps it from rmi, unless -f.
    cid = ok("run", "-d", "lktest/copy:v1", "sleep", "300").strip()
    try:
        r = labkit("rmi", "lktest/copy:v1")
        assert r.returncode != 0 and cid in r.stderr and "Traceback" not in r.stderr
    finally:
        ok("rm", "-f", cid)
    ok("rmi", "lktest/copy:v1")
    assert store.lookup("labkit/base:latest") is not None          # the other tag is untouched


def sha256_file_in(archive, name):
    with tarfile.open(archive) as tar:
        return "sha256:" + hashlib.sha256(tar.extractfile(name).read()).hexdigest()


def _archive(tmp_path, entries):
    path = tmp_path / "bad.tar"
    import io
    with tarfile.open(path, "w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_load_refuses_bad_archives(rootfs, tmp_path):
    blobs_before = set(os.listdir(store.root("blobs", "sha256"))) if os.path.isdir(store.root("blobs")) else set()
    tags_before = store.tags()
    fake = "sha256:" + "0" * 64
    cases = [
        ([("blobs/sha256/" + "0" * 64, b"not what the name says")], "its bytes hash to"),
        ([("../evil", b"x")], "has no place in an OCI image layout"),
        ([("oci-layout", b"{}")], "no index.json"),
        ([("index.json", json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": store.MEDIA_MANIFEST, "digest": fake, "size": 2,
             "annotations": {store.REF_NAME: "lktest/bad:v1"}}]}).encode())], "not in the image store"),
    ]
    for entries, words in cases:
        r = labkit("load", "-i", str(_archive(tmp_path, entries)))
        assert r.returncode != 0 and words in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(home.home(), "evil"))
    assert store.tags() == tags_before
    assert set(os.listdir(store.root("blobs", "sha256"))) <= blobs_before   # no blob of a refused tar was kept


def test_bad_names_and_missing_images(rootfs):
    for args, words in ((["run", "--rm", "lktest/nosuch:v9"], "no such image 'lktest/nosuch:v9'"),
                        (["run", "--rm", "Bad Name"], "bad image name"),
                        (["rmi", "lktest/nosuch"], "no such image"),
                        (["tag", "labkit/base", "UPPER"], "not a repository name"),
                        (["image", "inspect", "x@sha256:zz"], "not a sha256 digest")):
        r = labkit(*args)
        assert r.returncode != 0 and words in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_tampered_layer_is_never_run(rootfs, tmp_path, tags):
    import io
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        data = b"original\n"
        info = tarfile.TarInfo("etc/tamper-me")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tags.append("lktest/tamper:v1")
    image.create("lktest/tamper:v1", [str(layer)], parent="labkit/base:latest")
    blob = store.blob_path(image.get("lktest/tamper:v1")["manifest"]["layers"][-1]["digest"])
    with open(blob, "r+b") as f:      # the same size, other bytes: what a disk or a mirror could do
        content = f.read().replace(b"original", b"tampered")
        f.seek(0)
        f.write(content)
    r = labkit("run", "--rm", "lktest/tamper:v1", "cat", "/etc/tamper-me")
    assert r.returncode != 0 and "tampered" not in r.stdout
    assert "unpacks to" in r.stderr and "Traceback" not in r.stderr
