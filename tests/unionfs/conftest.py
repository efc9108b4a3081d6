"""Fixtures for the union filesystem tests: scratch dirs whose overlays are
always unmounted, and LABKIT_HOME pointed into them."""

import os

import pytest

from labkit.linux import overlay


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.skip("overlay mounts need root")


@pytest.fixture
def scratch(tmp_path):
    """A temp dir; anything left mounted under it is unmounted afterwards."""
    yield tmp_path
    top = str(tmp_path) + "/"
    for mp, _ in sorted(overlay.mounts(fstype=None), key=lambda m: -len(m[0])):
        if mp.startswith(top):
            overlay.unmount(mp)


@pytest.fixture
def home(scratch, monkeypatch):
    """LABKIT_HOME in the scratch dir."""
    h = scratch / "labkit-home"
    h.mkdir()
    monkeypatch.setenv("LABKIT_HOME", str(h))
    return h
