"""What overlayfs does, shown on raw overlay mounts (no container): copy-up,
whiteouts, opaque directories, isolation between two overlays on one lower,
the disk that sharing saves, and which layer each visible file comes from.
Notebook 04 records these; tests/unionfs asserts them. The same claims
measured through containers are in labkit/facts/unionfs.py."""

import os

from ..builder import full_copy, walk_one_fs
from ..overlay import OPAQUE_XATTR, is_whiteout, mount, mounted, unmount


def _scratch(workdir, name, lowers=None):
    """upper/work/merged dirs for one overlay under ``workdir``."""
    base = os.path.join(workdir, name)
    dirs = {k: os.path.join(base, k) for k in ("upper", "work", "merged")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    return dirs


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read(path):
    with open(path) as f:
        return f.read()


def fact_copy_up(workdir):
    """Writing to a lower file copies it into the upper; the lower copy is untouched."""
    lower = os.path.join(workdir, "lower")
    os.makedirs(lower, exist_ok=True)
    _write(os.path.join(lower, "motd"), "from the image\n")
    d = _scratch(workdir, "c")
    up = os.path.join(d["upper"], "motd")
    with mounted(d["merged"], [lower], d["upper"], d["work"]):
        before = os.path.lexists(up)
        with open(os.path.join(d["merged"], "motd"), "a") as f:
            f.write("written in the container\n")
        merged = _read(os.path.join(d["merged"], "motd"))
    return {"in_upper_before_write": before, "in_upper_after_write": os.path.exists(up),
            "lower_content": _read(os.path.join(lower, "motd")), "upper_content": _read(up),
            "merged_content": merged,
            "lower_inode": os.stat(os.path.join(lower, "motd")).st_ino, "upper_inode": os.stat(up).st_ino}


def fact_whiteout(workdir):
    """Deleting a lower file leaves a 0/0 character device (a whiteout) in the upper."""
    import stat
    lower = os.path.join(workdir, "lower")
    os.makedirs(lower, exist_ok=True)
    _write(os.path.join(lower, "secret"), "in the image\n")
    d = _scratch(workdir, "c")
    with mounted(d["merged"], [lower], d["upper"], d["work"]):
        os.unlink(os.path.join(d["merged"], "secret"))
        in_merged = os.path.lexists(os.path.join(d["merged"], "secret"))
    st = os.lstat(os.path.join(d["upper"], "secret"))
    return {"in_merged_after_delete": in_merged,
            "in_lower_after_delete": os.path.exists(os.path.join(lower, "secret")),
            "upper_is_char_device": stat.S_ISCHR(st.st_mode),
            "upper_rdev": [os.major(st.st_rdev), os.minor(st.st_rdev)],
            "upper_size": st.st_size}


def fact_opaque(workdir):
    """Replacing a lower directory makes the new one opaque: the lower entries stay hidden."""
    import shutil
    lower = os.path.join(workdir, "lower")
    os.makedirs(os.path.join(lower, "etc"), exist_ok=True)
    for name in ("a.conf", "b.conf"):
        _write(os.path.join(lower, "etc", name), name + "\n")
    d = _scratch(workdir, "c")
    with mounted(d["merged"], [lower], d["upper"], d["work"]):
        shutil.rmtree(os.path.join(d["merged"], "etc"))
        os.mkdir(os.path.join(d["merged"], "etc"))
        _write(os.path.join(d["merged"], "etc", "new.conf"), "new\n")
        merged_list = sorted(os.listdir(os.path.join(d["merged"], "etc")))
    try:
        xattr = os.getxattr(os.path.join(d["upper"], "etc"), OPAQUE_XATTR).decode()
    except OSError:
        xattr = None
    return {"merged_etc": merged_list, "lower_etc": sorted(os.listdir(os.path.join(lower, "etc"))),
            "upper_etc": sorted(os.listdir(os.path.join(d["upper"], "etc"))),
            "upper_etc_opaque_xattr": xattr}


def fact_isolation(workdir):
    """Two overlays on the same lower never see each other's changes."""
    lower = os.path.join(workdir, "lower")
    os.makedirs(lower, exist_ok=True)
    _write(os.path.join(lower, "shared"), "image\n")
    _write(os.path.join(lower, "doomed"), "image\n")
    a, b = _scratch(workdir, "a"), _scratch(workdir, "b")

    def view(top):
        return {"shared": _read(os.path.join(top, "shared")),
                "only-a": os.path.exists(os.path.join(top, "only-a")),
                "doomed": os.path.exists(os.path.join(top, "doomed"))}

    with mounted(a["merged"], [lower], a["upper"], a["work"]), \
            mounted(b["merged"], [lower], b["upper"], b["work"]):
        # a changes a file and adds one; b deletes one.
        _write(os.path.join(a["merged"], "shared"), "changed by a\n")
        _write(os.path.join(a["merged"], "only-a"), "a\n")
        os.unlink(os.path.join(b["merged"], "doomed"))
        return {"a": view(a["merged"]), "b": view(b["merged"]), "lower": view(lower)}


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
