"""`labkit build`: a Containerfile into an image, each RUN a layer committed
from a real container, COPY from the context only, the cache hit for every
step of a second identical build; and `labkit commit ID IMAGE`."""

import io
import json
import os
import tarfile
import time

import pytest

from labkit.build import build as builder
from labkit.images import image, store
from test_images import labkit, ok

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CONTAINERFILE = """\
# a small image
FROM labkit/base
ARG GREETING=hi
ENV WHO=lab \\
    GREETING=${GREETING}
WORKDIR /srv
COPY hello.txt ./
COPY --chown=nobody app /opt/app/
ARG PAUSE=0
RUN sleep $PAUSE && echo "$GREETING from RUN" > /srv/run.txt && chmod +x /opt/app/run.sh
USER nobody
EXPOSE 8080
LABEL org.example.course=labkit
CMD ["sh", "-c", "cat hello.txt run.txt; echo $WHO; id -u; pwd; /opt/app/run.sh; stat -c %u /opt/app/run.sh"]
"""


@pytest.fixture
def context(tmp_path, rootfs):
    d = tmp_path / "ctx"
    (d / "app").mkdir(parents=True)
    (d / "hello.txt").write_text("hello from the context\n")
    (d / "app" / "run.sh").write_text("echo app ran\n")
    (d / "Containerfile").write_text(CONTAINERFILE)
    yield d
    for ref, _ in store.tags():
        if "lktest/" in ref:
            labkit("rmi", "-f", ref)
    builder.prune()


def timed_build(context, *extra):
    t = time.monotonic()
    r = labkit("build", "-t", "lktest/built:v1", *extra, str(context), timeout=600)
    assert r.returncode == 0, r.stderr
    return time.monotonic() - t, r.stderr.splitlines()


def test_build_run_and_the_cache(context):
    # The RUN step takes 6 s more here: a build from its cache must take a
    # tenth of that, a gap no slow machine closes by chance.
    first, lines = timed_build(context, "--no-cache", "--build-arg", "PAUSE=6")
    out = ok("run", "--rm", "lktest/built:v1").split("\n")
    assert out[:7] == ["hello from the context", "hi from RUN", "lab", "65534", "/srv", "app ran", "65534"]
    img = image.get("lktest/built:v1")
    c = img["config"]["config"]
    assert c["User"] == "nobody" and c["ExposedPorts"] == {"8080/tcp": {}}
    assert c["Labels"] == {"org.example.course": "labkit"} and "GREETING=hi" in c["Env"]
    assert not any(e.startswith("PAUSE=") for e in c["Env"])      # a RUN's ARG, not the image's
    base = image.get("labkit/base")
    # three layers on the base: two COPYs and the RUN; config-only steps make none
    assert len(img["manifest"]["layers"]) == len(base["manifest"]["layers"]) + 3
    assert img["manifest"]["layers"][:1] == base["manifest"]["layers"]
    history = img["config"]["history"]
    assert sum(1 for h in history if not h.get("empty_layer")) == len(img["manifest"]["layers"])
    second, lines = timed_build(context, "--build-arg", "PAUSE=6")
    steps = [line for line in lines if line.startswith("STEP")]
    assert all(line.endswith("(cached)") for line in steps if not line.split(": ", 1)[1].startswith(("FROM", "ARG")))
    assert store.lookup("lktest/built:v1")["digest"] == img["descriptor"]["digest"]   # the same image
    assert second < first / 10, (first, second)


def test_a_changed_file_rebuilds_from_its_step(context):
    timed_build(context)
    (context / "app" / "run.sh").write_text("echo changed\n")
    _, lines = timed_build(context)
    steps = [line for line in lines if line.startswith("STEP")]
    cached = [("(cached)" in line) for line in steps]
    at = next(i for i, line in enumerate(steps) if "COPY --chown" in line or "COPY app" in line)
    assert all(cached[2:at]) and not any(cached[at:])
    assert "changed" in ok("run", "--rm", "lktest/built:v1")


def _tar_with(path, name, data=b"x"):
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("text, words", [
    ("FROM labkit/base\nFROBNICATE x\n", "line 2: unknown instruction 'FROBNICATE'"),
    ("RUN true\n", "line 1: RUN before FROM"),
    ("FROM labkit/base\nCOPY ../outside.txt /x\n", "line 2: COPY ../outside.txt: outside the build context"),
    ("FROM labkit/base\nCOPY link-out /x\n", "outside the build context"),
    ("FROM labkit/base\nCOPY missing.txt /x\n", "no such file in the build context"),
    ("FROM labkit/base\nRUN echo failing; exit 3\n", "line 2: RUN /bin/sh -c echo failing; exit 3 exited 3"),
    ("FROM scratch\nRUN true\n", "RUN on scratch"),
    ("FROM lktest/nosuch:v1\n", "no such image"),
    ("FROM labkit/base\nADD evil.tar /\n", "evil.tar"),
    ("FROM labkit/base\nEXPOSE eighty\n", "line 2: EXPOSE eighty: not a port"),
    ("# only a comment\n", "no FROM instruction"),
])
def test_bad_containerfiles(tmp_path, rootfs, text, words):
    d = tmp_path / "ctx"
    d.mkdir()
    (tmp_path / "outside.txt").write_text("secret\n")
    os.symlink("/etc/passwd", d / "link-out")
    _tar_with(d / "evil.tar", "../../escaped")
    (d / "Containerfile").write_text(text)
    try:
        r = labkit("build", "-t", "lktest/bad:v1", str(d))
        lines = [line for line in r.stderr.splitlines() if line.startswith("labkit:")]
        assert r.returncode != 0 and lines and words in lines[-1], r.stderr
        assert "Traceback" not in r.stderr
        assert store.lookup("lktest/bad:v1") is None
        assert not (tmp_path / "escaped").exists()
    finally:
        builder.prune()
    assert not [c for c in os.listdir(os.path.join(os.environ.get("LABKIT_HOME", "/var/lib/labkit"), "containers"))
                if c.startswith("lkbuild-")]


def test_build_arg_must_be_declared(context):
    r = labkit("build", "-t", "lktest/x:v1", "--build-arg", "NOPE=1", str(context))
    assert r.returncode != 0 and "no ARG of that name" in r.stderr
    r = labkit("build", "-t", "lktest/x:v1", "--build-arg", "GREETING=hola", str(context), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "hola from RUN" in ok("run", "--rm", "lktest/x:v1")


def test_commit_a_container_to_an_image(rootfs):
    cid = ok("run", "-d", "labkit/base", "sh", "-c", "echo kept > /etc/committed; sleep 300").strip()
    try:
        for _ in range(50):
            if ok("exec", cid, "--", "cat", "/etc/committed").strip() == "kept":
                break
            time.sleep(0.1)
        digest = ok("commit", cid, "lktest/committed:v1").strip()
        assert store.lookup("lktest/committed:v1")["digest"] == digest
        assert ok("run", "--rm", "lktest/committed:v1", "cat", "/etc/committed").strip() == "kept"
        hist = json.loads(ok("image", "inspect", "lktest/committed:v1"))[0]["Config"]["history"]
        assert hist[-1]["created_by"].startswith(f"labkit commit {cid}")
    finally:
        ok("rm", "-f", cid)
        labkit("rmi", "-f", "lktest/committed:v1")


def test_a_run_sees_the_args_of_its_stage_as_docker_does(tmp_path, rootfs):
    """docker build's rules: an ARG before FROM is FROM's until declared
    again; ENV wins over an ARG of the same name; a changed --build-arg
    rebuilds the RUNs after it; no ARG is left in the image."""
    d = tmp_path / "ctx"
    d.mkdir()
    (d / "Containerfile").write_text(
        "ARG TOP=top\nFROM labkit/base\nARG TOP\nARG WHO=arg\nENV WHO=env\nARG LATE\n"
        'RUN echo "$TOP $WHO ${LATE:-unset}" > /out\nCMD ["cat", "/out"]\n')
    try:
        for late, says, cached in ((None, "top env unset", False), ("late", "top env late", False),
                                   ("late", "top env late", True)):
            r = labkit("build", "-t", "lktest/args:v1", *(["--build-arg", f"LATE={late}"] if late else []), str(d))
            assert r.returncode == 0, r.stderr
            run = next(line for line in r.stderr.splitlines() if line.startswith("STEP") and " RUN " in line)
            assert run.endswith("(cached)") == cached, r.stderr
            assert ok("run", "--rm", "lktest/args:v1").strip() == says
        env = image.get("lktest/args:v1")["config"]["config"]["Env"]
        assert "WHO=env" in env and not any(e.startswith(("TOP=", "LATE=")) for e in env)
    finally:
        labkit("rmi", "-f", "lktest/args:v1")
        builder.prune()
