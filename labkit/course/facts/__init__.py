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


class host_link:
    """A dummy network interface on the host for the duration of a fact, so
    that "the container sees the host's interfaces" (or does not) is tested
    against one we know exists — even on a host whose only interface is lo.
    ``name`` is None where the kernel has no dummy driver."""

    def __init__(self):
        import os
        self.name = f"lkfact{os.getpid() % 100000}"

    def __enter__(self):
        import subprocess
        made = subprocess.run(["ip", "link", "add", self.name, "type", "dummy"], capture_output=True)
        if made.returncode != 0:
            self.name = None
        return self.name

    def __exit__(self, *exc):
        import subprocess
        if self.name:
            subprocess.run(["ip", "link", "del", self.name], capture_output=True)


def lines(text):
    return [line.strip() for line in text.strip().splitlines() if line.strip()]
