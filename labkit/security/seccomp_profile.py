"""labkit run's default seccomp profile, as data (the profile format of
Docker and podman: rules chosen by the container's capabilities).

Written for labkit to have the effect of Docker's default on the calls that
matter: what lets root in a container reach the host's kernel as a whole —
namespaces, mounts, kernel modules and keyrings, BPF and perf, the clock,
reboot, other processes' memory — is refused with EPERM, unless the
container holds the capability that the call is about (so `--cap-add
SYS_ADMIN` gives back mount and unshare, as with Docker). `--privileged` and
`--security-opt seccomp=unconfined` load no filter at all.

One difference, said plainly: Docker's profile lists the ~350 calls it
allows and refuses every other, including calls newer than the profile.
This one lists what it refuses and allows the rest, so that no ordinary
program breaks on a call the list forgot (glibc falls back from clone3 to
clone only on ENOSYS: clone3 gets ENOSYS here, as in Docker's, and clone is
checked by its flags).
"""

EPERM = 1
ENOSYS = 38

# clone(2) flags that make a namespace: clone's first argument on x86_64.
_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                    0x40000000, 0x00000080)   # NEWNS CGROUP UTS IPC USER PID NET TIME


def _deny(names, unless=None, errno=EPERM):
    rule = {"names": list(names), "action": "SCMP_ACT_ERRNO", "errnoRet": errno}
    if unless:
        rule["excludes"] = {"caps": [unless]}
    return rule


PROFILE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        # Namespaces and mounts: CAP_SYS_ADMIN's.
        _deny(["unshare", "setns", "mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig",
               "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "quotactl",
               "lookup_dcookie", "bpf", "perf_event_open", "fanotify_init", "vm86", "vm86old"],
              unless="CAP_SYS_ADMIN"),
        *[{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
           "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
           "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]}} for flag in _NAMESPACE_FLAGS],
        # clone3 passes its flags in memory, which a filter cannot read.
        _deny(["clone3"], unless="CAP_SYS_ADMIN", errno=ENOSYS),
        # The kernel itself.
        _deny(["init_module", "finit_module", "delete_module", "create_module", "query_module",
               "get_kernel_syms"], unless="CAP_SYS_MODULE"),
        _deny(["kexec_load", "kexec_file_load", "reboot"], unless="CAP_SYS_BOOT"),
        _deny(["add_key", "request_key", "keyctl"]),          # keyrings are not namespaced
        _deny(["userfaultfd", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl"]),
        _deny(["acct"], unless="CAP_SYS_PACCT"),
        _deny(["settimeofday", "stime", "clock_settime", "clock_adjtime"], unless="CAP_SYS_TIME"),
        _deny(["swapon", "swapoff"], unless="CAP_SYS_ADMIN"),
        _deny(["ioperm", "iopl"], unless="CAP_SYS_RAWIO"),
        _deny(["syslog"], unless="CAP_SYSLOG"),
        _deny(["vhangup"], unless="CAP_SYS_TTY_CONFIG"),
        _deny(["mbind", "set_mempolicy", "move_pages", "migrate_pages"], unless="CAP_SYS_NICE"),
        # Other processes' memory: CAP_SYS_PTRACE's.
        _deny(["ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "process_madvise"],
              unless="CAP_SYS_PTRACE"),
        _deny(["open_by_handle_at", "name_to_handle_at"], unless="CAP_DAC_READ_SEARCH"),
    ],
}
