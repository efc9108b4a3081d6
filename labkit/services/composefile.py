"""Compose files (the Docker Compose YAML format, a documented subset) read
into plain data; another module turns that data into running services.

PyYAML's node API (yaml.compose), not safe_load: every node keeps its
position, so each error names the file and the line, as a compiler does:
"compose.yaml:7: services.web: unknown key 'volumes'". Each mapping has a
table of its known keys; any other key is an error, never dropped in silence
(a typo "port:" must not vanish). Keys "x-..." are compose's extension fields
(where anchors are kept): ignored, as compose does.
"""

import os
import re
import shlex

from labkit.errors import LabkitError

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
PROJECT_HINT = "give -p NAME: lowercase letters, digits, '_' and '-'"
PORT_RE = re.compile(r"(?:\d{1,3}(?:\.\d{1,3}){3}:)?(\d+):(\d+)(?:/tcp|/udp)?")
MEMORY_RE = re.compile(r"\d+(?:\.\d+)?(?:[kmg]b?|b)?", re.I)
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)")   # Go's units, as compose's
SECONDS = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
MAX_REPLICAS = 50
ENV_HINT = "write K=VALUE: labkit does not pass on the host's environment"


def _defaults():
    """A service's fields when its keys are absent (fresh lists each time)."""
    return {"image": None, "build": None, "command": None, "ports": [], "networks": ["default"],
            "aliases": [], "environment": [], "depends_on": [], "replicas": 1, "memory": None,
            "cpus": None, "healthcheck": None}


def _int(lo, hi, what):
    def conv(w, node, path):
        n = w.value(node, path, (int,), "an integer")
        if not lo <= n <= hi:
            w.fail(node, path, f"{n} {what}", f"labkit takes {lo} to {hi} {what}")
        return n
    return conv


def _choice(*allowed):
    """A key checked but kept nowhere: only these values are what labkit does anyway."""
    def conv(w, node, path):
        if w.value(node, path, (str, int), "one of: " + ", ".join(map(str, allowed))) not in allowed:
            w.fail(node, path, f"'{node.value}' is not supported", "labkit knows: " + ", ".join(map(str, allowed)))
        return {}
    return conv


def _nested(table):
    return lambda w, node, path: w.walk(node, path, table)


def _ignore(w, node, path):
    return {}


class _Walker:
    """Converters are methods (self, node, path) -> a value; the tables at
    the end map each key to (field, converter), or (None, converter) when
    the converter returns a dict of fields."""

    def __init__(self, filename, directory):
        import yaml.constructor
        self.file, self.dir = filename, directory
        self.con = yaml.constructor.SafeConstructor()   # builds one scalar at a time
        self.service, self.refs = None, []   # refs: (kind, service, name, node, path), checked at the end

    def fail(self, node, path, msg, hint=None):
        where = f"{self.file}:{node.start_mark.line + 1}: " + (f"{path}: " if path else "")
        raise LabkitError(where + msg, hint)

    def pairs(self, node, path):
        """A mapping's (key as written, key node, value node)."""
        if node.id != "mapping":
            self.fail(node, path, "expected a mapping")
        out = []
        for k, v in node.value:
            if k.id != "scalar" or any(k.value == seen for seen, _, _ in out):
                self.fail(k, path, "expected a string key" if k.id != "scalar" else f"duplicate key '{k.value}'")
            out.append((k.value, k, v))
        return out

    def entries(self, node, path):
        """networks, depends_on, environment: the list form [a, b] as
        (a, node, None), or the mapping form {a: ...} as pairs()."""
        if node.id == "mapping":
            return self.pairs(node, path)
        if node.id != "sequence":
            self.fail(node, path, "expected a list of strings or a mapping")
        names = self.strings(node, path)
        for i, n in enumerate(node.value):
            if names[i] in names[:i]:
                self.fail(n, path, f"'{names[i]}' is listed twice")
        return [(name, n, None) for name, n in zip(names, node.value)]

    def walk(self, node, path, table):
        fields, by = {}, {}
        for key, knode, vnode in self.pairs(node, path):
            if key.startswith("x-"):
                continue
            if key not in table:
                self.fail(knode, path, f"unknown key '{key}'", "labkit compose knows: " + ", ".join(table))
            field, conv = table[key]
            got = conv(self, vnode, f"{path}.{key}" if path else key)
            for name, value in (got.items() if field is None else [(field, got)]):
                # Two spellings of one field (scale and deploy.replicas, mem_limit
                # and deploy.resources.limits.memory) must agree.
                if name in fields and fields[name] != value:
                    self.fail(knode, path, f"'{key}' contradicts '{by[name]}'")
                fields[name], by[name] = value, key
        return fields

    def value(self, node, path, types, what):
        if node.id == "scalar":
            v = self.con.construct_object(node)
            if isinstance(v, types) and (bool in types or not isinstance(v, bool)):
                return v
        self.fail(node, path, f"expected {what}")

    def null(self, node):
        return node.id == "scalar" and self.con.construct_object(node) is None

    def string(self, node, path):
        return self.value(node, path, (str,), "a string")

    def strings(self, node, path):
        if node.id != "sequence":
            self.fail(node, path, "expected a list of strings")
        return [self.value(n, path, (str,), "a list of strings") for n in node.value]

    def name(self, node, path, name, what):
        if not NAME_RE.fullmatch(name) or len(name) > 40:
            self.fail(node, path, f"bad {what} name '{name}'", "letters, digits, '_', '.', '-', at most 40")

    def build(self, node, path):
        f = {"context": self.string(node, path)} if node.id == "scalar" else self.walk(node, path, self.BUILD)
        context, file = f.get("context", "."), f.get("dockerfile")
        context = os.path.normpath(os.path.join(self.dir, context))   # the compose file's directory
        return {"context": context, "file": file and os.path.normpath(os.path.join(context, file))}

    def command(self, node, path):
        try:   # a string is split the shell's way, as compose does
            argv = shlex.split(self.string(node, path)) if node.id == "scalar" else self.strings(node, path)
        except ValueError as e:
            self.fail(node, path, f"cannot split the command: {e}")
        if not argv:
            self.fail(node, path, "empty command")
        return argv

    def ports(self, node, path):
        if node.id != "sequence":
            self.fail(node, path, "expected a list of strings")
        for n in node.value:
            if n.id == "scalar" and n.tag == "tag:yaml.org,2002:int":   # plain, and YAML read a number
                if ":" in n.value:   # YAML 1.1 reads 2222:22 in base 60: 2222 * 60 + 22
                    self.fail(n, path, f"YAML reads {n.value} as the number {self.con.construct_object(n)}",
                              f'quote it: "{n.value}"')
                self.fail(n, path, f"'{n.value}': labkit publishes HOSTPORT:PORT only", f'write "{n.value}:{n.value}"')
            spec = self.value(n, path, (str,), "a list of strings")
            m = PORT_RE.fullmatch(spec)
            if not m or not all(1 <= int(p) <= 65535 for p in m.groups()):
                self.fail(n, path, f"bad port '{spec}'" if ":" in spec else f"'{spec}': labkit publishes HOSTPORT:PORT only",
                          'write [IP:]HOSTPORT:PORT[/tcp|/udp], e.g. "8080:80"')
        return self.strings(node, path)

    def networks(self, node, path):
        names, aliases = [], []
        for name, n, v in self.entries(node, path):
            names.append(name)
            self.refs.append(("network", self.service, name, n, path))
            if v is not None and not self.null(v):
                got = self.walk(v, f"{path}.{name}", {"aliases": ("aliases", _Walker.strings)})
                aliases += got.get("aliases", [])
        if not names:
            self.fail(node, path, "names no network", "leave networks out for the default network")
        return {"networks": names, "aliases": list(dict.fromkeys(aliases))}

    def environment(self, node, path):
        env = []
        for name, n, v in self.entries(node, path):
            if v is None:   # the list form: K=V
                if "=" not in name or name.startswith("="):
                    self.fail(n, path, f"'{name}' has no value", ENV_HINT)
                env.append(name)
                continue
            if self.null(v):   # compose would take it from the host's environment
                self.fail(v, f"{path}.{name}", f"'{name}' has no value", ENV_HINT)
            val = self.value(v, f"{path}.{name}", (str, int, float, bool), "a string, a number or true/false")
            env.append(f"{name}={str(val).lower() if isinstance(val, bool) else val}")
        return env

    def depends_on(self, node, path):
        names = []
        for name, n, v in self.entries(node, path):
            if v is not None and not self.null(v):   # a condition is checked; health is waited for anyway
                self.walk(v, f"{path}.{name}", {"condition": (None, _choice("service_started", "service_healthy"))})
            self.refs.append(("service", self.service, name, n, path))
            names.append(name)
        return names

    def memory(self, node, path):
        v = self.value(node, path, (str, int), 'a size such as "64m"')
        if isinstance(v, str) and MEMORY_RE.fullmatch(v) or isinstance(v, int) and v > 0:
            return str(v)
        self.fail(node, path, f"bad size '{v}'", "write e.g. 32m, 512M, 1g, or a number of bytes")

    def cpus(self, node, path):
        v = self.value(node, path, (str, int, float), "a number of CPUs such as 0.5")
        if re.fullmatch(r"\d*\.?\d+", str(v)) and float(v) > 0:
            return str(v)
        self.fail(node, path, f"bad cpus '{v}'", "a number above 0, such as 0.5 or 2")

    def duration(self, node, path):
        v = self.value(node, path, (str, int, float), 'a duration such as "1s"')
        if not isinstance(v, str):   # a number of seconds
            v = f"{v}s"
        parts = DURATION_RE.findall(v)   # the parts must make up all of it: "1m30" is no duration
        if not parts or "".join(n + u for n, u in parts) != v:
            self.fail(node, path, f"bad duration '{node.value}'", "write e.g. 1s, 500ms, 1m30s, 2m, 1h, or seconds")
        return sum(float(n) * SECONDS[u] for n, u in parts)

    def test(self, node, path):
        """-> a shell command string, or None for ["NONE"] (no check)."""
        if node.id == "scalar" and self.string(node, path).strip():
            return node.value
        argv = self.strings(node, path)
        if argv == ["NONE"]:
            return None
        if argv[:1] == ["CMD-SHELL"] and len(argv) == 2:
            return argv[1]
        if argv[:1] == ["CMD"] and len(argv) > 1:
            return shlex.join(argv[1:])
        self.fail(node, path, 'expected ["CMD", ARG...], ["CMD-SHELL", COMMAND], ["NONE"] or a string')

    def healthcheck(self, node, path):
        f = self.walk(node, path, self.HEALTH)
        if f.pop("disable", False) or f.get("test", "") is None:
            return None
        if "test" not in f:
            self.fail(node, path, "no test", 'give test: ["CMD-SHELL", "COMMAND"]')
        # interval 1s, not compose's 30s: a lab wants to see a service turn healthy now.
        hc = {"test": None, "interval": 1.0, "timeout": 2.0, "retries": 3, "start_period": 0.0, **f}
        if hc["interval"] <= 0 or hc["timeout"] <= 0:
            self.fail(node, path, "interval and timeout must be above 0")
        return hc

    def services(self, node, path):
        out = []
        for name, k, v in self.pairs(node, path):
            self.name(k, f"{path}.{name}", name, "service")
            self.service = name
            svc = {"name": name, "line": k.start_mark.line + 1, **_defaults()}
            svc.update(self.walk(v, f"{path}.{name}", self.SERVICE))
            if not svc["image"] and not svc["build"]:   # both: build, then tag it as image
                self.fail(k, f"{path}.{name}", "needs image or build")
            out.append(svc)
        if not out:
            self.fail(node, path, "no services")
        return out

    def top_networks(self, node, path):
        nets = {}
        for name, k, v in self.pairs(node, path):
            self.name(k, f"{path}.{name}", name, "network")
            f = {} if self.null(v) else self.walk(v, f"{path}.{name}", self.NETWORK)
            nets[name] = {"driver": "bridge", "subnet": f.get("subnet")}
        return nets

    def ipam_config(self, node, path):
        if node.id != "sequence" or len(node.value) > 1:
            self.fail(node, path, "expected a list of one {subnet: ...}", "labkit gives a network one subnet")
        return self.walk(node.value[0], path, {"subnet": ("subnet", _Walker.subnet)}) if node.value else {}

    def subnet(self, node, path):
        import ipaddress
        subnet = self.string(node, path)
        try:
            ipaddress.IPv4Network(subnet)   # strict: no host bits set
        except ValueError as e:
            self.fail(node, path, f"bad subnet '{subnet}': {e}", 'write e.g. "10.77.9.0/24"')
        return subnet

    def project(self, node, path):
        name = self.string(node, path).lower()
        if not PROJECT_RE.fullmatch(name):
            self.fail(node, path, f"bad project name '{name}'", PROJECT_HINT)
        return name

    BUILD = {"context": ("context", string), "dockerfile": ("dockerfile", string)}
    LIMITS = {"memory": ("memory", memory), "cpus": ("cpus", cpus)}
    # update_config: labkit replaces one replica at a time; stop-first and
    # start-first are accepted and kept nowhere (the runner has its own order).
    UPDATE = {"parallelism": (None, _choice(1)), "order": (None, _choice("stop-first", "start-first"))}
    DEPLOY = {"replicas": ("replicas", _int(0, MAX_REPLICAS, "replicas")), "restart_policy": (None, _ignore),
              "resources": (None, _nested({"limits": (None, _nested(LIMITS)), "reservations": (None, _ignore)})),
              "update_config": (None, _nested(UPDATE))}
    HEALTH = {"test": ("test", test), "interval": ("interval", duration), "timeout": ("timeout", duration),
              "retries": ("retries", _int(1, 1000, "retries")), "start_period": ("start_period", duration),
              "disable": ("disable", lambda w, n, p: w.value(n, p, (bool,), "true or false"))}
    SERVICE = {"image": ("image", string), "build": ("build", build), "command": ("command", command),
               "ports": ("ports", ports), "networks": (None, networks), "environment": ("environment", environment),
               "depends_on": ("depends_on", depends_on), "deploy": (None, _nested(DEPLOY)),
               "healthcheck": ("healthcheck", healthcheck), "scale": ("replicas", DEPLOY["replicas"][1]),
               "mem_limit": ("memory", memory), "cpus": ("cpus", cpus)}
    NETWORK = {"driver": (None, _choice("bridge")), "ipam": (None, _nested({
        "driver": (None, _choice("default")), "config": (None, ipam_config)}))}
    # version: obsolete; compose ignores it too.
    TOP = {"version": (None, _ignore), "name": ("name", project), "services": ("services", services),
           "networks": ("networks", top_networks)}


def _order(w, services):
    """depends_on first; among those ready, the file's order."""
    by, done, order = {s["name"]: s for s in services}, set(), []
    while len(order) < len(services):
        ready = [s for s in services if s["name"] not in done and all(d in done for d in s["depends_on"])]
        if not ready:   # each one left waits for another one left: follow them round
            chain = [next(s["name"] for s in services if s["name"] not in done)]
            while (after := next(d for d in by[chain[-1]]["depends_on"] if d not in done)) not in chain:
                chain.append(after)
            cycle = chain[chain.index(after):] + [after]
            node, path = next((n, p) for kind, svc, name, n, p in w.refs
                              if kind == "service" and (svc, name) == (cycle[0], cycle[1]))
            w.fail(node, path, "a cycle: " + " -> ".join(cycle), "remove one of these depends_on")
        order.append(ready[0])
        done.add(ready[0]["name"])
    return order


def _parse(text, filename, directory, project, fallback):
    import yaml
    w = _Walker(filename, os.path.abspath(directory))
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        top = None if root is None else w.walk(root, "", w.TOP)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise LabkitError(f"{filename}:{mark.line + 1}: YAML: {e.problem or e.context}",
                          "check the indentation (spaces, not tabs) and the quoting") from None
    except yaml.YAMLError as e:
        raise LabkitError(f"{filename}: YAML: {str(e).splitlines()[0]}") from None   # e.g. a NUL byte
    if top is None:
        raise LabkitError(f"{filename}: empty file", "a compose file needs services:")
    if "services" not in top:
        w.fail(root, None, "no services:", "a compose file needs services:")
    name = top.get("name") if not project else None
    if name is None:
        name = (project or fallback or "").lower()
        if not PROJECT_RE.fullmatch(name):
            raise LabkitError(f"{filename}: bad project name '{name}'"
                              + ("" if project else " (the directory's name)"), PROJECT_HINT)
    nets, services = top.get("networks", {}), top["services"]
    for kind, svc, ref, node, path in w.refs:
        if kind == "network" and ref != "default" and ref not in nets:
            w.fail(node, path, f"network '{ref}' is not declared", "declare it under the top-level networks:")
        if kind == "service" and ref not in {s["name"] for s in services}:
            w.fail(node, path, f"unknown service '{ref}'", "services: " + ", ".join(s["name"] for s in services))
    if any("default" in s["networks"] for s in services):
        nets.setdefault("default", {"driver": "bridge", "subnet": None})
    return {"name": name, "file": os.path.join(w.dir, os.path.basename(filename)), "dir": w.dir,
            "services": _order(w, services), "networks": nets}


def parse(text, filename="compose.yaml", directory=".", project="app"):
    """load() from text. ``project`` stands in for the directory's name: the
    name when the file has no name: key (load's ``project``, -p, overrides)."""
    return _parse(text, filename, directory, None, project)


def load(path, project=None):
    """-> {"name", "file", "dir", "services": [dicts, depends_on first],
    "networks": {name: {"driver": "bridge", "subnet": str or None}}}. The
    name: ``project`` (-p), else the file's name: key, else its directory's."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise LabkitError(f"{path}: {e.strerror}", "give the compose file's path with -f FILE") from None
    except UnicodeDecodeError:
        raise LabkitError(f"{path}: not UTF-8 text") from None
    directory = os.path.dirname(os.path.abspath(path))
    return _parse(text, path, directory, project, os.path.basename(directory))
