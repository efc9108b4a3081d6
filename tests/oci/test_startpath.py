"""The start path is fenced: a container started by `labkit run` or
`labkit-runtime run` imports none of the modules labkit/startpath.py keeps
off it. Each run is started the way the venv's launchers start labkit
(python -IS, the checkout first on sys.path, the venv's packages last), under
-X importtime, which lists every module the monitor and the container's
processes imported before the exec of /bin/true."""

import os
import subprocess
import sys
import sysconfig
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What labkit/startpath.py says the start path does without.
FENCED = ("json", "re", "enum", "argparse", "dataclasses", "threading", "shutil", "signal",
          "_socket", "socket", "resource")

LAUNCHER = """import os, sys
sys.path.insert(0, {root!r})
sys.path.append({site!r})
from labkit.{module} import main
code = main()
sys.stdout.flush(); sys.stderr.flush()
os._exit(code)
"""


def imported(tmp_path, module, *args, cwd="/"):
    script = tmp_path / f"launch-{module}.py"
    script.write_text(LAUNCHER.format(root=ROOT, module=module, site=sysconfig.get_path("purelib")))
    r = subprocess.run([sys.executable, "-IS", "-X", "importtime", str(script), *args],
                       capture_output=True, text=True, cwd=cwd, timeout=60)
    names = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return r, names


@pytest.mark.root
def test_labkit_run_imports_nothing_fenced(rootfs, tmp_path):
    r, names = imported(tmp_path, "cli", "run", "--rm", "--", "/bin/true")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "labkit.runtime.monitor" in names and "labkit.rootfs" in names   # the list is real
    assert sorted(set(FENCED) & names) == []


@pytest.mark.root
def test_labkit_runtime_run_imports_nothing_fenced(bundle, tmp_path):
    bundle.config["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    bundle.write()
    # The first run of a config.json checks it against the spec's JSON schema
    # (jsonschema imports json) and caches the result: the start path is the
    # second run of the same config, as in `make bench`.
    bundle.runtime("run", "sp-warm", check=True)
    cid = f"sp-{uuid.uuid4().hex[:8]}"
    bundle.ids.append(cid)
    r, names = imported(tmp_path, "runtime_cli", "run", cid, cwd=bundle.path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "labkit.runtime.init" in names and "labkit.cgroups" in names
    assert sorted(set(FENCED) & names) == []
