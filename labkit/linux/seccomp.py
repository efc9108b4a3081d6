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
Like runc, labkit then takes the program out (seccomp_export_bpf), puts an
ENOSYS stub in front of it (enosys_stub: calls newer than the profile are
"not there", not "refused") and loads the bytes with seccomp(2) itself.

When: runc sets no_new_privs first; without it, the filter is loaded before
the capabilities are dropped (loading one needs CAP_SYS_ADMIN then); with
it, as late as possible, just before execve (labkit/linux/process.py).
"""

import ctypes
import errno
import os
import sys

from labkit.errors import LabkitError, warn

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
# seccomp(2)'s flags. TSYNC (every thread at once) is 0 here: the init has one thread.
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 0, "SECCOMP_FILTER_FLAG_LOG": 2,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
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
    for name in ("seccomp_arch_add", "seccomp_attr_set", "seccomp_rule_add_array",
                 "seccomp_syscall_resolve_name", "seccomp_syscall_resolve_name_arch",
                 "seccomp_export_bpf"):
        getattr(lib, name).restype = ctypes.c_int
    lib.seccomp_release.restype = None
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_arch_native.argtypes = []
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
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
                warn(f"seccomp: unknown system call {name!r} skipped", prog="labkit")
                continue
            for cmps in _conditions(rule.get("args")):
                array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
                rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array)
                if rc < 0:
                    _fail(f"rule for {name}", rc)


# Classic BPF (linux/filter.h), for the ENOSYS stub: a seccomp filter is
# classic BPF on a struct seccomp_data {int nr; __u32 arch; ...}.
_LD_ABS_W, _JEQ, _JGT, _JSET, _JA, _RET = 0x20, 0x15, 0x25, 0x45, 0x05, 0x06
_RET_ENOSYS = 0x00050000 | errno.ENOSYS          # SECCOMP_RET_ERRNO | ENOSYS
_X32_BIT = 0x40000000                            # __X32_SYSCALL_BIT
_ARCH_X86_64, _ARCH_X32 = 0xC000003E, 0x4000003E  # AUDIT_ARCH_X86_64, libseccomp's x32 token


def _sock_filter(code, jt=0, jf=0, k=0):
    bo = sys.byteorder
    return code.to_bytes(2, bo) + bytes((jt, jf)) + (k & 0xFFFFFFFF).to_bytes(4, bo)


def enosys_stub(last):
    """Classic BPF that answers ENOSYS for every call numbered above the
    last one the profile names, per architecture (``last``: {arch token:
    number}); the profile's own program follows it.

    Why: a profile is written for the kernel of its day. A call newer than
    the profile would get the default action, EPERM, and a program that
    probes for it (glibc tries clone3, then clone) takes EPERM as "refused"
    rather than "not there": ENOSYS makes it fall back. runc adds the same
    stub. x32 calls share AUDIT_ARCH_X86_64 with their own numbers, told
    apart by bit 30."""
    blocks = []
    x32 = last.pop(_ARCH_X32, None)
    for arch, nr in sorted(last.items()):
        if arch == _ARCH_X86_64:
            body = [(_LD_ABS_W, 0, 0, 0), (_JSET, 1, 0, _X32_BIT), (_JGT, "ret", "end", nr),
                    (_JGT, "ret", "end", x32) if x32 is not None else (_JA, 0, 0, "end"),
                    (_RET, 0, 0, _RET_ENOSYS)]
        else:
            body = [(_LD_ABS_W, 0, 0, 0), (_JGT, "ret", "end", nr), (_RET, 0, 0, _RET_ENOSYS)]
        blocks.append([(_JEQ, 0, len(body), arch)] + body)
    code = [(_LD_ABS_W, 0, 0, 4)] + [insn for block in blocks for insn in block]
    out = b""
    for i, (op, jt, jf, k) in enumerate(code):
        end = len(code) - i - 1
        ret = next(j for j in range(i, len(code)) if code[j][0] == _RET) - i - 1 if "ret" in (jt, jf) else 0
        jt, jf = (ret if v == "ret" else end if v == "end" else v for v in (jt, jf))
        out += _sock_filter(op, jt, jf, end if k == "end" else k)
    return out if blocks else b""


class Filter:
    """A compiled filter, ready to load: the bytes of a BPF program.
    libseccomp compiles it before the fork, on the host, where the library
    can be found (after pivot_root it is out of reach); the init loads the
    bytes with seccomp(2) itself."""

    def __init__(self, spec):
        lib = _library()
        default = _action(spec["defaultAction"], spec.get("defaultErrnoRet"))
        ctx = lib.seccomp_init(default)
        if not ctx:
            _fail("seccomp_init", -errno.EINVAL)
        try:
            lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0)
            self._add_architectures(lib, ctx, spec.get("architectures") or ())
            _add_rules(lib, ctx, spec, default)
            self.program = _enosys_patch(lib, spec) + _export(lib, ctx)
        finally:
            lib.seccomp_release(ctx)
        self.flags = sum(FLAGS[f] for f in spec.get("flags") or ())

    @staticmethod
    def _add_architectures(lib, ctx, names):
        for arch in names:
            token = _arch_token(lib, arch)
            rc = lib.seccomp_arch_add(ctx, token) if token else -errno.EINVAL
            if rc < 0 and rc != -errno.EEXIST:   # the native one is there already
                _fail(f"architecture {arch}", rc)

    def load(self):
        """From now on every system call of this process (and its children) is checked."""
        from labkit.linux import syscalls as sc
        sc.seccomp(sc.SECCOMP_SET_MODE_FILTER, self.flags, self.program)

    def release(self):
        self.program = None


def _arch_token(lib, name):
    return lib.seccomp_arch_resolve_name(name[len("SCMP_ARCH_"):].lower().encode())


def _export(lib, ctx):
    """seccomp_export_bpf(3) into a memfd: the program libseccomp would load."""
    fd = os.memfd_create("labkit-seccomp", os.MFD_CLOEXEC)
    try:
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            _fail("seccomp_export_bpf", rc)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _enosys_patch(lib, spec):
    """The ENOSYS stub for this profile, or nothing where it has no use: a
    default that allows (or already answers ENOSYS) needs no stub."""
    if spec["defaultAction"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG") or \
            (spec["defaultAction"] == "SCMP_ACT_ERRNO" and spec.get("defaultErrnoRet") == errno.ENOSYS):
        return b""
    native = lib.seccomp_arch_native()
    tokens = {native} | {_arch_token(lib, a) for a in spec.get("architectures") or ()} - {0}
    last = {}
    for rule in spec.get("syscalls") or ():
        for name in rule.get("names") or ():
            for token in tokens:
                nr = lib.seccomp_syscall_resolve_name_arch(token, name.encode())
                if nr >= 0:
                    last[token] = max(last.get(token, 0), nr | (_X32_BIT if token == _ARCH_X32 else 0))
    return enosys_stub(last)
