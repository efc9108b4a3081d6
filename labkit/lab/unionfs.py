"""Notebook 04's exercises: an overlay mounted by hand, and what its upper
directory holds after a write, a delete and a replaced directory. Each check
reads the host's mount table and looks at the upper and lower directories
themselves: the copy, the 0/0 character device, the opaque xattr."""

import os
import stat

from . import Exercise
from .. import mountinfo
from ..i18n import _

TOP = "/tmp/lab04"
LOWER, UPPER, WORK, MERGED = (f"{TOP}/{d}" for d in ("lower", "upper", "work", "merged"))

# The lower layer every exercise starts from: a file, and a directory with a file in it.
SETUP = (f"mkdir -p {LOWER}/d {UPPER} {WORK} {MERGED} && echo 'from the lower layer' > {LOWER}/hello.txt && "
         f"echo 'a = 1' > {LOWER}/d/a.conf")
MOUNT = f"mount -t overlay overlay -o lowerdir={LOWER},upperdir={UPPER},workdir={WORK} {MERGED}"
RESET = [f"umount {MERGED} 2>/dev/null || true", f"rm -rf {TOP}"]


def _mounted():
    for m in mountinfo.parse(open("/proc/self/mountinfo").read()):
        if m.mount_point == MERGED and m.fstype == "overlay":
            opts = dict(o.partition("=")[::2] for o in m.super_options.split(","))
            if opts.get("lowerdir") != LOWER or opts.get("upperdir") != UPPER:
                return _("the overlay on {merged} has lowerdir={lower}, upperdir={upper}",
                         merged=MERGED, lower=opts.get("lowerdir"), upper=opts.get("upperdir"))
            return None
    return _("no overlay is mounted on {merged} (grep {merged} /proc/self/mountinfo)", merged=MERGED)


def _written():
    why = _mounted()
    if why:
        return False, why
    if not os.path.exists(f"{MERGED}/note.txt"):
        return False, _("there is no note.txt in {merged}", merged=MERGED)
    if os.path.exists(f"{LOWER}/note.txt"):
        return False, _("{lower}/note.txt exists: the note was written to the lower layer, not through the overlay",
                         lower=LOWER)
    if not os.path.isfile(f"{UPPER}/note.txt"):
        return False, _("{upper} has no note.txt", upper=UPPER)
    return True, _("note.txt written through {merged} is in the upper dir, and the lower layer has none", merged=MERGED)


def _whiteout():
    why = _mounted()
    if why:
        return False, why
    if os.path.lexists(f"{MERGED}/hello.txt"):
        return False, _("{merged}/hello.txt is still there", merged=MERGED)
    if not os.path.exists(f"{LOWER}/hello.txt"):
        return False, _("{lower}/hello.txt is gone: it was deleted in the lower layer, not through the overlay",
                         lower=LOWER)
    st = os.lstat(f"{UPPER}/hello.txt") if os.path.lexists(f"{UPPER}/hello.txt") else None
    if st is None or not stat.S_ISCHR(st.st_mode) or st.st_rdev != 0:
        return False, _("{upper}/hello.txt is not a whiteout (a character device 0/0)", upper=UPPER)
    return True, _("hello.txt is gone from {merged}, kept in the lower layer, hidden by a 0/0 device in the upper dir",
                   merged=MERGED)


def _opaque():
    why = _mounted()
    if why:
        return False, why
    if not os.path.isdir(f"{MERGED}/d") or os.listdir(f"{MERGED}/d"):
        return False, _("{merged}/d is not an empty directory", merged=MERGED)
    if not os.path.exists(f"{LOWER}/d/a.conf"):
        return False, _("{lower}/d/a.conf is gone: the lower layer was changed", lower=LOWER)
    try:
        mark = os.getxattr(f"{UPPER}/d", "trusted.overlay.opaque")
    except OSError:
        mark = None
    if mark != b"y":
        return False, _("{upper}/d has no trusted.overlay.opaque=y: the lower d would show through", upper=UPPER)
    return True, _("{merged}/d is empty: {upper}/d is opaque (trusted.overlay.opaque=y), the lower d/a.conf is kept",
                   merged=MERGED, upper=UPPER)


HINT_MOUNT = f"sudo mount -t overlay overlay -o lowerdir={LOWER},upperdir={UPPER},workdir={WORK} {MERGED}"

EXERCISES = [
    Exercise("04.overlay", "an overlay by hand, and a write through it",
             f"With the lower layer {LOWER} (the notebook makes it), mount an overlay on {MERGED} with upper dir "
             f"{UPPER} and work dir {WORK}, then write a file note.txt through {MERGED}.",
             ["mount(8), \"overlay\": -o lowerdir=…,upperdir=…,workdir=…; the kernel's "
              "Documentation/filesystems/overlayfs.rst",
              "mount -t overlay overlay -o lowerdir=L,upperdir=U,workdir=W MERGED; then echo … > MERGED/note.txt",
              HINT_MOUNT + f"; echo mine | sudo tee {MERGED}/note.txt"],
             _written,
             [SETUP, MOUNT, f"echo mine > {MERGED}/note.txt"],
             RESET),
    Exercise("04.whiteout", "delete a file of the lower layer",
             f"On the same overlay, delete hello.txt through {MERGED}: it must disappear there and stay in the "
             "lower layer.",
             ["overlayfs.rst, \"whiteouts and opaque directories\": a deletion is recorded in the upper dir",
              f"rm {MERGED}/hello.txt; then ls -l {UPPER}",
              f"sudo rm {MERGED}/hello.txt"],
             _whiteout,
             [SETUP, MOUNT, f"rm {MERGED}/hello.txt"],
             RESET),
    Exercise("04.opaque", "replace a directory",
             f"On the same overlay, replace the directory d by an empty one: `rm -rf {MERGED}/d && mkdir "
             f"{MERGED}/d`. The lower layer keeps d/a.conf; the merged d is empty.",
             ["overlayfs.rst, \"whiteouts and opaque directories\": a directory made where one was deleted",
              f"rm -rf {MERGED}/d && mkdir {MERGED}/d; then getfattr -d -m trusted {UPPER}/d",
              f"sudo rm -rf {MERGED}/d && sudo mkdir {MERGED}/d"],
             _opaque,
             [SETUP, MOUNT, f"rm -rf {MERGED}/d && mkdir {MERGED}/d"],
             RESET),
]
