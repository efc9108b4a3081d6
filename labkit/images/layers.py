"""Layers as OCI image-spec layer tarballs (image-spec/layer.md).

A layer is a tar of the changes a container made: the files it added or
changed, and for what it deleted a *whiteout*: an empty file ``.wh.<name>``
next to the deleted name, or ``<dir>/.wh..wh..opq`` when the directory was
replaced as a whole (an *opaque* directory). overlayfs records the same
changes in its upper dir in its own way (a 0/0 character device, the xattr
``trusted.overlay.opaque=y``); :func:`diff` translates the upper dir into a
tar and :func:`apply` does the reverse.

A layer is named by the sha256 of its bytes (its *digest*); the sha256 of the
uncompressed tar is its *diff_id* (the two are equal for an uncompressed tar).

Applying a tar is applying untrusted input. :func:`apply` never writes
outside its target, whatever the tar says. The policy, entry by entry:

* absolute names (``/etc/passwd``) are **refused**: a layer's names are
  relative to the root it is applied to, and no image tool writes absolute
  ones; ``./etc/passwd`` and ``etc/passwd`` are the same entry;
* names with a ``..`` component are **refused**;
* every parent directory of an entry is opened one component at a time
  relative to the one before (``openat(2)`` with ``O_NOFOLLOW``): an entry
  whose path goes **through a symlink** is refused, wherever the symlink
  points. Symlink entries themselves are fine (``/bin/sh -> dash``), and an
  entry that lands *on* an existing symlink replaces the symlink, never the
  file it points to;
* a hardlink must name a file already inside the target, by a relative path
  that passes the same checks; otherwise it is **refused**;
* character and block devices are **refused** (the runtime creates /dev,
  as docker does), except the 0/0 character device, which is overlay's own
  whiteout and means the same as a ``.wh.`` entry; FIFOs are allowed;
* setuid and setgid bits are **stripped** (and listed in the result), so a
  layer cannot plant a set-id binary; the sticky bit is kept (/tmp needs it).

Checks that need only the tar headers run before anything is written; a
symlink met while walking can stop the apply midway, with the entries before
it written inside the target only.
"""

import errno
import hashlib
import os
import stat
import tarfile

from labkit import home
from labkit.errors import LabkitError

WH_PREFIX = ".wh."
WH_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
MEDIA_TAR = "application/vnd.oci.image.layer.v1.tar"
_CHUNK = 1 << 20


class LayerError(LabkitError):
    """A layer tar that cannot be written or applied; names the entry."""


def layers_dir(name=""):
    """$LABKIT_HOME/layers: layer tars (<sha256>.tar) and their unpacked copies (<sha256>/)."""
    return os.path.join(home.home(), "layers", name)


# --- digests ---------------------------------------------------------------

def is_gzip(path):
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _sha256(stream):
    h = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def digest(path):
    """sha256 of the layer's bytes as stored: its name in an image manifest."""
    with open(path, "rb") as f:
        return _sha256(f)


def diff_id(path):
    """sha256 of the uncompressed tar: its name in an image config's rootfs.diff_ids."""
    if not is_gzip(path):
        return digest(path)
    import gzip
    with gzip.open(path, "rb") as f:
        return _sha256(f)


def describe(path):
    """The descriptor facts of one layer file."""
    gz = is_gzip(path)
    return {"path": path, "digest": digest(path), "diff_id": diff_id(path),
            "size": os.path.getsize(path), "media_type": MEDIA_TAR + ("+gzip" if gz else "")}


# --- diff: overlay upper dir -> layer tar --------------------------------------

def _is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path):
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _marker(name, mtime):
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = 0o644, mtime
    return info


def diff(upper, out, compress=False):
    """Write the changes recorded in the overlay ``upper`` dir as a layer tar at ``out``.

    Entries are sorted, so the same upper gives the same bytes (and digest).
    Returns a summary: entries, whiteouts, opaque dirs, skipped device nodes."""
    summary = {"entries": 0, "whiteouts": [], "opaque": [], "skipped": []}
    raw = open(out, "wb")
    try:
        fileobj = raw
        if compress:
            import gzip
            fileobj = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
        with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _diff_dir(tar, upper, "", summary)
        if compress:
            fileobj.close()
    finally:
        raw.close()
    return summary


def _diff_dir(tar, top, rel, summary):
    with os.scandir(os.path.join(top, rel)) as it:
        names = sorted(e.name for e in it)
    for name in names:
        arc = f"{rel}/{name}" if rel else name
        full = os.path.join(top, arc)
        st = os.lstat(full)
        for bad in ("trusted.overlay.redirect", "trusted.overlay.metacopy"):
            try:
                os.getxattr(full, bad, follow_symlinks=False)
            except OSError:
                continue
            raise LayerError(f"upper entry '{arc}' carries {bad}, which a layer tar cannot express",
                             "mount the overlay with redirect_dir=off,metacopy=off (the kernel default)")
        if name.startswith(WH_PREFIX):
            raise LayerError(f"upper entry '{arc}' is named like a whiteout ('{WH_PREFIX}' prefix)",
                             "rename it: OCI layers reserve that prefix")
        if _is_whiteout(st):
            parent = f"{rel}/" if rel else ""
            tar.addfile(_marker(f"{parent}{WH_PREFIX}{name}", int(st.st_mtime)))
            summary["whiteouts"].append(arc)
            summary["entries"] += 1
            continue
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            summary["skipped"].append(arc)       # apply() refuses devices; sockets do not exist in tar
            continue
        tar.add(full, arcname=arc, recursive=False)
        summary["entries"] += 1
        if stat.S_ISDIR(st.st_mode):
            if _is_opaque(full):
                tar.addfile(_marker(f"{arc}/{WH_OPAQUE}", int(st.st_mtime)))
                summary["opaque"].append(arc)
                summary["entries"] += 1
            _diff_dir(tar, top, arc, summary)


# --- apply: layer tar -> directory, safely ----------------------------------------

def _parts(name, entry, what="name"):
    """The components of a tar name, or LayerError for an unsafe one."""
    if name.startswith("/"):
        raise LayerError(f"layer entry '{entry}': absolute {what} '{name}'",
                         "layer paths are relative to the root they are applied to; this tar is not a valid layer")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer entry '{entry}': {what} '{name}' has a '..' component",
                         "a layer may not reach outside its root; this tar is not a valid layer")
    return parts


def _classify(m):
    """(kind, parts, member) for one tar member; static checks only."""
    parts = _parts(m.name, m.name)
    if not parts:
        return ("root", parts, m)                # "./": the target itself is not touched
    base = parts[-1]
    if base == WH_OPAQUE:
        return ("opaque", parts[:-1], m)
    if base.startswith(WH_PREFIX):
        hidden = base[len(WH_PREFIX):]
        if hidden in ("", ".", "..") or hidden.startswith(WH_PREFIX):
            raise LayerError(f"layer entry '{m.name}': a whiteout for '{hidden}' is not valid",
                             "whiteouts name one file in their own directory")
        return ("whiteout", parts[:-1] + [hidden], m)
    if m.isreg():
        return ("file", parts, m)
    if m.isdir():
        return ("dir", parts, m)
    if m.issym():
        if not m.linkname or "\0" in m.linkname:
            raise LayerError(f"layer entry '{m.name}': a symlink with no target", "not a valid layer")
        return ("symlink", parts, m)
    if m.islnk():
        link = _parts(m.linkname, m.name, "hardlink target")
        if not link:
            raise LayerError(f"layer entry '{m.name}': hardlink to the root directory", "not a valid layer")
        return ("hardlink", parts, m)
    if m.ischr() and m.devmajor == 0 and m.devminor == 0:
        return ("whiteout", parts, m)
    if m.ischr() or m.isblk():
        kind = "character" if m.ischr() else "block"
        raise LayerError(f"layer entry '{m.name}' is a {kind} device {m.devmajor}:{m.devminor}; "
                         "layers may not create device nodes",
                         "the runtime creates /dev itself; remove the device from the layer")
    if m.isfifo():
        return ("fifo", parts, m)
    raise LayerError(f"layer entry '{m.name}' has an unsupported tar type {m.type!r}",
                     "a layer holds files, directories, links and FIFOs")


def _open_dir(root, parts, entry, create):
    """An fd for the directory ``parts`` under ``root``, never leaving it.

    Each component is opened relative to the previous one with O_NOFOLLOW,
    so a symlink anywhere on the way is met, not followed. Returns None if a
    component is missing and ``create`` is false."""
    fd = os.dup(root)
    try:
        for i, comp in enumerate(parts):
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                nfd = os.open(comp, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                os.mkdir(comp, 0o755, dir_fd=fd)
                nfd = os.open(comp, flags, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                where = "/".join(parts[:i + 1])
                st = os.stat(comp, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise LayerError(
                        f"layer entry '{entry}' goes through the symlink '{where}' "
                        f"(-> {os.readlink(comp, dir_fd=fd)})",
                        "a layer never writes through a symlink; this tar is unsafe") from None
                raise LayerError(f"layer entry '{entry}': '{where}' is not a directory",
                                 "the tar must replace it with a directory entry first") from None
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _lstat(name, dfd):
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(name, dfd):
    """Remove whatever ``name`` is in ``dfd`` (a directory with its contents)."""
    st = _lstat(name, dfd)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil
        shutil.rmtree(name, dir_fd=dfd)          # fd-based, never follows symlinks
    else:
        os.unlink(name, dir_fd=dfd)


def _owner(m, name, dfd):
    try:
        os.chown(name, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
    except PermissionError:
        if os.geteuid() == 0:
            raise


def _mode(m, result):
    mode = m.mode & 0o7777
    if mode & (stat.S_ISUID | stat.S_ISGID):
        result["stripped_setid"].append(m.name)
    return mode & ~(stat.S_ISUID | stat.S_ISGID)


def _open(tar_path):
    try:
        return tarfile.open(tar_path)
    except (tarfile.TarError, OSError) as e:
        raise LayerError(f"layer '{tar_path}' is not a readable tar: {e}", "give a layer .tar or .tar.gz") from None


def _plan(tar, tar_path):
    try:
        return [_classify(m) for m in tar.getmembers()]
    except tarfile.TarError as e:
        raise LayerError(f"layer '{tar_path}' is a damaged tar: {e}", "fetch or build it again") from None


def check(tar_path):
    """The checks of :func:`apply` that need only the tar headers, writing
    nothing: a tar refused here leaves no trace on the host. (What the target
    holds, e.g. a symlink on an entry's path, can still stop an apply.)"""
    with _open(tar_path) as tar:
        return len(_plan(tar, tar_path))


def apply(tar_path, target, whiteouts="delete"):
    """Apply the layer tar at ``tar_path`` onto the directory ``target``.

    ``whiteouts="delete"`` flattens: a whiteout removes the name it hides
    and an opaque marker empties its directory (applying each layer of an
    image this way, bottom first, builds its rootfs). ``whiteouts="overlay"``
    keeps them in overlay's form (a 0/0 character device, the opaque xattr),
    so that ``target`` can serve as one lowerdir of an overlay.

    Whiteouts and opaque markers are applied before the other entries: they
    hide what the layers below hold, never what the same layer adds
    (image-spec: "files that are present in the same layer as a whiteout
    file can only be hidden by whiteout files in subsequent layers").
    Returns a summary of what was done."""
    if whiteouts not in ("delete", "overlay"):
        raise ValueError("whiteouts is 'delete' or 'overlay'")
    if not os.path.isdir(target):
        raise LayerError(f"apply target '{target}' is not a directory", "create it first")
    result = {"entries": 0, "whiteouts": [], "opaque": [], "stripped_setid": []}
    with _open(tar_path) as tar:
        plan = _plan(tar, tar_path)
        root = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for kind, parts, m in plan:
                if kind in ("whiteout", "opaque"):
                    _hide(kind, root, parts, m, whiteouts, result)
            for kind, parts, m in plan:
                if kind not in ("root", "whiteout", "opaque"):
                    _extract(tar, kind, root, parts, m, result)
                    result["entries"] += 1
        finally:
            os.close(root)
    return result


def _hide(kind, root, parts, m, whiteouts, result):
    overlay = whiteouts == "overlay"
    where = parts if kind == "opaque" else parts[:-1]
    dfd = _open_dir(root, where, m.name, create=overlay)
    if dfd is None:
        return                                   # nothing below to hide
    try:
        if kind == "opaque":
            result["opaque"].append("/".join(parts))
            if overlay:
                os.setxattr(dfd, OPAQUE_XATTR, b"y")
            else:
                for child in os.listdir(dfd):
                    _remove(child, dfd)
        else:
            result["whiteouts"].append("/".join(parts))
            _remove(parts[-1], dfd)
            if overlay:
                os.mknod(parts[-1], stat.S_IFCHR, os.makedev(0, 0), dir_fd=dfd)
    finally:
        os.close(dfd)


def _extract(tar, kind, root, parts, m, result):
    name = parts[-1]
    dfd = _open_dir(root, parts[:-1], m.name, create=True)
    try:
        st = _lstat(name, dfd)
        if kind == "dir":
            if st is None or not stat.S_ISDIR(st.st_mode):
                _remove(name, dfd)
                os.mkdir(name, 0o700, dir_fd=dfd)
            _owner(m, name, dfd)
            os.chmod(name, _mode(m, result), dir_fd=dfd)
            return
        if kind == "hardlink":
            src_parts = _parts(m.linkname, m.name, "hardlink target")
            sfd = _open_dir(root, src_parts[:-1], m.name, create=False)
            src = None if sfd is None else _lstat(src_parts[-1], sfd)
            if src is None or stat.S_ISDIR(src.st_mode):
                if sfd is not None:
                    os.close(sfd)
                what = "a directory" if src is not None else "not in the target"
                raise LayerError(f"layer entry '{m.name}': hardlink target '{m.linkname}' is {what}",
                                 "a hardlink must name a file the layer (or the layers below) put inside the target")
            try:
                if st is not None and (st.st_dev, st.st_ino) == (src.st_dev, src.st_ino):
                    return                       # already that very file
                _remove(name, dfd)
                try:
                    os.link(src_parts[-1], name, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:   # it was below the name this entry replaced
                    raise LayerError(f"layer entry '{m.name}': hardlink target '{m.linkname}' was inside "
                                     "what the entry replaces", "not a valid layer") from None
            finally:
                os.close(sfd)
            return
        _remove(name, dfd)                       # replace: never write into what is there
        if kind == "file":
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dfd)
            try:
                src = tar.extractfile(m)
                while chunk := src.read(_CHUNK):
                    os.write(fd, chunk)
            finally:
                os.close(fd)
        elif kind == "symlink":
            os.symlink(m.linkname, name, dir_fd=dfd)
        elif kind == "fifo":
            os.mkfifo(name, 0o600, dir_fd=dfd)
        _owner(m, name, dfd)
        if kind != "symlink":
            os.chmod(name, _mode(m, result), dir_fd=dfd)   # after chown, which clears set-id bits
        os.utime(name, (m.mtime, m.mtime), dir_fd=dfd, follow_symlinks=False)
    finally:
        os.close(dfd)


# --- the layer store ----------------------------------------------------------------

def commit(upper, dest=None, compress=False, out=None):
    """A container's upper dir as a new layer tar, named by its digest, in ``dest``
    ($LABKIT_HOME/layers by default), or at the file ``out``.
    Returns describe() of it plus the diff summary."""
    if out is not None:
        dest = os.path.dirname(os.path.abspath(out))
    else:
        dest = dest or layers_dir()
        os.makedirs(dest, exist_ok=True)
    # Written under a temporary name and renamed: a failed commit leaves no half tar.
    tmp = os.path.join(dest, f".commit-{os.getpid()}.tmp")
    try:
        summary = diff(upper, tmp, compress=compress)
        hexd = digest(tmp).split(":", 1)[1]
        path = out or os.path.join(dest, hexd + (".tar.gz" if compress else ".tar"))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dict(describe(path), **summary)


def unpacked(tar_path, cache=None, key=None):
    """The directory holding ``tar_path`` unpacked in overlay form (a lowerdir).

    Unpacked once into ``cache/<key>/`` ($LABKIT_HOME/layers by default; the
    key is the tar's sha256 unless given: the image store keys by diff_id),
    through a temporary name and a rename, so a failed or concurrent unpack
    never leaves a half-filled layer under the final name."""
    cache = cache or layers_dir()
    final = os.path.join(cache, key or digest(tar_path).split(":", 1)[1])
    if os.path.isdir(final):
        return final
    check(tar_path)                              # a refused tar creates nothing, not even the cache
    os.makedirs(cache, exist_ok=True)
    tmp = f"{final}.{os.getpid()}.tmp"
    os.mkdir(tmp, 0o755)
    try:
        apply(tar_path, tmp, whiteouts="overlay")
        os.rename(tmp, final)
    except BaseException:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        if os.path.isdir(final):                 # another process won the race
            return final
        raise
    return final
