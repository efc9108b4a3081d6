"""Stage 7 facts: images and registries, measured with sha256sum, curl,
skopeo, umoci and runc beside labkit. Each fact removes what it made (tags
named lab07-facts/..., the build cache it filled, the registry it started)."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

from labkit import api
from labkit.images import image, registry, store
from labkit.course.facts import fact
from labkit.i18n import _

LAYER = "7 images"
PREFIX = "lab07-facts"
CONTAINERFILE = """\
FROM labkit/base
COPY greeting.txt /srv/greeting.txt
RUN wc -c < /srv/greeting.txt > /srv/size
RUN echo built by RUN >> /srv/greeting.txt
CMD ["sh", "-c", "cat /srv/greeting.txt; echo bytes: $(cat /srv/size)"]
"""


def sh(cmd, timeout=120):
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PATH=os.path.dirname(api.labkit_argv()[0]) + ":" + os.environ["PATH"]))


def labkit(*args, check=True):
    return api.call(list(args), check=check, timeout=600)


def anatomy():
    """labkit/base: an index entry -> a manifest -> a config and a layer, each
    named by the sha256 of its bytes (sha256sum says the same)."""
    labkit("images")
    img = image.get(image.BASE)
    blobs = [("manifest", img["descriptor"]["digest"]), ("config", img["manifest"]["config"]["digest"])] + \
            [(f"layer {i}", layer["digest"]) for i, layer in enumerate(img["manifest"]["layers"])]
    checked = []
    for what, digest in blobs:
        path = store.blob_path(digest)
        out = sh(f"sha256sum {path}").stdout.split()
        checked.append({"what": what, "digest": digest, "sha256sum": "sha256:" + out[0] if out else None,
                        "shell": f"sha256sum {path}"})
    ok = all(c["digest"] == c["sha256sum"] for c in checked)
    return fact("img_anatomy", LAYER, _("every blob's name is the sha256 of its bytes (sha256sum agrees)"),
                [f"{c['what']}: {c['digest'][:19]}…" for c in checked], "sha256sum: the same", ok,
                checked=checked, manifest=img["manifest"], config=img["config"],
                index_entry=img["descriptor"], layout=store.root())


def _context(text="hello from the lab\n"):
    d = tempfile.mkdtemp(prefix="lab07-ctx-")
    with open(os.path.join(d, "greeting.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(d, "Containerfile"), "w") as f:
        f.write(CONTAINERFILE)
    return d


def build_and_cache():
    """A Containerfile's RUNs each become a layer; built again, every step is cached."""
    ctx = _context()
    ref = f"{PREFIX}/hello:v1"
    try:
        t = time.monotonic()
        first = labkit("build", "--no-cache", "-t", ref, ctx)
        t1 = time.monotonic() - t
        t = time.monotonic()
        second = labkit("build", "-t", ref, ctx)
        t2 = time.monotonic() - t
        out = labkit("run", "--rm", ref).stdout
        img, base = image.get(ref), image.get(image.BASE)
        history = [h.get("created_by", "") for h in img["config"]["history"]]
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    steps = [line for line in second.stderr.splitlines() if line.startswith("STEP")]
    cached = [line for line in steps if line.endswith("(cached)")]
    added = len(img["manifest"]["layers"]) - len(base["manifest"]["layers"])
    return fact("img_build", LAYER, _("COPY and each RUN make a layer; a second build hits the cache at every step"),
                out.strip().splitlines(), f"{added} layers on labkit/base; {len(cached)}/{len(steps) - 1} steps cached",
                added == 3 and len(cached) == len(steps) - 1 and "bytes: 19" in out,
                first_steps=[line for line in first.stderr.splitlines() if line.startswith("STEP")],
                second_steps=steps, seconds=[round(t1, 2), round(t2, 2)], history=history, ref=ref,
                shell=[f"sudo labkit build --no-cache -t {ref} DIR", f"sudo labkit build -t {ref} DIR"])


def _port():
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", registry.DEFAULT_PORT))
            return registry.DEFAULT_PORT
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


class lab_registry:
    """The lab registry for one fact: started (on 5000, or a free port when
    5000 is taken), stopped and its storage removed at the end; or, when it
    was running already (a student's, 07.push's), left running without the
    repositories the facts pushed (lab07-facts/...), as 07.push's reset
    removes its own."""

    def __enter__(self):
        st = registry.status()
        self.mine = st is None
        if self.mine:
            port = _port()
            labkit("registry", "start", "--port", str(port))
            st = registry.status()
        self.address = st["address"]
        return self

    def __exit__(self, *exc):
        if self.mine:
            labkit("registry", "stop", check=False)
            shutil.rmtree(registry.root(), ignore_errors=True)
        else:
            shutil.rmtree(registry.root("data", "docker", "registry", "v2", "repositories", PREFIX),
                          ignore_errors=True)


def push_pull(ref):
    """Push the built image; look at it with curl on the v2 API; remove it
    here, pull it back, run it."""
    with lab_registry() as reg:
        remote = f"{reg.address}/{PREFIX}/hello:v1"
        labkit("tag", ref, remote)
        push = labkit("push", remote)
        curl = {}
        for what, path in (("catalog", "/v2/_catalog"), ("tags", f"/v2/{PREFIX}/hello/tags/list")):
            cmd = f"curl -s http://{reg.address}{path}"
            curl[what] = {"shell": cmd, "out": sh(cmd).stdout.strip()}
        cmd = (f"curl -s -H 'Accept: {store.MEDIA_MANIFEST}' http://{reg.address}/v2/{PREFIX}/hello/manifests/v1")
        manifest = sh(cmd).stdout
        curl["manifest"] = {"shell": cmd + " | sha256sum", "out": "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()}
        local = store.lookup(remote)["digest"]
        labkit("rmi", remote)
        pull = labkit("pull", remote)
        run = labkit("run", "--rm", remote).stdout.strip().splitlines()
        labkit("rmi", remote)
    catalog = json.loads(curl["catalog"]["out"] or "{}").get("repositories", [])
    return fact("img_push_pull", LAYER, _("push, the registry's v2 API, rmi, pull, run: the same image by digest"),
                run, {k: v["out"] for k, v in curl.items()},
                f"{PREFIX}/hello" in catalog and curl["manifest"]["out"] == local and run[:1] == ["hello from the lab"],
                curl=curl, digest=local, push=push.stderr.strip().splitlines(), pull=pull.stderr.strip().splitlines(),
                remote=remote)


def tampered(ref):
    """One byte of a layer changed in the registry's storage: pull refuses it, nothing is stored."""
    with lab_registry() as reg:
        remote = f"{reg.address}/{PREFIX}/tamper:v1"
        labkit("tag", ref, remote)
        labkit("push", remote)
        layer = image.get(remote)["manifest"]["layers"][-1]["digest"]
        labkit("rmi", remote)
        kept = store.has(layer)            # still used by the built image here?
        data = os.path.join(registry.root("data"), "docker", "registry", "v2", "blobs", "sha256", layer[7:9],
                            layer[7:], "data")
        with open(data, "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 0xFF]))
        if kept:   # the local copy would be used as is: remove the image and the build steps that hold it
            labkit("rmi", ref)
            labkit("builder", "prune")
        r = labkit("pull", remote, check=False)
        stored = store.has(layer) or store.lookup(remote) is not None
    return fact("img_tampered", LAYER, _("a blob changed in the registry: pull refuses it and stores nothing"),
                (r.stderr.strip().splitlines() or [""])[-1], f"stored afterwards: {stored}",
                r.returncode != 0 and layer in r.stderr and not stored, blob=layer)


def runc_runs(ref):
    """The same image, taken by skopeo from labkit's store, unpacked by umoci, run by runc."""
    tools = [t for t in ("skopeo", "umoci", "runc") if not shutil.which(t)]
    if tools:
        return fact("img_runc", LAYER, _("skopeo + umoci + runc run labkit's image"), f"missing: {tools}", "", True,
                    applies=False)
    work = tempfile.mkdtemp(prefix="lab07-runc-")
    try:
        cmds = [f"skopeo copy oci:{store.root()}:{ref} oci:{work}/layout:hello",
                f"umoci unpack --image {work}/layout:hello {work}/bundle"]
        for cmd in cmds:
            r = sh(cmd)
            if r.returncode != 0:
                return fact("img_runc", LAYER, _("skopeo + umoci + runc run labkit's image"), r.stderr.strip()[:200],
                            "", False, applies=True, shell=cmds)
        cfg_path = os.path.join(work, "bundle", "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["process"]["terminal"] = False
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        run = f"runc --root {work}/runc run -b {work}/bundle lab07-runc < /dev/null"
        r = sh(run)
        cmds.append(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = r.stdout.strip().splitlines()
    return fact("img_runc", LAYER, _("skopeo + umoci + runc run labkit's image, with its CMD"), out, "runc",
                r.returncode == 0 and out[:1] == ["hello from the lab"], applies=True, shell=cmds)


def shared():
    """Two images FROM labkit/base: one copy of the base layer on disk, one
    unpacked directory, stacked by both (the figure)."""
    refs = [f"{PREFIX}/one:v1", f"{PREFIX}/two:v1"]
    ctxs = [_context("one\n"), _context("two\n")]
    try:
        for ref, ctx in zip(refs, ctxs):
            labkit("build", "-t", ref, ctx)
        imgs = [image.get(r) for r in [image.BASE] + refs]
        rows = [{"ref": i["ref"], "layers": [layer["digest"] for layer in i["manifest"]["layers"]],
                 "sizes": [layer["size"] for layer in i["manifest"]["layers"]]} for i in imgs]
        base_layer = rows[0]["layers"][0]
        dirs = [image.lowers(i)[0] for i in imgs]
        inodes = {os.stat(d).st_ino for d in dirs}
    finally:
        for ref in refs:
            labkit("rmi", ref, check=False)
        for ctx in ctxs:
            shutil.rmtree(ctx, ignore_errors=True)
    return fact("img_shared", LAYER, _("images FROM one base share its layer: one blob, one unpacked directory"),
                [f"{r['ref']}: {len(r['layers'])} layers" for r in rows], f"{len(inodes)} directory for the base layer",
                all(r["layers"][0] == base_layer for r in rows) and len(inodes) == 1, rows=rows)


def left():
    from labkit.course.leaks import image_leftovers
    found = image_leftovers() + [f"build cache {n}" for n, _ in store.tags() if n.startswith("labkit/build-cache:")]
    return fact("img_left", LAYER, _("nothing left: no tag, cached step or registry of this notebook"), found, "",
                not found)


def all_facts(rootfs="base"):
    facts = [anatomy()]
    b = build_and_cache()
    facts.append(b)
    try:
        facts += [push_pull(b["ref"]), runc_runs(b["ref"]), shared(), tampered(b["ref"])]
    finally:
        labkit("rmi", "-f", b["ref"], check=False)
        labkit("builder", "prune", check=False)
    return facts
