"""The README's build commands, run as written."""

import os

import pytest

from readme_helper import block_after, run_block, run_last

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_readme_build_commands(rootfs, tmp_path):
    lines = block_after("Builds, from a Containerfile")
    try:
        out = run_block(lines, cwd=str(tmp_path))
        assert out[next(k for k in lines if k.startswith("sudo labkit run"))].split("\n")[0] == "hello from a build"
    finally:
        run_last(lines, cwd=str(tmp_path))
    assert not (tmp_path / "demo").exists()
