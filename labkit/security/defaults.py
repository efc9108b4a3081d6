"""What a default container may do: Docker's defaults, which `labkit run`
follows, and the switches that lift them (--cap-add, --cap-drop,
--privileged, --security-opt).

Root in a container is root on the host's kernel: the namespaces only change
what it sees. What keeps it from using that power is what it is *allowed*:

  capabilities    14 of the kernel's 41 (capabilities(7)): no CAP_SYS_ADMIN
                  (mount, most namespace and device work), no CAP_SYS_MODULE,
                  CAP_SYS_PTRACE, CAP_NET_ADMIN, CAP_SYS_TIME ... CapEff in
                  /proc/self/status reads 00000000a80425fb.
  masked paths    /proc files that describe or control the host's kernel read
                  as /dev/null or an empty directory.
  read-only paths /proc/sys and friends: readable, never written (a sysctl
                  there would change the host's kernel, not the container's).
  a read-only /sys
  devices         a device cgroup (labkit/linux/cgroups/devices.py): any node may
                  be made (CAP_MKNOD), only /dev's own may be opened — a
                  node for the host's disk gives EPERM at open(2).
  seccomp         a filter of system calls (labkit/security/seccomp_profile.py): no
                  namespaces, mounts, modules, keyrings, BPF or clock changes
                  without the capability they are about; `Seccomp: 2`.
  no_new_privs    (--security-opt no-new-privileges) setuid programs and file
                  capabilities grant nothing at execve.

--privileged drops every one of these guards, as Docker's does: the
lessons that show an escape turn it on, on purpose.
"""

from labkit.errors import LabkitError
from labkit.linux.process import CAPABILITIES

# Docker's default set (moby's oci/caps defaults), in capabilities(7)'s names.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
# Docker's (and the runtime spec's reference) masked and read-only paths.
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# Docker's device rules: it sends "deny everything" and runc adds what every
# container needs (mknod of anything, /dev's own nodes).
def device_rules():
    from labkit.linux.cgroups.devices import ALLOWED, DENY_ALL
    return [DENY_ALL, *ALLOWED]


_CAP_HINT = "names are capabilities(7)'s, with or without CAP_: e.g. NET_ADMIN, CAP_SYS_ADMIN, or ALL"


def capability_name(text, option):
    name = text.strip().upper()
    if name == "ALL":
        return name
    name = name if name.startswith("CAP_") else "CAP_" + name
    if name not in CAPABILITIES:
        raise LabkitError(f"{option} {text}: no such capability", _CAP_HINT)
    return name


def capabilities(add=(), drop=(), privileged=False):
    """The process's capability sets (the OCI shape) for `labkit run`, as
    Docker computes them: the default set, plus --cap-add, less --cap-drop
    (ALL in either means every capability). None with --privileged: the
    process keeps all of root's."""
    adds = {capability_name(n, "--cap-add") for n in add}
    drops = {capability_name(n, "--cap-drop") for n in drop}
    if privileged:
        return None
    caps = set(CAPABILITIES) if "ALL" in adds else set(DEFAULT_CAPABILITIES) | adds
    caps = (adds if "ALL" in drops else caps - drops) - {"ALL"}
    ordered = [name for name in CAPABILITIES if name in caps]
    return {"bounding": ordered, "effective": list(ordered), "permitted": list(ordered),
            "inheritable": [], "ambient": []}


def security_options(options):
    """--security-opt values -> {"no_new_privileges": bool, "seccomp":
    "default" (labkit/security/seccomp_profile.py), None (seccomp=unconfined) or the
    path of a Docker/podman profile (seccomp=FILE)}."""
    out = {"no_new_privileges": False, "seccomp": "default"}
    for opt in options:
        key, _, value = opt.replace("=", ":", 1).partition(":")
        if key == "no-new-privileges" and value in ("", "true", "false"):
            out["no_new_privileges"] = value != "false"
        elif key == "seccomp" and value == "unconfined":
            out["seccomp"] = None
        elif key == "seccomp" and value:
            out["seccomp"] = value
        else:
            raise LabkitError(f"--security-opt {opt}: not supported by labkit",
                              "supported: no-new-privileges[:true|false], seccomp=unconfined|FILE")
    return out


def seccomp_filter(choice, capabilities, privileged):
    """The linux.seccomp object for `labkit run`: none with --privileged or
    seccomp=unconfined, labkit's default profile, or the profile given."""
    if privileged or choice is None:
        return None
    if choice == "default":
        from labkit.linux import seccomp
        from labkit.security.seccomp_profile import PROFILE
        return seccomp.from_profile(PROFILE, capabilities["bounding"])
    return seccomp_profile(choice, capabilities)


def seccomp_profile(path, capabilities):
    """--security-opt seccomp=FILE: a Docker/podman profile (or a config.json
    linux.seccomp object), as the filter for a process holding
    ``capabilities`` (None: all of them)."""
    import json
    from labkit.linux import seccomp
    from labkit.linux.process import CAPABILITIES as ALL
    where = f"--security-opt seccomp={path}"
    try:
        with open(path) as f:
            profile = json.load(f)
    except OSError as e:
        raise LabkitError(f"{where}: {e.strerror}", "give the path of a seccomp profile (JSON)") from None
    except ValueError as e:
        raise LabkitError(f"{where}: not JSON ({e})", "a profile is a JSON object with defaultAction") from None
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise LabkitError(f"{where}: no defaultAction", "a profile is a JSON object with defaultAction")
    caps = ALL if capabilities is None else capabilities["bounding"]
    spec = seccomp.from_profile(profile, caps)
    for field, message in seccomp.check(spec, where):
        raise LabkitError(f"{field}: {message}", "fix the profile, or use seccomp=unconfined")
    return spec
