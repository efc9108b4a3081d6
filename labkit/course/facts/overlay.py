"""What overlayfs does, measured on raw overlay mounts (no container): the
disk that sharing a lower saves against full copies, and which layer each
visible file comes from. labkit/course/facts/unionfs.py builds its facts on these
(copy-up, whiteouts, opaque directories and isolation are measured there,
through containers); tests/unionfs asserts them."""

import os

from labkit.linux.files import full_copy, walk_one_fs
from labkit.linux.overlay import is_whiteout, mount, unmount


def _scratch(workdir, name, lowers=None):
    """upper/work/merged dirs for one overlay under ``workdir``."""
    base = os.path.join(workdir, name)
    dirs = {k: os.path.join(base, k) for k in ("upper", "work", "merged")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    return dirs


def disk_blocks(*paths):
    """Bytes allocated on disk under ``paths`` (st_blocks * 512, each inode once), like `du -s`."""
    seen, total = set(), 0
    for top in paths:
        for root, dirs, files in walk_one_fs(top):
            for name in [None] + dirs + files:
                st = os.lstat(root if name is None else os.path.join(root, name))
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def fact_disk_usage(workdir, lower, counts=(1, 2, 4, 8), write=b"x" * 4096):
    """Disk used by N containers sharing ``lower`` against N full copies of it.

    Each container writes one small file (``write``) through its merged view;
    each copy gets the same file. Measured in allocated blocks: the shared
    side counts the lower once plus every container's upper and work dir."""
    import shutil
    n_max = max(counts)
    copies, containers, mounted_at = [], [], []
    try:
        for i in range(n_max):
            d = _scratch(workdir, f"c{i}")
            mount(d["merged"], [lower], d["upper"], d["work"])
            mounted_at.append(d["merged"])
            with open(os.path.join(d["merged"], "container-file"), "wb") as f:
                f.write(write)
            containers.append(os.path.join(workdir, f"c{i}"))
            copy = os.path.join(workdir, f"copy{i}")
            copies.append(copy)
            full_copy(lower, copy)
            with open(os.path.join(copy, "container-file"), "wb") as f:
                f.write(write)
        os.sync()
        lower_bytes = disk_blocks(lower)
        rows = []
        for n in counts:
            rows.append({"n": n,
                         "shared_bytes": lower_bytes + disk_blocks(*[os.path.join(u, d) for u in containers[:n]
                                                                      for d in ("upper", "work")]),
                         "copies_bytes": disk_blocks(*copies[:n])})
        return {"lower_bytes": lower_bytes, "rows": rows}
    finally:
        for m in mounted_at:
            unmount(m)
        for c in copies:
            shutil.rmtree(c, ignore_errors=True)


def provenance(merged, lowers, upper=None):
    """{path in the merged view: the layer it comes from} — "upper" or "lower<i>" (0 = base).

    A path comes from the highest layer that has it: the merged view shows
    nothing else (whiteouts and opaque dirs only ever hide what is below)."""
    layers = ([("upper", upper)] if upper else []) + \
        [(f"lower{i}", p) for i, p in reversed(list(enumerate(lowers)))]
    origin = {}
    for root, dirs, files in walk_one_fs(merged):
        for name in dirs + files:
            rel = os.path.relpath(os.path.join(root, name), merged)
            for label, top in layers:
                p = os.path.join(top, rel)
                if os.path.lexists(p) and not is_whiteout(p):
                    origin[rel] = label
                    break
    return origin
