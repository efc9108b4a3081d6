"""seccomp: which system calls a container's process may make at all.

Capabilities decide what root may do with a call; a seccomp filter decides
whether the call reaches the kernel in the first place. The filter is a
small BPF program the kernel runs on every system call of the process (and
of every child it forks): it looks at the call's number and arguments and
returns an action — allow it, fail it with an errno, kill the process.

An OCI config.json describes the filter as data (`linux.seccomp`):

    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
     "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
     "syscalls": [{"names": ["read", "write", ...], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]}

labkit compiles it with libseccomp (Debian's libseccomp2, through ctypes),
as runc does: the library knows every architecture's syscall numbers and
writes a correct, optimised BPF program; a compiler of our own would have to
carry those tables. The library is loaded only when a filter is asked for.

When: runc sets no_new_privs first; without it, the filter is loaded before
the capabilities are dropped (loading one needs CAP_SYS_ADMIN then); with
it, as late as possible, just before execve (labkit/process.py).
"""

import ctypes
import errno
import os
import sys

from .errors import LabkitError

ACTIONS = {   # <seccomp.h>: the action, and whether it takes errnoRet
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000,
}
OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
             "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
ARCHITECTURES = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
                 "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
                 "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
                 "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
                 "SCMP_ARCH_RISCV64")
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": None, "SECCOMP_FILTER_FLAG_LOG": 6,   # SCMP_FLTATR_CTL_LOG
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 7}                               # SCMP_FLTATR_CTL_SSB
_ATTR_CTL_NNP = 3          # SCMP_FLTATR_CTL_NNP: labkit sets no_new_privs itself
_NR_ERROR = -1             # __NR_SCMP_ERROR: a name this libseccomp does not know


def check(spec, where="linux.seccomp"):
    """Meaning errors of an OCI seccomp object: (path, message) pairs."""
    if spec.get("defaultAction") not in ACTIONS:
        yield where + ".defaultAction", f"{spec.get('defaultAction')!r} is not a seccomp action " \
            "labkit knows (SCMP_ACT_ERRNO, SCMP_ACT_ALLOW, SCMP_ACT_KILL, ...)"
    for i, arch in enumerate(spec.get("architectures") or ()):
        if arch not in ARCHITECTURES:
            yield f"{where}.architectures[{i}]", f"{arch!r} is not a seccomp architecture"
    for i, flag in enumerate(spec.get("flags") or ()):
        if flag not in FLAGS:
            yield f"{where}.flags[{i}]", f"{flag!r} is not supported by labkit"
    if spec.get("listenerPath"):
        yield where + ".listenerPath", "not supported by labkit (SCMP_ACT_NOTIFY)"
    for i, rule in enumerate(spec.get("syscalls") or ()):
        here = f"{where}.syscalls[{i}]"
        if rule.get("action") not in ACTIONS:
            yield here + ".action", f"{rule.get('action')!r} is not a seccomp action labkit knows"
        for j, arg in enumerate(rule.get("args") or ()):
            if arg.get("op") not in OPERATORS:
                yield f"{here}.args[{j}].op", f"{arg.get('op')!r} is not a comparison (SCMP_CMP_EQ, ...)"
            if not isinstance(arg.get("index"), int) or not 0 <= arg["index"] <= 5:
                yield f"{here}.args[{j}].index", "a system call has arguments 0 to 5"


# uname -m -> the Go names profiles use in includes/excludes.arches
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def from_profile(profile, capabilities, machine=None):
    """A Docker/podman seccomp *profile* (seccomp.json: archMap, rules with
    includes/excludes by capability and architecture) -> the OCI
    linux.seccomp object a runtime is given, for a process holding
    ``capabilities`` on this machine — what the engine does before it calls
    the runtime: e.g. unshare and mount are allowed only with CAP_SYS_ADMIN."""
    machine = machine or os.uname().machine
    go_arch = _GO_ARCH.get(machine, machine)
    native = "SCMP_ARCH_" + ("X86_64" if machine == "x86_64" else machine.upper())
    arches = []
    for entry in profile.get("archMap") or ():
        if entry.get("architecture") == native:
            arches = [native] + list(entry.get("subArchitectures") or ())
    caps = set(capabilities)

    def applies(rule):
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("arches") and go_arch not in inc["arches"]:
            return False
        if inc.get("caps") and not set(inc["caps"]) <= caps:
            return False
        if exc.get("arches") and go_arch in exc["arches"]:
            return False
        return not (exc.get("caps") and set(exc["caps"]) & caps)

    # A profile's empty fields (null args) are left out, as the engines do.
    keep = ("names", "action", "args", "errnoRet")
    rules = [{k: v for k, v in rule.items() if k in keep and v not in (None, [], {})}
             for rule in profile.get("syscalls") or () if applies(rule)]
    spec = {"defaultAction": profile["defaultAction"], "architectures": arches or profile.get("architectures") or [],
            "syscalls": rules}
    if profile.get("defaultErrnoRet") is not None:
        spec["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return spec


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _library():
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        raise LabkitError("linux.seccomp needs libseccomp, which is not installed",
                          "apt-get install libseccomp2 (make lab and make test install it)") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    for name in ("seccomp_arch_add", "seccomp_attr_set", "seccomp_load", "seccomp_rule_add_array",
                 "seccomp_syscall_resolve_name", "seccomp_release"):
        getattr(lib, name).restype = ctypes.c_int
    lib.seccomp_release.restype = None
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def _action(name, errno_ret, default_errno=errno.EPERM):
    value = ACTIONS[name]
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        value |= (default_errno if errno_ret is None else errno_ret) & 0xFFFF
    return value


def _fail(call, rc):
    raise LabkitError(f"seccomp: {call}: {os.strerror(-rc)}", "check linux.seccomp in config.json")


def _conditions(args):
    """One rule per call normally; libseccomp refuses two conditions on the
    same argument in one rule, so those become one rule each (runc's way)."""
    cmps = [_ArgCmp(a["index"], OPERATORS[a["op"]], a.get("value", 0) & (2**64 - 1),
                    a.get("valueTwo", 0) & (2**64 - 1)) for a in args or ()]
    if len({c.arg for c in cmps}) < len(cmps):
        return [[c] for c in cmps]
    return [cmps]


def _add_rules(lib, ctx, spec, default):
    for rule in spec.get("syscalls") or ():
        action = _action(rule["action"], rule.get("errnoRet"))
        if action == default:
            continue   # libseccomp refuses a rule that repeats the default
        for name in rule.get("names") or ():
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_ERROR:
                # A name from a newer kernel: skipped, as runc does.
                print(f"labkit: warning: seccomp: unknown system call {name!r} skipped", file=sys.stderr)
                continue
            for cmps in _conditions(rule.get("args")):
                array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
                rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array)
                if rc < 0:
                    _fail(f"rule for {name}", rc)


class Filter:
    """A compiled filter, ready to load. Compiled before the fork, on the
    host, where libseccomp can be found: after pivot_root the library is out
    of reach, and the fork copies the compiled context into the init."""

    def __init__(self, spec):
        self.lib = _library()
        default = _action(spec["defaultAction"], spec.get("defaultErrnoRet"))
        self.ctx = self.lib.seccomp_init(default)
        if not self.ctx:
            _fail("seccomp_init", -errno.EINVAL)
        try:
            self.lib.seccomp_attr_set(self.ctx, _ATTR_CTL_NNP, 0)
            for flag in spec.get("flags") or ():
                if FLAGS[flag] is not None:
                    self.lib.seccomp_attr_set(self.ctx, FLAGS[flag], 1)
            self._add_architectures(spec.get("architectures") or ())
            _add_rules(self.lib, self.ctx, spec, default)
        except BaseException:
            self.release()
            raise

    def _add_architectures(self, names):
        for arch in names:
            token = self.lib.seccomp_arch_resolve_name(arch[len("SCMP_ARCH_"):].lower().encode())
            rc = self.lib.seccomp_arch_add(self.ctx, token) if token else -errno.EINVAL
            if rc < 0 and rc != -errno.EEXIST:   # the native one is there already
                _fail(f"architecture {arch}", rc)

    def load(self):
        """From now on every system call of this process (and its children) is checked."""
        rc = self.lib.seccomp_load(self.ctx)
        if rc < 0:
            _fail("seccomp_load", rc)

    def release(self):
        if self.ctx:
            self.lib.seccomp_release(self.ctx)
            self.ctx = None
