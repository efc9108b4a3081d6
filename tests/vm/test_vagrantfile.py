"""The Vagrantfile, checked by Vagrant itself without a provider, a box or a
network: `vagrant validate`, and the configuration Vagrant compiles from it
(read by vagrant_config.rb through Vagrant's own loader)."""

import json
import os

import pytest

from .conftest import REPO, need, run

HERE = os.path.dirname(os.path.abspath(__file__))


def validate(env, *extra):
    # --ignore-provider: without it Vagrant first looks for a usable provider
    # and stops ("No usable default provider"); with it the core config is
    # validated and every provider block still runs (a Ruby error in one fails).
    # unshare -n: proves the check needs no network.
    return run(["unshare", "--net", need("vagrant"), "validate", "--ignore-provider", *extra],
               env=env, cwd=REPO)


def compiled(env):
    need("vagrant")
    r = run(["ruby", os.path.join(HERE, "vagrant_config.rb"), REPO], env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.root
def test_vagrant_validate_offline_without_provider(vagrant_env):
    had_dotdir = (REPO / ".vagrant").exists()
    r = validate(vagrant_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validated successfully" in r.stdout
    assert (REPO / ".vagrant").exists() == had_dotdir, "vagrant validate left .vagrant/ in the repository"


@pytest.mark.root
def test_bad_setting_is_refused_by_name(vagrant_env):
    # One helper reads LABKIT_CPUS, LABKIT_MEMORY and LABKIT_PORT.
    r = validate(dict(vagrant_env, LABKIT_MEMORY="lots"))
    assert r.returncode != 0
    assert "LABKIT_MEMORY" in r.stdout + r.stderr


def test_compiled_config_defaults(vagrant_env):
    cfg = compiled(vagrant_env)
    # The release vagrant/vmtest.py boots by default (--suite trixie).
    assert cfg["box"] == "bento/debian-13"
    # virtualbox, libvirt and at least one provider with arm64 boxes.
    assert {"virtualbox", "libvirt"} <= set(cfg["providers"])
    assert {"parallels", "vmware_desktop"} & set(cfg["providers"])

    jupyter = [p for p in cfg["forwarded_ports"] if p["guest"] == 8888]
    assert len(jupyter) == 1
    assert jupyter[0]["host_ip"] == "127.0.0.1", "Jupyter must be reachable from the host's loopback only"

    live = {f["guest"]: f for f in cfg["synced_folders"] if not f["disabled"]}
    assert os.path.realpath(os.path.join(REPO, live["/lab"]["host"])) == os.path.realpath(REPO)

    # Provisioning runs provision.sh --service from the shared repository
    # (the file must exist there), with the venv outside every shared folder.
    first = cfg["provisioners"][0]
    assert first["path"] is None, "with path: Vagrant runs a lone copy from /tmp, away from the repository"
    argv = first["inline"].split()
    script = next(a for a in argv if a.endswith("/provision.sh"))
    assert script.startswith("/lab/") and (REPO / script[len("/lab/"):]).is_file()
    assert "--service" in argv
    for p in cfg["provisioners"]:
        for word in (p["inline"] or "").split():
            if word.startswith("/lab/"):
                assert (REPO / word[len("/lab/"):]).exists(), f"provisioner {p['name']}: {word} is not in the repository"
    venv = first["env"]["VENV"]
    assert not any(venv == g or venv.startswith(g.rstrip("/") + "/") for g in live), \
        f"the venv {venv} must not live in a shared folder"
    # The guest listens where the forward arrives (its NAT interface).
    assert first["env"]["LABKIT_JUPYTER_IP"] == "0.0.0.0"


def test_cpus_memory_port_follow_the_environment(vagrant_env):
    base = compiled(vagrant_env)
    mine = compiled(dict(vagrant_env, LABKIT_CPUS="3", LABKIT_MEMORY="3072", LABKIT_PORT="18899"))

    def modifyvm(cfg, flag):
        return [c[-1] for c in cfg["virtualbox"]["modifyvm"] if c[:1] == ["modifyvm"] and c[-2] == flag]

    assert modifyvm(mine, "--cpus") == ["3"] != modifyvm(base, "--cpus")
    assert modifyvm(mine, "--memory") == ["3072"] != modifyvm(base, "--memory")
    host_ports = [p["host"] for p in mine["forwarded_ports"] if p["guest"] == 8888]
    assert host_ports == [18899]
    # The URL printed after `vagrant up` names the host's port, not the guest's.
    url = [p for p in mine["provisioners"] if "/vagrant/labkit-url.sh" in (p["inline"] or "")]
    assert url and url[0]["env"]["LABKIT_PORT"] == "18899" and url[0]["run"] == "always"
