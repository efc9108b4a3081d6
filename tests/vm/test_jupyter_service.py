"""The JupyterLab service and the URL printer.

systemd does not run here (CI, containers), so the unit jupyter-service.sh
would install is checked by systemd's own parser (systemd-analyze verify),
and labkit-url.sh is run against a real JupyterLab started on loopback.
"""

import os
import re
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from proc_helper import free_port, stop_group

from .conftest import REPO, VAGRANT_DIR, need, run

# The interpreter running the tests lives in a venv that has JupyterLab
# (`make test` runs the venv provision.sh made).
VENV = sys.prefix


def unit_text(env=None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_JUPYTER_")}
    # An empty dir: the host's own installed unit (in the VM) must not count.
    base.setdefault("LABKIT_SYSTEMD_DIR", "/nonexistent")
    r = run(["bash", VAGRANT_DIR / "jupyter-service.sh", "--print-unit", REPO, VENV],
            env=dict(base, **(env or {})))
    assert r.returncode == 0, r.stderr
    return r.stdout


def exec_start(text):
    return next(line for line in text.splitlines() if line.startswith("ExecStart=")).split()


def test_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / "labkit-jupyter.service"
    unit.write_text(unit_text())
    r = run([need("systemd-analyze"), "verify", unit])
    # verify exits 0 on some bad settings and only warns: any output fails.
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def test_unit_serves_the_repo_notebooks_as_root():
    text = unit_text()
    argv = exec_start(text)
    assert argv[0] == f"ExecStart={VENV}/bin/jupyter"
    assert f"--ServerApp.root_dir={REPO}/notebooks" in argv
    assert "--allow-root" in argv and "User=root" in text
    # Token authentication, the token kept out of the command line.
    assert not any("token" in a.lower() for a in argv)
    assert "EnvironmentFile=/etc/labkit/jupyter.env" in text


def test_listen_address_defaults_to_loopback():
    assert "--ip=127.0.0.1" in exec_start(unit_text())
    assert "--ip=0.0.0.0" in exec_start(unit_text({"LABKIT_JUPYTER_IP": "0.0.0.0"}))


def test_reprovision_keeps_the_installed_address(tmp_path):
    # The VM's unit listens on 0.0.0.0 for the port forward; a later
    # `provision.sh --service` without LABKIT_JUPYTER_IP must keep it.
    (tmp_path / "labkit-jupyter.service").write_text(unit_text({"LABKIT_JUPYTER_IP": "0.0.0.0"}))
    env = {"LABKIT_SYSTEMD_DIR": str(tmp_path)}
    assert "--ip=0.0.0.0" in exec_start(unit_text(env))
    assert "--ip=127.0.0.1" in exec_start(unit_text(dict(env, LABKIT_JUPYTER_IP="127.0.0.1")))


@pytest.fixture
def jupyter_lab(tmp_path):
    """A real JupyterLab on 127.0.0.1 with a random token, its runtime files
    in a temp HOME; stopped (its whole process group) afterwards."""
    home = tmp_path / "home"
    (tmp_path / "notebooks").mkdir()
    home.mkdir()
    token = secrets.token_hex(16)
    port = free_port()
    env = dict(os.environ, HOME=str(home), JUPYTER_TOKEN=token)
    env.pop("JUPYTER_RUNTIME_DIR", None)
    proc = subprocess.Popen(
        [f"{VENV}/bin/jupyter", "lab", "--allow-root", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={tmp_path / 'notebooks'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True)
    try:
        yield env, port, token
    finally:
        stop_group(proc)


@pytest.mark.slow
def test_labkit_url_prints_a_url_that_opens_the_lab(jupyter_lab):
    env, port, token = jupyter_lab
    r = run(["bash", VAGRANT_DIR / "labkit-url.sh", "--wait", "60"], env=dict(env, VENV=VENV))
    assert r.returncode == 0, r.stderr
    urls = r.stdout.split()
    assert urls == [f"http://127.0.0.1:{port}/?token={token}"]
    with urllib.request.urlopen(urls[0], timeout=20) as resp:
        assert resp.status == 200
    # Without the token the same server refuses the API: the token is what
    # guards a root shell in the VM.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=20)
    assert refused.value.code == 403
    # A forward to another host port: the URL names the host's port.
    r2 = run(["bash", VAGRANT_DIR / "labkit-url.sh"], env=dict(env, VENV=VENV, LABKIT_PORT="18899"))
    assert r2.stdout.split() == [f"http://127.0.0.1:18899/?token={token}"]


def test_labkit_url_without_a_server_says_so(tmp_path):
    r = run(["bash", VAGRANT_DIR / "labkit-url.sh"], env=dict(os.environ, HOME=str(tmp_path), VENV=VENV))
    assert r.returncode == 1 and r.stdout == ""
    assert "no JupyterLab is running" in r.stderr


@pytest.mark.slow
def test_the_lab_asks_nothing_about_jupyter_news(jupyter_lab):
    """provision.sh's overrides.json, as the running JupyterLab reports it:
    no news popup, no update check (the classroom machine has no internet)."""
    import json
    env, port, token = jupyter_lab
    assert run(["bash", VAGRANT_DIR / "labkit-url.sh", "--wait", "60"], env=dict(env, VENV=VENV)).returncode == 0
    url = f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/apputils-extension:notification?token={token}"
    with urllib.request.urlopen(url, timeout=20) as resp:
        props = json.load(resp)["schema"]["properties"]   # overrides.json becomes the defaults
    assert props["fetchNews"]["default"] == "false" and props["checkForUpdates"]["default"] is False


def first_page(url, profile):
    """What a real browser shows at ``url``: headless Chromium (Debian's)
    loads JupyterLab, runs its scripts, and dumps the page. Returns the
    window's title and the path of the document open in the main area (the
    title panel's "Path: …" line)."""
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.fail("chromium is missing: `make test` installs it (provision.sh --test-tools)")
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                        "--virtual-time-budget=30000", "--dump-dom", url],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    title = re.search(r"<title>([^<]*)</title>", r.stdout)
    panel = re.search(r'id="jp-title-panel-title"><input[^>]*title="([^"]*)"', r.stdout)
    assert title and panel, f"no JupyterLab page at {url}: {r.stderr[-2000:]}"
    paths = [line.split(": ", 1)[1] for line in panel.group(1).splitlines()[1:2] if ": " in line]
    return title.group(1), (paths or [None])[0]


@pytest.mark.slow
@pytest.mark.parametrize("lang, first", [("en", "00-welcome.ipynb"), ("es", "es/00-welcome.ipynb")])
def test_the_course_opens_on_its_first_notebook(tmp_path, lang, first):
    """`make serve` (the end of `make lab`) serves the repository's notebooks;
    the URL labkit-url.sh prints (as `labkit url` and the Vagrantfile do),
    opened in a real browser, shows the course's first notebook in the lab's
    language, not JupyterLab's Launcher."""
    home = tmp_path / "home"
    home.mkdir()
    token, port = secrets.token_hex(16), free_port()
    env = dict(os.environ, HOME=str(home), JUPYTER_TOKEN=token, LABKIT_LANG=lang, VENV=VENV)
    env.pop("JUPYTER_RUNTIME_DIR", None)
    server = subprocess.Popen(["make", "-s", "-C", str(REPO), "serve", f"LAB_PORT={port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        r = run(["bash", VAGRANT_DIR / "labkit-url.sh", "--wait", "60"], env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [f"http://127.0.0.1:{port}/?token={token}"]
        title, path = first_page(r.stdout.split()[0], tmp_path / "chromium")
        assert path == first, (title, path)
        assert title.startswith("00-welcome"), title
    finally:
        stop_group(server)
