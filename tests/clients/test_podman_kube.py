"""Kubernetes' own manifest on labkit-runtime: `podman play kube` of a
Deployment with replicas: 3 (podman 4.3 makes a pod per replica, each with
its infra container) runs every container through labkit-runtime, from
labkit's own image (copied into podman's private storage by skopeo), and
`podman kube down` leaves nothing."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from labkit.course.conformance.clients import Podman, labkit_runtime  # noqa: E402
from labkit.images import store  # noqa: E402

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not all(shutil.which(t) for t in ("podman", "conmon", "skopeo", "catatonit")),
                                 reason="needs podman, conmon, skopeo and catatonit")]

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: lab-web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: lab-web
  template:
    metadata:
      labels:
        app: lab-web
    spec:
      containers:
      - name: web
        image: localhost/labkit/base:latest
        command: ["sleep", "300"]
"""


def test_a_deployment_of_three_replicas_runs_on_labkit_runtime(rootfs, tmp_path):
    subprocess.run([sys.executable, "-m", "labkit", "images"], capture_output=True, check=True,
                   env=dict(os.environ, PYTHONPATH=ROOT))          # labkit/base, made on first use
    import tempfile
    top = tempfile.mkdtemp(prefix="lab-kube-")   # short: podman refuses a runroot over 50 characters
    pod = Podman(None, top=top)
    runtime = labkit_runtime()
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(DEPLOYMENT)
    try:
        r = subprocess.run(["skopeo", "copy", f"oci:{store.root()}:labkit/base:latest",
                            f"containers-storage:[vfs@{top}/root+{top}/run]localhost/labkit/base:latest"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        r = pod(runtime, "play", "kube", "--network", "none", str(manifest), timeout=240)
        assert r.returncode == 0, r.stderr
        names = [f"lab-web-pod-{i}-web" for i in range(3)]
        r = pod(runtime, "inspect", "--format", "{{.OCIRuntime}} {{.State.Status}} {{.State.Pid}}", *names)
        assert r.returncode == 0, r.stderr
        rows = [line.split() for line in r.stdout.splitlines() if line.strip()]
        assert [(os.path.basename(row[0]), row[1]) for row in rows] == [("labkit-runtime", "running")] * 3
        pids = [int(row[2]) for row in rows]
        for pid in pids:
            assert open(f"/proc/{pid}/cmdline").read().split("\0")[:2] == ["sleep", "300"]
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            assert open(f"/proc/{ppid}/comm").read().strip() == "conmon"     # no labkit process between
        assert len({os.readlink(f"/proc/{pid}/ns/pid") for pid in pids}) == 3   # three replicas, three pods
        r = pod(runtime, "kube", "down", str(manifest), timeout=120)
        assert r.returncode == 0, r.stderr
        assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)
    finally:
        pod.close(runtimes=())
