"""Static checks of the provisioning scripts: shellcheck on every vagrant/*.sh
and on the script cloud-init.yaml writes, and their refusal of bad arguments
before they touch anything."""

import glob

import pytest
import yaml

from .conftest import VAGRANT_DIR, need, run

SCRIPTS = sorted(glob.glob(str(VAGRANT_DIR / "*.sh")))


def test_there_are_scripts_to_check():
    names = {p.rsplit("/", 1)[1] for p in SCRIPTS}
    assert {"provision.sh", "jupyter-service.sh", "registry-service.sh", "labkit-url.sh"} <= names


def test_shellcheck_vagrant_scripts():
    r = run([need("shellcheck"), "--external-sources", *SCRIPTS], cwd=VAGRANT_DIR)
    assert r.returncode == 0, r.stdout + r.stderr


def test_shellcheck_script_in_cloud_init(tmp_path):
    doc = yaml.safe_load((VAGRANT_DIR / "cloud-init.yaml").read_text())
    scripts = [f for f in doc["write_files"] if f["content"].startswith("#!")]
    assert scripts, "cloud-init.yaml should carry its setup script"
    for f in scripts:
        path = tmp_path / f["path"].rsplit("/", 1)[1]
        path.write_text(f["content"])
        r = run([need("shellcheck"), path])
        assert r.returncode == 0, f"{f['path']} in cloud-init.yaml:\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("script, args", [
    ("provision.sh", ["--bogus"]),
    ("jupyter-service.sh", ["only-one-arg"]),
    ("registry-service.sh", ["one", "two"]),
    ("labkit-url.sh", ["--wait", "soon"]),
])
def test_bad_arguments_stop_with_usage(script, args):
    r = run(["bash", VAGRANT_DIR / script, *args])
    assert r.returncode == 2
    assert r.stdout == ""
    assert "usage" in r.stderr or args[-1] in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
