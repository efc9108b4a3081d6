"""Facts: what each stage proves, measured inside a container and outside it.

A fact is a dict: ``name``, the ``layer`` it belongs to, the ``check`` in
words, what was seen ``inside`` and ``outside``, and ``ok`` — whether the
relation the course claims holds. The notebooks record facts, the tests
assert on them, and `labkit tour` prints them as one table. Every value is
measured with the real tools (ps, ip, hostname, /proc), never written by hand.
"""


def fact(name, layer, check, inside, outside, ok, **extra):
    d = {"name": name, "layer": layer, "check": check,
         "inside": inside, "outside": outside, "ok": bool(ok)}
    d.update(extra)
    return d


def lines(text):
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def ip_links(text):
    """Interface names from `ip -o link` output ("1: lo: <...>" -> "lo")."""
    names = []
    for line in lines(text):
        parts = line.split(":")
        if len(parts) > 2:
            names.append(parts[1].strip().split("@")[0])
    return names
