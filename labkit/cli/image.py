"""`labkit images|tag|rmi|history|save|load` and `labkit image ...`:
docker's image commands over the local store (labkit/images/)."""

import json
import time

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


def main(a):
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
