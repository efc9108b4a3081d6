"""`labkit tour`: every stage headless, one table, exit 0 only if every row
passes — the course's claims, checked end to end on this machine."""

import os
import sys
import subprocess

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tour_passes_every_row(rootfs):
    # In a network namespace of its own: the network rows make bridges and rules.
    r = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -m labkit tour',
                        sys.executable], capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, PYTHONPATH=ROOT, COLUMNS="160"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    rows = [line for line in r.stdout.splitlines()[1:] if line.rstrip().endswith(("pass", "FAIL"))]
    layers = {line[:2] for line in rows}
    assert layers == {"1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "7 ", "8 "}, layers    # every stage has rows
    assert all(line.rstrip().endswith("pass") for line in rows)
    assert f"{len(rows)} passed, 0 failed" in r.stdout
