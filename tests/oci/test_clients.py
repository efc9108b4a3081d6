"""What OCI clients ask a runtime besides create/start/delete, compared
with runc: `features` (its JSON shape and what it claims), and the error
texts clients match on word for word."""

import json
import shutil
import signal
import subprocess
import time

import pytest

from proc_helper import ignores, wait_for

pytestmark = pytest.mark.root


def keys(obj, prefix=""):
    if not isinstance(obj, dict):
        return set()
    out = set()
    for k, v in obj.items():
        out.add(prefix + k)
        out |= keys(v, prefix + k + ".")
    return out


def test_features_has_runcs_shape_and_claims_nothing_runc_lacks(bundle):
    if not shutil.which("runc"):
        pytest.fail("runc is missing: `make test` installs it")
    mine = json.loads(bundle.runtime("features", check=True).stdout)
    runc = json.loads(subprocess.run(["runc", "features"], capture_output=True, text=True, check=True).stdout)
    assert keys(mine) - {"annotations.io.github.seccomp.libseccomp.version"} <= keys(runc)
    assert set(mine["hooks"]) == set(runc["hooks"])
    assert set(mine["mountOptions"]) <= set(runc["mountOptions"])
    # labkit knows the time namespace (runtime spec 1.1), runc 1.1.5 does not yet.
    assert set(runc["linux"]["namespaces"]) <= set(mine["linux"]["namespaces"])
    assert set(mine["linux"]["namespaces"]) - set(runc["linux"]["namespaces"]) <= {"time"}
    assert set(mine["linux"]["capabilities"]) == set(runc["linux"]["capabilities"])
    sc, rsc = mine["linux"]["seccomp"], runc["linux"]["seccomp"]
    assert sc["enabled"] and set(sc["actions"]) <= set(rsc["actions"])
    assert set(sc["operators"]) == set(rsc["operators"])
    assert set(sc["archs"]) - {"SCMP_ARCH_RISCV64"} <= set(rsc["archs"])
    assert mine["annotations"]["io.github.seccomp.libseccomp.version"] == \
        runc["annotations"]["io.github.seccomp.libseccomp.version"]


def test_the_mount_options_it_claims_are_accepted(bundle, tmp_path):
    """Each option `features` lists mounts a tmpfs (or is refused by the
    kernel itself, never by labkit's validation)."""
    mine = json.loads(bundle.runtime("features", check=True).stdout)
    # One atime mode of the recursive ones: they are an enum in mount_setattr(2).
    atime = {"ratime", "rrelatime", "rnorelatime", "rstrictatime", "rnostrictatime"}
    options = [o for o in mine["mountOptions"] if o not in ("bind", "rbind", "remount") and o not in atime]
    bundle.config["mounts"].append({"destination": "/mnt", "type": "tmpfs", "source": "lab",
                                    "options": [o for o in options if o not in
                                                ("private", "rprivate", "shared", "rshared", "slave",
                                                 "rslave", "unbindable", "runbindable", "ro", "mand")]})
    bundle.config["process"]["args"] = ["true"]
    bundle.write()
    r = bundle.runtime("run", "feat-mnt")
    assert r.returncode == 0, r.stderr


def test_kill_of_a_stopped_container_says_container_not_running(bundle):
    bundle.config["process"]["args"] = ["true"]
    assert bundle.create("cl-kill").returncode == 0
    assert bundle.runtime("start", "cl-kill").returncode == 0
    wait_for(lambda: bundle.state("cl-kill")["status"] == "stopped")
    r = bundle.runtime("kill", "cl-kill", "KILL")
    assert r.returncode != 0 and "container not running" in r.stderr
    missing = bundle.runtime("kill", "cl-nope", "KILL")
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    assert bundle.runtime("delete", "cl-kill").returncode == 0


def utime(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[11])


def runc_state(cid, root):
    return json.loads(subprocess.run(["runc", "--root", root, "state", cid], capture_output=True,
                                     text=True).stdout or "{}")


@pytest.mark.parametrize("runtime", ["labkit", "runc"])
def test_pause_freezes_and_resume_thaws(bundle, tmp_path, runtime):
    """The same busy loop under both runtimes: its cpu time stands still
    while paused, and moves again after resume; the state says paused."""
    import os
    bundle.config["process"]["args"] = ["sh", "-c", "while :; do :; done"]
    bundle.config["linux"]["resources"]["pids"] = {"limit": 10}
    cid = f"cl-pause-{runtime}"
    if runtime == "labkit":
        assert bundle.create(cid).returncode == 0
        call = lambda *a: bundle.runtime(*a)                          # noqa: E731
        state = lambda: bundle.state(cid)                              # noqa: E731
    else:
        root = str(tmp_path / "runc")
        bundle.config["root"] = {"path": os.path.realpath(os.path.join(bundle.path, "rootfs"))}
        bundle.write()
        with open(tmp_path / "log", "w") as log:
            subprocess.run(["runc", "--root", root, "create", "--bundle", bundle.path, cid], check=True,
                           stdout=log, stderr=log)
        call = lambda *a: subprocess.run(["runc", "--root", root, *a], capture_output=True, text=True)  # noqa
        state = lambda: runc_state(cid, root)                          # noqa: E731
    try:
        assert call("start", cid).returncode == 0
        pid = state()["pid"]
        assert call("pause", cid).returncode == 0
        assert state()["status"] == "paused"
        before = utime(pid)
        time.sleep(0.3)                    # a measurement window: frozen, it gets no CPU time
        assert utime(pid) == before
        assert call("resume", cid).returncode == 0
        assert state()["status"] == "running"
        assert wait_for(lambda: utime(pid) > before)
        again = call("resume", cid)
        assert again.returncode != 0
    finally:
        call("delete", "-f", cid)


def test_ps_lists_the_containers_processes(bundle):
    bundle.config["process"]["args"] = ["sh", "-c", "sleep 30 & sleep 30"]
    bundle.config["linux"]["resources"]["pids"] = {"limit": 10}
    assert bundle.create("cl-ps").returncode == 0
    try:
        assert bundle.runtime("start", "cl-ps").returncode == 0

        def ps():
            return json.loads(bundle.runtime("ps", "--format", "json", "cl-ps").stdout)
        assert wait_for(lambda: len(ps()) == 3)
        pids = ps()
        assert bundle.state("cl-ps")["pid"] in pids and len(pids) == 3     # sh and its two sleeps
        table = bundle.runtime("ps", "cl-ps", "-o", "pid,comm").stdout.splitlines()
        assert table[0].split() == ["PID", "COMMAND"]
        assert sorted(int(line.split()[0]) for line in table[1:]) == sorted(pids)
    finally:
        bundle.runtime("delete", "-f", "cl-ps")


def test_update_changes_the_limits_of_a_running_container(bundle):
    from labkit.linux.cgroups import hierarchy
    import os
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.config["linux"]["resources"]["memory"] = {"limit": 64 << 20}
    bundle.config["linux"]["resources"]["pids"] = {"limit": 10}
    assert bundle.create("cl-upd").returncode == 0
    try:
        layout = hierarchy.detect()
        mem = os.path.join(layout.v1["memory"] if layout.version == 1 else layout.v2, "labkit", "cl-upd")
        pids = os.path.join(layout.v1["pids"] if layout.version == 1 else layout.v2, "labkit", "cl-upd")
        limit = "memory.limit_in_bytes" if layout.version == 1 else "memory.max"
        assert bundle.runtime("update", "--memory", "32m", "--pids-limit", "7", "cl-upd").returncode == 0
        assert int(open(os.path.join(mem, limit)).read()) == 32 << 20
        assert open(os.path.join(pids, "pids.max")).read().strip() == "7"
        r = bundle.runtime("update", "--resources", "-", "cl-upd", input=json.dumps({"pids": {"limit": 5}}))
        assert r.returncode == 0 and open(os.path.join(pids, "pids.max")).read().strip() == "5"
        bad = bundle.runtime("update", "--pids-limit", "many", "cl-upd")
        assert bad.returncode != 0 and "--pids-limit" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        bundle.runtime("delete", "-f", "cl-upd")


# The children first: an ignored signal stays ignored in what is forked after.
TRAP = ["sh", "-c", "sleep 300 & sleep 301 & trap '' TERM; wait; sleep 302"]


@pytest.mark.parametrize("flags, children_left", [([], True), (["--all"], False)], ids=["init", "all"])
def test_kill_all_reaches_every_process(bundle, flags, children_left):
    """TERM to the init alone (it ignores it) leaves its children; --all
    sends it to every process of the container, as runc's does."""
    bundle.config["process"]["args"] = TRAP
    bundle.config["linux"]["resources"]["pids"] = {"limit": 10}
    cid = "cl-killall-" + ("a" if flags else "i")
    assert bundle.create(cid).returncode == 0

    def ps():
        return json.loads(bundle.runtime("ps", "--format", "json", cid).stdout)
    try:
        assert bundle.runtime("start", cid).returncode == 0
        init = bundle.state(cid)["pid"]
        # Both sleeps forked, and the init's trap set: TERM is ignored from now on.
        assert wait_for(lambda: len(ps()) == 3 and ignores(init, signal.SIGTERM))
        before = [p for p in ps() if p != init]
        assert bundle.runtime("kill", *flags, cid, "TERM").returncode == 0
        # An ignored signal is dropped when it is sent, so with the init
        # alone nothing is left to wait for; --all: the sleeps die.
        if not children_left:
            assert wait_for(lambda: not set(before) & set(ps())), ps()
        sleeps = [p for p in ps() if p in before]
        assert bool(sleeps) is children_left, (before, ps())
    finally:
        bundle.runtime("delete", "-f", cid)


def test_log_format_json_gets_the_error_as_runc_writes_it(bundle, tmp_path):
    """podman passes --log FILE --log-format json and shows the error it finds there."""
    bundle.config["linux"]["rootfsPropagation"] = "shared"       # refused at create
    bundle.write()
    log = tmp_path / "oci-log"
    r = bundle.runtime("--log", str(log), "--log-format", "json", "run", "cl-log")
    assert r.returncode != 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries and entries[-1]["level"] == "error" and "rootfsPropagation" in entries[-1]["msg"]
    assert set(entries[-1]) >= {"level", "msg", "time"}


def test_version_names_the_runtime_and_the_spec(bundle):
    r = bundle.runtime("--version", check=True)
    assert r.stdout.splitlines()[0].startswith("labkit-runtime version ")
    assert "spec: 1.0.2" in r.stdout


def test_version_has_the_lines_runc_has(bundle):
    """dockerd's `docker info` reads a runtime's version as runc prints it:
    "NAME version V", "commit: C", "spec: S", one a line, split on spaces."""
    ours = bundle.runtime("--version", check=True).stdout.splitlines()
    keys = lambda lines: [line.split(" ")[0].rstrip(":") if ":" in line.split(" ")[0] else line.split(" ")[1]  # noqa: E731
                          for line in lines if line.split(" ")[0] in ("commit:", "spec:") or " version " in line]
    assert keys(ours) == ["version", "commit", "spec"]
    assert all(len(line.split(" ")) == 2 for line in ours[1:])
    if shutil.which("runc"):
        theirs = subprocess.run(["runc", "--version"], capture_output=True, text=True, check=True).stdout
        assert keys(ours) == keys(theirs.splitlines())


def test_exec_process_file_detached_with_a_pid_file(bundle, tmp_path):
    """containerd's shim execs this way: the process as a JSON file, detached,
    its pid in a file; the process is inside the container's namespaces."""
    import os
    bundle.config["process"]["args"] = ["sleep", "30"]
    assert bundle.create("cl-proc").returncode == 0
    try:
        assert bundle.runtime("start", "cl-proc").returncode == 0
        process = dict(bundle.config["process"], args=["sleep", "7"], env=["PATH=/bin:/usr/bin", "LAB=1"])
        (tmp_path / "p.json").write_text(json.dumps(process))
        pid_file = tmp_path / "pid"
        # Files for its stdio, not pipes: the detached process keeps them (runc's pass-through).
        r = bundle.detached("exec", "--process", str(tmp_path / "p.json"), "-d", "--pid-file", str(pid_file),
                            "cl-proc")
        assert r.returncode == 0, r.stderr
        pid = int(pid_file.read_text())
        init = bundle.state("cl-proc")["pid"]
        assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")
        assert open(f"/proc/{pid}/cmdline").read().split("\0")[:2] == ["sleep", "7"]
        assert b"LAB=1" in open(f"/proc/{pid}/environ", "rb").read()
    finally:
        bundle.runtime("delete", "-f", "cl-proc")


def test_empty_security_labels_are_absent(bundle):
    """podman writes apparmorProfile and selinuxLabel even where they are
    empty: empty is absent; set, they are refused in one line."""
    bundle.config["process"].update(apparmorProfile="", selinuxLabel="")
    bundle.config["linux"]["mountLabel"] = ""
    bundle.write()
    assert bundle.runtime("run", "cl-labels").returncode == 0
    bundle.config["process"]["apparmorProfile"] = "docker-default"
    bundle.write()
    r = bundle.runtime("run", "cl-labels2")
    assert r.returncode != 0 and "process.apparmorProfile" in r.stderr and "Traceback" not in r.stderr
