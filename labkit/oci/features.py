"""`labkit-runtime features`: what this runtime supports, in runc's JSON
shape (the runtime spec's features.md), for clients that ask before they
write a config.json (containerd, podman, conformance suites).

Everything listed is read from the tables the runtime itself uses, so the
list cannot claim more than the code does.
"""

HOOKS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]


def features():
    from labkit.linux import namespaces, seccomp
    from labkit.linux.process import CAPABILITIES
    from labkit.linux.rootfs import COPYUP, MOUNT_FLAGS, PROPAGATION, RECURSIVE
    from labkit.containers import OCI_VERSION
    from labkit.oci.validate import NS_TYPES
    oci_names = {v: k for k, v in NS_TYPES.items()}
    have = set(namespaces.available())
    out = {
        "ociVersionMin": "1.0.0", "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOKS),
        "mountOptions": sorted(set(MOUNT_FLAGS) | set(PROPAGATION) | set(RECURSIVE) | {COPYUP}),
        "linux": {
            "namespaces": sorted(oci_names[n] for n in have if n in oci_names),
            "capabilities": list(CAPABILITIES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": _libseccomp() is not None, "actions": sorted(seccomp.ACTIONS),
                        "operators": sorted(seccomp.OPERATORS), "archs": sorted(seccomp.ARCHITECTURES)},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {},
    }
    version = _libseccomp()
    if version:
        out["annotations"]["io.github.seccomp.libseccomp.version"] = version
    return out


def _libseccomp():
    """libseccomp's version ("2.5.4"), or None where it is missing."""
    import ctypes

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"
