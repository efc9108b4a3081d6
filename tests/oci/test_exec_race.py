"""The `exec` window of CVE-2019-5736: while `labkit exec` (and
`labkit-runtime exec`) puts a host process into a container, before that
process execs the container's program, its /proc/PID/exe is the host's
interpreter. A process of the container that opened it then can write to it
once nothing runs it any more, through /proc/self/fd/N, and so replace the
host's binary (runc's escape). The guards: the host process is not dumpable
until its execve (labkit/linux/process.py not_dumpable), and until its
capabilities are dropped it has more than the container's, so the kernel
refuses the container's open either way.

The attacker is tests/oci/exewatch.c, compiled here, static, run inside the
container: it opens every exe it can and tries to write each one. The
interpreter that runs exec is a copy of this one, so that a broken guard
damages only the copy; its sha256 must not change."""

import hashlib
import os
import re
import shutil
import subprocess
import sys

import pytest

from proc_helper import wait_for

pytestmark = pytest.mark.root

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ROUNDS = int(os.environ.get("LABKIT_RACE_ROUNDS", "30"))
RESULT = re.compile(r"^opened (\d+) denied (\d+) wrote (\d+)$", re.M)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def exewatch(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (provision.sh --test-tools installs gcc)")
    out = tmp_path_factory.mktemp("exewatch") / "exewatch"
    subprocess.run([cc, "-static", "-O2", "-o", out, os.path.join(HERE, "exewatch.c")], check=True)
    return out.read_bytes()


@pytest.fixture
def interpreter(tmp_path):
    """A copy of this interpreter, to run exec with."""
    copy = tmp_path / "python-copy"
    shutil.copy2(os.path.realpath(sys.executable), copy)
    return str(copy), sha256(copy)


def verdict(output, python, before):
    """The watcher's last line: it ran, and wrote nothing; the copy is intact."""
    m = RESULT.search(output)
    assert m, f"the watcher printed no result: {output!r}"
    assert "wrote /proc" not in output and m.group(3) == "0", output
    assert sha256(python) == before, "the interpreter that ran exec changed"
    return f"exes opened {m.group(1)}, refused {m.group(2)}, written 0"


def test_labkit_exec(labkit_cli, rootfs, interpreter, exewatch):
    python, before = interpreter
    name = "exec-race"
    r = labkit_cli("run", "-d", "--name", name, "--", "sh", "-c",
                   "while [ ! -x /exewatch ]; do sleep 0.05; done; /exewatch 300 /tmp > /out; sleep 300")
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, PYTHONPATH=ROOT)
    try:
        put = subprocess.run([sys.executable, "-m", "labkit", "exec", "-i", name, "sh", "-c",
                              "cat > /exewatch.new && chmod +x /exewatch.new && mv /exewatch.new /exewatch"],
                             input=exewatch, env=env, capture_output=True, timeout=60)
        assert put.returncode == 0, put.stderr
        assert wait_for(lambda: labkit_cli("exec", name, "test", "-e", "/tmp/watching").returncode == 0, 30)
        for _ in range(ROUNDS):
            e = subprocess.run([python, "-m", "labkit", "exec", name, "true"], env=env, cwd="/",
                               capture_output=True, text=True, timeout=60)
            assert e.returncode == 0, e.stderr
        labkit_cli("exec", name, "touch", "/tmp/stop")
        assert wait_for(lambda: RESULT.search(labkit_cli("exec", name, "cat", "/out").stdout), 30)
        output = labkit_cli("exec", name, "cat", "/out").stdout
    finally:
        labkit_cli("rm", "-f", name)
    print(f"labkit exec x{ROUNDS}:", verdict(output, python, before))


def test_labkit_runtime_exec(bundle, interpreter, exewatch):
    python, before = interpreter
    path = os.path.join(bundle.path, "rootfs", "exewatch")
    with open(path, "wb") as f:
        f.write(exewatch)
    os.chmod(path, 0o755)
    try:
        # Its files in a tmpfs of its own: the bundle's root is read-only.
        bundle.config["mounts"].append({"destination": "/run/watch", "type": "tmpfs", "source": "watch",
                                        "options": ["size=1m"]})
        bundle.config["process"]["args"] = ["/exewatch", "300", "/run/watch"]
        r = bundle.create("exec-race-rt")
        assert r.returncode == 0, r.stderr
        bundle.runtime("start", "exec-race-rt", check=True)
        assert wait_for(lambda: bundle.runtime("exec", "exec-race-rt", "test", "-e", "/run/watch/watching")
                        .returncode == 0, 30)
        env = dict(os.environ, PYTHONPATH=ROOT)
        for _ in range(ROUNDS):
            e = subprocess.run([python, "-m", "labkit.cli.runtime", "exec", "exec-race-rt", "true"],
                               env=env, cwd=bundle.path, capture_output=True, text=True, timeout=60)
            assert e.returncode == 0, e.stderr
        bundle.runtime("exec", "exec-race-rt", "touch", "/run/watch/stop", check=True)
        assert wait_for(lambda: RESULT.search(bundle.output("exec-race-rt")), 30)
        print(f"labkit-runtime exec x{ROUNDS}:", verdict(bundle.output("exec-race-rt"), python, before))
    finally:
        bundle.runtime("delete", "--force", "exec-race-rt")
        os.unlink(path)
