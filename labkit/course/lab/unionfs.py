"""Notebook 04's exercises: an overlay mounted by hand, and what its upper
directory holds after a write, a delete and a replaced directory. Each check
reads the host's mount table and looks at the upper and lower directories
themselves: the copy, the 0/0 character device, the opaque xattr."""

import os
import stat

from labkit.course.lab import Exercise
from labkit.linux import mountinfo
from labkit.i18n import _

TOP = "/tmp/lab04"
LOWER, UPPER, WORK, MERGED = (f"{TOP}/{d}" for d in ("lower", "upper", "work", "merged"))

# The lower layer every exercise starts from: a file, and a directory with a file in it.
SETUP = (f"mkdir -p {LOWER}/d {UPPER} {WORK} {MERGED} && echo 'from the lower layer' > {LOWER}/hello.txt && "
         f"echo 'a = 1' > {LOWER}/d/a.conf")
MOUNT = f"mount -t overlay overlay -o lowerdir={LOWER},upperdir={UPPER},workdir={WORK} {MERGED}"
# However many overlays a student stacked on MERGED, all go.
RESET = [f"for i in $(seq 10); do umount {MERGED} 2>/dev/null || break; done", f"rm -rf {TOP}"]


def _overlay():
    """The overlay on MERGED (the top one, if a student stacked two), or None."""
    found = [m for m in mountinfo.parse(open("/proc/self/mountinfo").read())
             if m.mount_point == MERGED and m.fstype == "overlay"]
    return found[-1] if found else None


def _files(top):
    for folder, _dirs, names in os.walk(top):
        for name in names:
            yield os.path.relpath(os.path.join(folder, name), top)


def _mounted():
    """None when an overlay on MERGED has LOWER below and UPPER above, judged
    by what it does, whatever the spelling of its options (relative paths,
    trailing slashes, another order): a file of LOWER is the same inode in
    MERGED (overlayfs reports a lower file's own inode number while it is not
    copied up), and a probe written through MERGED lands in UPPER. Else why not."""
    m = _overlay()
    if m is None:
        return _("no overlay is mounted on {merged} (grep {merged} /proc/self/mountinfo)", merged=MERGED)
    opts = dict(o.partition("=")[::2] for o in m.super_options.split(","))
    shown = [f for f in _files(LOWER) if os.path.isfile(os.path.join(MERGED, f))]
    if not any(os.stat(os.path.join(MERGED, f)).st_ino == os.stat(os.path.join(LOWER, f)).st_ino for f in shown):
        if os.path.normpath(opts.get("lowerdir", "").split(":")[0]) != LOWER:
            return _("the overlay on {merged} does not show {lower} (its lowerdir is {given})",
                     merged=MERGED, lower=LOWER, given=opts.get("lowerdir"))
    probe = os.path.join(MERGED, f".lab04-probe-{os.getpid()}")
    try:
        with open(probe, "w"):
            pass
        landed = os.path.exists(os.path.join(UPPER, os.path.basename(probe)))
    except OSError as e:
        return _("writing through {merged} fails ({error}): is it mounted read-only, or with no upper dir?",
                 merged=MERGED, error=e.strerror)
    finally:
        if os.path.lexists(probe):
            os.unlink(probe)
    if not landed:
        return _("a file written through {merged} does not land in {upper} (its upperdir is {given})",
                 merged=MERGED, upper=UPPER, given=opts.get("upperdir"))
    return None


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


_HERE = f"cd {TOP} && "

ALTERNATIVES = {
    "04.overlay": {
        "relative paths with trailing slashes, and touch": [
            SETUP, _HERE + "mount -t overlay overlay -o lowerdir=lower/,upperdir=upper/,workdir=work/ merged",
            f"touch {MERGED}/note.txt"],
        "options in another order, another source name, mount(2) from Python": [
            SETUP, "python3 -c 'from labkit.linux import syscalls; syscalls.mount(\"lab04\", \"%s\", \"overlay\", 0, "
            "\"workdir=%s,upperdir=%s,lowerdir=%s\")'" % (MERGED, WORK, UPPER, LOWER),
            f"cp {LOWER}/hello.txt {MERGED}/note.txt"],
        "a second try mounted over a first one": [
            SETUP, f"mkdir -p {TOP}/try1/upper {TOP}/try1/work",
            MOUNT.replace(f"upperdir={UPPER},workdir={WORK}", f"upperdir={TOP}/try1/upper,workdir={TOP}/try1/work"),
            MOUNT, f"echo mine > {MERGED}/note.txt"],
    },
    "04.whiteout": {
        "unlink(1)": [SETUP, MOUNT, f"unlink {MERGED}/hello.txt"],
        "Python's os.remove, through a relative path": [
            SETUP, MOUNT, f"cd {MERGED} && python3 -c 'import os; os.remove(\"./hello.txt\")'"],
    },
    "04.opaque": {
        "rm -r, then mkdir, in two commands": [SETUP, MOUNT, f"rm -r {MERGED}/d", f"mkdir {MERGED}/d"],
        "Python's shutil.rmtree and os.mkdir": [
            SETUP, MOUNT, f"python3 -c 'import os, shutil; shutil.rmtree(\"{MERGED}/d\"); os.mkdir(\"{MERGED}/d\")'"],
    },
}

NEAR_MISSES = {
    "04.overlay": {
        "the note written to the lower layer": ([SETUP, MOUNT, f"echo mine > {LOWER}/note.txt"],
                                                "written to the lower layer"),
        "no overlay: merged is a plain directory": ([SETUP, f"echo mine > {MERGED}/note.txt"],
                                                    "no overlay is mounted"),
        "another upper dir": ([SETUP, f"mkdir -p {TOP}/other", MOUNT.replace(f"upperdir={UPPER}", f"upperdir={TOP}/other"),
                               f"echo mine > {MERGED}/note.txt"], "does not land in"),
    },
    "04.whiteout": {
        "hello.txt overwritten, not deleted": ([SETUP, MOUNT, f"echo mine > {MERGED}/hello.txt"], "is still there"),
        "deleted in the lower layer": ([SETUP, MOUNT, f"rm {LOWER}/hello.txt"], "deleted in the lower layer"),
    },
    "04.opaque": {
        "only d's file deleted": ([SETUP, MOUNT, f"rm {MERGED}/d/a.conf"], "no trusted.overlay.opaque"),
        "d deleted, not replaced": ([SETUP, MOUNT, f"rm -rf {MERGED}/d"], "is not an empty directory"),
    },
}
