"""`labkit images|tag|rmi|history|save|load`, `labkit image ...`, pull, push,
`labkit registry` and `labkit rootfs`: docker's image commands over the local
store (labkit/images/), and the base root filesystems."""

import json
import time

from labkit.errors import need_root
from labkit.errors import LabkitError


def _size(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000


def _ago(created):
    try:
        import calendar
        t = calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return created
    s = max(0, time.time() - t)
    for unit, secs in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= secs:
            n = int(s // secs)
            return f"{n} {unit[:-1] if n == 1 else unit} ago"
    return "seconds ago"


def image_action(a):
    from labkit.images import archive, image
    action = a.image_command
    if action == "ls":
        print(f"{'REPOSITORY':<40}{'TAG':<12}{'IMAGE ID':<14}{'CREATED':<18}SIZE")
        for ref, digest, created, size in image.images():
            name, _, tag = ref.rpartition(":")
            cfg = image.get(ref)["manifest"]["config"]["digest"]
            print(f"{name:<40}{tag:<12}{cfg.split(':', 1)[1][:12]:<14}{_ago(created):<18}{_size(size)}")
    elif action == "inspect":
        out = []
        for ref in a.refs:
            img = image.get(ref)
            out.append({"Ref": img["ref"], "Digest": img["descriptor"]["digest"],
                        "Manifest": img["manifest"], "Config": img["config"]})
        print(json.dumps(out, indent=2))
    elif action == "history":
        print(f"{'CREATED':<22}CREATED BY")
        for entry in reversed(image.history(a.ref)):
            mark = "" if not entry.get("empty_layer") else "   (no layer)"
            print(f"{entry.get('created', ''):<22}{entry.get('created_by', '')}{mark}")
    elif action == "tag":
        image.tag(a.source, a.target)
    elif action == "rm":
        for ref in a.refs:
            gone = image.remove(ref, force=a.force)
            print(f"Untagged: {image.normalize(ref)}")
            for d in gone:
                print(f"Deleted: {d}")
    elif action == "save":
        archive.save(a.refs, a.output)
    elif action == "load":
        for ref in archive.load(a.input):
            print(f"Loaded image: {ref}")
    elif action == "pull":
        from labkit.images import distribution
        r = distribution.pull(a.ref)
        print(f"{r['ref']}: pulled, {r['digest']}")
    elif action == "push":
        from labkit.images import distribution
        r = distribution.push(a.ref)
        print(f"{r['ref']}: pushed, {r['digest']}")
    elif action == "registry":
        from labkit.images import registry
        if a.registry_command == "start":
            st = registry.start(a.port, foreground=a.foreground)
            print(f"registry on {st['address']} (pid {st['pid']}, storage {st['data']})")
        elif a.registry_command == "stop":
            print("stopped" if registry.stop() else "no registry was running")
        else:
            st = registry.status()
            print(f"running on {st['address']} (pid {st['pid']})" if st else "not running")
            return 0 if st else 1
    elif action == "unpack":
        from labkit.oci import unpack
        unpack.unpack(a.ref, a.dir)
        print(f"{a.dir}: config.json and rootfs/ — run it with `labkit-runtime run -b {a.dir} ID` (or runc)")
    else:
        raise LabkitError(f"labkit image {action}: no such action", "see `labkit image --help`")
    return 0


def add_parsers(sub):
    """docker's image commands, as `labkit image ACTION` and the top-level
    shortcuts docker keeps (images, tag, rmi, history, save, load); pull,
    push, the lab registry, and the base root filesystems (`labkit rootfs`)."""
    img = sub.add_parser("image", help="images: ls, inspect, history, tag, rm, save, load, unpack")
    isub = img.add_subparsers(dest="image_command", metavar="ACTION")
    isub.required = True

    def action(parser_sub, name, action_name, text, args):
        x = parser_sub.add_parser(name, help=text)
        for names, kw in args:
            x.add_argument(*names, **kw)
        x.set_defaults(func=cmd_image, image_command=action_name)

    refs = ((("refs",), {"nargs": "+", "metavar": "IMAGE"}),)
    table = [
        ("ls", "images", "list the local images", ()),
        ("inspect", None, "an image's manifest and config, as JSON", refs),
        ("history", "history", "the steps that made each layer", ((("ref",), {"metavar": "IMAGE"}),)),
        ("tag", "tag", "another name for an image", ((("source",), {"metavar": "IMAGE"}),
                                                    (("target",), {"metavar": "NEW"}))),
        ("rm", "rmi", "untag images; blobs no other tag needs are deleted",
         refs + ((("-f", "--force"), {"action": "store_true", "help": "even if a container uses it"}),)),
        ("save", "save", "images as one OCI layout tar", refs + ((("-o", "--output"), {"required": True,
                                                                                         "metavar": "FILE"}),)),
        ("load", "load", "the images of an OCI layout tar", ((("-i", "--input"), {"required": True,
                                                                                    "metavar": "FILE"}),)),
        ("unpack", None, "an image as an OCI bundle (config.json + rootfs), as umoci unpack",
         ((("ref",), {"metavar": "IMAGE"}), (("dir",), {"metavar": "DIR"}))),
    ]
    for name, shortcut, text, args in table:
        action(isub, name, name, text, args)
        if shortcut:
            action(sub, shortcut, name, text, args)
    _registry_parsers(sub)
    _rootfs_parsers(sub)


def _registry_parsers(sub):
    for verb, text in (("pull", "an image from a registry (127.0.0.1:5000/lab/web:v1)"),
                       ("push", "an image to the registry its name starts with")):
        x = sub.add_parser(verb, help=text)
        x.add_argument("ref", metavar="IMAGE")
        x.set_defaults(func=cmd_image, image_command=verb)
    reg = sub.add_parser("registry", help="the lab registry (docker-registry on 127.0.0.1): start, stop, status")
    rsub = reg.add_subparsers(dest="registry_command", metavar="ACTION")
    rsub.required = True
    rs = rsub.add_parser("start", help="serve a registry on 127.0.0.1:PORT, its storage under $LABKIT_HOME")
    rs.add_argument("--port", type=int, default=5000)
    rs.add_argument("--foreground", action="store_true", help="become the registry (for a systemd service)")
    rsub.add_parser("stop", help="stop it (its storage stays)")
    rsub.add_parser("status", help="its address, or that none runs")
    for x in rsub.choices.values():
        x.set_defaults(func=cmd_image, image_command="registry")


def _rootfs_parsers(sub):
    import argparse
    fs = sub.add_parser("rootfs", help="build, list and remove base root filesystems")
    fsub = fs.add_subparsers(dest="rootfs_command", metavar="ACTION")
    fsub.required = True
    b = fsub.add_parser("build", help="build a rootfs (busybox + procps + iproute2 + util-linux)")
    b.add_argument("name", nargs="?", default="base")
    b.add_argument("--force", action="store_true", help="rebuild even if it exists")
    b.add_argument("--quiet-if-present", action="store_true", help=argparse.SUPPRESS)
    b.set_defaults(func=cmd_rootfs_build)
    ls = fsub.add_parser("ls", help="list built root filesystems")
    ls.set_defaults(func=cmd_rootfs_ls)
    rr = fsub.add_parser("rm", help="remove a rootfs")
    rr.add_argument("name")
    rr.set_defaults(func=cmd_rootfs_rm)


def cmd_image(a):
    if a.image_command not in ("ls", "inspect", "history") and getattr(a, "registry_command", "") != "status":
        need_root(f"labkit image {a.image_command}")
    return image_action(a)


def cmd_rootfs_build(a):
    need_root("labkit rootfs build")
    from labkit.images import builder
    path, seconds, built = builder.build(a.name, force=a.force, progress=builder.main_progress)
    if built:
        print(f"built rootfs '{a.name}' at {path} in {seconds:.2f}s")
    else:
        print(f"rootfs '{a.name}' is present at {path} (rebuild with --force)")
    return 0


def cmd_rootfs_ls(a):
    from labkit.images import builder
    for name in builder.list_rootfs():
        print(name)
    return 0


def cmd_rootfs_rm(a):
    need_root("labkit rootfs rm")
    from labkit.images import builder
    builder.remove(a.name)
    return 0
