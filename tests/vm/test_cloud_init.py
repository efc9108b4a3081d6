"""vagrant/cloud-init.yaml, checked by cloud-init's own schema validator.

The validator comes from the cloud-init .deb that `provision.sh --test-tools`
downloads and unpacks into $LABKIT_CACHE/cloud-init without installing it
(installed, cloud-init's services would run at the next boot of the developer's
machine). Its module cloudinit.config.schema runs with PYTHONPATH pointing
there, on Debian's python3 and the libraries cloud-init depends on.
"""

import os

import pytest
import yaml

from .conftest import CACHE, HINT, VAGRANT_DIR, run

USER_DATA = VAGRANT_DIR / "cloud-init.yaml"


def validate(path):
    site = CACHE / "cloud-init" / "usr/lib/python3/dist-packages"
    if not (site / "cloudinit/config/schema.py").is_file():
        pytest.fail(f"cloud-init's schema validator is not unpacked in {site.parent.parent.parent}: {HINT}",
                    pytrace=False)
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONWARNINGS="ignore::DeprecationWarning")
    return run(["/usr/bin/python3", "-m", "cloudinit.config.schema", "--config-file", path], env=env)


def test_user_data_is_valid_cloud_config():
    r = validate(USER_DATA)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Valid cloud-config" in r.stdout


def test_validator_rejects_a_broken_copy(tmp_path):
    # The same file with one key of the wrong type: proves the validator above
    # really checks this file's keys against the schema.
    doc = yaml.safe_load(USER_DATA.read_text())
    doc["runcmd"] = "not a list"
    broken = tmp_path / "user-data.yaml"
    broken.write_text("#cloud-config\n" + yaml.safe_dump(doc))
    r = validate(broken)
    assert r.returncode != 0
    assert "runcmd" in r.stdout + r.stderr


def test_user_data_runs_provision_and_leaves_the_repo_to_the_instructor():
    doc = yaml.safe_load(USER_DATA.read_text())
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    settings = dict(line.split("=", 1) for line in files["/etc/labkit/class.env"].splitlines() if "=" in line)
    # A placeholder, not an address: the instructor sets the class's own repository.
    assert settings["LABKIT_REPO"] == ""
    setup = "\n".join(c for p, c in files.items() if c.startswith("#!"))
    assert "/lab/vagrant/provision.sh --service" in setup
    assert "VENV=/opt/labkit/venv" in setup
    commands = [c if isinstance(c, str) else " ".join(c) for c in doc["runcmd"]]
    assert any(p in cmd for cmd in commands for p in files if files[p].startswith("#!"))
