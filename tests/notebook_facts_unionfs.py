"""Facts notebook 04 (union filesystem) must record; each dict with "ok" must hold."""

EXPECTED = {"04-unionfs": [
    "unionfs_mount_options", "unionfs_copy_up", "unionfs_whiteout", "unionfs_opaque", "unionfs_isolation",
    "unionfs_top_layer_wins", "unionfs_default_layer", "unionfs_provenance", "unionfs_disk_usage", "unionfs_disk_saving_ratio",
    "unionfs_commit_layer_tar", "unionfs_layer_digest", "unionfs_commit_new_container",
    "unionfs_unsafe_tar_refused", "unionfs_mounts_left",
]}
