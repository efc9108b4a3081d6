"""Facts notebooks/07-images-registry.ipynb must record (each dict fact must
hold), read by tests/test_notebooks.py; relations across facts are checked below."""

EXPECTED = {
    "07-images-registry": ["img_anatomy", "img_build", "img_push_pull", "img_runc", "img_shared", "img_tampered",
                           "img_left"],
}


def check_relations(f):
    # sha256sum agrees with every name, and the manifest's layers are what the config's diff_ids count.
    a = f["img_anatomy"]
    assert all(c["digest"] == c["sha256sum"] for c in a["checked"])
    assert len(a["manifest"]["layers"]) == len(a["config"]["rootfs"]["diff_ids"])
    # The image pushed and pulled back is the one built: the registry's manifest hashes to its digest.
    assert f["img_push_pull"]["curl"]["manifest"]["out"] == f["img_push_pull"]["digest"]
    # Both images FROM labkit/base start with its layer, which anatomy saw.
    assert all(r["layers"][0] == a["manifest"]["layers"][0]["digest"] for r in f["img_shared"]["rows"])
    b = f["img_build"]
    assert b["seconds"][1] < b["seconds"][0]
    assert f["img_left"]["inside"] == []
