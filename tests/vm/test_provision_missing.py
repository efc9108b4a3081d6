"""provision.sh on a distribution whose archive lacks a package: one the
tests alone use, or an optional one, is named and left out, and the provisioning goes on; one the
lab needs makes it stop, with apt-get's error naming it.

The package tools are stand-ins on PATH (dpkg-query, apt-cache, apt-get):
everything installed but one package, which the archive does not have.
apt-get records what it is asked to install, and fails as the real one would
for a package it cannot find."""

import os

import pytest

from .conftest import VAGRANT_DIR, REPO, run

VENV = os.environ.get("VENV") or str(REPO / ".venv")


def fake_tools(bin_dir, absent, log):
    tools = {
        # Every package installed but the absent one.
        "dpkg-query": f'for p in "$@"; do case "$p" in -*|*\\$*) ;; {absent}) ;; *) echo "$p install ok installed";; '
                      'esac; done',
        "apt-cache": f'[ "$2" = {absent} ] && exit 100; exit 0',
        "apt-get": f'echo "$@" >> {log}; for a in "$@"; do [ "$a" = {absent} ] && '
                   f'{{ echo "E: Unable to locate package {absent}" >&2; exit 100; }}; done; exit 0',
    }
    for name, body in tools.items():
        path = os.path.join(bin_dir, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body + "\n")
        os.chmod(path, 0o755)


def provision(tmp_path, absent):
    bin_dir, log = tmp_path / "bin", tmp_path / "apt-get.log"
    bin_dir.mkdir()
    fake_tools(bin_dir, absent, log)
    env = dict(os.environ, VENV=VENV, PATH=f"{bin_dir}:{os.environ['PATH']}")
    r = run(["bash", VAGRANT_DIR / "provision.sh", "--test-tools"], env=env, timeout=900)
    return r, log.read_text() if log.exists() else ""


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("absent, why", [
    ("catatonit", "only tests use it"),
    # Ubuntu 24.04 packages user-mode-linux's docs but not its kernel.
    ("user-mode-linux", "notebook 02's VM and tests/uml are skipped"),
])
def test_a_package_the_archive_lacks_and_the_lab_can_do_without_is_named_and_left_out(tmp_path, absent, why):
    r, asked = provision(tmp_path, absent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{absent} is not in this system's package archive: left out ({why})" in r.stdout
    assert absent not in asked.split("install", 1)[-1].split()
    assert r.stdout.splitlines()[-1] == "provision: ready"


@pytest.mark.root
@pytest.mark.slow
def test_a_package_the_lab_needs_stops_the_provisioning_by_name(tmp_path):
    r, asked = provision(tmp_path, "lxcfs")
    assert r.returncode != 0
    assert "lxcfs" in asked.split("install", 1)[-1]
    assert "Unable to locate package lxcfs" in r.stderr
