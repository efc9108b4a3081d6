"""cgroups: limit and account what a container uses, on cgroup v1 or v2.

    m = cgroups.create("web", {"memory": "64m", "cpus": 0.5, "pids": 20})
    m.add(pid); m.stats(); m.destroy()

`create` finds out what is mounted (cgroups.mode(): "v1", "hybrid" or "v2")
and callers never ask again. Limits are a Resources (resources.py), in the
units of the OCI runtime spec.
"""

from labkit.linux.cgroups import hierarchy
from labkit.linux.cgroups.manager import Manager, create, gc, load
from labkit.linux.cgroups.resources import Resources, parse_cpus, parse_memory


def __getattr__(name):
    """Sampler and sample on first use: a container's start never samples."""
    if name in ("Sampler", "sample"):
        import importlib
        module = importlib.import_module("labkit.linux.cgroups.sample")
        # Importing the submodule bound the name "sample" to it: the function wins.
        globals().update(Sampler=module.Sampler, sample=module.sample)
        return globals()[name]
    raise AttributeError(f"module 'labkit.linux.cgroups' has no attribute {name!r}")

__all__ = ["Manager", "Resources", "Sampler", "create", "gc", "load", "mode",
           "parse_cpus", "parse_memory", "sample"]


def mode(root=None):
    """"v1", "hybrid" or "v2" (None when no cgroup filesystem is mounted)."""
    return hierarchy.detect(root).mode
