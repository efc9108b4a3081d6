"""Files as a root filesystem holds them: walking one filesystem without
crossing its mount points (`du -x`), copying a tree the way `cp -a` does.

The overlay facts (labkit/course/facts/overlay.py) compare two such walks,
and the runtime's tmpfs copy-up (labkit/linux/rootfs.py) copies a directory
into the tmpfs mounted over it.
"""

import os
import stat


def walk_one_fs(top, mount_points=None):
    """os.walk that stays on the filesystem of ``top`` (like `du -x`, `cp -ax`):
    a rootfs may have a /proc mounted on it right now (a chroot without a
    mount namespace mounts it on the host), and that is no part of the image.
    The mount points met are appended to ``mount_points`` if given."""
    # stat, not lstat: ``top`` may be a link on another filesystem to the
    # rootfs (the UML harness links $LABKIT_HOME/rootfs/base on a tmpfs to the
    # host's); the filesystem to stay on is the rootfs's own.
    dev = os.stat(top).st_dev
    for root, dirs, files in os.walk(top):
        keep = []
        for d in dirs:
            p = os.path.join(root, d)
            # Symlinks to directories are listed among dirs; os.walk never enters them.
            if os.path.islink(p) or os.lstat(p).st_dev == dev:
                keep.append(d)
            elif mount_points is not None:
                mount_points.append(p)
        dirs[:] = keep
        yield root, dirs, files


def full_copy(src, dst):
    """Copy a root filesystem the way `cp -a` does: hardlinks stay links, device
    nodes and FIFOs are made anew (never read: /dev/zero has no end)."""
    import shutil
    links, mount_points = {}, []
    for root, dirs, files in walk_one_fs(src, mount_points):
        out = os.path.join(dst, os.path.relpath(root, src))
        st = os.lstat(root)
        os.makedirs(out, exist_ok=True)
        os.chmod(out, stat.S_IMODE(st.st_mode))
        os.chown(out, st.st_uid, st.st_gid)
        # os.walk lists symlinks to directories among dirs but never enters them.
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            s, d = os.path.join(root, name), os.path.join(out, name)
            st = os.lstat(s)
            if st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
                os.link(links[(st.st_dev, st.st_ino)], d, follow_symlinks=False)
                continue
            links[(st.st_dev, st.st_ino)] = d
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISREG(st.st_mode):
                shutil.copy2(s, d)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(d, stat.S_IMODE(st.st_mode))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                os.mknod(d, st.st_mode, st.st_rdev)
            else:
                continue                         # sockets belong to running programs
            os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
    for mp in mount_points:                      # the directory stays, empty, as with `cp -ax`
        os.makedirs(os.path.join(dst, os.path.relpath(mp, src)), exist_ok=True)
