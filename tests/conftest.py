"""Suite-wide: a fresh $LABKIT_HOME for every run, the rootfs and the base
image the tests use, and the checks at the end: the host is clean — no
mount, cgroup, network link or namespace, process, container (stopped too),
network, image or service of labkit may outlive the suite — and the shared
base rootfs is as it was: no container wrote into it."""

import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _fresh_home():
    """Every run of the suite, or of one test file, starts from an empty
    $LABKIT_HOME of its own, as on a new machine: whatever a test needs (the
    rootfs, labkit/base, a network) it gets from a fixture, never from an
    earlier test or an earlier run, and a student's /var/lib/labkit is never
    touched. The directory is 0755: a container's root in a user namespace
    is an unprivileged uid on the host and must be able to search it (a
    mkdtemp is 0700). Not inside user-mode Linux, whose harness hands in the
    host's home (tests/uml/harness.py), nor without root."""
    if os.geteuid() != 0 or os.environ.get("LABKIT_IN_UML") == "1":
        return None
    top = tempfile.mkdtemp(prefix="labkit-suite-", dir="/var/tmp")
    os.chmod(top, 0o755)
    os.environ["LABKIT_HOME"] = top
    return top


SUITE_HOME = _fresh_home()


def _interruptible():
    """A suite started in the background (a CI job, `make test &`, a shell
    with `trap '' INT`) inherits SIGINT ignored, and so would every process
    a test starts, since an ignored signal stays ignored across fork and
    exec: a notebook cell's Ctrl-C (tests/test_run.py) would do nothing.
    The tests see what a terminal gives: SIGINT raises KeyboardInterrupt."""
    import signal
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_interruptible()

from labkit.course.leaks import leftovers as labkit_leftovers  # noqa: E402
from proc_helper import new_processes, processes  # noqa: E402


REGISTRY_SERVICE = "labkit-registry"


def _pause_registry_service():
    """The classroom VM runs the lab registry as a service on 127.0.0.1:5000,
    in /var/lib/labkit. The suite's own home needs that port for its own
    (notebook 07, tests/images): the service is stopped for the suite and
    started again at its end. True if it was stopped."""
    if os.environ.get("LABKIT_IN_UML") == "1" or not os.path.isdir("/run/systemd/system"):
        return False
    if subprocess.run(["systemctl", "is-active", "--quiet", REGISTRY_SERVICE]).returncode != 0:
        return False
    subprocess.run(["systemctl", "stop", REGISTRY_SERVICE], check=True)
    sys.stderr.write(f"{REGISTRY_SERVICE}.service stopped for the suite (started again at its end)\n")
    return True


def _resume_registry_service(session):
    if getattr(session.config, "_registry_paused", False):
        subprocess.run(["systemctl", "start", REGISTRY_SERVICE], check=True)


def pytest_sessionstart(session):
    session.config._registry_paused = os.geteuid() == 0 and _pause_registry_service()
    # What is there already (an earlier run that was killed, another suite
    # running at the same time) is not this run's: it is judged on what it
    # leaves itself, and collects nothing of theirs (a `labkit gc` here
    # would take another run's bare test cgroups for leftovers).
    session.config._labkit_before = set(labkit_leftovers()) if os.geteuid() == 0 else set()
    session.config._base_before = base_tree()
    session.config._processes_before = processes()


def pytest_collection_finish(session):
    session.config._uml_module = next(
        (item.module for item in session.items if item.path.name == "test_uml_v2.py"), None)


def pytest_runtest_setup(item):
    """tests/test_uml_v2.py's kernel starts before the first test that is
    not one of tests/cgroups (first in the suite: they measure CPU time and
    would share the machine), and works on one core while the other tests
    run (its start())."""
    config = item.config
    uml = getattr(config, "_uml_module", None)
    if uml is None or hasattr(config, "_uml") or item.path.parent.name == "cgroups" or os.geteuid() != 0:
        return
    config._uml = uml.start()
    if config._uml is not None and config._base_before is None:       # start() built it
        config._base_before = base_tree()


def base_tree():
    """The base rootfs as names, types, modes, sizes and file mtimes (a write
    changes a file's mtime; a directory's changes when a test only looks, so
    it is left out). None where there is no base rootfs yet."""
    from labkit import home
    top = home.rootfs_dir("base")
    if not os.path.isdir(top) or os.environ.get("LABKIT_IN_UML") == "1":
        return None
    tree = {}
    for base, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, top)
            if os.path.islink(path):
                tree[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                tree[rel] = ("dir", st.st_mode)
            else:
                tree[rel] = ("file", st.st_mode, st.st_size, st.st_mtime_ns)
    return tree


def pytest_sessionfinish(session, exitstatus):
    if os.geteuid() != 0 or hasattr(session.config, "workerinput"):
        return
    try:
        left = _left(session)
    except BaseException:
        _remove_home(SUITE_HOME)
        raise
    finally:
        _resume_registry_service(session)     # after the scan: its process is not the suite's
    before, after = session.config._base_before, base_tree()
    if before is not None and after is not None and before != after:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        left.append(f"base rootfs changed: {', '.join(changed[:8])}"
                    + (f" (+{len(changed) - 8} more)" if len(changed) > 8 else ""))
    if left:
        sys.stderr.write("\nlabkit leak check FAILED — the suite left on the host:\n  "
                         + "\n  ".join(left) + "\n")
        session.exitstatus = 1
    else:
        sys.stderr.write("\nlabkit leak check: the host is clean\n")
    _remove_home(SUITE_HOME)


def _left(session):
    """What the suite leaves that it did not find at its start."""
    from labkit import api
    if getattr(session.config, "_uml", None):     # an interrupted suite: its kernel goes first
        session.config._uml.cancel()
    if api._server:          # this process's own fork server goes as a kernel's would at its exit
        api._server.close()
    left = sorted(set(labkit_leftovers()) - session.config._labkit_before)
    if os.environ.get("LABKIT_IN_UML") != "1":
        left += new_processes(session.config._processes_before)
    return left


def _remove_home(top):
    """The suite's home goes at the end, unless something is still mounted
    under it (a leak, reported above): then it stays for a look, and
    `LABKIT_HOME=TOP labkit gc` collects it."""
    from labkit.linux import mountinfo
    from labkit.startpath import remove_tree
    if top is None or not os.path.isdir(top):
        return
    if any(m.mount_point == top or m.mount_point.startswith(top + "/") for m in mountinfo.read()):
        sys.stderr.write(f"labkit: the suite's home {top} still has mounts: kept\n")
        return
    remove_tree(top)


@pytest.fixture(scope="session")
def rootfs(request):
    """The base rootfs, built if missing (in a fresh home: always); the
    leak check then compares it at the end with what it is now."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from labkit.images import builder
    path, _, _ = builder.build("base")
    if getattr(request.config, "_base_before", None) is None:
        request.config._base_before = base_tree()
    return "base"


@pytest.fixture(scope="session")
def base_image(rootfs):
    """labkit/base:latest in the image store: the base rootfs as an image,
    for tests that read the store directly (skopeo, containerd's import)
    rather than through a labkit command that makes it on first use."""
    from labkit import home
    from labkit.images import image
    image.ensure_base(home.rootfs_dir(rootfs))
    return image.BASE


def own_leftovers():
    import subprocess as sp
    from labkit.course.leaks import network_leftovers
    from labkit.linux.netdevice import link_names
    links = sp.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found = [f"link {n}" for n in link_names(links) if n.startswith("lk") or "labkit" in n]
    return sorted(found + network_leftovers())


@pytest.fixture
def netns(rootfs):
    """A network namespace of its own for this test (lo up): the test
    process's thread unshares one, and its children (`labkit`, a service's
    supervisor) inherit it, so bridges, veths and nftables rules are made there
    and the machine's own interfaces are never touched; traffic goes only to
    loopback and to namespaces the test made. At the end the test must have
    left nothing there (links, the labkit table, networks, endpoints and
    services on disk), checked before the namespace is dropped (which would
    hide a leak)."""
    from netns_helper import private_netns
    with private_netns():
        before = own_leftovers()
        yield
        left = sorted(set(own_leftovers()) - set(before))
        if left:   # clean up for the next test, then fail this one
            for line in left:
                if line.startswith("service "):
                    subprocess.run([sys.executable, "-m", "labkit", "service", "rm", line.split()[1]],
                                   capture_output=True)
            subprocess.run([sys.executable, "-m", "labkit", "gc"], capture_output=True)
            for line in left:
                if line.startswith("network "):
                    subprocess.run([sys.executable, "-m", "labkit", "network", "rm", line.split()[1]],
                                   capture_output=True)
        assert not left, f"the test left in its network namespace: {left}"


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
