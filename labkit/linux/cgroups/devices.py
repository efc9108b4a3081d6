"""Which device nodes a container may use: the device rules of cgroups.

CAP_MKNOD lets root *make* any device node (`mknod /dev/sda b 8 0`), and a
node is only a name for a number: whoever may open it reaches the driver.
So the kernel asks one more question at open(2) and mknod(2): may this
cgroup use device type:major:minor for this access? The answer is a list of
rules, each a line as cgroup v1's devices.allow takes it:

    a *:* rwm        deny first: every device, read, write and mknod
    c *:* m          then allow: mknod of any character device ...
    b *:* m          ... and of any block device (making is harmless)
    c 1:3 rwm        /dev/null may be opened
    c 136:* rwm      every /dev/pts/N

config.json's `linux.resources.devices` is that list as JSON (allow, type,
major, minor, access); a missing major or minor is `*`. The rules apply in
order, as writing them one by one to v1's devices.allow and devices.deny
does: what is left is a default (allow or deny everything) and exceptions
to it (effective()). A new cgroup starts from its parent's, and the root's
allows everything: that is why every real list starts with "deny all".

cgroup v1 has files for this (v1.set_devices); cgroup v2 has none: there
the list becomes a small BPF program attached to the cgroup
(devicefilter.py), which the kernel runs at every open and mknod.
"""

from labkit.errors import LabkitError

TYPES = ("a", "b", "c")     # all, block, character
ANY = -1                    # `*` as a major or minor number

# The nodes of every container's /dev (labkit/linux/rootfs.py), by their fixed
# numbers (the kernel's Documentation/admin-guide/devices.txt).
NODES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
         "tty": (5, 0), "console": (5, 1), "ptmx": (5, 2), "pts/*": (136, ANY),
         "net/tun": (10, 200)}


def rule(allow, type="a", major=ANY, minor=ANY, access="rwm"):
    return {"allow": allow, "type": type, "major": major, "minor": minor, "access": access}


# What the runtime adds after any list it is given, as runc does: mknod of
# anything, and the nodes every container's /dev holds.
ALLOWED = tuple([rule(True, "c", access="m"), rule(True, "b", access="m")] +
                [rule(True, "c", major, minor) for major, minor in NODES.values()])
DENY_ALL = rule(False)
ALLOW_ALL = rule(True)


def check(rules, where="linux.resources.devices"):
    """Every field of the wrong kind in an OCI list of device rules:
    (path, message) pairs."""
    if rules is not None and not isinstance(rules, (list, tuple)):
        yield where, "must be a list of device rules"
        return
    for i, d in enumerate(rules or ()):
        here = f"{where}[{i}]"
        if not isinstance(d, dict):
            yield here, 'a device rule is an object: {"allow": false, "access": "rwm"}'
            continue
        if not isinstance(d.get("allow"), bool):
            yield here + ".allow", "must be true or false: every device rule says allow"
        if d.get("type") not in (None,) + TYPES:
            yield here + ".type", f"{d['type']!r} is not a device type: a (all), b (block) or c (character)"
        for field in ("major", "minor"):
            value = d.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < ANY):
                yield f"{here}.{field}", f"{value!r} is not a device number: a number, or leave it out for any"
        access = d.get("access")
        if access is not None and (not isinstance(access, str) or not set(access) <= set("rwm")):
            yield here + ".access", f"{access!r} is not an access: some of r (read), w (write) and m (mknod)"


def parse(rules, where="linux.resources.devices"):
    """An OCI list of device rules -> the same rules, each with every field
    (type "a", major and minor ANY, access "rwm" where left out). The first
    field of the wrong kind raises a LabkitError that names it."""
    for path, message in check(rules, where):
        raise LabkitError(f"{path}: {message}", "see the runtime spec's linux.resources.devices")
    out = []
    for d in rules or ():
        major, minor = (ANY if d.get(f) is None else d[f] for f in ("major", "minor"))
        access = d.get("access") or "rwm"
        out.append(rule(d["allow"], d.get("type") or "a", major, minor,
                        "".join(c for c in "rwm" if c in access)))
    return out


def parse_line(text, allow=True):
    """A rule as devices.allow and docker's --device-cgroup-rule write it:
    "c 1:3 rwm", "b 7:* r", "a"."""
    parts = text.split()
    hint = "write TYPE MAJOR:MINOR ACCESS, as in 'c 1:3 rwm' or 'b 7:* r'"
    if parts[:1] == ["a"] and len(parts) <= 3:
        return rule(allow)
    if len(parts) != 3 or parts[0] not in TYPES or parts[1].count(":") != 1:
        raise LabkitError(f"device rule {text!r}: not a rule", hint)
    numbers = []
    for n in parts[1].split(":"):
        if n == "*":
            numbers.append(ANY)
        elif n.isascii() and n.isdigit():
            numbers.append(int(n))
        else:
            raise LabkitError(f"device rule {text!r}: {n!r} is not a device number", hint)
    if not parts[2] or not set(parts[2]) <= set("rwm"):
        raise LabkitError(f"device rule {text!r}: {parts[2]!r} is not an access (r, w, m)", hint)
    return rule(allow, parts[0], numbers[0], numbers[1], "".join(c for c in "rwm" if c in parts[2]))


def line(r):
    """The rule as devices.allow/devices.deny read it: "c 1:3 rwm", or "a"
    (the kernel reads a type-a rule as every device, whatever follows)."""
    if r["type"] == "a":
        return "a"
    def number(n):
        return "*" if n == ANY else str(n)
    return f"{r['type']} {number(r['major'])}:{number(r['minor'])} {r['access']}"


def effective(rules):
    """What the rules leave, as cgroup v1 computes it (the kernel's
    devcgroup_update_access): a default, and exceptions to it.

    A type-a rule sets the default and forgets every exception. Any other
    rule either adds its access to an exception (when it says the opposite
    of the default) or takes its access away from the exception for the
    same type:major:minor (when it says the same). Returns (default_allow,
    [(type, major, minor, access), ...])."""
    default, exceptions = True, {}
    for r in rules:
        if r["type"] == "a":
            default, exceptions = r["allow"], {}
            continue
        key = (r["type"], r["major"], r["minor"])
        have = exceptions.get(key, "")
        if r["allow"] != default:
            have = "".join(c for c in "rwm" if c in have or c in r["access"])
        else:
            have = "".join(c for c in have if c not in r["access"])
        if have:
            exceptions[key] = have
        else:
            exceptions.pop(key, None)
    return default, [key + (access,) for key, access in exceptions.items()]


def allows(rules, kind, major, minor, access):
    """Whether ``rules`` let a process use device kind:major:minor (kind "b"
    or "c") for ``access`` ("r", "rw", "m"...), as the kernel decides from
    effective(): with a deny default, an exception must grant every access
    asked for; with an allow default, an exception that names any of them
    refuses. For tests and for explaining, never on the start path."""
    default, exceptions = effective(rules)
    for t, ma, mi, acc in exceptions:
        if t == kind and ma in (ANY, major) and mi in (ANY, minor):
            if default and set(access) & set(acc):
                return False
            if not default and set(access) <= set(acc):
                return True
    return default
