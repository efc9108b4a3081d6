"""Shared pieces of the classroom-VM checks (Vagrantfile, provisioning,
JupyterLab service, cloud-init).

The tools these tests run come from Debian packages that
`vagrant/provision.sh --test-tools` installs (`make test` passes it). A
missing tool fails the test with that hint rather than skipping it: a check
that silently does not run would let CI pass without checking.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VAGRANT_DIR = REPO / "vagrant"
CACHE = Path(os.environ.get("LABKIT_CACHE", "/var/cache/labkit"))
HINT = "install the test tools with `sudo vagrant/provision.sh --test-tools` (`make test` does it)"


def need(command):
    """The full path of a command, or a failed test saying how to get it."""
    path = shutil.which(command)
    if path is None:
        pytest.fail(f"{command} not found: {HINT}", pytrace=False)
    return path


def run(argv, **kw):
    """Run a command, capturing text output; never raises on exit status."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([str(a) for a in argv], **kw)


@pytest.fixture(scope="session")
def vagrant_env(tmp_path_factory):
    """An environment for Vagrant that leaves nothing in the repository or in
    the user's home: its data dir (set up once per session), the project's .vagrant dir and HOME all
    point into a temp dir, and the version check (a network call) is off."""
    tmp_path = tmp_path_factory.mktemp("vagrant")
    env = dict(os.environ)
    env.update(HOME=str(tmp_path / "home"), VAGRANT_HOME=str(tmp_path / "vagrant.d"),
               VAGRANT_DOTFILE_PATH=str(tmp_path / "dotvagrant"), VAGRANT_CHECKPOINT_DISABLE="1",
               VAGRANT_CWD=str(REPO))
    for name in ("VAGRANT_DEFAULT_PROVIDER", "LABKIT_CPUS", "LABKIT_MEMORY", "LABKIT_PORT", "LABKIT_BOX"):
        env.pop(name, None)
    os.makedirs(env["HOME"])
    return env
