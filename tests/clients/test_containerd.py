"""containerd drives labkit-runtime exactly as it drives runc: a private
containerd (its own config, socket, root and state in a temp dir, no CRI),
`ctr run --runtime io.containerd.runc.v2 --runc-binary …` with each binary,
and the task verbs the shim calls — exec, ps, pause, resume, kill — compared."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from labkit.course.conformance.clients import remove_cgroup_parent, unmount_below

LABKIT_RUNTIME = os.path.join(os.path.dirname(sys.executable), "labkit-runtime")
RUNC = shutil.which("runc") or "/usr/sbin/runc"

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def ctr(rootfs):
    if not shutil.which("containerd") or not shutil.which("ctr"):
        pytest.fail("containerd is missing: `make test` installs it (provision.sh --test-tools)")
    from labkit.images import builder
    from labkit.linux import files
    top = tempfile.mkdtemp(prefix="lab-ctd-")
    files.full_copy(builder.resolve(rootfs), os.path.join(top, "rootfs"))
    sock = os.path.join(top, "containerd.sock")
    with open(os.path.join(top, "config.toml"), "w") as f:
        f.write(f'version = 2\nroot = "{top}/root"\nstate = "{top}/state"\n'
                'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n')
    log = open(os.path.join(top, "log"), "w")
    daemon = subprocess.Popen(["containerd", "--config", os.path.join(top, "config.toml")],
                              stdout=log, stderr=log, start_new_session=True)
    for _ in range(200):                              # bounded: 10 s at most
        if os.path.exists(sock):
            break
        time.sleep(0.05)

    def call(*args, timeout=60):
        return subprocess.run(["ctr", "--address", sock, *args], capture_output=True, text=True, timeout=timeout)
    call.top, call.rootfs = top, os.path.join(top, "rootfs")
    try:
        assert call("version").returncode == 0, open(os.path.join(top, "log")).read()[-2000:]
        yield call
    finally:
        for cid in call("containers", "list", "-q").stdout.split():
            call("task", "kill", "-s", "SIGKILL", cid)
            call("task", "rm", "-f", cid)
            call("containers", "rm", cid)
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=20)
        subprocess.run(["pkill", "-f", f"containerd-shim-runc-v2 .*{top}"], capture_output=True)
        log.close()
        unmount_below(top)
        shutil.rmtree(top, ignore_errors=True)
        remove_cgroup_parent("default")


def run(ctr, binary, cid, *cmd, detach=False):
    return ctr("run", *(["-d"] if detach else ["--rm"]), "--runtime", "io.containerd.runc.v2",
               "--runc-binary", binary, "--rootfs", ctr.rootfs, cid, *cmd)


CASES = {
    "echo": ["/bin/echo", "hi"],
    "exit-3": ["/bin/sh", "-c", "exit 3"],
    "pid1-and-caps": ["/bin/sh", "-c", "echo $$; grep CapEff /proc/self/status"],
    "namespaces": ["/bin/sh", "-c", "hostname; ip -o link | cut -d: -f2"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_ctr_run_is_the_same_as_under_runc(ctr, name):
    mine = run(ctr, LABKIT_RUNTIME, f"l-{name}", *CASES[name])
    runc = run(ctr, RUNC, f"r-{name}", *CASES[name])
    assert mine.returncode == runc.returncode, (mine.stderr, runc.stderr)
    assert mine.stdout.replace("l-", "x-") == runc.stdout.replace("r-", "x-"), (mine.stderr, runc.stderr)


@pytest.mark.parametrize("binary", [LABKIT_RUNTIME, RUNC], ids=["labkit", "runc"])
def test_task_exec_ps_pause_resume_kill(ctr, binary):
    cid = "task-" + ("l" if binary == LABKIT_RUNTIME else "r")
    assert run(ctr, binary, cid, "/bin/sleep", "300", detach=True).returncode == 0
    try:
        ex = ctr("task", "exec", "--exec-id", "e1", cid, "/bin/sh", "-c", "echo in; exit 5")
        assert ex.returncode == 5 and ex.stdout == "in\n", ex.stderr
        ps = ctr("task", "ps", cid).stdout.splitlines()
        assert len(ps) == 2 and ps[0].split()[0] == "PID"
        assert ctr("task", "pause", cid).returncode == 0
        assert "PAUSED" in ctr("task", "ls").stdout
        assert ctr("task", "resume", cid).returncode == 0
        assert ctr("task", "kill", "-s", "SIGKILL", cid).returncode == 0
        for _ in range(100):
            if "STOPPED" in next((line for line in ctr("task", "ls").stdout.splitlines() if cid in line), ""):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the task never stopped")
    finally:
        ctr("task", "rm", "-f", cid)
        ctr("containers", "rm", cid)


def _comparable(stdout, cid, config):
    """A probe's output with what differs from run to run taken out: the
    container id, mount ids (the mount table as its shape, with the spec's
    named allowances applied, as tests/oci_matrix does), and every pid but 1."""
    from labkit.course.conformance import observe
    parts = observe.sections(stdout.replace(cid, "ID"))
    if not parts:
        return stdout.replace(cid, "ID")
    for name, text in parts.items():
        if name == "mounts":
            view = {"mounts": observe.mount_shape(text)}
            for allowed in observe.ALLOWED:
                allowed.normalize(view, config)
            parts[name] = view["mounts"]
        elif name == "ps":
            parts[name] = [" ".join(["1" if line.split()[0] == "1" else "N"] + line.split()[1:])
                           for line in text.splitlines() if line.split()]
    return parts


def _matrix():
    from labkit.course.conformance import bundles
    return [v.name for v in bundles.VARIANTS if "netns" not in v.needs]


@pytest.mark.parametrize("variant", _matrix())
def test_the_bundle_matrix_through_ctr_run_config(ctr, variant, tmp_path):
    """Each bundle of tests/oci_matrix, as a whole config.json (`ctr run
    --config`), under containerd's shim with each runtime: the same exit
    code and the same output."""
    import json
    from labkit.course.conformance import bundles
    cfg = bundles.config_for(variant, str(tmp_path))
    cfg["root"] = {"path": ctr.rootfs, "readonly": bool(cfg["root"].get("readonly"))}
    with open(tmp_path / "config.json", "w") as f:
        json.dump(cfg, f)
    seen = {}
    for tag, binary in (("labkit", LABKIT_RUNTIME), ("runc", RUNC)):
        cid = f"mx-{variant.replace('_', '-')}-{tag}"
        for attempt in (1, 2):
            r = ctr("run", "--rm", "--runtime", "io.containerd.runc.v2", "--runc-binary", binary,
                    "--config", str(tmp_path / "config.json"), cid)
            # ctr 1.6 may return before it has copied the output of a task
            # that exited at once (seen once in ~400 runs, with runc: exit 0,
            # nothing printed): one more run tells that from a real difference.
            if r.returncode != 0 or r.stdout.strip():
                break
        seen[tag] = (r.returncode, _comparable(r.stdout, cid, cfg), r.stderr[-500:])
    assert seen["labkit"][:2] == seen["runc"][:2], seen
