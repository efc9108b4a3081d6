"""Mount targets resolved race-free (CVE-2021-30465): a volume shared with
another container is a directory the attacker can change while a container
is being made. Here the shared directory's `d` is swapped, atomically and
without pause, with a symlink to a host path (renameat2 RENAME_EXCHANGE, what
any process writing the volume can do; a thread does it at the kernel's
speed). A container whose mount goes below `d` is created again and again:
its target must be opened inside its root (labkit/linux/rootfs.py open_in_root)
and mounted through the descriptor, so the host path stays untouched. Either
the container starts, or it stops with one line naming the change; never is
anything made or mounted outside its root."""

import ctypes
import os
import shutil
import tempfile
import threading

import pytest

pytestmark = pytest.mark.root

ROUNDS = int(os.environ.get("LABKIT_RACE_ROUNDS", "30"))
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(dirfd, a, b):
    # renameat2(2) has a glibc wrapper since 2.28.
    return _libc.renameat2(dirfd, a.encode(), dirfd, b.encode(), RENAME_EXCHANGE)


class Flipper(threading.Thread):
    def __init__(self, shared):
        super().__init__(daemon=True)
        self.fd = os.open(shared, os.O_PATH | os.O_DIRECTORY)
        self.done = threading.Event()
        self.flips = 0

    def run(self):
        while not self.done.is_set():
            if exchange(self.fd, "d", "x") != 0:
                raise OSError(ctypes.get_errno(), "renameat2")
            self.flips += 1

    def stop(self):
        self.done.set()
        self.join(timeout=10)
        os.close(self.fd)


@pytest.fixture
def outside():
    d = tempfile.mkdtemp(prefix="lkrace-outside-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_a_swapped_directory_never_leads_a_mount_out_of_the_root(bundle, tmp_path, outside):
    shared = tmp_path / "shared"
    (shared / "d").mkdir(parents=True)
    os.symlink(outside, shared / "x")           # absolute: the host's path, if followed on the host
    bundle.config["mounts"] += [
        {"destination": "/v", "type": "bind", "source": str(shared), "options": ["rbind"]},
        {"destination": "/v/d/target", "type": "tmpfs", "source": "race", "options": ["size=1m"]},
    ]
    bundle.config["process"]["args"] = ["true"]
    bundle.write()
    flipper = Flipper(str(shared))
    flipper.start()
    started, refused = 0, []
    try:
        for n in range(ROUNDS):
            r = bundle.runtime("--root", str(tmp_path / "state"), "run", f"race-{n}", timeout=60)
            if r.returncode == 0:
                started += 1
            else:
                refused.append(r.stderr.strip())
            assert os.listdir(outside) == [], f"round {n}: made outside the root: {os.listdir(outside)}"
    finally:
        flipper.stop()
    assert flipper.flips > 1000, "the directory was hardly swapped: the test proved nothing"
    for line in refused:
        assert len(line.splitlines()) == 1 and "symlink" in line, line
    print(f"{ROUNDS} rounds, {flipper.flips} swaps: {started} started, {len(refused)} refused",
          *refused[:1])
    with open("/proc/self/mountinfo") as f:
        assert "race" not in f.read()


def test_the_trace_shows_the_mount_through_the_descriptor(bundle, tmp_path, monkeypatch):
    bundle.config["mounts"].append({"destination": "/v/deep/target", "type": "tmpfs", "source": "fdmount",
                                    "options": ["size=1m"]})
    bundle.config["process"]["args"] = ["true"]
    bundle.write()
    monkeypatch.setenv("LABKIT_TRACE", "1")
    r = bundle.runtime("--root", str(tmp_path / "state"), "run", "fdmount")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if '"fdmount"' in line]
    assert lines and '"/proc/self/fd/' in lines[0], r.stderr[-2000:]
    assert any("openat2(" in line and "RESOLVE_IN_ROOT" in line for line in r.stderr.splitlines())
