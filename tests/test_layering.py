"""The import layers of labkit: no module imports a layer above its own.

Every module under labkit/ is parsed with ast (imports inside functions
count too: they run just the same, only later), nothing is imported. No
root needed.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "labkit")

# Lowest first. A module belongs to the layer of the longest name below that
# is its own name or a package above it.
LAYERS = [
    # 0: the vocabulary: errors, paths, system calls, what the kernel lists;
    # they import no other part of labkit that is not in this layer.
    ("base", ["labkit", "labkit.errors", "labkit.home", "labkit.syscalls", "labkit.mountinfo",
              "labkit.status", "labkit.startpath", "labkit.i18n"]),
    # 1: one Linux primitive each, usable alone (a notebook cell, a test).
    ("primitives", ["labkit.namespaces", "labkit.rootfs", "labkit.overlay", "labkit.layers",
                    "labkit.cgroups", "labkit.process", "labkit.network", "labkit.builder",
                    "labkit.leaks", "labkit.containers", "labkit.hooks", "labkit.security", "labkit.seccomp", "labkit.seccomp_profile",
                    "labkit.idmap", "labkit.networks", "labkit.images", "labkit.services.store"]),
    # 2: stages: each puts one primitive into a container's life.
    ("stages", ["labkit.stages"]),
    # 3: the runtime composes the stages into a running container.
    ("runtime", ["labkit.runtime"]),
    # 4: the container format on top of the runtime (config.json -> ContainerConfig).
    ("oci", ["labkit.oci"]),
    # 5: what people and tools use: command lines, notebooks, facts, the harness.
    ("frontends", ["labkit.cli", "labkit.runtime_cli", "labkit.api", "labkit.tour", "labkit.doctor",
                   "labkit.jupyter", "labkit.facts", "labkit.notebook", "labkit.conformance",
                   "labkit.lab", "labkit.__main__", "labkit.network_cli", "labkit.image_cli", "labkit.build",
                   "labkit.services",
                   # the translators' tools: what to translate, and the built notebooks
                   "labkit.translation"]),
]
LEVEL = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}


def modules():
    """{module name: file} of every module under labkit/."""
    found = {}
    for base, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(base, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                found[".".join(rel)] = path
    return found


MODULES = modules()


def imports(name, path):
    """The labkit modules that module ``name`` imports, anywhere in its file."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "labkit")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "labkit":
                continue
            for a in node.names:
                # `from labkit import cgroups` imports the module labkit.cgroups.
                sub = f"{target}.{a.name}"
                out.add(sub if sub in MODULES else target)
    return out


def level(name):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in LEVEL:
            return LEVEL[prefix]
    return None


def unit(name):
    """The top-level module or package: labkit.cgroups for labkit.cgroups.v2."""
    return ".".join(name.split(".")[:2])


EDGES = sorted((a, b) for a, path in MODULES.items() for b in imports(a, path))


def test_every_module_has_a_layer():
    assert [m for m in MODULES if level(m) is None] == [], "add them to LAYERS"


def test_no_module_imports_a_higher_layer():
    bad = [f"{a} ({LAYERS[level(a)][0]}) imports {b} ({LAYERS[level(b)][0]})"
           for a, b in EDGES if level(b) is not None and level(a) is not None and level(b) > level(a)]
    assert bad == []


def test_no_import_cycle_between_top_level_modules():
    graph = {}
    for a, b in EDGES:
        if unit(a) != unit(b):
            graph.setdefault(unit(a), set()).add(unit(b))
    cycles = set()

    def visit(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt):]
                start = cycle.index(min(cycle))
                cycles.add(" -> ".join(cycle[start:] + cycle[:start] + [min(cycle)]))
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(node)

    done = set()
    for node in sorted(graph):
        visit(node, [node])
    assert sorted(cycles) == []


def test_a_stage_never_imports_another_stage():
    bad = [f"{a} imports {b}" for a, b in EDGES
           if a.startswith("labkit.stages.") and b.startswith("labkit.stages.") and unit(a) == unit(b)
           and a != b]
    assert bad == []


@pytest.mark.parametrize("source, expected", [
    ("from .. import home", {"labkit.home"}),
    ("from ..cgroups.manager import PARENT", {"labkit.cgroups.manager"}),
    ("def f():\n    from ..runtime import container as ct", {"labkit.runtime.container"}),
    ("import labkit.runtime_cli", {"labkit.runtime_cli"}),
    ("from . import Stage", {"labkit.stages"}),
    ("import os, json", set()),
])
def test_imports_are_resolved(tmp_path, source, expected):
    path = tmp_path / "unionfs.py"
    path.write_text(source)
    assert imports("labkit.stages.unionfs", str(path)) == expected
