"""Bundles for the labkit-runtime tests: one private copy of the base rootfs
per session (tests may add links to it), and a fresh bundle directory per
test whose config.json starts from `labkit-runtime spec`'s default."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def rootfs_copy(rootfs):
    from labkit.images import builder
    from labkit.linux.files import full_copy
    d = tempfile.mkdtemp(prefix="lkrt-rootfs-")
    os.chmod(d, 0o755)   # reachable by a user namespace's root too
    full_copy(builder.resolve(rootfs), os.path.join(d, "rootfs"))
    yield os.path.join(d, "rootfs")
    shutil.rmtree(d, ignore_errors=True)


class Bundle:
    def __init__(self, path, rootfs):
        self.path = path
        os.symlink(rootfs, os.path.join(path, "rootfs"))
        sys.path.insert(0, ROOT) if ROOT not in sys.path else None
        from labkit.oci import spec
        self.config = spec.default(args=["/bin/true"], terminal=False)
        self.ids = []

    def write(self, config=None):
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.config if config is None else config, f, indent=1)

    def runtime(self, *args, input=None, timeout=60, check=False):
        """Run `python -m labkit.cli.runtime ARGS` in the bundle directory."""
        self.write() if not os.path.exists(os.path.join(self.path, "config.json")) else None
        argv = [sys.executable, "-m", "labkit.cli.runtime", *args]
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                           cwd=self.path, env=dict(os.environ, PYTHONPATH=ROOT))
        if check and r.returncode != 0:
            raise AssertionError(f"labkit-runtime {' '.join(args)}: {r.returncode} {r.stderr}")
        return r

    def run_both(self, tmp_path):
        """(labkit-runtime's, runc's) result of `run` of this bundle, with a
        real rootfs path (runc refuses a symlinked root)."""
        import uuid
        self.config["root"] = {"path": os.path.realpath(os.path.join(self.path, "rootfs")), "readonly": False}
        self.write()
        out = []
        for argv in ([sys.executable, "-m", "labkit.cli.runtime"], [shutil.which("runc")]):
            cid = f"both-{uuid.uuid4().hex[:8]}"
            r = subprocess.run([*argv, "--root", str(tmp_path / f"state-{cid}"), "run", "--bundle",
                                self.path, cid], capture_output=True, text=True, timeout=60,
                               cwd=self.path, env=dict(os.environ, PYTHONPATH=ROOT))
            out.append(r)
        return out

    def create(self, cid, *extra):
        self.write()
        self.ids.append(cid)
        # stdout/stderr to files: the container keeps them open after create returns.
        return self.detached("create", *extra, cid)

    def detached(self, *args):
        """create or run -d: the container keeps the caller's stdout and stderr
        open after the runtime returns (as runc's), so they go to files."""
        cid = args[-1]
        with open(os.path.join(self.path, f"{cid}.out"), "w") as out, \
                open(os.path.join(self.path, f"{cid}.err"), "w+") as err:
            r = subprocess.run([sys.executable, "-m", "labkit.cli.runtime", *args],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True,
                               cwd=self.path, env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
            err.seek(0)
            r.stderr = err.read()
        return r

    def output(self, cid):
        with open(os.path.join(self.path, f"{cid}.out")) as f:
            return f.read()

    def state(self, cid):
        r = self.runtime("state", cid)
        return json.loads(r.stdout) if r.returncode == 0 else None


@pytest.fixture
def bundle(rootfs_copy):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = tempfile.mkdtemp(prefix="lkrt-bundle-")
    os.chmod(d, 0o755)   # reachable by a user namespace's root too
    b = Bundle(d, rootfs_copy)
    yield b
    for cid in b.ids:
        b.runtime("delete", "--force", cid)
    shutil.rmtree(d, ignore_errors=True)


def cgroup_dirs(cid):
    """The labkit/<cid> cgroup directories that exist now."""
    found = []
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(base) == "labkit" and cid in dirs:
            found.append(os.path.join(base, cid))
        if base.count("/") > 5:
            dirs[:] = []
    return found


def run_ok(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)
