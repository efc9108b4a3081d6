"""Stage 5 facts: the container format. One config.json, run by labkit-runtime
and by runc, gives the same observable facts; the OCI lifecycle holds; a
config.json that breaks the spec is refused naming the field."""

import json
import os
import shutil
import tempfile

from labkit.course.conformance import bundles, observe
from labkit.containers import CREATED, RUNNING, STOPPED
from labkit.course.facts import fact
from labkit.i18n import _

LAYER = "5 container format"


def _same_as_runc(bundle, labkit, runc):
    mine = observe.observe(labkit, bundle.path)
    with open(os.path.join(bundle.path, "config.json")) as f:
        cfg = json.load(f)
    view, _allowed = observe.allowed_view(mine, bundle.path, cfg)
    if runc is None:
        return mine, fact("oci_same_as_runc", LAYER, _("one config.json: the same facts as runc"),
                          f"{len(view)} facts", "runc not installed (apt-get install runc)", False)
    ref, _allowed = observe.allowed_view(observe.observe(runc, bundle.path), bundle.path, cfg)
    differ = sorted(k for k in set(view) | set(ref) if view.get(k) != ref.get(k))
    return mine, fact("oci_same_as_runc", LAYER, _("one config.json: the same facts under labkit and runc"),
                      f"labkit-runtime: {len(view)} facts, {len(differ)} differ",
                      "runc: " + (", ".join(differ) or "all equal"), not differ, differ=differ)


def _lifecycle(mine):
    created, started = mine.get("state.created", {}), mine.get("state.started", {})
    ok = (created.get("status") == CREATED and (created.get("pid") or 0) > 0
          and mine.get("start_exit") == 0 and started.get("status") in (RUNNING, STOPPED))
    return fact("oci_lifecycle", LAYER, _("create leaves the init waiting; start runs it"),
                f"after create: {created.get('status')}, pid {created.get('pid')}",
                f"after start: {started.get('status')}", ok)


def _refused(bundle, labkit):
    with open(os.path.join(bundle.path, "config.json")) as f:
        cfg = json.load(f)
    cfg["linux"]["namespaces"].append({"type": "pidd"})
    bad = os.path.join(os.path.dirname(bundle.path), "bad")
    os.makedirs(bad)
    os.symlink(os.path.join(bundle.path, "rootfs"), os.path.join(bad, "rootfs"))
    with open(os.path.join(bad, "config.json"), "w") as f:
        json.dump(cfg, f)
    root = tempfile.mkdtemp(prefix="labkit-oci-root-")
    try:
        r = observe._call(labkit, root, "create", "--bundle", bad, observe.new_id())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return fact("oci_bad_config_refused", LAYER, _("a config.json against the spec is refused at create"),
                r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "(no message)",
                f"exit {r.returncode}", r.returncode != 0 and "linux.namespaces" in r.stderr)


def all_facts(rootfs="base"):
    labkit, runc = observe.runtime("labkit"), observe.runtime("runc")
    work = tempfile.mkdtemp(prefix="labkit-oci-facts-")
    try:
        bundle = bundles.full(os.path.join(work, "bundle"), rootfs=rootfs,
                              args=bundles.probe_args("hostname", "ps", "mounts", "status"))
        mine, same = _same_as_runc(bundle, labkit, runc)
        return [same, _lifecycle(mine), _refused(bundle, labkit)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
