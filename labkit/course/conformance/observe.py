"""Run a bundle under an OCI runtime and collect what can be observed.

Any runtime with runc's command line works: runc, crun, labkit-runtime. Each
observation uses a unique container id and its own ``--root`` state
directory, and deletes the container (``delete --force``) whatever happens.

Two passes per bundle:

1. ``run``: the exit code and stdout (the probe sections of bundles.py).
2. ``create`` / ``state`` / ``start``: between create and start the
   container's init exists, in its namespaces and cgroups, but has not run the
   user's process yet. Its pid (from ``state``) gives the host's view: which
   /proc/PID/ns inodes differ from ours, which cgroup limits are in force, and
   the state JSON before and after start.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from labkit.containers import CREATED, CREATING, RUNNING, STOPPED
from labkit.course.leaks import HARNESS_PREFIX
from labkit import home

ID_PREFIX = HARNESS_PREFIX   # the leak scan knows its cgroups by it
NS_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
UNLIMITED = 1 << 62     # v1 prints 9223372036854771712 for "no memory limit"


class Runtime:
    """A runtime command line: ``argv`` before runc's global options."""

    def __init__(self, name, argv, wrapper=()):
        self.name, self.argv, self.wrapper = name, list(argv), list(wrapper)

    def command(self, root, *args):
        return [*self.wrapper, *self.argv, "--root", root, *args]

    def __repr__(self):
        return f"Runtime({self.name})"


# crun refuses a hybrid cgroup host; it runs with the cgroup2 mount hidden in a
# private mount namespace of its own (the caller's mounts are untouched).
CRUN_WRAPPER = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"']


def _hybrid():
    return os.path.ismount("/sys/fs/cgroup/unified")


def labkit_available():
    """Why labkit-runtime cannot be used here, or None when it can."""
    # Found, not imported: the harness runs it as a program of its own, and
    # the course sits below the command lines.
    import importlib.util
    if importlib.util.find_spec("labkit.cli.runtime") is None:
        return "labkit.cli.runtime is not installed"
    return None


def runtime(name):
    """A Runtime by name: 'labkit', 'runc' or 'crun' (None when not installed)."""
    if name == "labkit":
        # The venv's own launcher (provision writes it next to the interpreter),
        # whether or not the venv's bin directory is on PATH.
        exe = os.path.join(os.path.dirname(sys.executable), "labkit-runtime")
        if os.access(exe, os.X_OK):
            return Runtime("labkit", [exe])
        if labkit_available() is None:
            return Runtime("labkit", [sys.executable, "-m", "labkit.cli.runtime"])
        return None
    exe = shutil.which(name)
    if not exe:
        return None
    if name == "crun" and _hybrid():
        return Runtime("crun", [exe], CRUN_WRAPPER)
    return Runtime(name, [exe])


def _env():
    env = dict(os.environ)
    top = home.source_tree()
    env["PYTHONPATH"] = top + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _call(rt, root, *args, timeout=60, **kw):
    kw.setdefault("capture_output", True)
    return subprocess.run(rt.command(root, *args), text=True, timeout=timeout, env=_env(), **kw)


# --- parsing what the probes print -----------------------------------------

def sections(stdout):
    """{name: text} from the ``@@name`` sections a probe prints."""
    out, name = {}, None
    for line in stdout.splitlines():
        if line.startswith("@@"):
            name = line[2:]
            out[name] = []
        elif name:
            out[name].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def mount_shape(mountinfo):
    """Sorted 'point type ro|rw' lines of a mountinfo text."""
    from labkit.linux import mountinfo as mi
    shape = []
    for line in mountinfo.splitlines():
        try:
            m = mi.parse_line(line)
        except ValueError:
            continue              # a probe's output may end mid-line
        shape.append(f"{m.mount_point} {m.fstype} {m.options.split(',')[0]}")
    return sorted(shape)


def parse(stdout):
    """The facts of a probe's output, flat: 'status.CapEff', 'env.PATH', ...

    Values that change from run to run (pids other than 1, inodes) are
    reduced to their shape."""
    facts = {}
    for name, text in sections(stdout).items():
        if name in ("status", "limits", "env"):
            for line in text.splitlines():
                if name == "status":
                    k, _, v = line.partition(":")
                    facts[f"status.{k}"] = " ".join(v.split())
                elif name == "env":
                    k, _, v = line.partition("=")
                    facts[f"env.{k}"] = v
                elif not line.startswith("Limit"):
                    # "Max open files   512   768   files": the name is text up to the numbers
                    words = line.split()
                    for i, w in enumerate(words):
                        if w.isdigit() or w == "unlimited":
                            facts[f"limits.{' '.join(words[:i])}"] = " ".join(words[i:i + 2])
                            break
        elif name == "mounts":
            facts["mounts"] = mount_shape(text)
        elif name == "ps":
            rows = [line.split(None, 1) for line in text.splitlines() if line.strip()]
            facts["ps"] = [("1" if pid == "1" else "n", comm) for pid, comm in rows]
            facts["ps.pid1"] = next((comm for pid, comm in rows if pid == "1"), None)
        elif name == "links":
            from labkit.linux.netdevice import link_names
            facts["links"] = link_names(text)
        elif name in ("masked", "ro_paths"):
            facts[name] = {p: (int(v) if v.isdigit() else v)
                           for p, v in (line.rsplit(None, 1) for line in text.splitlines() if line.strip())}
        elif name == "idmap":
            facts["idmap"] = [" ".join(line.split()) for line in text.splitlines()]
        else:
            facts[name] = text.strip()
    return facts


# --- the host's view ---------------------------------------------------------

def ns_inodes(pid="self"):
    found = {}
    for t in NS_TYPES:
        try:
            found[t] = os.stat(f"/proc/{pid}/ns/{t}").st_ino
        except OSError:
            pass
    return found


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cgroup_limits(pid):
    """The memory, pids and cpu limits in force for a process, read from its
    own cgroups (v1 controllers or the v2 unified hierarchy); None = no limit."""
    paths = {}
    for line in (_read(f"/proc/{pid}/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        for c in (controllers.split(",") if controllers else ["unified"]):
            paths[c] = path

    def v1(ctrl, name):
        return _read(f"/sys/fs/cgroup/{ctrl}{paths[ctrl]}/{name}") if ctrl in paths else None

    def num(v):
        return None if v in (None, "max", "-1") or int(v) >= UNLIMITED else int(v)

    if "memory" in paths:           # v1 (hybrid or legacy)
        quota = v1("cpu", "cpu.cfs_quota_us")
        return {"cgroup.memory": num(v1("memory", "memory.limit_in_bytes")),
                "cgroup.pids": num(v1("pids", "pids.max")),
                "cgroup.cpu": None if num(quota) is None else [int(quota), int(v1("cpu", "cpu.cfs_period_us"))]}
    base = "/sys/fs/cgroup" + paths.get("unified", "/")
    cpu = (_read(f"{base}/cpu.max") or "max").split()
    return {"cgroup.memory": num(_read(f"{base}/memory.max")),
            "cgroup.pids": num(_read(f"{base}/pids.max")),
            "cgroup.cpu": None if cpu[0] == "max" else [int(cpu[0]), int(cpu[1])]}


def host_facts():
    """What the expectations compare with: the host's own view."""
    from labkit.linux.netdevice import link_names
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    from labkit.linux import mountinfo
    root_type = next((m.fstype for m in mountinfo.read() if m.mount_point == "/"), None)
    return {"links": link_names(links), "ip_forward": _read("/proc/sys/net/ipv4/ip_forward"),
            "masked_candidates": [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list",
                                              "/proc/sched_debug", "/proc/acpi", "/proc/scsi",
                                              "/sys/firmware") if os.path.exists(p)],
            "root_fstype": root_type, "ns": ns_inodes()}


# --- one observation ---------------------------------------------------------

def new_id():
    return ID_PREFIX + uuid.uuid4().hex[:10]


def _state(rt, root, cid):
    r = _call(rt, root, "state", cid)
    return json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr.strip()}


def _wait_stopped(rt, root, cid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = _state(rt, root, cid)
        if st.get("status") == STOPPED or "error" in st:
            return st
        time.sleep(0.02)
    return st


def observe_run(rt, bundle, cid=None, timeout=60):
    """``run``: {'exit_code', 'stdout', 'stderr'} plus the parsed probe facts."""
    cid = cid or new_id()
    root = tempfile.mkdtemp(prefix="labkit-oci-root-")
    try:
        r = _call(rt, root, "run", "--bundle", bundle, cid, timeout=timeout, stdin=subprocess.DEVNULL)
        facts = {"exit_code": r.returncode, "stdout": r.stdout, "stderr": r.stderr}
        facts.update(parse(r.stdout))
        return facts
    finally:
        _call(rt, root, "delete", "--force", cid)
        shutil.rmtree(root, ignore_errors=True)


def observe_lifecycle(rt, bundle, cid=None, timeout=60, config=None):
    """``create``, ``state``, ``start``: the host's view of the created container.

    Returns the state JSON before and after start, which namespaces differ
    from the caller's, which of the config's namespaces given by path were
    joined, the cgroup limits in force, and what a prestart hook saw."""
    cid = cid or new_id()
    root = tempfile.mkdtemp(prefix="labkit-oci-root-")
    out = os.path.join(root, "stdio")
    if config is None:
        with open(os.path.join(bundle, "config.json")) as f:
            config = json.load(f)
    facts = {}
    try:
        # The container's stdio: a file, not a pipe (a pipe stays open as long as the container).
        with open(out, "w") as stdio:
            r = _call(rt, root, "create", "--bundle", bundle, cid, timeout=timeout,
                      stdin=subprocess.DEVNULL, stdout=stdio, stderr=stdio, capture_output=False)
        facts["create_exit"] = r.returncode
        if r.returncode != 0:
            facts["create_error"] = _read(out)
            return facts
        created = _state(rt, root, cid)
        facts["state.created"] = created
        pid = created.get("pid")
        if pid:
            mine, theirs = ns_inodes(), ns_inodes(pid)
            facts["namespaces"] = sorted(t for t in theirs if theirs[t] != mine.get(t))
            facts["joined"] = {}
            for n in config.get("linux", {}).get("namespaces", []):
                if "path" in n:
                    t = {"network": "net", "mount": "mnt"}.get(n["type"], n["type"])
                    facts["joined"][t] = os.stat(n["path"]).st_ino == theirs.get(t)
            facts.update(cgroup_limits(pid))
        hook = os.path.join(bundle, "prestart-hook.json")
        if os.path.exists(hook):
            seen = json.loads(_read(hook) or "{}")
            facts["hook.ran"] = True
            facts["hook.id_matches"] = seen.get("id") == cid
            facts["hook.pid_positive"] = isinstance(seen.get("pid"), int) and seen["pid"] > 0
            facts["hook.status"] = seen.get("status")
            os.unlink(hook)
        r = _call(rt, root, "start", cid, timeout=timeout)
        facts["start_exit"] = r.returncode
        facts["state.started"] = _state(rt, root, cid)
        facts["state.stopped"] = _wait_stopped(rt, root, cid, timeout)
        facts["lifecycle_stdout"] = _read(out)
        return facts
    finally:
        _call(rt, root, "delete", "--force", cid)
        shutil.rmtree(root, ignore_errors=True)


def observe(rt, bundle, timeout=60):
    """Both passes; the hook's output file is consumed by the lifecycle pass."""
    facts = observe_run(rt, bundle, timeout=timeout)
    hook = os.path.join(bundle, "prestart-hook.json")
    if os.path.exists(hook):
        os.unlink(hook)
    facts.update(observe_lifecycle(rt, bundle, timeout=timeout))
    return facts


def mismatches(facts, expected):
    """{fact: (seen, expected)} for each expectation that does not hold.

    ``mounts.has`` is a line the mount shape must contain; every other key is
    compared for equality."""
    bad = {}
    for key, want in expected.items():
        if key == "mounts.has":
            if want is not None and want not in facts.get("mounts", []):
                bad[key] = (facts.get("mounts"), want)
        elif facts.get(key) != want:
            bad[key] = (facts.get(key), want)
    return bad


SPEC_STATE_FIELDS = ("ociVersion", "id", "status", "pid", "bundle")
# Raw outputs and per-run values: compared through their parsed shape instead.
_RAW = ("stdout", "stderr", "lifecycle_stdout", "create_error", "state.created", "state.started",
        "state.stopped")


def _state_shape(st, bundle, started=False):
    if "error" in st:
        return {"error": True}
    status = st.get("status")
    shape = {"status": status, "pid_positive": isinstance(st.get("pid"), int) and st["pid"] > 0}
    if started and status in (RUNNING, STOPPED):
        # Right after `start` a short process may already have exited: both count.
        shape = {"status": "running|stopped"}
    return {**shape, "spec_fields": all(k in st for k in SPEC_STATE_FIELDS),
            "bundle_matches": st.get("bundle") == bundle,
            "id_prefixed": str(st.get("id", "")).startswith(ID_PREFIX)}


def comparable(facts, bundle):
    """The facts two runtimes must share for the same bundle: raw text and
    per-run numbers (pids, ids, inodes, timestamps) reduced to relations."""
    out = {k: v for k, v in facts.items() if k not in _RAW}
    if "@@" not in facts.get("stdout", ""):
        out["stdout"] = facts.get("stdout")
    for k in ("state.created", "state.started", "state.stopped"):
        if k in facts:
            out[k] = _state_shape(facts[k], bundle, started=k == "state.started")
    return out


def differences(a, b, bundle):
    """{fact: (a, b)} where two observations of ``bundle`` disagree."""
    ca, cb = comparable(a, bundle), comparable(b, bundle)
    return {k: (ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)}


# --- differences the runtime spec allows ----------------------------------------

class Allowed:
    """A difference between runtimes the runtime spec leaves open: ``name``,
    the ``reason`` (what the spec says), and ``normalize(facts, config)``
    which rewrites the part allowed to differ the same way on both sides."""

    def __init__(self, name, reason, normalize):
        self.name, self.reason, self.normalize = name, reason, normalize


def _masked_file_mounts(facts, config):
    # A masked *file* is a bind mount of a null character device over it; the
    # spec only asks that it cannot be read (the "masked" probe checks that).
    # runc binds the container's own /dev/null (on its /dev tmpfs, rw); crun
    # binds the host's (devtmpfs, ro). Keep the mount point, drop type and flag.
    # (A masked directory is an empty read-only tmpfs everywhere: compared as is.)
    masked = set(config["linux"].get("maskedPaths", []))
    if "mounts" in facts:
        facts["mounts"] = sorted(
            f"{line.split()[0]} <null device>"
            if line.split()[0] in masked and line.split(None, 1)[1] != "tmpfs ro" else line
            for line in facts["mounts"])


def _hook_status(facts, config):
    # runtime-spec 1.0.2 (runtime.md, Lifecycle) runs prestart hooks during
    # `create`, after the environment is made, and passes "the state of the
    # container" on stdin without fixing its status at that point: runc says
    # "creating", crun "created". Either is allowed.
    if facts.get("hook.status") in (CREATING, CREATED):
        facts["hook.status"] = "creating|created"


# config-linux.md, "Default Devices": the runtime MUST supply these; whether
# by mknod in the /dev tmpfs or by bind-mounting the host's node is its choice
# (runc binds only inside a user namespace, labkit always).
DEFAULT_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
                   "/dev/console", "/dev/ptmx")


def _default_devices(facts, config):
    if "mounts" in facts:
        facts["mounts"] = [m for m in facts["mounts"] if m.split()[0] not in DEFAULT_DEVICES]


def _cgroup_mount(facts, config):
    # A mount of type "cgroup" at /sys/fs/cgroup is one line of config.json; on a
    # v1 or hybrid host it becomes a tmpfs with one mount per hierarchy, a layout
    # the spec does not describe. runc leaves the tmpfs rw (the hierarchies ro)
    # and omits the cgroup2 hierarchy of a hybrid host; labkit makes the tmpfs ro
    # too and includes it. The per-controller mounts are still compared.
    if "mounts" in facts and any(m.get("type") == "cgroup" for m in config.get("mounts", [])):
        facts["mounts"] = sorted(
            "/sys/fs/cgroup tmpfs" if m.startswith("/sys/fs/cgroup tmpfs ") else m
            for m in facts["mounts"] if not m.startswith("/sys/fs/cgroup/unified cgroup2 "))


ALLOWED = [
    Allowed("default-devices-by-bind",
            "the default devices (/dev/null, zero, full, random, urandom, tty…) may be made with "
            "mknod or bind-mounted from the host (config-linux.md, Default Devices)", _default_devices),
    Allowed("cgroup-v1-mount-layout",
            "how a 'cgroup' mount is laid out on a v1/hybrid host (the tmpfs's ro flag, whether the "
            "cgroup2 hierarchy is included) is not in the spec; each controller's mount is compared",
            _cgroup_mount),
    Allowed("masked-file-device",
            "maskedPaths: files are masked with a bind mount of a null device; which one is the "
            "runtime's choice (spec: the path MUST not be readable)", _masked_file_mounts),
    Allowed("prestart-hook-status",
            "the state a prestart hook reads may say 'creating' or 'created' "
            "(the spec does not fix the status during create)", _hook_status),
]


def allowed_view(facts, bundle, config):
    """The comparable facts with every allowance applied, and the names of
    the allowances that changed something."""
    view, used = comparable(facts, bundle), []
    for a in ALLOWED:
        before = copy.deepcopy(view)
        a.normalize(view, config)
        if view != before:
            used.append(a.name)
    return view, used
