"""Device rules: the model (devices.effective/allows) against fixed cases, and
the kernel's own answers against the model, on v1 files here and on the v2
BPF program in user-mode Linux (tests/test_uml_v2.py runs this file there).

The kernel is asked by a child that makes nodes in a private tmpfs, joins
the cgroup, then opens them and makes more: EPERM is a refusal, anything
else (success, ENXIO for a device this kernel lacks) is an allowance."""

import errno
import os
import tempfile

import pytest

from labkit.linux import cgroups
from labkit.linux import syscalls as sc
from labkit.linux.cgroups import devices, hierarchy
from labkit.linux.cgroups.devices import ALLOW_ALL, ALLOWED, DENY_ALL, rule
from labkit.course.conformance.bundles import CONTAINERD_DEVICES
from labkit.errors import LabkitError
from labkit.security.defaults import device_rules

CID = f"dev{os.getpid()}"
# Devices whose nodes a root process may open on an ordinary host; the host
# itself is asked first (baseline) and what it refuses is left out.
PROBES = [("c", 1, 3), ("c", 1, 5), ("c", 1, 7), ("c", 1, 11), ("c", 5, 2), ("c", 10, 200),
          ("b", 7, 0), ("b", 254, 0)]
ACCESSES = ("r", "w", "m")
CONTAINERD = CONTAINERD_DEVICES     # what containerd sends
RULE_LISTS = {
    "docker": device_rules(),
    "containerd+runc": devices.parse(CONTAINERD) + list(ALLOWED),
    "allow-with-exceptions": [ALLOW_ALL, rule(False, "c", 1, 5, "w"), rule(False, "b")],
    "merged-access": [DENY_ALL, rule(True, "c", 1, 3, "r"), rule(True, "c", 1, 3, "w"),
                      rule(True, "c", 1, 7, "rw"), rule(False, "c", 1, 7, "w"), rule(True, "b", 7, 0, "m")],
}


# -- the model, no root --------------------------------------------------------

def test_parse_fills_every_field_as_the_runtime_spec_says():
    got = devices.parse([{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 136,
                                                              "access": "wr"}])
    assert got == [rule(False, "a", -1, -1, "rwm"), rule(True, "c", 136, -1, "rw")]
    assert devices.line(got[1]) == "c 136:* rw" and devices.line(got[0]) == "a"


@pytest.mark.parametrize("bad, field", [
    ([{"allow": True, "type": "x"}], "linux.resources.devices[0].type"),
    ([{"allow": True}, {"allow": True, "access": "rx"}], "linux.resources.devices[1].access"),
    ([{"allow": True, "major": "1"}], "linux.resources.devices[0].major"),
    ([{"allow": True, "minor": -2}], "linux.resources.devices[0].minor"),
    ([{"type": "c"}], "linux.resources.devices[0].allow"),
    (["c 1:3 rwm"], "linux.resources.devices[0]"),
])
def test_a_bad_rule_names_its_field(bad, field):
    with pytest.raises(LabkitError) as e:
        devices.parse(bad)
    assert e.value.message.startswith(field + ":")


def test_effective_is_v1s_default_and_exceptions():
    assert devices.effective([]) == (True, [])
    assert devices.effective([DENY_ALL, rule(True, "c", 1, 3, "r"), rule(True, "c", 1, 3, "w")]) \
        == (False, [("c", 1, 3, "rw")])
    # Saying what the default says takes access away from an exception.
    assert devices.effective([DENY_ALL, rule(True, "c", 1, 7, "rw"), rule(False, "c", 1, 7, "w")]) \
        == (False, [("c", 1, 7, "r")])
    # A type-a rule forgets everything before it.
    assert devices.effective([rule(True, "c", 1, 3), DENY_ALL]) == (False, [])


def test_dockers_rules_allow_making_any_node_and_opening_only_devs_own():
    rules = device_rules()
    assert devices.allows(rules, "c", 1, 3, "rw") and devices.allows(rules, "c", 136, 4, "rw")
    assert devices.allows(rules, "b", 254, 0, "m")        # mknod of the host's disk ...
    assert not devices.allows(rules, "b", 254, 0, "r")    # ... but never open it
    assert not devices.allows(rules, "c", 1, 11, "r")     # /dev/kmsg: the host's kernel log


def test_the_allowed_list_covers_every_node_of_a_containers_dev():
    from labkit.linux.rootfs import DEVICES
    for name in DEVICES:
        st = os.stat("/dev/" + name)
        assert devices.NODES[name] == (os.major(st.st_rdev), os.minor(st.st_rdev))
        assert devices.allows(device_rules(), "c", *devices.NODES[name], "rwm")


def test_the_bpf_program_has_one_block_per_exception():
    from labkit.linux.cgroups import devicefilter
    prog = devicefilter.program(device_rules())
    assert len(prog) % 8 == 0
    empty = len(devicefilter.program([DENY_ALL]))
    assert empty == 8 * 8        # six loads and shifts, the default, exit
    assert len(prog) > empty + 8 * len(devices.effective(device_rules())[1])


# -- the kernel ------------------------------------------------------------------

def _child(join, out_fd):
    """In a forked child: make one node per probe, join, then try each."""
    sc.unshare(sc.CLONE_NEWNS)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    d = tempfile.mkdtemp(prefix="lab-dev-")
    sc.mount("lab-dev", d, "tmpfs")        # no nodev: device nodes work here
    nodes = {}
    for i, (kind, ma, mi) in enumerate(PROBES):
        nodes[kind, ma, mi] = os.path.join(d, f"n{i}")
        os.mknod(nodes[kind, ma, mi], (0o060000 if kind == "b" else 0o020000) | 0o600,
                 os.makedev(ma, mi))
    join(os.getpid())
    answers = {}
    for probe, path in nodes.items():
        for access, flags in (("r", os.O_RDONLY), ("w", os.O_WRONLY)):
            try:
                os.close(os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY))
                answers[probe + (access,)] = True
            except OSError as e:
                answers[probe + (access,)] = e.errno != errno.EPERM
        try:
            os.mknod(path + "m", (0o060000 if probe[0] == "b" else 0o020000) | 0o600,
                     os.makedev(probe[1], probe[2]))
            answers[probe + ("m",)] = True
        except OSError as e:
            answers[probe + ("m",)] = e.errno != errno.EPERM
    os.write(out_fd, repr(answers).encode())


def kernel_answers(join):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            _child(join, w)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and text
    import ast
    return ast.literal_eval(text)


@pytest.fixture(scope="module")
def baseline():
    """What the host lets root do with each probe, outside any rule of ours."""
    if os.geteuid() != 0:
        pytest.skip("device nodes need root")
    got = kernel_answers(lambda pid: None)
    allowed = {k for k, v in got.items() if v}
    assert any(k[3] == "r" for k in allowed), f"the host refuses every probe: {got}"
    return allowed


@pytest.mark.usefixtures("real")
@pytest.mark.parametrize("name", sorted(RULE_LISTS))
def test_the_kernel_answers_as_the_model_says(name, baseline):
    rules = RULE_LISTS[name]
    m = cgroups.create(CID, {"devices": rules})
    try:
        got = kernel_answers(m.add)
    finally:
        m.destroy()
    expected = {k: devices.allows(rules, k[0], k[1], k[2], k[3]) for k in baseline}
    assert {k: got[k] for k in baseline} == expected
    if name == "docker":
        assert got[("c", 1, 3, "w")] and not got[("c", 1, 11, "r")] and got[("b", 7, 0, "m")]


def test_the_bpf_program_holds_on_a_hybrid_hosts_unified_tree(baseline):
    """On a hybrid host labkit uses the v1 files; the v2 program is proven
    here too, on the unified hierarchy (v2-only kernels: the case above)."""
    layout = hierarchy.detect()
    if layout.mode != "hybrid":
        pytest.skip("not a hybrid host: the v2 program ran in the case above")
    from labkit.linux.cgroups import devicefilter
    path = os.path.join(layout.v2, f"labkit-matrix-dev{os.getpid()}")
    os.mkdir(path)
    try:
        rules = RULE_LISTS["docker"]
        devicefilter.attach(path, rules)

        def join(pid):
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        got = kernel_answers(join)
    finally:
        os.rmdir(path)
    assert {k: got[k] for k in baseline} == \
        {k: devices.allows(rules, k[0], k[1], k[2], k[3]) for k in baseline}
