"""Layer tars and image archives an attacker writes: `labkit load` of an
OCI layout tar, and a layer applied onto a root (pull, load, build). Each
is answered by a result or one LabkitError line, and nothing is written
outside its target: not beside the root, not through a symlink or a
hardlink that leads out, not in the image store under another name."""

import hashlib
import io
import json
import os
import tarfile

import pytest
from hypothesis import given, strategies as st

from .test_parsers import answered, mutated

pytestmark = pytest.mark.root

NAMES = st.lists(st.sampled_from(["a", "b", "..", ".", "", "escape", "outside", ".wh.a", ".wh..wh..opq", "etc",
                                  "passwd"]), min_size=1, max_size=4).map("/".join)
NAMES = NAMES | NAMES.map(lambda n: "/" + n) | NAMES.map(lambda n: "./" + n)
LINKS = st.sampled_from(["a", "../outside", "../outside/secret", "/", "/etc/passwd", "../../", "b/../../outside",
                         "secret", ""]) | NAMES
KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
                         tarfile.CHRTYPE])
ENTRIES = st.lists(st.tuples(NAMES, KINDS, LINKS, st.binary(max_size=16), st.sampled_from([0o644, 0o4755, 0o777])),
                   max_size=8)


def tar_of(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, link, data, mode in entries:
            info = tarfile.TarInfo(name or ".")
            info.type, info.mode = kind, mode
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = link
            if kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def tree(path):
    """Every name below path, with its inode and size, not following links."""
    out = {}
    for base, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(base, n)
            st_ = os.lstat(p)
            out[os.path.relpath(p, path)] = (st_.st_ino, st_.st_size, st_.st_mode)
    return out


@given(entries=ENTRIES, whiteouts=st.sampled_from(["delete", "overlay"]))
def test_a_layer_writes_only_into_its_root(tmp_path_factory, entries, whiteouts):
    from labkit.images import layers
    sandbox = tmp_path_factory.mktemp("layer")
    target, outside = sandbox / "target", sandbox / "outside"
    target.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("host's\n")
    (target / "a").mkdir()                      # something for whiteouts and links to meet
    layer = sandbox / "layer.tar"
    layer.write_bytes(tar_of(entries))
    before = tree(outside)
    passwd = os.stat("/etc/passwd")
    answered("layer tar", layers.apply, str(layer), str(target), whiteouts=whiteouts)
    assert tree(outside) == before, "a layer wrote beside its root"
    assert sorted(os.listdir(sandbox)) == ["layer.tar", "outside", "target"]
    assert os.stat("/etc/passwd").st_nlink == passwd.st_nlink, "a hardlink to a host file"
    secret = os.stat(outside / "secret").st_ino
    assert all(ino != secret for ino, _, _ in tree(target).values()), "a hardlink to a file beside the root"


def _blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


CONFIG = _blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                           "config": {"Cmd": ["sh"]}}).encode())
MANIFEST = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG[0],
                       "size": len(CONFIG[1])}, "layers": []}
INDEX = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                            "digest": "MANIFEST", "size": 0,
                                            "annotations": {"org.opencontainers.image.ref.name": "fuzz/img:v1"}}]}


@given(index=mutated(INDEX), manifest=mutated(MANIFEST), extra=st.lists(st.tuples(NAMES, st.binary(max_size=8)),
                                                                         max_size=2),
       raw_index=st.none() | st.binary(max_size=30))
def test_an_image_archive_is_loaded_whole_or_refused(tmp_path_factory, index, manifest, extra, raw_index):
    from labkit.images import archive, store
    m = _blob(json.dumps(manifest).encode())
    if isinstance(index.get("manifests"), list):
        for d in index["manifests"]:
            if isinstance(d, dict) and d.get("digest") == "MANIFEST":
                d["digest"], d["size"] = m[0], len(m[1])
    files = [("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
             ("index.json", raw_index if raw_index is not None else json.dumps(index).encode()),
             (f"blobs/sha256/{m[0][7:]}", m[1]), (f"blobs/sha256/{CONFIG[0][7:]}", CONFIG[1])] + extra
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name or ".")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path_factory.mktemp("archive") / "image.tar"
    path.write_bytes(buf.getvalue())
    tags_before = {ref for ref, _ in store.tags()}
    try:
        answered("image archive", archive.load, str(path))
    finally:
        with store.Lock():
            for ref in {ref for ref, _ in store.tags()} - tags_before:
                store.remove_tag(ref)
            store.collect()
    assert not [n for n in os.listdir(store.root("blobs", "sha256")) if n.startswith(".incoming")]
