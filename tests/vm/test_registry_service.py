"""The lab registry's systemd unit (vagrant/registry-service.sh): systemd
does not run here, so the unit is printed and checked with systemd-analyze,
and what it runs, `labkit registry start --foreground`, is run for real."""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from .conftest import VAGRANT_DIR, need, run

VENV = sys.prefix


def unit_text():
    r = run(["bash", VAGRANT_DIR / "registry-service.sh", "--print-unit", VENV],
            env=dict(os.environ, LABKIT_SYSTEMD_DIR="/nonexistent"))
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / "labkit-registry.service"
    unit.write_text(unit_text())
    r = run([need("systemd-analyze"), "verify", unit])
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker-registry"), reason="needs root and docker-registry")
def test_what_the_unit_runs_serves_and_status_knows_it(tmp_path):
    argv = next(line for line in unit_text().splitlines() if line.startswith("ExecStart="))[len("ExecStart="):].split()
    assert argv[1:] == ["registry", "start", "--foreground"]
    from labkit.images import registry
    if registry.status() is not None:
        pytest.skip("a lab registry runs already")
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 5000)) == 0:
            pytest.skip("127.0.0.1:5000 is taken here")
    launcher = [sys.executable, "-m", "labkit"] if not os.access(argv[0], os.X_OK) else [argv[0]]
    proc = subprocess.Popen(launcher + argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            st = registry.status()
            if st and registry._answers(st["address"]):
                break
            time.sleep(0.1)
        assert st and st["pid"] == proc.pid and st["address"] == "127.0.0.1:5000"   # the exec kept the pid
        r = subprocess.run([sys.executable, "-m", "labkit", "registry", "status"], capture_output=True, text=True)
        assert r.returncode == 0 and "127.0.0.1:5000" in r.stdout
    finally:
        subprocess.run([sys.executable, "-m", "labkit", "registry", "stop"], capture_output=True)
        proc.wait(timeout=10)
        shutil.rmtree(registry.root(), ignore_errors=True)
