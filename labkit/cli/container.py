"""`labkit exec|ps|stop|rm|commit|logs|gc`: docker's container commands over
the containers on disk (labkit/containers.py) and the runtime's lifecycle
(labkit/runtime/lifecycle.py)."""

import os
import sys

from labkit.errors import need_root
from labkit.errors import LabkitError


def add_parsers(sub):
    import argparse
    e = sub.add_parser("exec", help="run a command in a running container (as nsenter does)")
    e.add_argument("-i", "--interactive", action="store_true")
    e.add_argument("-t", "--tty", action="store_true")
    e.add_argument("id")
    e.add_argument("cmd", nargs=argparse.REMAINDER)
    e.set_defaults(func=cmd_exec)

    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true", help="also stopped containers")
    ps.add_argument("-q", "--quiet", action="store_true", help="only ids")
    ps.set_defaults(func=cmd_ps)

    st = sub.add_parser("stop", help="stop running containers (SIGTERM, then SIGKILL)")
    st.add_argument("-t", "--time", type=float, default=10, help="seconds before SIGKILL (default 10)")
    st.add_argument("ids", nargs="+", metavar="ID")
    st.set_defaults(func=cmd_stop)

    rm = sub.add_parser("rm", help="remove stopped containers")
    rm.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.set_defaults(func=cmd_rm)

    cm = sub.add_parser(
        "commit", help="save a container's changes (its overlay upper dir) as a layer tar",
        description="Save the changes of container ID as an OCI layer tar, as `docker commit` does, "
        "and print its sha256 digest. The tar goes to $LABKIT_HOME/layers/<sha256>.tar "
        "(or to FILE; .tar.gz compresses). Stack it with the layers the container ran on: "
        "`labkit run --layer L1 --layer sha256:<digest> ...` (a digest, or the tar's path).",
        epilog="Only a container started with --layer has an upper dir to commit. The upper dir lives in "
        "the container's state dir: commit before `labkit rm ID`; a --rm container loses it when it "
        "exits. A running container is not paused while its upper dir is read: stop it first "
        "for a consistent snapshot.")
    cm.add_argument("id", metavar="ID", help="a running or stopped container (labkit ps -a)")
    cm.add_argument("ref", nargs="?", metavar="IMAGE",
                    help="make an image: the container's image (or labkit/base) plus this layer")
    cm.add_argument("-o", "--output", metavar="FILE", help="write the layer tar to FILE instead")
    cm.set_defaults(func=cmd_commit)

    lg = sub.add_parser("logs", help="what a detached container wrote (stdout and stderr)")
    lg.add_argument("id", metavar="ID")
    lg.set_defaults(func=cmd_logs)

    gc = sub.add_parser("gc", help="remove every leftover of dead containers: mounts, cgroups, state")
    gc.set_defaults(func=cmd_gc)


def cmd_exec(a):
    need_root("labkit exec")
    from labkit.runtime import execute
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        raise LabkitError("labkit exec needs a command", "for example: labkit exec -it ID sh")
    return execute.execute(a.id, cmd, tty=a.tty, interactive=a.interactive)


def cmd_ps(a):
    from labkit.runtime import container as ct
    from labkit.containers import ACTIVE, CREATING, DEAD, STOPPED
    rows = []
    for cid in ct.all_ids():
        st = ct.load(cid)
        if a.all or st["status"] in (CREATING, *ACTIVE, DEAD):
            rows.append(st)
    if a.quiet:
        for st in rows:
            print(st["id"])
        return 0
    import time
    print(f"{'CONTAINER':<14} {'STATUS':<12} {'PID':>7}  {'CREATED':<19} COMMAND")
    for st in rows:
        status = st["status"] + (f" ({st.get('exit_code')})" if st["status"] == STOPPED else "")
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.get("created") or 0))
        cmd = " ".join(st.get("config", {}).get("args") or [])
        print(f"{st['id']:<14} {status:<12} {st.get('pid') or '-':>7}  {created:<19} {cmd}")
    return 0


def cmd_stop(a):
    need_root("labkit stop")
    from labkit.runtime import lifecycle
    for cid in a.ids:
        lifecycle.stop(cid, a.time)
        print(cid)
    return 0


def cmd_rm(a):
    need_root("labkit rm")
    from labkit.runtime import lifecycle
    for cid in a.ids:
        lifecycle.remove(cid, force=a.force)
        print(cid)
    return 0


def cmd_commit(a):
    need_root("labkit commit")
    import shlex
    from labkit import home
    from labkit.stages import unionfs
    if a.ref:
        from labkit.build.build import commit_image
        print(commit_image(a.id, a.ref))
        return 0
    result = unionfs.commit_container(a.id, output=a.output)
    print(result["digest"])
    top = result["path"] if a.output else result["digest"]
    stack = "".join(f"--layer {shlex.quote(layer)} " for layer in result["lowers"] + [top])
    rootfs = "" if result["rootfs"] == home.rootfs_dir("base") else f"--rootfs {shlex.quote(result['rootfs'])} "
    print(f"saved {result['path']} ({result['size']} bytes, {result['entries']} entries); "
          f"run on it with: labkit run {rootfs}{stack}-- CMD", file=sys.stderr)
    return 0


def cmd_logs(a):
    from labkit import home
    from labkit.containers import load
    load(a.id)
    path = os.path.join(home.containers_dir(a.id), "log")
    if os.path.exists(path):
        with open(path, "rb") as f:
            sys.stdout.buffer.write(f.read())
    return 0


def cmd_gc(a):
    need_root("labkit gc")
    from labkit.runtime import lifecycle
    for line in lifecycle.gc():
        print(line)
    from labkit.services import store, supervisor
    if store.names():   # services outlive their supervisor on disk: the loop takes them up again
        with store.Lock():
            if store.supervisor_pid() is None:
                print(f"started the services' supervisor (pid {supervisor.ensure()})")
    return 0
