"""The README's image commands, run as written."""

import os
import shutil

import pytest

from readme_helper import block_after, run_block, run_last

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("umoci"), reason="needs root and umoci")


def test_readme_image_commands(rootfs, tmp_path):
    lines = block_after("Images, with docker's commands:")
    try:
        out = run_block(lines, cwd=str(tmp_path))
        assert "ID=labkit" in out[lines[0]]
        assert "lab/mine:v1" in "".join(out.values())
    finally:
        run_last(lines, cwd=str(tmp_path))
    assert not os.path.exists(tmp_path / "bundle")
