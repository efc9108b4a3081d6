"""Helpers shared by the union filesystem tests."""

import hashlib
import os
import stat


def snapshot(top):
    """{relative path: (type, mode, uid, gid, content)} for every entry under ``top``."""
    out = {}
    top = str(top)
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                what = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                what = None
            out[os.path.relpath(p, top)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                            st.st_uid, st.st_gid, what)
    return out


def write(path, data="x\n", mode=None):
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    return path


def read(path):
    with open(str(path)) as f:
        return f.read()
