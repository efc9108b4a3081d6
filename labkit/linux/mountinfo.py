"""/proc/PID/mountinfo, parsed: one Mount per line (proc(5)).

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2) (3)   (4)   (5)      (6)      (7)   (8) (9)    (10)        (11)

(1) mount_id, (2) parent_id, (3) dev "major:minor", (4) root: the path inside
the filesystem that is mounted here, (5) mount_point, (6) options: the
per-mount options, (7) optional fields, zero or more ("shared:N",
"master:N", "propagate_from:N", "unbindable"), (8) a lone "-" that ends them,
(9) fstype, (10) source, (11) super_options: the per-superblock options.

The kernel writes space, tab, newline and backslash in root, mount_point and
source as octal escapes (``\\040``, ``\\011``, ``\\012``, ``\\134``); they are
undone here, so a path compares equal to the one given to mount(2).

No re, no dataclasses: this is read on the container start path.
"""


class Mount:
    """One line of mountinfo; the fields are proc(5)'s names."""

    __slots__ = ("mount_id", "parent_id", "dev", "root", "mount_point", "options",
                 "optional", "fstype", "source", "super_options")

    def __init__(self, mount_id, parent_id, dev, root, mount_point, options,
                 optional, fstype, source, super_options):
        self.mount_id = mount_id
        self.parent_id = parent_id
        self.dev = dev
        self.root = root
        self.mount_point = mount_point
        self.options = options
        self.optional = optional
        self.fstype = fstype
        self.source = source
        self.super_options = super_options

    def __repr__(self):
        return "Mount(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def __eq__(self, other):
        return type(other) is type(self) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__)

    @property
    def read_only(self):
        """Whether this mount (not only its superblock) is read-only."""
        return self.options.split(",", 1)[0] == "ro"


_OCTAL = "01234567"


def unescape(field):
    """Undo the kernel's ``\\ooo`` escapes (any three octal digits)."""
    if "\\" not in field:
        return field
    out, i, n = [], 0, len(field)
    while i < n:
        ch = field[i]
        code = field[i + 1:i + 4]
        if ch == "\\" and len(code) == 3 and all(d in _OCTAL for d in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_line(line):
    """One mountinfo line as a Mount; ValueError if it is not one."""
    # Split on single spaces: escaping leaves no space inside a field, and an
    # empty field (a source given as "") keeps its place.
    fields = line.rstrip("\n").split(" ")
    try:
        sep = fields.index("-", 6)
    except ValueError:
        raise ValueError(f"not a mountinfo line: {line!r}") from None
    if len(fields) < sep + 4:
        raise ValueError(f"not a mountinfo line: {line!r}")
    root, point, source = fields[3], fields[4], fields[sep + 2]
    if "\\" in line:   # rare: most lines have nothing to unescape
        root, point, source = unescape(root), unescape(point), unescape(source)
    return Mount(int(fields[0]), int(fields[1]), fields[2], root, point, fields[5],
                 tuple(fields[6:sep]), fields[sep + 1], source, " ".join(fields[sep + 3:]))


def parse(text):
    """Every line of a mountinfo text (blank lines skipped)."""
    return [parse_line(line) for line in text.splitlines() if line.strip()]


def read(pid="self"):
    """The mounts /proc/PID/mountinfo lists: those of that process's mount
    namespace, as seen from its root."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return parse(f.read())
