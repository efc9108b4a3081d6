"""The import layers of labkit: no module imports a layer above its own.

Every module under labkit/ is parsed with ast (imports inside functions
count too: they run just the same, only later), nothing is imported. No
root needed.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "labkit")

# Lowest first: the tree read top-down is the layer diagram. Each entry is a
# name directly under labkit/ (a folder, or a loose module without .py);
# everything in a folder is of that folder's layer. A module imports only its
# own layer or those below it.
LAYERS = [
    # 0: the vocabulary every layer speaks: errors, paths and files under
    # $LABKIT_HOME, a container's state on disk, the start path's shortcuts.
    ("vocabulary", ["__init__", "errors", "home", "containers", "startpath", "i18n"]),
    # 1: one Linux primitive each, usable alone (a notebook cell, a test).
    ("linux", ["linux"]),
    # 2: subsystems built of primitives: what a container may do, images, networks.
    ("subsystems", ["security", "images", "networks"]),
    # 3: each puts one primitive into a container's life.
    ("stages", ["stages"]),
    # 4: the runtime composes the stages into a running container.
    ("runtime", ["runtime"]),
    # 5: the container format on top of the runtime (config.json -> ContainerConfig).
    ("container format", ["oci"]),
    # 6: the Python client: what notebooks and the layers above call.
    ("client", ["api"]),
    # 7: many containers: images built from a Containerfile, services of replicas.
    ("orchestration", ["build", "services"]),
    # 8: the course: facts, exercises, notebooks' helpers, the harness, translation.
    ("course", ["course"]),
    # 9: the command lines (labkit, labkit-runtime).
    ("command lines", ["cli", "__main__"]),
]
LEVEL = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}


def top_level_names():
    """The names directly under labkit/: packages (folders with an
    __init__.py) and modules, without .py."""
    names = set()
    for entry in os.listdir(ROOT):
        path = os.path.join(ROOT, entry)
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "__init__.py")):
            names.add(entry)
        elif entry.endswith(".py"):
            names.add(entry[:-3])
    return names


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
                # `from labkit.linux import cgroups` imports the module labkit.linux.cgroups.
                sub = f"{target}.{a.name}"
                out.add(sub if sub in MODULES else target)
    return out


def top(name):
    """The name under labkit/ that module ``name`` lives in: linux for
    labkit.linux.cgroups.v2, __init__ for the package labkit itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def level(name):
    return LEVEL.get(top(name))


EDGES = sorted((a, b) for a, path in MODULES.items() for b in imports(a, path))


def test_every_name_under_labkit_has_one_layer():
    listed = [n for _, names in LAYERS for n in names]
    assert sorted(n for n in listed if listed.count(n) > 1) == [], "a name is in two layers"
    assert sorted(top_level_names() - set(listed)) == [], "add them to LAYERS, or move them into a layer's folder"
    assert sorted(set(listed) - top_level_names()) == [], "LAYERS names what labkit/ no longer has"


def test_every_import_names_a_module_of_labkit():
    assert [f"{a} imports {b}" for a, b in EDGES if b not in MODULES] == []


def test_no_module_imports_a_higher_layer():
    bad = [f"{a} ({LAYERS[level(a)][0]}) imports {b} ({LAYERS[level(b)][0]})"
           for a, b in EDGES if b in MODULES and None not in (level(a), level(b)) and level(b) > level(a)]
    assert bad == []


def cycles(edges):
    """Every import cycle between modules, each once, as "a -> b -> a"
    (strongly connected components of more than one module, and the
    path around each)."""
    graph = {}
    for a, b in edges:
        if a != b:
            graph.setdefault(a, set()).add(b)
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_round(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _round(graph, component):
    """One path from the component's first module back to itself."""
    start = min(component)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for nxt in sorted(graph[path[-1]] & component):
            if nxt == start:
                return " -> ".join(path + [start])
            if nxt not in seen:
                seen.add(nxt)
                paths.append(path + [nxt])


def test_no_import_cycle():
    # Modules, not folders: a cycle inside one layer is one all the same
    # (imports inside functions included: they run, only later).
    assert cycles(EDGES) == []


@pytest.mark.parametrize("edges, expected", [
    ([("a", "b"), ("b", "c")], []),
    ([("a", "b"), ("b", "a")], ["a -> b -> a"]),
    ([("r", "m"), ("m", "x"), ("x", "m"), ("x", "y")], ["m -> x -> m"]),
    ([("a", "b"), ("b", "c"), ("c", "a"), ("d", "e"), ("e", "d")], ["a -> b -> c -> a", "d -> e -> d"]),
])
def test_cycles_are_found(edges, expected):
    assert cycles(edges) == expected


def test_a_stage_never_imports_another_stage():
    bad = [f"{a} imports {b}" for a, b in EDGES
           if a.startswith("labkit.stages.") and b.startswith("labkit.stages.") and a != b]
    assert bad == []


@pytest.mark.parametrize("source, expected", [
    ("from .. import home", {"labkit.home"}),
    ("from ..linux.cgroups.manager import PARENT", {"labkit.linux.cgroups.manager"}),
    ("def f():\n    from ..runtime import container as ct", {"labkit.runtime.container"}),
    ("import labkit.cli.runtime", {"labkit.cli.runtime"}),
    ("from . import Stage", {"labkit.stages"}),
    ("import os, json", set()),
])
def test_imports_are_resolved(tmp_path, source, expected):
    path = tmp_path / "unionfs.py"
    path.write_text(source)
    assert imports("labkit.stages.unionfs", str(path)) == expected
