"""Is this config.json one labkit can run? Two passes, as runc's validate:

1. the runtime spec's own JSON schema (Debian's
   golang-github-opencontainers-specs-dev ships it): types, required fields,
   enums. A config.json that passed once is remembered by the sha256 of its
   bytes (and the schema's version) in $LABKIT_HOME/cache/validated/ and not
   checked again; the cache file holds the parsed config in marshal format,
   so that a bundle seen before is read without jsonschema or json on the
   start path (labkit/startpath.py). An empty cache file means "passed";
2. checks of meaning, cheap and always run: a list of small functions, each
   naming the field path of what it refuses, e.g.
   ``linux.namespaces[2].type: "pidd" is not a namespace type``. A field
   labkit does not implement is refused (``<path>: not supported by labkit``),
   never silently ignored — unless it holds its zero value (false, 0, "",
   an empty list or object, or an object of zero values): runc is written in
   Go, where a field left out and a field at its zero value read the same,
   and clients write them so (dockerd puts ``disableOOMKiller: false`` and
   ``blockIO: {"weight": 0}`` into every config.json).
"""

import os

from labkit import home
from labkit.errors import LabkitError, NotFound

SCHEMA_DIR = "/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema"
NS_TYPES = {"pid": "pid", "network": "net", "ipc": "ipc", "mount": "mnt", "uts": "uts",
            "user": "user", "cgroup": "cgroup", "time": "time"}
HOOK_NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

# What labkit implements, object by object: any other key that holds a value
# is refused by check_supported (an empty value counts as absent).
SUPPORTED = {
    "": {"ociVersion", "process", "root", "hostname", "mounts", "hooks", "annotations", "linux"},
    "process": {"terminal", "user", "args", "env", "cwd", "capabilities", "rlimits",
                "noNewPrivileges", "oomScoreAdj"},
    "process.user": {"uid", "gid", "umask", "additionalGids"},
    "root": {"path", "readonly"},
    "linux": {"namespaces", "uidMappings", "gidMappings", "devices", "cgroupsPath", "resources",
              "sysctl", "maskedPaths", "readonlyPaths", "seccomp", "rootfsPropagation"},
    "linux.resources": {"memory", "cpu", "pids", "devices"},
    # kernel and kernelTCP (kmem): accepted and ignored, with runc 1.1's warning.
    "linux.resources.memory": {"limit", "swap", "reservation", "swappiness", "kernelTCP", "disableOOMKiller",
                               "kernel"},
    "linux.resources.cpu": {"shares", "quota", "period", "cpus", "mems"},
    "linux.resources.pids": {"limit"},
}


def _p(path, key):
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


# ---- pass 1: the JSON schema ------------------------------------------

def schema_version():
    try:
        with open(os.path.join(SCHEMA_DIR, "..", "specs-go", "version.go")) as f:
            text = f.read()
    except OSError:
        text = ""
    st = os.stat(os.path.join(SCHEMA_DIR, "config-schema.json"))
    return f"{len(text)}-{st.st_size}-{int(st.st_mtime)}"


def _cache_path(raw):
    try:   # the builtin module: hashlib would load OpenSSL for one digest
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
    try:
        version = schema_version()
    except FileNotFoundError:
        raise NotFound(f"the runtime-spec JSON schema is missing ({SCHEMA_DIR})",
                       "apt-get install golang-github-opencontainers-specs-dev") from None
    key = sha256(version.encode() + b"\0" + raw).hexdigest()
    return os.path.join(home.home(), "cache", "validated", key)


def _inlined(node, here, files):
    """The schema with every $ref replaced by what it points to. jsonschema's
    RefResolver looks each one up again at every item it checks: a podman
    config.json (400 seccomp rules) took 1.9 s that way, and takes 4 ms
    inlined. The runtime spec's schema has no recursive definition."""
    if isinstance(node, list):
        return [_inlined(v, here, files) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" not in node:
        return {k: _inlined(v, here, files) for k, v in node.items()}
    name, _, fragment = node["$ref"].partition("#")
    name = name or here
    target = files[name]
    for part in fragment.strip("/").split("/"):
        if part:
            target = target[part]
    resolved = _inlined(target, name, files)
    rest = {k: _inlined(v, here, files) for k, v in node.items() if k != "$ref"}
    return {"allOf": [resolved, rest]} if rest else resolved


# The libraries jsonschema's format checkers use if they are installed (they
# are, for Jupyter): no format is checked here, and importing rfc3987_syntax
# alone compiles a grammar for 1.6 s. Kept out of jsonschema's import.
_FORMAT_LIBS = ("rfc3987_syntax", "rfc3987", "rfc3986_validator", "rfc3339_validator", "webcolors",
                "jsonpointer", "uri_template", "isoduration", "idna", "fqdn")


def _schema():
    """config-schema.json with its references inlined (_inlined)."""
    import json
    files = {}
    for name in os.listdir(SCHEMA_DIR):
        if name.endswith(".json"):
            with open(os.path.join(SCHEMA_DIR, name)) as f:
                files[name] = json.load(f)
    return _inlined(files["config-schema.json"], "config-schema.json", files)


def schema_errors(cfg):
    """The schema's complaints, each as "field.path: message", best first."""
    import sys
    import warnings
    for name in _FORMAT_LIBS:
        sys.modules.setdefault(name, None)   # an ImportError for jsonschema, which it expects
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import jsonschema
        schema = _schema()
        cls = jsonschema.validators.validator_for(schema)
        errors = sorted(cls(schema).iter_errors(cfg),
                        key=lambda e: (len(e.absolute_path), str(list(e.absolute_path))))
    out = []
    for e in errors:
        path = ""
        for key in e.absolute_path:
            path = _p(path, key)
        out.append(f"{path or '(top level)'}: {e.message}")
    return out


def _raise_schema_errors(cfg):
    errors = schema_errors(cfg)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise LabkitError(f"config.json: {errors[0]}{more}",
                          "the runtime spec's config-schema.json says so; see `labkit-runtime spec`")


# At most this many configs are remembered: a client that writes a new
# config.json for every container (dockerd, podman: its id and paths in it)
# never hits the cache, and must not grow it without end.
CACHE_SIZE = 128


def _remember(cached, cfg):
    """Write the cache file atomically: another run may read it meanwhile.
    Past CACHE_SIZE entries, the least recently written go."""
    import marshal
    top = os.path.dirname(cached)
    os.makedirs(top, exist_ok=True)
    home.write_atomic(cached, marshal.dumps(cfg))
    names = os.listdir(top)
    if len(names) > CACHE_SIZE:
        def written(name):
            try:
                return os.stat(os.path.join(top, name)).st_mtime_ns
            except FileNotFoundError:
                return 0
        for name in sorted(names, key=written)[:len(names) - CACHE_SIZE]:
            try:
                os.unlink(os.path.join(top, name))
            except FileNotFoundError:
                pass      # another run pruned it first


def _recall(cached):
    """The config remembered in ``cached``; None if absent, empty or unreadable
    (another Python's marshal format, a torn file): then it is parsed again."""
    import marshal
    try:
        with open(cached, "rb") as f:
            data = f.read()
        cfg = marshal.loads(data)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return cfg if isinstance(cfg, dict) else None


def load_checked(raw, path):
    """config.json's bytes -> its dict, having passed pass 1: from the cache
    when this content passed before, else parsed, checked and remembered."""
    cached = _cache_path(raw)
    cfg = _recall(cached)
    if cfg is None:
        from labkit.oci.spec import parse
        cfg = parse(raw, path)
        if not os.path.exists(cached) and not _passes_compiled(cfg):   # an empty file: it passed already
            _raise_schema_errors(cfg)
        _remember(cached, cfg)
    return cfg


def _passes_compiled(cfg):
    """Does ``cfg`` pass the schema, by a validator compiled from it once
    (fastjsonschema's generated Python, kept as a code object)? A client that
    writes a new config.json for every container (dockerd) never hits the
    cache above, and jsonschema costs about 90 ms a miss (its import, then
    the first walk of the schema); this, about 6. Only a "yes" is trusted:
    for a "no", or when it cannot be had, jsonschema judges and words the error."""
    try:
        check = _compiled()
    except Exception:      # not installed, an unreadable cache: jsonschema's path
        return False
    try:
        check(cfg)
    except Exception:
        return False
    return True


COMPILED = 2


def _compiled():
    import marshal
    import sys
    # Named by the schema's version, the interpreter's bytecode and how the
    # source is made here (COMPILED): any change makes a new one.
    path = os.path.join(home.home(), "cache", "schema",
                        f"{schema_version()}.{sys.implementation.cache_tag}.{COMPILED}.marshal")
    try:
        with open(path, "rb") as f:
            code = marshal.loads(f.read())
    except (OSError, EOFError, ValueError, TypeError):
        code = compile(_validator_source(), f"<config-schema.json, compiled: {path}>", "exec")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        home.write_atomic(path, marshal.dumps(code))
    scope = {}
    exec(code, scope)
    return scope["validate"]


def _validator_source():
    """The validator's Python; it raises exceptions of its own, so that a run
    needs no import of fastjsonschema's package (5 ms) to use it."""
    import fastjsonschema
    source = fastjsonschema.compile_to_code(_schema())
    own = ("class JsonSchemaValueException(ValueError):\n    pass\n\n\n"
           "JsonSchemaValuesException = JsonSchemaValueException\n")
    return source.replace("from fastjsonschema import JsonSchemaValueException, JsonSchemaValuesException\n", own)


# ---- pass 2: meaning ----------------------------------------------------

def _bad(path, message):
    return (path, message)


def unset(value):
    """Does ``value`` read as "not given" to runc: Go's zero value of its
    type (false, 0, "", null), an empty list, or an object of such values."""
    if isinstance(value, dict):
        return all(unset(v) for v in value.values())
    return value in (None, "", [], False) or (type(value) in (int, float) and value == 0)


def check_supported(cfg, bundle):
    def walk(obj, path):
        allowed = SUPPORTED.get(path)
        if allowed is None or not isinstance(obj, dict):
            return
        for key, value in obj.items():
            if key == "__id__":
                continue
            if key not in allowed:
                if not unset(value):
                    yield _bad(_p(path, key), "not supported by labkit")
            else:
                yield from walk(value, _p(path, key))
    yield from walk(cfg, "")


def check_version(cfg, bundle):
    v = cfg.get("ociVersion", "")
    if not v.startswith("1."):
        yield _bad("ociVersion", f"{v!r} is not a 1.x version of the runtime spec")


def check_process(cfg, bundle):
    proc = cfg.get("process")
    if proc is None:
        yield _bad("process", "missing: labkit-runtime needs a process to run")
        return
    if not proc.get("args"):
        yield _bad("process.args", "must not be empty")
    cwd = proc.get("cwd", "")
    if not cwd.startswith("/"):
        yield _bad("process.cwd", f"{cwd!r} must be an absolute path")
    for i, e in enumerate(proc.get("env") or ()):
        if "=" not in e:
            yield _bad(f"process.env[{i}]", f"{e!r} is not NAME=VALUE")


def check_rlimits(cfg, bundle):
    from labkit.linux.process import RLIMITS
    seen = set()
    for i, rl in enumerate((cfg.get("process") or {}).get("rlimits") or ()):
        t = rl.get("type")
        if t not in RLIMITS:
            yield _bad(f"process.rlimits[{i}].type", f"{t!r} is not a resource of setrlimit(2)")
        elif t in seen:
            yield _bad(f"process.rlimits[{i}].type", f"{t} is given twice")
        elif rl.get("soft", 0) > rl.get("hard", 0):
            yield _bad(f"process.rlimits[{i}]", f"soft {rl['soft']} is above hard {rl['hard']}")
        seen.add(t)


def check_root(cfg, bundle):
    root = cfg.get("root")
    if not root or not root.get("path"):
        yield _bad("root.path", "missing: where is the container's root filesystem?")
        return
    path = os.path.join(bundle, root["path"])
    if not os.path.isdir(path):
        yield _bad("root.path", f"{path} does not exist" if not os.path.exists(path)
                   else f"{path} is not a directory")


def _namespaces(cfg):
    return (cfg.get("linux") or {}).get("namespaces") or []


def check_namespaces(cfg, bundle):
    seen = set()
    for i, ns in enumerate(_namespaces(cfg)):
        t = ns.get("type")
        if t not in NS_TYPES:
            yield _bad(f"linux.namespaces[{i}].type", f"{t!r} is not a namespace type")
            continue
        if t in seen:
            yield _bad(f"linux.namespaces[{i}].type", f"{t} is given twice")
        seen.add(t)
        path = ns.get("path")
        if path and not os.path.lexists(path):
            yield _bad(f"linux.namespaces[{i}].path", f"{path} does not exist")
    if "mount" not in seen:
        yield _bad("linux.namespaces", "a mount namespace is required by labkit: without one the "
                   "container's mounts would be made in the host's mount table (runc makes them there "
                   "and leaves them after the container is gone)")
    if cfg.get("hostname") and "uts" not in seen:
        yield _bad("hostname", "needs a uts namespace, or it would be the host's hostname")
    linux = cfg.get("linux") or {}
    userns = "user" in seen
    joined_user = any(ns.get("type") == "user" and ns.get("path") for ns in _namespaces(cfg))
    for key in ("uidMappings", "gidMappings"):
        if linux.get(key) and not userns:
            yield _bad(f"linux.{key}", "needs a user namespace")
        if userns and not joined_user and not linux.get(key):
            yield _bad(f"linux.{key}", "missing: a new user namespace needs its id mappings")


def _escapes(path):
    depth = 0
    for part in path.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part and part != ".":
            depth += 1
    return False


def check_mounts(cfg, bundle):
    from labkit.linux.rootfs import FS_TYPES, MOUNT_FLAGS, PROPAGATION, RECURSIVE
    for i, m in enumerate(cfg.get("mounts") or ()):
        dest = m.get("destination", "")
        where = f"mounts[{i}]"
        if not dest.startswith("/"):
            yield _bad(f"{where}.destination", f"{dest!r} must be an absolute path")
        if _escapes(dest):
            yield _bad(f"{where}.destination", f"{dest!r} leads outside the container's root")
        opts = m.get("options") or []
        bind = m.get("type") == "bind" or "bind" in opts or "rbind" in opts
        if not bind and m.get("type") not in FS_TYPES:
            yield _bad(f"{where}.type", f"{m.get('type')!r} is not supported by labkit "
                       f"(it mounts {', '.join(FS_TYPES)})")
        if bind:
            src = m.get("source") or ""
            full = src if src.startswith("/") else os.path.join(bundle, src)
            if not os.path.exists(full):
                yield _bad(f"{where}.source", f"{full} does not exist")
        for j, o in enumerate(opts):
            # A bind takes no filesystem data: key=value ones are ignored by the
            # kernel, as under runc; an unknown word is a typo worth a line.
            if m.get("type") in ("bind", None) and o not in MOUNT_FLAGS and o not in PROPAGATION \
                    and o not in RECURSIVE and "=" not in o:
                yield _bad(f"{where}.options[{j}]", f"{o!r} is not a mount option")
        if m.get("uidMappings") or m.get("gidMappings"):
            yield _bad(f"{where}.uidMappings", "not supported by labkit (idmapped mounts)")


def check_rootfs_propagation(cfg, bundle):
    from labkit.linux.rootfs import PROPAGATION
    value = (cfg.get("linux") or {}).get("rootfsPropagation")
    if not value:
        return
    if value in ("shared", "rshared"):
        yield _bad("linux.rootfsPropagation", f"{value!r} is not supported by labkit: pivot_root needs a "
                   "root whose parent is not shared (give slave or private)")
    elif value not in PROPAGATION:
        yield _bad("linux.rootfsPropagation", f"{value!r} is not a propagation ({', '.join(sorted(PROPAGATION))})")


def check_paths(cfg, bundle):
    linux = cfg.get("linux") or {}
    for key in ("maskedPaths", "readonlyPaths"):
        for i, p in enumerate(linux.get(key) or ()):
            if not p.startswith("/") or _escapes(p):
                yield _bad(f"linux.{key}[{i}]", f"{p!r} must be an absolute path inside the container")


# sysctl prefixes that belong to a namespace (runc's list), and which one.
_SYSCTL_NS = (("kernel.msg", "ipc"), ("kernel.sem", "ipc"), ("kernel.shm", "ipc"),
              ("fs.mqueue.", "ipc"), ("net.", "network"),
              ("kernel.hostname", "uts"), ("kernel.domainname", "uts"))


def check_sysctl(cfg, bundle):
    kinds = {ns.get("type") for ns in _namespaces(cfg)}
    for key, value in ((cfg.get("linux") or {}).get("sysctl") or {}).items():
        where = f"linux.sysctl[{key!r}]"
        if "/" in key or ".." in key or not key:
            yield _bad(where, "a sysctl name is dot-separated words (net.ipv4.ip_forward)")
            continue
        ns = next((n for prefix, n in _SYSCTL_NS if key.startswith(prefix)), None)
        if ns is None:
            yield _bad(where, "not namespaced: it would change the host's kernel")
        elif ns not in kinds:
            yield _bad(where, f"needs a {ns} namespace, or it would change the host's")


def check_resources(cfg, bundle):
    linux = cfg.get("linux") or {}
    res = linux.get("resources") or {}
    from labkit.linux.cgroups.devices import check
    yield from check(res.get("devices"))
    path = linux.get("cgroupsPath")
    if path:
        if ":" in path:
            yield _bad("linux.cgroupsPath", f"{path!r} is systemd's slice:prefix:name form, which needs "
                       "--systemd-cgroup: not supported by labkit (give a path, as the cgroupfs driver does)")
        elif any(p in (".", "..") for p in path.split("/")):
            yield _bad("linux.cgroupsPath", f"{path!r} must not contain '.' or '..'")


def check_devices(cfg, bundle):
    for i, d in enumerate((cfg.get("linux") or {}).get("devices") or ()):
        p = d.get("path", "")
        if not p.startswith("/dev/") or _escapes(p):
            yield _bad(f"linux.devices[{i}].path", f"{p!r} must be a path under /dev")
        if d.get("type") != "p" and ("major" not in d or "minor" not in d):
            yield _bad(f"linux.devices[{i}]", "a device needs major and minor")


def check_hooks(cfg, bundle):
    for name, hooks in (cfg.get("hooks") or {}).items():
        if name not in HOOK_NAMES:
            yield _bad(f"hooks.{name}", "not a hook of the runtime spec")
            continue
        for i, h in enumerate(hooks or ()):
            if not h.get("path", "").startswith("/"):
                yield _bad(f"hooks.{name}[{i}].path", "must be an absolute path")


def check_seccomp(cfg, bundle):
    spec = (cfg.get("linux") or {}).get("seccomp")
    if spec:
        from labkit.linux.seccomp import check
        yield from check(spec)


CHECKS = [check_version, check_supported, check_process, check_rlimits,
          check_root, check_namespaces, check_mounts, check_paths, check_sysctl,
          check_resources, check_devices, check_hooks, check_seccomp, check_rootfs_propagation]


def meaning_errors(cfg, bundle, cid=None):
    cfg = dict(cfg, __id__=cid)
    out = []
    for check in CHECKS:
        out += [f"{path}: {message}" for path, message in check(cfg, bundle)]
    return out


def check_meaning(cfg, bundle, cid=None):
    """Pass 2; raises one LabkitError naming the first problem's field."""
    errors = meaning_errors(cfg, bundle, cid)
    if errors:
        more = f" (and {len(errors) - 1} more: {'; '.join(errors[1:3])})" if len(errors) > 1 else ""
        raise LabkitError(f"config.json: {errors[0]}{more}",
                          "`labkit-runtime spec` writes a valid default to start from")
