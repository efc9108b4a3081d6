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

from labkit.leaks import leftovers as labkit_leftovers  # noqa: E402


def pytest_sessionstart(session):
    if os.geteuid() == 0 and labkit_leftovers() and os.environ.get("LABKIT_IN_UML") != "1":
        # An earlier run that was killed may have left things: collect what
        # belongs to dead containers first (running ones are left alone), so
        # that this run is judged on what it leaves itself.
        from labkit.runtime.lifecycle import gc
        sys.stderr.write("labkit gc before the suite: " + "; ".join(gc()) + "\n")
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
    def run(*args, input=None, timeout=60, user=None, env=None):
        argv = [sys.executable, "-m", "labkit", *args]
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                              env=env, cwd="/")
    return run
