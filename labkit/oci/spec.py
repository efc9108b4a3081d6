"""config.json: the default one (`labkit-runtime spec`) and reading a bundle's.

The default is the runtime spec's reference configuration for Linux, the
same content `runc spec` writes: a shell as PID 1 on a terminal, a read-only
root at ./rootfs, the usual /proc, /dev, /sys mounts, three capabilities,
private PID, network, IPC, UTS and mount namespaces, and the /proc and /sys
files a container should not see masked or read-only.
"""

import os

from labkit.errors import LabkitError, NotFound
from labkit.containers import OCI_VERSION
_BASIC_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default(args=("sh",), terminal=True):
    nosuid_noexec_nodev = ["nosuid", "noexec", "nodev"]
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(_BASIC_CAPS) for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "labkit",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": nosuid_noexec_nodev + ["mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": list(nosuid_noexec_nodev)},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": nosuid_noexec_nodev + ["ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": nosuid_noexec_nodev + ["relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def write_default(bundle, force=False):
    """`spec`: write ./config.json (refuse to overwrite one, as runc does)."""
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path) and not force:
        raise LabkitError(f"File {path} exists. Remove it first", "or give another --bundle")
    import json
    with open(path, "w") as f:
        json.dump(default(), f, indent="\t")
    return path


def read(bundle):
    """(raw bytes, path) of <bundle>/config.json, or a LabkitError."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            return f.read(), path
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file", "a bundle is a directory with config.json and its rootfs; "
                       "`labkit-runtime spec` writes a default config.json") from None
    except IsADirectoryError:
        raise LabkitError(f"{path} is a directory", "config.json must be a file") from None


def parse(raw, path):
    """The JSON object in ``raw`` (config.json's bytes), or a LabkitError.
    json is imported here, not at the top: a config.json seen before comes
    from validate's cache, and the start path then never imports json (nor
    re and enum, which json imports)."""
    import json
    try:
        cfg = json.loads(raw)
    except ValueError as e:
        raise LabkitError(f"{path}: not valid JSON: {e}", "check the syntax (e.g. python3 -m json.tool)") from None
    if not isinstance(cfg, dict):
        raise LabkitError(f"{path}: the top level must be a JSON object", "see `labkit-runtime spec`")
    return cfg


def load(bundle):
    """(config dict, raw bytes) of <bundle>/config.json, or a LabkitError."""
    raw, path = read(bundle)
    return parse(raw, path), raw
