"""Stage 4 facts: the union filesystem, measured through containers.

Each container here runs on the base rootfs plus small layers made for the
check (`labkit run --layer ...`); its overlay is mounted on the host at
$LABKIT_HOME/containers/<id>/merged, so the host can look at the container's
upper dir while the container runs — that is where copy-ups, whiteouts and
opaque directories show. Containers are detached (not --rm) so that their
upper dir can be read, and removed at the end of each check.
"""

import os
import shutil
import stat
import subprocess
import tempfile

from labkit import api, home
from labkit.images import builder, layers
from labkit.linux import overlay
from labkit.course.facts import overlay as overlay_facts
from labkit.stages import unionfs
from labkit.course.facts import fact, lines
from labkit.i18n import _

LAYER = "4 union fs"


class Lab:
    """A scratch dir for layers (removed on exit) and the layer-cache entries
    (unpacked tars under $LABKIT_HOME/layers) made for these checks."""

    def __init__(self):
        self.dir = None
        self.tars = []

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="labkit-unionfs-")
        return self

    def __exit__(self, *exc):
        for tar in self.tars:
            if os.path.exists(tar):
                shutil.rmtree(layers.layers_dir(layers.digest(tar).split(":", 1)[1]), ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def layer(self, name, files, whiteouts=()):
        """A layer directory with ``files`` ({path: text}) and overlay whiteouts."""
        top = self.path(name)
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(top, rel)), exist_ok=True)
            _write(os.path.join(top, rel), text)
        for rel in whiteouts:
            os.makedirs(os.path.dirname(os.path.join(top, rel)), exist_ok=True)
            os.mknod(os.path.join(top, rel), stat.S_IFCHR, os.makedev(0, 0))
        os.makedirs(top, exist_ok=True)
        return top

    def tar(self, path):
        """Remember a tar given to --layer: its unpacked copy is removed on exit."""
        self.tars.append(path)
        return path


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def upper_of(container, which="upper"):
    """The container's upper dir (or its ``merged`` view), seen from the host."""
    return unionfs.paths(home.containers_dir(container.id))[which]


def _exec(c, cmd):
    r = c.exec(cmd)
    if r.returncode != 0:
        raise RuntimeError(f"{r.command} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def copy_up(rootfs="base"):
    with Lab() as lab:
        lower = lab.layer("layer", {"etc/motd": "from the layer\n"})
        with api.Container("sleep 300", rootfs=rootfs, layers=[lower]) as c:
            up = os.path.join(upper_of(c), "etc/motd")
            before = os.path.lexists(up)
            inside = _exec(c, "echo 'written inside' >> /etc/motd; cat /etc/motd")
            in_upper = _read(up)
            upper_inode = os.stat(up).st_ino
            merged = upper_of(c, "merged")
        in_layer = _read(os.path.join(lower, "etc/motd"))
        layer_inode = os.stat(os.path.join(lower, "etc/motd")).st_ino
    return fact("unionfs_copy_up", LAYER,
                _("writing a layer's file copies it up into the container's upper dir; the layer keeps its copy"),
                inside, f"upper: {in_upper!r}; layer: {in_layer!r}",
                not before and in_upper == inside and in_layer == "from the layer\n"
                and inside.startswith(in_layer) and inside != in_layer,
                in_upper_before=before, upper=in_upper, layer_content=in_layer,
                upper_inode=upper_inode, layer_inode=layer_inode, merged=merged)


def whiteout(rootfs="base"):
    with Lab() as lab:
        lower = lab.layer("layer", {"etc/secret": "in the layer\n"})
        with api.Container("sleep 300", rootfs=rootfs, layers=[lower]) as c:
            r = c.exec("rm /etc/secret && ls /etc/secret")
            in_merged = os.path.lexists(os.path.join(upper_of(c, "merged"), "etc/secret"))
            st = os.lstat(os.path.join(upper_of(c), "etc/secret"))
        kept = _read(os.path.join(lower, "etc/secret"))
    is_chr = stat.S_ISCHR(st.st_mode)
    rdev = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    return fact("unionfs_whiteout", LAYER,
                _("deleting a layer's file leaves a 0/0 character device (a whiteout) in the upper dir"),
                (r.stderr.strip() or r.stdout.strip()),
                f"upper: {'char device' if is_chr else stat.filemode(st.st_mode)} {rdev[0]}/{rdev[1]}; "
                f"layer still has it: {kept is not None}",
                r.returncode != 0 and is_chr and rdev == [0, 0] and kept == "in the layer\n",
                upper_rdev=rdev, upper_is_char_device=is_chr, in_merged_after_delete=in_merged,
                layer_content=kept)


def opaque(rootfs="base"):
    with Lab() as lab:
        lower = lab.layer("layer", {"app/a.conf": "a\n", "app/b.conf": "b\n"})
        with api.Container("sleep 300", rootfs=rootfs, layers=[lower]) as c:
            inside = lines(_exec(c, "rm -rf /app && mkdir /app && echo new > /app/new.conf && ls /app"))
            try:
                xattr = os.getxattr(os.path.join(upper_of(c), "app"), overlay.OPAQUE_XATTR).decode()
            except OSError:
                xattr = None
            in_upper = sorted(os.listdir(os.path.join(upper_of(c), "app")))
        in_layer = sorted(os.listdir(os.path.join(lower, "app")))
    return fact("unionfs_opaque", LAYER,
                _("a directory that replaces a layer's is opaque (trusted.overlay.opaque=y): "
                  "the old entries stay hidden"),
                inside, f"{overlay.OPAQUE_XATTR}={xattr}; layer: {in_layer}",
                xattr == "y" and inside == ["new.conf"] and in_layer == ["a.conf", "b.conf"],
                xattr=xattr, layer_entries=in_layer, upper_entries=in_upper)


def isolation(rootfs="base"):
    with Lab() as lab:
        lower = lab.layer("layer", {"shared": "from the layer\n", "doomed": "from the layer\n"})
        look = "cat /shared; for f in /only-a /doomed; do [ -e $f ] && echo $f; done; true"
        with api.Container("sleep 300", rootfs=rootfs, layers=[lower]) as a, \
                api.Container("sleep 300", rootfs=rootfs, layers=[lower]) as b:
            _exec(a, "echo 'changed by a' > /shared; echo a > /only-a")
            _exec(b, "rm /doomed")
            seen_a, seen_b = lines(_exec(a, look)), lines(_exec(b, look))
        in_layer = sorted(os.listdir(lower))
        shared = _read(os.path.join(lower, "shared"))
    return fact("unionfs_isolation", LAYER,
                _("two containers on the same layer never see each other's changes"),
                f"a: {seen_a}; b: {seen_b}", f"layer: {in_layer}, shared={shared.strip()!r}",
                seen_a == ["changed by a", "/only-a", "/doomed"] and seen_b == ["from the layer"]
                and in_layer == ["doomed", "shared"] and shared == "from the layer\n",
                a=seen_a, b=seen_b, layer_entries=in_layer, layer_shared=shared)


def default_layer(rootfs="base"):
    """A container started with no --layer still writes to a layer of its own:
    the base rootfs is its lower dir, read-only, and `labkit commit` packs
    what it wrote."""
    token = os.urandom(8).hex()
    with Lab() as lab:
        with api.Container("sleep 300", rootfs=rootfs) as c:
            inside = _exec(c, f"echo {token} > /etc/lab04-default; cat /etc/lab04-default").strip()
            in_upper = _read(os.path.join(upper_of(c), "etc/lab04-default"))
            tar = lab.path("default.tar")
            api.call(["commit", c.id, "--output", tar], check=True)
        in_base = os.path.lexists(os.path.join(home.rootfs_dir(rootfs), "etc/lab04-default"))
        entries = lines(subprocess.run(["tar", "-tf", tar], capture_output=True, text=True, check=True).stdout)
    return fact("unionfs_default_layer", LAYER,
                _("a container started without --layer writes to an upper dir of its own, never to the base "
                  "rootfs, and labkit commit packs it"),
                inside, f"upper: {(in_upper or '').strip()!r}; base rootfs has it: {in_base}; commit: {entries}",
                inside == token and (in_upper or "").strip() == token and not in_base
                and "etc/lab04-default" in entries, entries=entries)


def top_layer_wins(rootfs="base"):
    with Lab() as lab:
        low = lab.layer("low", {"etc/app.conf": "from low\n", "only-low": "low\n"})
        high = lab.layer("high", {"etc/app.conf": "from high\n"})
        cmd = "cat /etc/app.conf /only-low"
        up = api.run(cmd, rootfs=rootfs, layers=[low, high], check=True).stdout
        down = api.run(cmd, rootfs=rootfs, layers=[high, low], check=True).stdout
    return fact("unionfs_top_layer_wins", LAYER,
                _("with --layer A --layer B, a file in both comes from B (the last, top one)"),
                f"--layer low --layer high: {lines(up)}", f"--layer high --layer low: {lines(down)}",
                lines(up) == ["from high", "low"] and lines(down) == ["from low", "low"])


def disk_usage(rootfs="base", counts=(1, 2, 4, 8)):
    """N overlays on the rootfs against N full copies of it (labkit.course.facts.overlay.fact_disk_usage),
    and what one real container on that rootfs costs (its upper and work dir)."""
    lower = builder.resolve(rootfs)
    with Lab() as lab:
        f = overlay_facts.fact_disk_usage(lab.path("disk"), lower, counts=counts)
        with api.Container("sleep 300", rootfs=rootfs, layers=[lab.layer("empty", {})]) as c:
            _exec(c, "head -c 4096 /dev/zero | tr '\\0' x > /container-file")
            os.sync()
            state = home.containers_dir(c.id)
            container_bytes = overlay_facts.disk_blocks(os.path.join(state, "upper"), os.path.join(state, "work"))
    rows = f["rows"]
    big = rows[-1]
    ok = all(r["copies_bytes"] >= 0.95 * r["n"] * f["lower_bytes"] for r in rows) and \
        all(r["shared_bytes"] - f["lower_bytes"] <= 0.1 * f["lower_bytes"] * r["n"] for r in rows) and \
        all(r["shared_bytes"] < r["copies_bytes"] for r in rows if r["n"] > 1) and \
        container_bytes <= 0.1 * f["lower_bytes"]
    mib = 1 << 20
    return fact("unionfs_disk_usage", LAYER,
                _("{n} containers sharing the rootfs cost about one rootfs; {n} copies cost {n}", n=big["n"]),
                f"{big['n']} containers: {big['shared_bytes'] / mib:.1f} MiB",
                f"{big['n']} copies: {big['copies_bytes'] / mib:.1f} MiB (rootfs {f['lower_bytes'] / mib:.1f} MiB)",
                ok, lower_bytes=f["lower_bytes"], rows=rows, container_upper_work_bytes=container_bytes)


def commit(rootfs="base"):
    """`labkit commit`: a container's upper dir as a layer tar; its digest is
    sha256sum of the file; a new container on it sees the change (three facts)."""
    with Lab() as lab:
        lower = lab.layer("layer", {"etc/secret": "in the layer\n"})
        tar = lab.tar(lab.path("committed.tar"))
        token = os.urandom(8).hex()            # makes the layer (and its digest) this run's own
        with api.Container("sleep 300", rootfs=rootfs, layers=[lower]) as c:
            _exec(c, f"echo {token} > /etc/committed; rm /etc/secret")
            r = api.call(["commit", c.id, "--output", tar], check=True)
        printed = r.stdout.strip()
        listing = subprocess.run(["tar", "-tf", tar], capture_output=True, text=True, check=True).stdout
        summed = subprocess.run(["sha256sum", tar], capture_output=True, text=True, check=True).stdout.split()[0]
        computed = layers.digest(tar)
        after = api.run("cat /etc/committed; ls /etc/secret 2>&1; true", rootfs=rootfs, layers=[lower, tar])
        without = api.run("cat /etc/committed /etc/secret 2>&1; true", rootfs=rootfs, layers=[lower])
    names = lines(listing)
    return [
        fact("unionfs_commit_layer_tar", LAYER,
             _("labkit commit turns the upper dir into a layer tar: the new file, and .wh.<name> for the deleted one"),
             "rm /etc/secret; echo > /etc/committed", names,
             "etc/committed" in names and "etc/.wh.secret" in names, entries=names),
        fact("unionfs_layer_digest", LAYER, _("a layer's sha256 digest is sha256sum of the tar file"),
             printed, f"sha256sum: {summed}",
             printed == "sha256:" + summed == computed, digest=printed),
        fact("unionfs_commit_new_container", LAYER,
             _("a new container with the committed layer on top sees the change; one without it does not"),
             lines(after.stdout), f"without it: {lines(without.stdout)}",
             lines(after.stdout)[:1] == [token] and "No such file" in after.stdout
             and token not in without.stdout and "in the layer" in without.stdout),
    ]


def unsafe_tar_refused(rootfs="base"):
    """A tar that names ../../ is refused before anything is written."""
    import io
    import tarfile
    with Lab() as lab:
        target = lab.path("outside", "planted")
        os.makedirs(os.path.dirname(target))
        evil = lab.tar(lab.path("evil.tar"))
        rel = os.path.relpath(target, "/")
        with tarfile.open(evil, "w") as t:
            data = b"written by a layer\n"
            info = tarfile.TarInfo("../" * 12 + rel)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        r = api.run("true", rootfs=rootfs, layers=[evil])
        cached = os.path.exists(layers.layers_dir(layers.digest(evil).split(":", 1)[1]))
        planted = os.path.exists(target)
    err = lines(r.stderr)
    return fact("unionfs_unsafe_tar_refused", LAYER,
                _("a layer tar naming ../../ is refused with one line; nothing is written"),
                err, f"{target} exists: {planted}; unpacked copy exists: {cached}",
                r.returncode != 0 and len(err) == 1 and "'..'" in err[0] and not planted and not cached)


FIGURE_FILES = ["etc/passwd", "etc/os-release", "etc/hostname", "app/run", "app/config", "app/old", "etc/motd"]


def provenance(rootfs="base"):
    """Which layer each visible file of a running container comes from.

    Stack: base rootfs, layer `app` (a directory), layer `patch` (a tar with a
    whiteout), and the container's upper dir (a write and a delete). Each
    file's content names its layer, so `cat` inside tells where it came from;
    labkit.course.facts.overlay.provenance tells the same from the host. Returns the fact, whose
    ``grid`` (rows = files, one state per layer) feeds the figure."""
    import io
    import tarfile
    with Lab() as lab:
        app = lab.layer("app", {"etc/os-release": "os-release from app\n", "app/run": "run from app\n",
                                "app/config": "config from app\n", "app/old": "old from app\n"})
        patch = lab.tar(lab.path("patch.tar"))
        with tarfile.open(patch, "w") as t:
            for name, data in (("app/config", b"config from patch\n"), ("app/.wh.old", b"")):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
        with api.Container("sleep 300", rootfs=rootfs, layers=[app, patch]) as c:
            _exec(c, "echo 'motd from upper' > /etc/motd; rm /etc/hostname")
            inside = {}
            for rel in FIGURE_FILES:
                r = c.exec(f"cat /{rel}")
                inside[rel] = r.stdout if r.returncode == 0 else None
            stack = unionfs.layers_of(home.containers_dir(c.id))
            origin = overlay_facts.provenance(stack["merged"], stack["lowers"], stack["upper"])
            names = ["base", "app", "patch", "upper"]
            dirs = stack["lowers"] + [stack["upper"]]
            grid = []
            for rel in FIGURE_FILES:
                cells = {}
                for name, top in zip(names, dirs):
                    p = os.path.join(top, rel)
                    if not os.path.lexists(p):
                        cells[name] = ""
                    elif overlay.is_whiteout(p):
                        cells[name] = "whiteout"
                    else:
                        cells[name] = "present"
                label = origin.get(rel)
                source = None if label is None else ("upper" if label == "upper" else names[int(label[5:])])
                if source:
                    cells[source] = "visible"
                content = None if source is None else _read(os.path.join(dirs[names.index(source)], rel))
                grid.append({"path": "/" + rel, "cells": cells, "from": source,
                             "inside": inside[rel], "match": inside[rel] == content})
    ok = all(row["match"] for row in grid) and \
        {row["path"]: row["from"] for row in grid} == {
            "/etc/passwd": "base", "/etc/os-release": "app", "/etc/hostname": None, "/app/run": "app",
            "/app/config": "patch", "/app/old": None, "/etc/motd": "upper"}
    return fact("unionfs_provenance", LAYER,
                _("each visible file comes from the highest layer that has it; whiteouts hide the ones below"),
                [f"{r['path']}: " + (r["inside"].splitlines()[0][:24] if r["inside"] else "(missing)") for r in grid],
                [f"{r['path']} <- {r['from'] or 'hidden by a whiteout'}" for r in grid], ok, layers=names, grid=grid)


def mounts_left():
    """Overlay mounts under $LABKIT_HOME (none once every container is gone)."""
    top = home.home().rstrip("/") + "/"
    return [mp for mp, _ in overlay.mounts() if mp.startswith(top)]


def all_facts(rootfs="base"):
    return [copy_up(rootfs), whiteout(rootfs), opaque(rootfs), isolation(rootfs), top_layer_wins(rootfs),
            default_layer(rootfs),
            provenance(rootfs), disk_usage(rootfs)] + commit(rootfs) + [unsafe_tar_refused(rootfs)]
