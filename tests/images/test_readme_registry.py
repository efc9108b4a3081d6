"""The README's registry commands, run as written (port 5000 on 127.0.0.1)."""

import os
import shutil
import socket

import pytest

from labkit.images import registry
from readme_helper import block_after, run_block, run_last


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker-registry"), reason="needs root and docker-registry")
def test_readme_registry_commands(rootfs, tmp_path):
    if not port_free(5000) or registry.status():
        pytest.skip("127.0.0.1:5000 is taken here: the README's commands use it")
    lines = block_after("Registries, with the distribution API")
    try:
        out = run_block(lines, cwd=str(tmp_path))
        assert '"lab/base"' in out[next(k for k in lines if "_catalog" in k)]
        assert '"v1"' in out[next(k for k in lines if "tags/list" in k)]
        assert "ID=labkit" in out[next(k for k in lines if "os-release" in k)]
    finally:
        run_last(lines, cwd=str(tmp_path), n=2)
        shutil.rmtree(registry.root(), ignore_errors=True)
    assert registry.status() is None
