"""`labkit build -t REF [-f Containerfile] [--build-arg K=V] DIR`: an image,
one step per instruction, each step an image of its own.

    FROM      the starting image (labkit/base, anything pulled or built), or scratch
    RUN       a labkit container on the image so far (`labkit run --entrypoint ''`);
              its upper dir, committed, is the new layer (stage 4's commit)
    COPY/ADD  a layer tar made here from the build context (DIR), never from
              outside it; ADD unpacks a local tar (through the safe apply)
    ENV, WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE, LABEL
              the config changes, no layer ("empty_layer" in the history)

The cache: each step's result is tagged labkit/build-cache:<key>, where the
key is the sha256 of the step before's key (or the FROM image's digest), the
instruction, and for COPY/ADD the digest of the layer the files make. A
second build of the same files finds every step there. `labkit builder prune`
removes the cache.
"""

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile

from labkit import api
from labkit.images import layers
from labkit.errors import LabkitError, NotFound
from labkit.build import containerfile
from labkit.images import image, store

CACHE = "labkit/build-cache"


def _key(*parts):
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _labkit(*args):
    return subprocess.run(api.labkit_argv(*args), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=3600)


def find_file(context, file):
    if file:
        return file
    for name in ("Containerfile", "Dockerfile"):
        if os.path.isfile(os.path.join(context, name)):
            return os.path.join(context, name)
    raise NotFound(f"no Containerfile or Dockerfile in {context}", "write one, or give -f FILE")


def build(context, ref, file=None, build_args=None, no_cache=False, say=print):
    context = os.path.abspath(context)
    if not os.path.isdir(context):
        raise NotFound(f"build context {context} is not a directory", "give the directory with the files to COPY")
    path = find_file(context, file)
    with open(path) as f:
        steps = containerfile.parse(f.read(), build_args)
    target = image.normalize(ref)
    current, chain = None, None
    for n, ins in enumerate(steps, 1):
        words = [f"{k}={v}" for k, v in ins.args] if ins.keyword in ("ENV", "LABEL") else ins.args
        text = f"{ins.keyword} {' '.join(words)}"
        head = f"STEP {n}/{len(steps)}: {text}"
        if ins.keyword == "ARG":
            say(head)
            continue
        if ins.keyword == "FROM":
            if ins.args[0] == "scratch":
                current, chain = None, _key("scratch")
            else:
                img = image.get(ins.args[0])
                current, chain = img["ref"], img["descriptor"]["digest"]
            say(head)
            continue
        extra = ""
        layer_tar = None
        work = None
        if ins.keyword in ("COPY", "ADD"):
            work = tempfile.mkdtemp(prefix=".build-", dir=store.root())
            layer_tar = os.path.join(work, "layer.tar")
            _copy_layer(context, ins, current, layer_tar)
            extra = layers.digest(layer_tar)
        key = _key(chain, ins.keyword, json.dumps(ins.args), json.dumps(ins.flags), extra)
        cached = f"{CACHE}:{key[:48]}"
        try:
            if not no_cache and store.lookup(cached):
                say(f"{head}  (cached)")
            else:
                say(head)
                _step(ins, text, current, cached, layer_tar, say)
        finally:
            if work:
                from labkit.startpath import remove_tree
                remove_tree(work)
        current, chain = cached, key
    if current is None:
        raise LabkitError("the Containerfile makes no image: FROM scratch and nothing after it",
                          "COPY some files in, or start FROM an image")
    image.tag(current, target)
    digest = store.lookup(target)["digest"]
    say(f"{target}: {digest}")
    return digest


def _config_change(ins, cfg):
    c = dict(cfg)
    k, a = ins.keyword, ins.args
    if k == "ENV":
        env = [e for e in c.get("Env") or [] if e.split("=", 1)[0] not in {name for name, _ in a}]
        c["Env"] = env + [f"{name}={value}" for name, value in a]
    elif k == "LABEL":
        c["Labels"] = dict(c.get("Labels") or {}, **dict(a))
    elif k == "WORKDIR":
        c["WorkingDir"] = os.path.normpath(os.path.join(c.get("WorkingDir") or "/", a[0]))
    elif k == "USER":
        c["User"] = a[0]
    elif k == "CMD":
        c["Cmd"] = a
    elif k == "ENTRYPOINT":
        c["Entrypoint"] = a
        c.pop("Cmd", None)      # docker: an ENTRYPOINT resets the CMD it inherited
    elif k == "EXPOSE":
        c["ExposedPorts"] = dict(c.get("ExposedPorts") or {}, **{(p if "/" in p else p + "/tcp"): {} for p in a})
    return c


def _step(ins, text, current, cached, layer_tar, say):
    history = {"created_by": text}
    if ins.keyword == "RUN":
        if current is None:
            raise LabkitError(f"line {ins.line}: RUN on scratch: there is no shell to run it in",
                              "start FROM an image that has one, e.g. FROM labkit/base")
        cid = "lkbuild-" + os.urandom(6).hex()
        env = {e.split("=", 1)[0] for e in (image.get(current)["config"].get("config") or {}).get("Env") or []}
        args = [f"--env={k}={v}" for k, v in ins.flags.get("arg", []) if k not in env]   # ENV wins
        r = _labkit("run", "--name", cid, "--entrypoint", "", *args, current, *ins.args)
        try:
            for line in (r.stdout + r.stderr).splitlines()[-20:]:
                say(f"  | {line}")
            if r.returncode != 0:
                raise LabkitError(f"line {ins.line}: {text} exited {r.returncode}",
                                  "the lines above are its output; fix the command and build again")
            with tempfile.TemporaryDirectory(prefix=".run-", dir=store.root()) as tmp:
                out = os.path.join(tmp, "layer.tar")
                c = _labkit("commit", "-o", out, cid)
                if c.returncode != 0:
                    raise LabkitError(f"line {ins.line}: commit of the RUN container: {c.stderr.strip()}",
                                      "see `labkit commit --help`")
                image.create(cached, [out], parent=current, history=[history])
        finally:
            _labkit("rm", "-f", cid)
    elif ins.keyword in ("COPY", "ADD"):
        image.create(cached, [layer_tar], parent=current, history=[history])
    else:
        base = image.get(current)["config"].get("config") or {} if current else {}
        image.create(cached, [], parent=current, config=_config_change(ins, base), empty_history=history)


def _inside(context, src, line, keyword):
    real = os.path.realpath(os.path.join(context, src))
    if real != context and not real.startswith(context + "/"):
        raise LabkitError(f"line {line}: {keyword} {src}: outside the build context {context}",
                          "only files below the build directory can be copied in")
    if not os.path.lexists(real):
        raise NotFound(f"line {line}: {keyword} {src}: no such file in the build context", f"look in {context}")
    return real


def _copy_layer(context, ins, current, out):
    """The files of COPY/ADD as a layer tar at ``out``."""
    *srcs, dest = ins.args
    cfg = (image.get(current)["config"].get("config") or {}) if current else {}
    if not dest.startswith("/"):
        dest = os.path.join(cfg.get("WorkingDir") or "/", dest)
    owner = None
    if ins.flags.get("chown"):
        lowers = image.lowers(image.get(current)) if current else []
        owner = image.user_ids(ins.flags["chown"], lowers)
    into_dir = dest.endswith("/") or len(srcs) > 1
    dest = os.path.normpath(dest).lstrip("/")

    def fix(t):
        if owner:
            t.uid, t.gid, t.uname, t.gname = owner[0], owner[1], "", ""
        t.mode &= ~0o6000          # as the safe apply would: no set-id bits from a context
        return t

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        parts = dest.split("/")
        for i in range(1, len(parts) if not into_dir else len(parts) + 1):   # the parents, as directories
            d = tarfile.TarInfo("/".join(parts[:i]))
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            if d.name:
                tar.addfile(d)
        for src in srcs:
            real = _inside(context, src, ins.line, ins.keyword)
            if ins.keyword == "ADD" and os.path.isfile(real) and tarfile.is_tarfile(real):
                with tempfile.TemporaryDirectory(prefix=".add-", dir=store.root()) as tmp:
                    try:
                        layers.apply(real, tmp, whiteouts="delete")   # refuses what would escape
                    except LabkitError as e:
                        raise LabkitError(f"line {ins.line}: ADD {src}: {e.message}", e.hint) from None
                    for name in sorted(os.listdir(tmp)):
                        tar.add(os.path.join(tmp, name), arcname=f"{dest}/{name}", filter=fix)
                continue
            if os.path.isdir(real):
                for name in sorted(os.listdir(real)):
                    tar.add(os.path.join(real, name), arcname=f"{dest}/{name}", filter=fix)
            else:
                arc = f"{dest}/{os.path.basename(src)}" if into_dir else dest
                tar.add(real, arcname=arc, filter=fix)


def commit_image(cid, ref):
    """`labkit commit ID IMAGE`: the image the container ran (or labkit/base for the
    base rootfs), plus its upper dir as one layer, with a history line saying so."""
    from labkit import containers
    from labkit.stages import unionfs
    state = containers.load(cid)
    cfg = state.get("config") or {}
    parent = cfg.get("image")
    if parent is None:
        from labkit import home
        if cfg.get("rootfs") != home.rootfs_dir("base") or cfg.get("layers"):
            raise LabkitError(f"container '{cid}' ran on a rootfs and layers, not on an image",
                              "commit it to a layer tar (`labkit commit ID -o FILE`), or run it from an image")
        parent = image.BASE
    store.init()
    with tempfile.TemporaryDirectory(prefix=".commit-", dir=store.root()) as tmp:
        out = os.path.join(tmp, "layer.tar")
        unionfs.commit_container(cid, output=out)
        args = " ".join(cfg.get("args") or [])
        return image.create(ref, [out], parent=parent, history=[{"created_by": f"labkit commit {cid} ({args})"}])


def prune():
    """Remove the build cache; returns how many steps it held."""
    gone = [name for name, _ in store.tags() if name.startswith(CACHE + ":")]
    with store.Lock():
        for name in gone:
            store.remove_tag(name)
    with store.Lock():
        store.collect()
    with store.Lock():
        image.collect_unpacked()
    return len(gone)


def main(a):
    args = {}
    for item in a.build_arg:
        if "=" not in item:
            raise LabkitError(f"--build-arg {item}: expected NAME=VALUE", "for example --build-arg VERSION=1")
        k, v = item.split("=", 1)
        args[k] = v
    build(a.context, a.tag, file=a.file, build_args=args, no_cache=a.no_cache,
          say=lambda line: print(line, file=sys.stderr, flush=True))
    return 0

