"""cgroup v2's device rules: a BPF program the kernel runs at open and mknod.

cgroup v2 has no devices.allow file. Instead a program of type
BPF_PROG_TYPE_CGROUP_DEVICE is attached to the cgroup with bpf(2); at each
open(2) or mknod(2) of a device node by a process in the cgroup the kernel
runs it on a struct bpf_cgroup_dev_ctx:

    access_type   the device type (1 block, 2 char) | the access << 16
                  (1 mknod, 2 read, 4 write)
    major, minor

and the program answers 1 (allow) or 0 (deny: EPERM). This module compiles
the rules' effective state (devices.effective: a default and exceptions)
into such a program, eBPF instruction by instruction, and attaches it:

    r2 = type; r3 = access; r4 = major; r5 = minor
    for each exception:
        if type, major or minor differ: next exception
        deny default:  if access is all within the exception's: return 1
        allow default: if access overlaps the exception's:      return 0
    return the default

runc generates the same shape (its devicefilter package); `bpftool cgroup
show /sys/fs/cgroup/...` lists the program on a host that has bpftool. The
program stays attached as long as the cgroup exists: removing the cgroup is
the teardown.
"""

import ctypes
import os
import sys

from labkit.linux import syscalls as sc
from labkit.linux.cgroups.devices import ANY, effective
from labkit.errors import LabkitError

BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2           # other programs (systemd's) may stay attached beside it
_TYPE = {"b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}

# eBPF opcodes (linux/bpf_common.h, linux/bpf.h)
_LDX_W = 0x61         # dst = *(u32 *)(src + off)
_AND32 = 0x54         # dst &= imm        (32-bit ALU)
_RSH32 = 0x74         # dst >>= imm
_MOV32_X = 0xbc       # dst = src
_MOV32_K = 0xb4       # dst = imm
_JNE = 0x55           # if dst != imm: pc += off
_JEQ = 0x15           # if dst == imm: pc += off
_EXIT = 0x95          # return r0


def _insn(code, dst=0, src=0, off=0, imm=0):
    regs = (src << 4) | dst if sys.byteorder == "little" else (dst << 4) | src
    return bytes((code, regs)) + off.to_bytes(2, sys.byteorder, signed=True) \
        + imm.to_bytes(4, sys.byteorder, signed=True)


_NEXT = object()      # a jump to the next exception, resolved per block


def _block(exception, default):
    kind, major, minor, access = exception
    bits = sum(_ACCESS[c] for c in access)
    code = [(_JNE, 2, _TYPE[kind])]
    if major != ANY:
        code.append((_JNE, 4, major))
    if minor != ANY:
        code.append((_JNE, 5, minor))
    code.append((_MOV32_X, 1, 3))               # r1 = the access asked for
    if default:     # allow by default: an exception refuses any access it names
        code += [(_AND32, 1, bits), (_JEQ, 1, 0), (_MOV32_K, 0, 0), (_EXIT,)]
    else:           # deny by default: an exception grants what it covers entirely
        code += [(_AND32, 1, 7 & ~bits), (_JNE, 1, 0), (_MOV32_K, 0, 1), (_EXIT,)]
    out = b""
    for i, (op, *args) in enumerate(code):
        if op in (_JNE, _JEQ):
            out += _insn(op, dst=args[0], off=len(code) - i - 1, imm=args[1])
        elif op == _MOV32_X:
            out += _insn(op, dst=args[0], src=args[1])
        elif op == _EXIT:
            out += _insn(op)
        else:
            out += _insn(op, dst=args[0], imm=args[1])
    return out


def program(rules):
    """The program (bytes of struct bpf_insn) for a list of device rules."""
    default, exceptions = effective(rules)
    prog = (_insn(_LDX_W, dst=2, src=1, off=0) + _insn(_AND32, dst=2, imm=0xFFFF)
            + _insn(_LDX_W, dst=3, src=1, off=0) + _insn(_RSH32, dst=3, imm=16)
            + _insn(_LDX_W, dst=4, src=1, off=4) + _insn(_LDX_W, dst=5, src=1, off=8))
    for exception in exceptions:
        prog += _block(exception, default)
    return prog + _insn(_MOV32_K, dst=0, imm=int(default)) + _insn(_EXIT)


class _ProgLoad(ctypes.Structure):          # union bpf_attr, BPF_PROG_LOAD
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16)]


class _ProgAttach(ctypes.Structure):        # union bpf_attr, BPF_PROG_ATTACH
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32)]


_LICENSE = ctypes.create_string_buffer(b"MIT")


def load(prog, log_size=0):
    """bpf(BPF_PROG_LOAD): a file descriptor for the verified program."""
    insns = ctypes.create_string_buffer(prog, len(prog))
    log = ctypes.create_string_buffer(log_size) if log_size else None
    attr = _ProgLoad(prog_type=BPF_PROG_TYPE_CGROUP_DEVICE, insn_cnt=len(prog) // 8,
                     insns=ctypes.addressof(insns), license=ctypes.addressof(_LICENSE),
                     log_level=1 if log else 0, log_size=log_size,
                     log_buf=ctypes.addressof(log) if log else 0, prog_name=b"labkit_devices")
    try:
        return sc.bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        if log is None:     # once more, with the verifier's log for the message
            return load(prog, 1 << 16)
        raise LabkitError(f"bpf(BPF_PROG_LOAD) of the device program: {os.strerror(e.errno)}",
                          "the verifier said: " + log.value.decode(errors="replace").strip()[-300:]) from None


def attach(cgroup_dir, rules):
    """Load the program for ``rules`` and attach it to the v2 cgroup
    ``cgroup_dir``: from now on its processes open only what the rules allow."""
    prog_fd = load(program(rules))
    try:
        cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            sc.bpf(BPF_PROG_ATTACH, _ProgAttach(target_fd=cg_fd, attach_bpf_fd=prog_fd,
                                                attach_type=BPF_CGROUP_DEVICE,
                                                attach_flags=BPF_F_ALLOW_MULTI))
        finally:
            os.close(cg_fd)
    finally:
        os.close(prog_fd)       # the attachment holds the program now
