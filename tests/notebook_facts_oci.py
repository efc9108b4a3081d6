"""Facts notebooks/05-container-format.ipynb must record (each dict fact must
hold), read by tests/test_notebooks.py; the relations across facts are checked below."""

EXPECTED = {
    "05-container-format": ["oci_same_exit_code", "oci_same_hostname", "oci_same_pid1",
                            "oci_same_namespaces", "oci_same_memory_limit", "oci_same_mount_shape",
                            "oci_same_capabilities", "oci_lifecycle", "oci_create_ms", "oci_podman_conmon",
                            "oci_left"],
}


def check_relations(f):
    """What the notebook claims, as relations between measured values."""
    # Both columns of the table are measured, and each agrees with what config.json asked.
    for name in ("oci_same_exit_code", "oci_same_hostname", "oci_same_pid1", "oci_same_namespaces",
                 "oci_same_memory_limit"):
        assert f[name]["inside"] == f[name]["outside"] == f[name]["asked"], f[name]
    assert set(f["oci_same_namespaces"]["inside"]) >= {"pid", "net", "ipc", "mnt", "uts"}
    assert f["oci_same_pid1"]["inside"] == "sh"
    mounts = f["oci_same_mount_shape"]["inside"]
    assert "/proc proc rw" in mounts and any(m.startswith("/ ") for m in mounts)
    assert f["oci_lifecycle"]["inside"] == ["created", "running", "stopped"]
    assert all(ms > 0 for ms in f["oci_create_ms"].values())
    pod = f["oci_podman_conmon"]
    if pod["applies"]:            # the init's parent is conmon: the runtime left nothing between
        assert pod["inside"][0].endswith(" sleep") and pod["inside"][1].endswith(" conmon")
    assert f["oci_left"] == []
