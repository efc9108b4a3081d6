"""Suite-wide: the rootfs the tests use, and the check that the host is
clean at the end — no mount, cgroup, network link or namespace, process or
container state of labkit may outlive the suite."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from labkit import home  # noqa: E402


def labkit_leftovers():
    """What of labkit is on the host now: a sorted list of descriptions."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if "labkit" in point:
                found.append(f"mount {point}")
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        depth = base.count("/") - "/sys/fs/cgroup".count("/")
        for d in dirs:
            if "labkit" in d:
                found.append(f"cgroup {os.path.join(base, d)}")
        if depth >= 3:
            dirs[:] = []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith("lk") or "labkit" in name:
            found.append(f"link {name}")
    if os.path.isdir("/run/netns"):
        found += [f"netns {n}" for n in os.listdir("/run/netns") if "labkit" in n or n.startswith("lk")]
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue
        if b"-m" in argv and b"labkit" in argv[argv.index(b"-m") + 1:argv.index(b"-m") + 2]:
            found.append(f"process {pid} {b' '.join(argv).decode(errors='replace')}")
        elif root.startswith(home.home()):
            found.append(f"process {pid} in a container root {root}")
    containers = home.containers_dir()
    if os.path.isdir(containers):
        found += [f"container state {c}" for c in os.listdir(containers)]
    return sorted(found)


def pytest_sessionstart(session):
    session.config._labkit_before = set(labkit_leftovers()) if os.geteuid() == 0 else set()


def pytest_sessionfinish(session, exitstatus):
    if os.geteuid() != 0 or hasattr(session.config, "workerinput"):
        return
    left = sorted(set(labkit_leftovers()) - session.config._labkit_before)
    if left:
        sys.stderr.write("\nlabkit leak check FAILED — the suite left on the host:\n  "
                         + "\n  ".join(left) + "\n")
        session.exitstatus = 1
    else:
        sys.stderr.write("\nlabkit leak check: the host is clean\n")


@pytest.fixture(scope="session")
def rootfs():
    """The base rootfs, built if missing (make test builds it first)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from labkit import builder
    path, _, _ = builder.build("base")
    return "base"


@pytest.fixture
def labkit_cli():
    """Run `python -m labkit ARGS` and return the CompletedProcess."""
    def run(*args, input=None, timeout=60, user=None):
        argv = [sys.executable, "-m", "labkit", *args]
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        env = dict(os.environ, PYTHONPATH=ROOT)
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                              env=env, cwd="/")
    return run
