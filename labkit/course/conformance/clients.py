"""Real OCI clients, started with private state, driving a runtime: podman
(with conmon) for the tests and for notebook 05. Nothing here is shared with
the host's own podman: root, runroot, tmpdir and containers.conf live in
one directory, removed by close()."""

import os
import shutil
import subprocess
import sys
import tempfile

from labkit import home

ROOT = home.source_tree()
LABKIT_RUNTIME = os.path.join(os.path.dirname(sys.executable), "labkit-runtime")


def labkit_runtime():
    """The labkit-runtime beside this interpreter, else the one on PATH."""
    return LABKIT_RUNTIME if os.access(LABKIT_RUNTIME, os.X_OK) else shutil.which("labkit-runtime")


class Podman:
    """`podman` with its state under ``top`` (a new temp dir by default),
    the cgroupfs manager, vfs storage and no network: it runs anywhere root
    runs, next to nothing else."""

    def __init__(self, rootfs, top=None):
        self.top = top or tempfile.mkdtemp(prefix="lab-podman-")
        self.rootfs = rootfs
        self.conf = os.path.join(self.top, "containers.conf")
        with open(self.conf, "w") as f:
            f.write("[containers]\ndefault_ulimits = []\n"
                    "[engine]\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n"
                    "runtime_supports_json = [\"labkit-runtime\", \"runc\"]\n"
                    f"[engine.runtimes]\nlabkit-runtime = [\"{labkit_runtime()}\"]\n")

    def argv(self, runtime, *args):
        return ["podman", "--root", os.path.join(self.top, "root"), "--runroot", os.path.join(self.top, "run"),
                "--tmpdir", os.path.join(self.top, "tmp"), "--storage-driver", "vfs",
                "--runtime", runtime, *args]

    def __call__(self, runtime, *args, input=None, timeout=120):
        env = dict(os.environ, CONTAINERS_CONF=self.conf, PYTHONPATH=ROOT)
        return subprocess.run(self.argv(runtime, *args), capture_output=True, text=True, input=input,
                              timeout=timeout, env=env)

    def run(self, runtime, *args, cmd=()):
        """`podman run --rm --network none ARGS --rootfs ROOTFS CMD`."""
        return self(runtime, "run", "--rm", "--network", "none", *args, "--rootfs", self.rootfs, *cmd)

    def close(self, runtimes=("runc",)):
        for runtime in (labkit_runtime(), *runtimes):
            self(runtime, "rm", "-af", "-t", "0")
        unmount_below(self.top)
        shutil.rmtree(self.top, ignore_errors=True)
        remove_cgroup_parent("libpod_parent")


def unmount_below(top):
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(top.rstrip("/") + "/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def remove_cgroup_parent(name):
    """A client's cgroup parent (podman's /libpod_parent, ctr's /default) in
    every hierarchy, with its empty children: runc leaves them behind."""
    from labkit.linux.cgroups import hierarchy
    layout = hierarchy.detect()
    for base in list(layout.v1_mounts) + ([layout.v2] if layout.v2 else []):
        path = os.path.join(base, name)
        if not os.path.isdir(path):
            continue
        for child in os.listdir(path):
            if os.path.isdir(os.path.join(path, child)):
                try:
                    os.rmdir(os.path.join(path, child))
                except OSError:
                    pass
        try:
            os.rmdir(path)
        except OSError:
            pass
