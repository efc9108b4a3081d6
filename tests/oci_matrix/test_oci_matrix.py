"""The bundle matrix: the same OCI bundles under runc and under labkit-runtime.

For every bundle variant (labkit/course/conformance/bundles.py):

* ``test_bundle_does_what_it_asks[runtime-variant]`` — the runtime's observed
  facts are what config.json asks for (exit code 3 -> 3, hostname -> that
  name, memory.limit -> that many bytes in the container's cgroup, …),
  computed from the config and the host, never typed by hand.
* ``test_same_facts_as_runc[runtime-variant]`` — labkit-runtime (and crun when
  installed) shows the same facts as runc, the reference implementation,
  except the differences the runtime spec allows, listed in
  ``labkit.course.conformance.observe.ALLOWED`` by name with their reason. The allowances used are printed with each test.

The labkit half is skipped only when ``labkit.cli.runtime`` cannot be
imported; crun only when it is not installed.
"""

import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from labkit import home
from labkit.course.conformance import bundles, observe

pytestmark = [pytest.mark.root, pytest.mark.slow]

VARIANTS = [v.name for v in bundles.VARIANTS]


# --- fixtures ------------------------------------------------------------------

@pytest.fixture(scope="module")
def matrix_dir(rootfs):
    """All the bundles, under $LABKIT_HOME/bundles (so that a container left
    running is seen by the leak check: its root is under LABKIT_HOME)."""
    d = os.path.join(home.home(), "bundles", "matrix-" + uuid.uuid4().hex[:8])
    os.makedirs(d)
    yield d
    shutil.rmtree(d)
    try:
        os.rmdir(os.path.dirname(d))           # bundles/ when nothing else is in it
    except OSError:
        pass


def _is_mount(path):
    # os.path.ismount misses a bind mount of a directory onto itself (same device).
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


@pytest.fixture(scope="module")
def netns(matrix_dir):
    """A network namespace made the usual way (`ip netns add`), for the bundle
    that joins one by path."""
    name = "lkmatrix" + uuid.uuid4().hex[:6]
    was_mount = _is_mount("/run/netns")
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield f"/run/netns/{name}"
    subprocess.run(["ip", "netns", "del", name], check=True)
    # `ip netns add` makes /run/netns a shared mount of itself the first time.
    if not was_mount and _is_mount("/run/netns") and not os.listdir("/run/netns"):
        subprocess.run(["umount", "/run/netns"], check=False)


@pytest.fixture(scope="module")
def host():
    return observe.host_facts()


@pytest.fixture(scope="module")
def made(matrix_dir, netns):
    """{variant: Bundle}, built on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = bundles.make(name, os.path.join(matrix_dir, name), netns=netns)
        return cache[name]
    return get


@pytest.fixture(scope="module")
def observed(made):
    """observe(runtime, variant) -> facts, each pair observed once."""
    cache = {}

    def get(runtime_name, name):
        key = (runtime_name, name)
        if key not in cache:
            rt = _runtime_or_skip(runtime_name)
            cache[key] = observe.observe(rt, made(name).path)
        return cache[key]
    return get


def _runtime_or_skip(name):
    if name == "labkit":
        why = observe.labkit_available()
        if why:
            pytest.skip(f"labkit-runtime not available ({why})")
    rt = observe.runtime(name)
    if rt is None:
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return rt


# --- the tests -----------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("runtime", ["runc", "labkit"])
def test_bundle_does_what_it_asks(runtime, variant, made, observed, host):
    facts = observed(runtime, variant)
    b = made(variant)
    assert facts.get("create_exit") == 0, facts.get("create_error")
    assert facts.get("start_exit") == 0
    bad = observe.mismatches(facts, b.expect(host))
    assert not bad, f"{runtime} {variant}: {b.variant.doc}: {bad}\nstderr: {facts.get('stderr')}"
    # The lifecycle every bundle goes through: created (with a live init), then stopped.
    created, stopped = facts["state.created"], facts["state.stopped"]
    assert created["status"] == "created" and created["pid"] > 0, created
    assert created["id"].startswith(observe.ID_PREFIX) and created["bundle"] == b.path
    assert stopped["status"] == "stopped", stopped


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("runtime", ["labkit", "crun"])
def test_same_facts_as_runc(runtime, variant, made, observed):
    _runtime_or_skip("runc")
    b = made(variant)
    ref, other = observed("runc", variant), observed(runtime, variant)
    (a, used_a), (o, used_o) = (observe.allowed_view(ref, b.path, b.config),
                                observe.allowed_view(other, b.path, b.config))
    raw = observe.differences(ref, other, b.path)
    if raw:
        print(f"{variant}: raw differences {sorted(raw)}; allowances applied: "
              f"{sorted(set(used_a) | set(used_o))}")
    diff = {k: (a.get(k), o.get(k)) for k in sorted(set(a) | set(o)) if a.get(k) != o.get(k)}
    if "mounts" in diff:
        ra, ro = diff.pop("mounts")
        diff["mounts"] = {"only runc": sorted(set(ra or []) - set(ro or [])),
                          f"only {runtime}": sorted(set(ro or []) - set(ra or []))}
    assert not diff, f"{variant}: {runtime} differs from runc: {diff}"


def test_sysctl_stays_in_the_container(observed, host):
    """net.ipv4.ip_forward=1 set in the container's netns leaves the host's as it was."""
    facts = observed("runc", "sysctl")
    assert facts["ip_forward"] == "1"
    assert observe.host_facts()["ip_forward"] == host["ip_forward"]


def test_no_runtime_state_left(matrix_dir, observed):
    """Every observation deleted its container: no process runs from a matrix
    bundle, no runc state dir or cgroup named after a matrix id remains."""
    observed("runc", "true")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue
        assert not root.startswith(matrix_dir), f"process {pid} still runs in {root}"
    left = [os.path.join(b, d) for b, dirs, _ in os.walk("/sys/fs/cgroup") for d in dirs
            if d.startswith(observe.ID_PREFIX)]
    assert left == []
    tmp = tempfile.gettempdir()
    assert [d for d in os.listdir(tmp) if d.startswith("labkit-oci-root-")] == []


def test_every_variant_is_distinct(tmp_path):
    """At least 20 bundles, no two with the same config (no variant that
    tests nothing new; 'true' is the reference default itself)."""
    configs = {v.name: bundles.config_for(v.name, str(tmp_path / v.name), netns="/run/netns/lkx")
               for v in bundles.VARIANTS}
    assert len(configs) >= 20
    texts = [repr(c) for c in configs.values()]
    assert len(set(texts)) == len(texts)
    assert configs["true"] == bundles.default_config()
