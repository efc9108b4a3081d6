"""vagrant/provision.sh is idempotent: run twice on this machine, the second
run finds every step done and changes nothing.

"Changes nothing", concretely, between the start and the end of the second run:
- its output is only state lines ("... present", "ready", the no-systemd
  notice), nothing on stderr, exit status 0;
- the dpkg database: the same packages, versions and states, and
  /var/lib/dpkg/status not rewritten (no apt-get run at all);
- the venv, the base rootfs and the unpacked cloud-init validator: every
  file and directory with the same inode, size, mode and mtime;
- /usr/local/bin/labkit (and, where systemd runs, /etc/environment and the
  unit file) not rewritten.

It uses the venv and LABKIT_HOME of the run (`make test` exports VENV), so on
a machine that `make test` has set up the first run only confirms the state.
"""

import os
import re

import pytest

from .conftest import CACHE, VAGRANT_DIR, REPO, run

VENV = os.environ.get("VENV") or str(REPO / ".venv")
HOME = os.environ.get("LABKIT_HOME") or "/var/lib/labkit"
ARGS = ["--service", "--test-tools"]
# Lines that report a state found, never an action taken.
STATE_LINE = re.compile(r"\bpresent\b|^provision: (ready|labkit-jupyter\.service (enabled|running)"
                        r"|no systemd here\b.*)$")


def tree(path):
    """Every entry under path (not following symlinks) -> what a write changes."""
    if not os.path.lexists(path):
        return None
    out = {}
    st = os.lstat(path)
    out["."] = (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns)
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                p = os.path.join(root, name)
                st = os.lstat(p)
                out[os.path.relpath(p, path)] = (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def machine_state():
    dpkg = run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Status}\n"])
    assert dpkg.returncode == 0, dpkg.stderr
    return {
        "dpkg packages": dpkg.stdout,
        "/var/lib/dpkg/status": tree("/var/lib/dpkg/status"),
        "venv": tree(VENV),
        "rootfs": tree(os.path.join(HOME, "rootfs", "base")),
        "cloud-init validator": tree(str(CACHE / "cloud-init")),
        "/usr/local/bin/labkit": tree("/usr/local/bin/labkit"),
        "/etc/environment": tree("/etc/environment"),
        "unit": tree("/etc/systemd/system/labkit-jupyter.service"),
    }


def provision():
    env = dict(os.environ, VENV=VENV, LABKIT_HOME=HOME)
    return run(["bash", VAGRANT_DIR / "provision.sh", *ARGS], env=env, timeout=900)


@pytest.mark.root
@pytest.mark.slow
def test_second_run_changes_nothing():
    first = provision()
    assert first.returncode == 0, first.stdout + first.stderr

    before = machine_state()
    second = provision()
    after = machine_state()

    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stderr == ""
    lines = second.stdout.splitlines()
    assert lines and lines[-1] == "provision: ready"
    actions = [line for line in lines if not STATE_LINE.search(line)]
    assert actions == [], "the second run did something"
    for what in before:
        if before[what] is None or after[what] is None:
            assert before[what] == after[what], f"{what} appeared or vanished"
            continue
        if isinstance(before[what], dict):
            changed = sorted(k for k in before[what].keys() | after[what].keys()
                             if before[what].get(k) != after[what].get(k))
            assert changed == [], f"{what} changed: {changed[:10]}"
        else:
            assert before[what] == after[what], f"{what} changed"
    # The things the run is about exist at all (a tree of None would compare equal).
    for what in ("venv", "rootfs", "cloud-init validator", "/usr/local/bin/labkit"):
        assert after[what], f"{what} missing after provisioning"
