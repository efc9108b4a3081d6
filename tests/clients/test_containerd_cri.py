"""labkit-runtime as a Kubernetes runtime handler: a private containerd with
its CRI plugin on, whose config names a handler `labkit` (the runc v2 shim
with BinaryName = labkit-runtime), driven over CRI (runtime.v1 gRPC) as a
kubelet would for a pod with `runtimeClassName: labkit`: RunPodSandbox,
CreateContainer, StartContainer, ContainerStatus, then Stop/Remove of both.
The pod uses the host network, so no CNI plugin is needed; its images are
imported from labkit's store, so nothing is pulled."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from labkit.course.conformance.clients import remove_cgroup_parent, unmount_below

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cri_client  # noqa: E402
from proc_helper import wait_for  # noqa: E402

LABKIT_RUNTIME = os.path.join(os.path.dirname(sys.executable), "labkit-runtime")
BASE_IMAGE = "docker.io/lab-cri/base:1"
PAUSE_IMAGE = "docker.io/lab-cri/pause:1"
SNAPSHOTTER = "overlayfs"

pytestmark = pytest.mark.root


def _pause_layout(top):
    """An OCI layout in ``top`` with labkit/base as `base` and, beside it,
    `pause`: the same layers with a config whose Cmd is `sleep 3600` (the
    sandbox container needs a command and the base image has none). Made
    here rather than with `labkit build` so that no tag is left in labkit's
    store."""
    from labkit.images import store
    layout = os.path.join(top, "layout")
    r = subprocess.run(["skopeo", "copy", "-q", f"oci:{store.root()}:labkit/base:latest", f"oci:{layout}:base"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"skopeo could not read labkit/base from {store.root()}: {r.stderr}"

    def blob(digest):
        return os.path.join(layout, "blobs", *digest.split(":"))

    def put(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(blob(digest), "wb") as f:
            f.write(data)
        return digest

    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    base = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "base")
    with open(blob(base["digest"])) as f:
        manifest = json.load(f)
    with open(blob(manifest["config"]["digest"])) as f:
        config = json.load(f)
    config.setdefault("config", {})["Cmd"] = ["/bin/sleep", "3600"]
    config["config"].pop("Entrypoint", None)
    data = json.dumps(config).encode()
    manifest["config"].update(digest=put(data), size=len(data))
    data = json.dumps(manifest).encode()
    index["manifests"].append({**base, "digest": put(data), "size": len(data),
                               "annotations": {"org.opencontainers.image.ref.name": "pause"}})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    return layout


def _config(top, sock):
    # Everything containerd and its CRI plugin keep is under top: root, state,
    # the shims' runtime root (Root), CNI dirs (empty: host network only),
    # the stream server on an ephemeral loopback port, no AppArmor profile
    # loaded into the host's kernel, and oom_score_adj no lower than
    # containerd's own (the sandbox's -998 needs CAP_SYS_RESOURCE, which a
    # root in a container or VM sandbox may lack).
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    runtimes = f"{cri}.containerd.runtimes"
    return f"""version = 2
root = "{top}/root"
state = "{top}/state"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{top}/opt"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_selinux = false
  restrict_oom_score_adj = true
[{cri}.containerd]
  snapshotter = "{SNAPSHOTTER}"
  default_runtime_name = "runc"
[{runtimes}.runc]
  runtime_type = "io.containerd.runc.v2"
[{runtimes}.runc.options]
  Root = "{top}/runc"
[{runtimes}.labkit]
  runtime_type = "io.containerd.runc.v2"
[{runtimes}.labkit.options]
  BinaryName = "{LABKIT_RUNTIME}"
  Root = "{top}/runc"
[{cri}.cni]
  bin_dir = "{top}/cni/bin"
  conf_dir = "{top}/cni/conf"
"""


def _shims(sock):
    """Pids of the shims this containerd started (their -address is ours)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock.encode() in argv:
            pids.append(int(pid))
    return pids


def _mounts_below(top):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(top + "/")]


@pytest.fixture(scope="module")
def cri(base_image):
    for tool in ("containerd", "ctr", "skopeo", "containerd-shim-runc-v2"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: `make test` installs it (provision.sh --test-tools)")
    pytest.importorskip("grpc", reason="grpcio is in requirements.txt: pip install -r requirements.txt")
    top = tempfile.mkdtemp(prefix="lab-cri-")
    sock = os.path.join(top, "containerd.sock")
    cgroup_parent = os.path.basename(top)          # unique: the pod's cgroup parent, removed at the end
    for d in ("cni/bin", "cni/conf", "logs"):
        os.makedirs(os.path.join(top, d))
    with open(os.path.join(top, "config.toml"), "w") as f:
        f.write(_config(top, sock))
    log = open(os.path.join(top, "log"), "w")
    daemon = subprocess.Popen(["containerd", "--config", os.path.join(top, "config.toml")],
                              stdout=log, stderr=log, start_new_session=True)

    def ctr(*args, timeout=120):
        return subprocess.run(["ctr", "--address", sock, "-n", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout)

    def daemon_log():
        with open(os.path.join(top, "log")) as f:
            return f.read()[-3000:]

    client = None
    try:
        layout = _pause_layout(top)
        wait_for(lambda: os.path.exists(sock) or daemon.poll() is not None, timeout=10)
        assert os.path.exists(sock), f"containerd did not start: {daemon_log()}"
        # Into the k8s.io namespace (the one CRI uses), unpacked for CRI's snapshotter.
        for name, ref in (("base", BASE_IMAGE), ("pause", PAUSE_IMAGE)):
            archive = os.path.join(top, f"{name}.tar")
            r = subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:{name}", f"oci-archive:{archive}:{ref}"],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            r = ctr("images", "import", "--snapshotter", SNAPSHOTTER, archive)
            assert r.returncode == 0, f"ctr import {name}: {r.stderr}"
        names = ctr("images", "ls", "-q").stdout.split()
        assert BASE_IMAGE in names and PAUSE_IMAGE in names, f"imported images are named {names}"
        client = cri_client.RuntimeService(sock)
        version = client.version()
        assert version["runtime_api_version"] == "v1", version
        client.top, client.sock, client.cgroup_parent, client.ctr = top, sock, cgroup_parent, ctr
        client.daemon_log = daemon_log
        yield client
    finally:
        if client is not None:                        # what a failed test left, as a kubelet would remove it
            try:
                for sid in client.list_pod_sandbox():
                    client.stop_pod_sandbox(sid)
                    client.remove_pod_sandbox(sid)
            except Exception as e:                    # noqa: BLE001 — go on cleaning whatever happened
                sys.stderr.write(f"CRI cleanup: {e}\n")
            client.close()
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
        for pid in _shims(sock):                      # shims outlive containerd by design
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        root = os.path.join(top, "runc", "k8s.io")
        if os.path.isdir(root):                       # and so may their containers
            for cid in subprocess.run([LABKIT_RUNTIME, "--root", root, "list", "-q"],
                                      capture_output=True, text=True).stdout.split():
                subprocess.run([LABKIT_RUNTIME, "--root", root, "delete", "--force", cid], capture_output=True)
        log.close()
        unmount_below(top)
        shutil.rmtree(top, ignore_errors=True)
        remove_cgroup_parent(cgroup_parent)


def _wait(what, check, timeout=10):
    """check() until it returns something true (that value), at most ``timeout`` s."""
    found = []
    if not wait_for(lambda: found.append(check()) or found[-1], timeout):
        pytest.fail(f"timed out waiting for {what}")
    return found[-1]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_pod_runs_under_the_labkit_runtime_handler(cri):
    runtime_root = os.path.join(cri.top, "runc", "k8s.io")   # the shim's Root plus the namespace

    def labkit(*args):
        return subprocess.run([LABKIT_RUNTIME, "--root", runtime_root, *args],
                              capture_output=True, text=True, timeout=30)

    sandbox = cri_client.sandbox_config("lab-pod", "lab-pod-uid-1", f"/{cri.cgroup_parent}",
                                        os.path.join(cri.top, "logs"))
    sid = cri.run_pod_sandbox(sandbox, "labkit")
    status = cri.pod_sandbox_status(sid)
    assert status["state"] == "READY" and status["runtime_handler"] == "labkit", status

    cid = cri.create_container(sid, cri_client.container_config(
        "sleeper", BASE_IMAGE, ["/bin/sleep", "300"], "sleeper.log"), sandbox)
    cri.start_container(cid)
    st = _wait("the container to be RUNNING", lambda: (s := cri.container_status(cid))["state"] == "RUNNING" and s)
    assert st["id"] == cid, st

    # On the host: labkit-runtime, not runc, holds both the pod's sandbox and
    # the container — its own state under the shim's root says so.
    listed = labkit("list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    states = {s["id"]: s for s in json.loads(listed.stdout)}
    assert {sid, cid} <= set(states), f"labkit-runtime list under {runtime_root}: {sorted(states)}"
    state = labkit("state", cid)
    assert state.returncode == 0, state.stderr
    state = json.loads(state.stdout)
    assert state["status"] == "running", state
    pid, sandbox_pid = state["pid"], states[sid]["pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"/bin/sleep", b"300"], "the container's process is not the sleep"
    # Its parent is a shim of this containerd (labkit-runtime's init exec'd the command).
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().split(") ")[-1].split()[1])
    assert ppid in _shims(cri.sock), f"pid {pid}'s parent {ppid} is not one of our shims"
    # The kubelet-style cgroup parent was used as a path (cgroupfs driver).
    with open(f"/proc/{pid}/cgroup") as f:
        cgroups = f.read()
    assert f"/{cri.cgroup_parent}/{cid}" in cgroups, cgroups
    # CRI joins the container to the sandbox's IPC, UTS and PID namespaces by path.
    for ns in ("ipc", "uts", "pid"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{sandbox_pid}/ns/{ns}"), \
            f"the container is not in the sandbox's {ns} namespace"
    # Host network: the node's network namespace.
    assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net"), "the pod is not on the host network"

    cri.stop_container(cid, timeout=5)
    assert cri.container_status(cid)["state"] == "EXITED"
    cri.remove_container(cid)
    cri.stop_pod_sandbox(sid)
    cri.remove_pod_sandbox(sid)
    assert cri.list_containers() == [] and cri.list_pod_sandbox() == [], "CRI still lists the pod"

    # Nothing of the pod is left: processes, labkit state, mounts, cgroups.
    _wait("the container and sandbox processes to go", lambda: not _alive(pid) and not _alive(sandbox_pid))
    assert json.loads(labkit("list", "--format", "json").stdout or "[]") == [], "labkit-runtime still has state"
    _wait("the pod's mounts to go",
          lambda: not [m for m in _mounts_below(cri.top) if sid in m or cid in m], timeout=5)
    from labkit.linux.cgroups import hierarchy
    layout = hierarchy.detect()
    for base in list(layout.v1_mounts) + ([layout.v2] if layout.v2 else []):
        parent = os.path.join(base, cri.cgroup_parent)
        left = [c for c in os.listdir(parent) if os.path.isdir(os.path.join(parent, c))] \
            if os.path.isdir(parent) else []
        assert not left, f"cgroups left under {parent}: {left}"
