"""The `labkit` command. Each subcommand imports only what it uses: `labkit
run` is the container start path and must stay lean."""

import os
import sys

from labkit.errors import LabkitError, NotRoot

USAGE_RUN = "labkit run [options] IMAGE [CMD ...]   or   labkit run [options] [--rootfs R] -- CMD ..."

# `labkit run`'s options, one table for two parsers: argparse builds the help
# from it, and parse_run() reads a command line with it without importing
# argparse: run is the container start path (labkit/startpath.py).
# (names, dest, kind, metavar, default, help)
RUN_OPTIONS = [
    (("--ns",), "ns", "value", "LIST", None, "namespaces to create, comma-separated: pid,net,ipc,mnt,"
     "uts,user,cgroup,time, or 'none' for a plain chroot (default: pid,net,ipc,mnt,uts,cgroup)"),
    (("--all",), "all", "flag", None, False, "every namespace type this kernel has, user and time included"),
    (("--hostname", "-h"), "hostname", "value", None, None, "the container's hostname (needs the uts namespace)"),
    (("--rootfs",), "rootfs", "value", None, None,
     "run on a rootfs (labkit rootfs ls) or directory instead of an image; the default without IMAGE: base"),
    (("--name",), "name", "value", None, None, "the container's name (default: a random id)"),
    (("-d", "--detach"), "detach", "flag", None, False, "run in the background and print the id"),
    (("-i", "--interactive"), "interactive", "flag", None, False, "keep stdin open"),
    (("-t", "--tty"), "tty", "flag", None, False, "give the container a terminal (a pty)"),
    (("--rm",), "rm", "flag", None, False, "remove the container when it exits"),
    (("-e", "--env"), "env", "append", "K=V", None, "set an environment variable"),
    (("-w", "--workdir"), "workdir", "value", None, None, "working directory inside (default: the image's, or /)"),
    (("--read-only",), "read_only", "flag", None, False, "mount the root filesystem read-only"),
    (("--no-proc",), "no_proc", "flag", None, False, "do not mount /proc inside"),
    (("--memory", "-m"), "memory", "value", None, None, "memory limit, e.g. 64m (cgroups)"),
    (("--memory-swap",), "memory_swap", "value", None, None,
     "memory+swap limit, e.g. 128m, or -1 for unlimited (cgroups)"),
    (("--cpus",), "cpus", "value", None, None, "CPU quota in cores, e.g. 0.5 (cgroups)"),
    (("--cpu-shares",), "cpu_shares", "value", None, None, "relative CPU weight, v1 shares (cgroups)"),
    (("--cpuset-cpus",), "cpuset_cpus", "value", None, None, "CPUs allowed, e.g. 0 or 0-1 (cgroups)"),
    (("--pids-limit", "--pids"), "pids", "value", None, None, "maximum number of processes (cgroups)"),
    (("--layer",), "layer", "append", "DIR_OR_TAR", None,
     "a read-only layer on top of the rootfs (union filesystem); repeat to stack"),
    (("--lxcfs",), "lxcfs", "flag", None, False, "bind lxcfs's /proc files so that free and top see the limits"),
    (("--cap-add",), "cap_add", "append", "CAP", None, "a capability on top of Docker's default 14 (or ALL)"),
    (("--cap-drop",), "cap_drop", "append", "CAP", None, "a capability taken away (or ALL)"),
    (("--privileged",), "privileged", "flag", None, False,
     "every capability, a writable /sys, nothing masked: no guard at all (the escape lessons)"),
    (("--userns",), "userns", "value", "MODE", "host",
     "host (the default: root inside is root outside) or remap: a user namespace where root is "
     "uid 100000 on the host, and the rootfs is shifted to it (idmapped)"),
    (("--device-cgroup-rule",), "device_rule", "append", "RULE", None,
     "one more device the container may use, as devices.allow writes it: 'b 7:* r'"),
    (("--network", "--net"), "network", "value", "NET", "none",
     "none (the default: a network namespace with lo only), host (the host's own network), "
     "container:ID (another container's), or a network (labkit network ls; 'labkit' is made on first use)"),
    (("--ip",), "ip", "value", None, None, "the container's address on its --network (default: the next free one)"),
    (("--network-alias",), "aliases", "append", "NAME", None,
     "one more name the other containers of the network find it by"),
    (("-p", "--publish"), "publish", "append", "[IP:]HOSTPORT:PORT[/PROTO]", None,
     "publish a container port on the host, on 127.0.0.1 unless IP is given (0.0.0.0: every address)"),
    (("--entrypoint",), "entrypoint", "value", "CMD", None,
     "run CMD instead of the image's Entrypoint ('' for none: the command runs as given)"),
    (("--security-opt",), "security_opt", "append", "OPT", None,
     "no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json"),
]


class _Args:
    """What parse_run returns: attributes like argparse's Namespace."""

    def __init__(self, **values):
        self.__dict__.update(values)


def parse_run(args):
    """`labkit run`'s command line (after "run"), as docker reads it: options
    first (`-it`, `-m64m`, `--name=x` and `--name x` alike), then the command;
    `--` ends the options. Unknown options are a one-line error."""
    spec = {name: (dest, kind) for names, dest, kind, *_ in RUN_OPTIONS for name in names}
    values = {dest: ([] if kind == "append" else default)
              for _, dest, kind, _, default, _ in RUN_OPTIONS}
    values["func"] = cmd_run

    def store(name, dest, kind, value):
        if value is None:
            raise LabkitError(f"run: {name} needs a value", f"for example {name} VALUE; see `labkit run --help`")
        if kind == "append":
            values[dest].append(value)
        else:
            values[dest] = value

    i = 0
    dashdash = False
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            dashdash = True
            break
        if not arg.startswith("-") or arg == "-":
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name not in spec:
                raise LabkitError(f"run: unknown option '{name}'", "see `labkit run --help`")
            dest, kind = spec[name]
            if kind == "flag":
                if eq:
                    raise LabkitError(f"run: {name} takes no value", "see `labkit run --help`")
                values[dest] = True
            else:
                if not eq:
                    i += 1
                    value = args[i] if i < len(args) else None
                store(name, dest, kind, value)
        else:                      # a cluster of short options: -it, -dit, -m64m, -e K=V
            for j in range(1, len(arg)):
                name = "-" + arg[j]
                if name not in spec:
                    raise LabkitError(f"run: unknown option '{name}'", "see `labkit run --help`")
                dest, kind = spec[name]
                if kind == "flag":
                    values[dest] = True
                    continue
                value = arg[j + 1:]
                if not value:
                    i += 1
                    value = args[i] if i < len(args) else None
                store(name, dest, kind, value)
                break
        i += 1
    values["cmd"] = list(args[i:])
    # docker's order: the first word after the options is the image, the rest
    # its command. `--` (or --rootfs) instead: no image, the rest is the command.
    values["image"] = None
    if not dashdash and values["rootfs"] is None and values["cmd"]:
        values["image"] = values["cmd"].pop(0)
    if values["ns"] is not None and values["all"]:
        raise LabkitError("run: --ns and --all exclude each other", "give one of them")
    return _Args(**values)


def _need_root(what):
    if os.geteuid() != 0:
        raise NotRoot(f"{what} needs root: namespaces, mounts and cgroups can only be created by root",
                      "run it with sudo, or inside the classroom VM (vagrant up; vagrant ssh)")


def _parser():
    import argparse
    p = argparse.ArgumentParser(prog="labkit", description=(
        "Build a container out of Linux primitives: chroot, namespaces, cgroups, "
        "union filesystem, container format."))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("run", help="run a command in a new container", usage=USAGE_RUN, add_help=False)
    for names, dest, kind, metavar, default, text in RUN_OPTIONS:
        if kind == "flag":
            r.add_argument(*names, dest=dest, action="store_true", help=text)
        elif kind == "append":
            r.add_argument(*names, dest=dest, action="append", default=[], metavar=metavar, help=text)
        else:
            r.add_argument(*names, dest=dest, default=default, metavar=metavar, help=text)
    r.add_argument("--help", action="help", help="show this help and exit")
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (default /bin/sh)")
    r.set_defaults(func=cmd_run)

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

    oci = sub.add_parser(
        "oci", help="the OCI runtime: spec, create, start, state, kill, delete, run, list, exec",
        description="An OCI runtime driven by a bundle's config.json, with runc's command line "
        "(the same as the labkit-runtime command): labkit oci [--root DIR] COMMAND ...", add_help=False)
    oci.add_argument("args", nargs=argparse.REMAINDER, help="runc's arguments, e.g. run -b BUNDLE ID")
    # main() hands `labkit oci ...` to runtime_cli before argparse sees it
    # (runc's flags must pass untouched): this entry only lists it in --help.

    net = sub.add_parser("network", help="virtual networks: create, ls, inspect, rm, connect, disconnect",
                         description="Networks of containers, with docker's commands: a bridge per "
                         "network, a veth pair per container, NAT out, DNAT for published ports.")
    nsub = net.add_subparsers(dest="network_command", metavar="ACTION")
    nsub.required = True
    nc = nsub.add_parser("create", help="make a network (its bridge is made when a container joins)")
    nc.add_argument("name", metavar="NAME")
    nc.add_argument("--subnet", metavar="CIDR", help="e.g. 10.77.5.0/24 (default: the next free /24 of 10.77.0.0/16)")
    nc.add_argument("--gateway", metavar="IP", help="the bridge's address (default: the subnet's first)")
    nc.add_argument("-d", "--driver", default="bridge", choices=("bridge", "cni"),
                    help="bridge: labkit's own ip/nft commands; cni: Debian's CNI plugins (bridge, host-local)")
    nsub.add_parser("ls", help="list networks").set_defaults(func=cmd_network)
    ni = nsub.add_parser("inspect", help="a network as JSON: subnet, bridge, containers")
    ni.add_argument("names", nargs="+", metavar="NAME")
    nr = nsub.add_parser("rm", help="remove networks (refused while containers are attached)")
    nr.add_argument("names", nargs="+", metavar="NAME")
    for action, text in (("connect", "connect a running container, or with - the container of an "
                          "OCI hook's state on stdin"), ("disconnect", "the other way round")):
        x = nsub.add_parser(action, help=text)
        x.add_argument("name", metavar="NETWORK")
        x.add_argument("container", metavar="CONTAINER|-")
        if action == "connect":
            x.add_argument("--ip", help="its address (default: the next free one)")
            x.add_argument("--alias", action="append", default=[], metavar="NAME", help="one more name")
            x.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOSTPORT:PORT[/PROTO]")
        x.set_defaults(func=cmd_network)
    for x in (nc, ni, nr):
        x.set_defaults(func=cmd_network)

    _image_parsers(sub)
    bd = sub.add_parser("build", help="an image from a Containerfile (Dockerfile) and a build directory")
    bd.add_argument("context", metavar="DIR", help="the build context: the files COPY and ADD may take")
    bd.add_argument("-t", "--tag", required=True, metavar="IMAGE")
    bd.add_argument("-f", "--file", metavar="FILE", help="default: DIR/Containerfile, or DIR/Dockerfile")
    bd.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    bd.add_argument("--no-cache", action="store_true", help="run every step again")
    bd.set_defaults(func=cmd_build)
    bp = sub.add_parser("builder", help="the build cache: builder prune")
    bsub = bp.add_subparsers(dest="builder_command", metavar="ACTION")
    bsub.required = True
    bsub.add_parser("prune", help="remove every cached build step").set_defaults(func=cmd_build)
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

    _service_parsers(sub)
    lg = sub.add_parser("logs", help="what a detached container wrote (stdout and stderr)")
    lg.add_argument("id", metavar="ID")
    lg.set_defaults(func=cmd_logs)

    gc = sub.add_parser("gc", help="remove every leftover of dead containers: mounts, cgroups, state")
    gc.set_defaults(func=cmd_gc)

    d = sub.add_parser("doctor", help="check this machine: kernel features and the tools the labs use")
    d.set_defaults(func=cmd_doctor)

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

    t = sub.add_parser("tour", help="run every stage headless and print what each proves")
    t.add_argument("layers", nargs="*", metavar="LAYER",
                   help="only these stages (chroot namespaces cgroups unionfs oci network images services)")
    t.set_defaults(func=cmd_tour)

    lab = sub.add_parser("lab", help="the exercises: list, check, hint, solve, reset, variants")
    lsub = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    lsub.required = True
    lsub.add_parser("list", help="every exercise, one a line").set_defaults(func=cmd_lab)
    for action, text in (("check", "exit 0 when it is done, 1 with a hint when not"),
                         ("solve", "run the reference solution"), ("reset", "undo the exercise"),
                         ("variants", "for an instructor: the other correct solutions and the near misses "
                                      "the tests run, with what each ✗ says")):
        x = lsub.add_parser(action, help=text)
        x.add_argument("id", metavar="ID")
        x.set_defaults(func=cmd_lab)
    h = lsub.add_parser("hint", help="hint N (1: where to read, 2: the flag, 3: the command)")
    h.add_argument("id", metavar="ID")
    h.add_argument("n", nargs="?", type=int, default=1, metavar="N")
    h.set_defaults(func=cmd_lab)

    u = sub.add_parser("url", help="print the URL (with its token) of the running JupyterLab")
    u.set_defaults(func=cmd_url)
    return p


def _service_parsers(sub):
    """docker swarm's service commands, and compose's up, down and ps."""
    import argparse
    svc = sub.add_parser("service", help="services: N replicas of one image behind one address "
                         "(create, ls, ps, scale, update, logs, inspect, rm)")
    ssub = svc.add_subparsers(dest="service_command", metavar="ACTION")
    ssub.required = True
    c = ssub.add_parser("create", help="a service of --replicas identical containers, kept running")
    c.add_argument("--name", required=True, help="the service; its replicas are the containers NAME.1, NAME.2...")
    c.add_argument("--replicas", default=1, help="how many (default 1, at most 50)")
    c.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOSTPORT:PORT[/PROTO]",
                   help="one host port for all the replicas, in turn (127.0.0.1 unless IP is given)")
    c.add_argument("--network", help="the network of the replicas (default: labkit)")
    c.add_argument("--alias", action="append", default=[], metavar="NAME",
                   help="one more name the service's address answers to on its network")
    c.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    c.add_argument("-m", "--memory", help="memory limit of each replica, e.g. 32m")
    c.add_argument("--cpus", help="CPU quota of each replica, in cores")
    c.add_argument("--pids-limit", dest="pids", help="maximum number of processes of each replica")
    c.add_argument("--health-cmd", metavar="CMD", help="a shell command run inside each replica: exit 0 is healthy")
    c.add_argument("--health-interval", default="1s", metavar="DURATION", help="between checks (default 1s; docker's is 30s)")
    c.add_argument("--health-timeout", default="2s", metavar="DURATION", help="a check that takes longer fails")
    c.add_argument("--health-retries", type=int, default=3, metavar="N", help="failures in a row that make it unhealthy")
    c.add_argument("--health-start-period", default="0s", metavar="DURATION",
                   help="failures in this time after the start do not count")
    c.add_argument("-d", "--detach", action="store_true", help="do not wait for the replicas to be ready")
    c.add_argument("image", metavar="IMAGE")
    c.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (default: the image's)")
    ssub.add_parser("ls", help="list services")
    x = ssub.add_parser("ps", help="the replicas of a service, and the ones they replaced")
    x.add_argument("name", metavar="SERVICE")
    x = ssub.add_parser("inspect", help="a service's spec, replicas and last events, as JSON")
    x.add_argument("names", nargs="+", metavar="SERVICE")
    x = ssub.add_parser("logs", help="what the replicas wrote, each line with its replica")
    x.add_argument("name", metavar="SERVICE")
    x = ssub.add_parser("scale", help="SERVICE=N: more or fewer replicas")
    x.add_argument("pairs", nargs="+", metavar="SERVICE=N")
    x.add_argument("-d", "--detach", action="store_true")
    x = ssub.add_parser("update", help="a rolling update: one replica at a time, each ready before the next")
    x.add_argument("name", metavar="SERVICE")
    x.add_argument("--image", metavar="IMAGE")
    x.add_argument("--replicas")
    x.add_argument("-d", "--detach", action="store_true")
    x = ssub.add_parser("rm", help="remove services: every replica, the address, the port")
    x.add_argument("-t", "--time", type=float, metavar="SECONDS",
                   help="each replica's time between SIGTERM and SIGKILL (default 2)")
    x.add_argument("names", nargs="+", metavar="SERVICE")
    ssub.add_parser("supervise", help=argparse.SUPPRESS)
    for x in ssub.choices.values():
        x.set_defaults(func=cmd_service)

    cp = sub.add_parser("compose", help="an application of services from one compose file: up, down, ps")
    cp.add_argument("-f", "--file", default="compose.yaml", metavar="FILE", help="default: ./compose.yaml")
    cp.add_argument("-p", "--project-name", dest="project", metavar="NAME",
                    help="prefix of its services and networks (default: the file's directory)")
    csub = cp.add_subparsers(dest="compose_command", metavar="ACTION")
    csub.required = True
    csub.add_parser("up", help="build, create networks and services, wait until they are ready")
    x = csub.add_parser("down", help="remove its services and networks")
    x.add_argument("-t", "--timeout", type=float, metavar="SECONDS",
                   help="each replica's time to stop after SIGTERM, then SIGKILL (default 2)")
    csub.add_parser("ps", help="its services' replicas")
    for x in csub.choices.values():
        x.set_defaults(func=cmd_compose)


def _image_parsers(sub):
    """docker's image commands, as `labkit image ACTION` and the top-level
    shortcuts docker keeps (images, tag, rmi, history, save, load)."""
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


def cmd_build(a):
    _need_root("labkit build")
    from labkit.build import build
    if getattr(a, "builder_command", None) == "prune":
        print(f"removed {build.prune()} cached steps")
        return 0
    return build.main(a)


def cmd_image(a):
    if a.image_command not in ("ls", "inspect", "history") and getattr(a, "registry_command", "") != "status":
        _need_root(f"labkit image {a.image_command}")
    from labkit.cli import image as image_cli
    return image_cli.main(a)


def _resources(a):
    res = {}
    for key in ("memory", "memory_swap", "cpus", "cpu_shares", "cpuset_cpus", "pids"):
        value = getattr(a, key)
        if value is not None:
            res[key] = value
    if not a.privileged:
        from labkit.security.defaults import device_rules
        from labkit.linux.cgroups.devices import parse_line
        res["devices"] = device_rules() + [parse_line(r) for r in a.device_rule]
    if res:   # check the values now, before anything is created
        from labkit.linux.cgroups.resources import Resources
        Resources.from_dict(res)
    return res


def build_config(a):
    """The parsed options of `labkit run` -> (ContainerConfig, RunOptions)."""
    from labkit.images import builder
    from labkit.linux import namespaces
    from labkit.runtime import container
    from labkit.runtime.config import DEFAULT_ENV, DEFAULT_NAMESPACES, ContainerConfig, RunOptions
    if a.all:
        ns = frozenset(namespaces.available())
    elif a.ns is not None:
        ns = namespaces.parse(a.ns)
    else:
        ns = frozenset(DEFAULT_NAMESPACES)
    if a.userns not in ("host", "remap"):
        raise LabkitError(f"--userns {a.userns}: not a mode labkit knows", "give host or remap")
    if a.userns == "remap":
        ns = ns | {"user"}
    missing = [n for n in ns if n not in namespaces.available()]
    if missing:
        from labkit.errors import Unsupported
        raise Unsupported(f"this kernel has no {', '.join(missing)} namespace",
                          "drop it from --ns; `labkit doctor` lists what the kernel has")
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    image = getattr(a, "image", None)
    rootfs_name = a.rootfs or "base"
    if a.hostname and "uts" not in ns:
        raise LabkitError("--hostname needs the uts namespace",
                          "add uts to --ns, or the hostname would be the host's")
    cid = container.check_id(a.name) if a.name else container.new_id()
    env = list(DEFAULT_ENV)
    cwd, user, image_layers = a.workdir or "/", None, []
    if image is not None:
        from labkit.images import runnable
        img = runnable.for_run(image)
        base_dir, image_layers = img["lowers"][0], img["lowers"][1:]
        entrypoint = img["entrypoint"] if a.entrypoint is None else ([a.entrypoint] if a.entrypoint else [])
        cmd = entrypoint + (cmd or (img["cmd"] if a.entrypoint is None else []))
        if not cmd:
            raise LabkitError(f"image '{img['ref']}' has no Cmd nor Entrypoint", f"give a command: labkit run {image} CMD")
        env = runnable.merge_env(env, img["env"])
        cwd, user = a.workdir or img["cwd"], img["user"]
    for item in a.env:
        if "=" not in item:
            raise LabkitError(f"-e {item}: expected NAME=VALUE", "for example -e LANG=C.UTF-8")
        env.append(item)
    if "user" in ns and not {"mnt", "pid"} <= ns:
        raise LabkitError("the user namespace needs the mnt and pid namespaces too",
                          "root in a new user namespace may not chroot in the host's mount namespace "
                          "nor mount /proc for the host's PID namespace: use --ns user,mnt,pid,...")
    if a.tty and a.detach:
        raise LabkitError("-t with -d is not supported: a detached container has no terminal",
                          f"run it with -d only, then `labkit exec -it ID sh` for a shell")
    ns_paths, network = {}, None
    if a.network != "none" or a.publish or a.ip or a.aliases:
        from labkit.stages.network import from_cli
        ns, ns_paths, network = from_cli(a.network, a.ip, a.aliases, a.publish, ns)
    from labkit.security import defaults as security
    sec = security.security_options(a.security_opt)
    guarded = not a.privileged
    caps = security.capabilities(a.cap_add, a.cap_drop, a.privileged)
    config = ContainerConfig(
        capabilities=caps,
        seccomp=security.seccomp_filter(sec["seccomp"], caps, a.privileged),
        masked_paths=list(security.MASKED_PATHS) if guarded else [],
        readonly_paths=list(security.READONLY_PATHS) if guarded else [],
        privileged=a.privileged, no_new_privileges=sec["no_new_privileges"],
        id=cid, args=cmd or ["/bin/sh"], rootfs=base_dir if image else builder.resolve(rootfs_name), namespaces=ns,
        hostname=a.hostname or (cid[:12] if "uts" in ns else None), env=env, cwd=cwd, user=user,
        image=img["ref"] if image else None,
        mount_proc=not a.no_proc, readonly_rootfs=a.read_only, tty=a.tty,
        interactive=a.interactive,
        resources=_resources(a), layers=image_layers + list(a.layer), lxcfs=a.lxcfs,
        network=network, ns_paths=ns_paths,
        # A named rootfs is shared by every container: each gets a writable
        # layer of its own over it (Docker's container layer). A directory
        # given on purpose is used as it is.
        writable_layer=bool(image) or "/" not in rootfs_name,
        # In a user namespace root inside owns the union's lower layers only
        # through an idmapped view of them (labkit/linux/idmap.py).
        idmapped_layers="user" in ns and (bool(image) or "/" not in rootfs_name or bool(a.layer)))
    if config.lxcfs:   # its own PID and mount namespaces and a /proc: say so before anything exists
        from labkit.stages import lxcfs
        lxcfs.check(config)
    if config.layers:  # a missing layer or an unsafe tar: refused before anything exists
        from labkit.stages import unionfs
        unionfs.check_layers(config.layers)
    return config, RunOptions(detach=a.detach, remove=a.rm)


def cmd_run(a):
    _need_root("labkit run")
    from labkit.runtime import runner
    config, options = build_config(a)
    code = runner.run(config, options)
    if options.detach:
        print(config.id)
    return code


def cmd_lab(a):
    from labkit.course import lab
    from labkit.i18n import _
    if a.lab_command == "list":
        for ex in lab.exercises():
            print(f"{ex.id:<18} {ex.notebook:<4} {_(ex.title)}")
        return 0
    if a.lab_command == "hint":
        lab.hint(a.id, a.n)
        return 0
    if a.lab_command == "variants":
        print(lab.variants(a.id))
        return 0
    _need_root(f"labkit lab {a.lab_command}")
    if a.lab_command == "check":
        return 0 if lab.check(a.id) else 1
    getattr(lab, a.lab_command)(a.id)
    print(f"{a.id}: {a.lab_command} done")
    return 0


def cmd_exec(a):
    _need_root("labkit exec")
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
    _need_root("labkit stop")
    from labkit.runtime import lifecycle
    for cid in a.ids:
        lifecycle.stop(cid, a.time)
        print(cid)
    return 0


def cmd_rm(a):
    _need_root("labkit rm")
    from labkit.runtime import lifecycle
    for cid in a.ids:
        lifecycle.remove(cid, force=a.force)
        print(cid)
    return 0


def cmd_commit(a):
    _need_root("labkit commit")
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


def cmd_gc(a):
    _need_root("labkit gc")
    from labkit.runtime import lifecycle
    for line in lifecycle.gc():
        print(line)
    from labkit.services import store, supervisor
    if store.names():   # services outlive their supervisor on disk: the loop takes them up again
        with store.Lock():
            if store.supervisor_pid() is None:
                print(f"started the services' supervisor (pid {supervisor.ensure()})")
    return 0


def cmd_service(a):
    if a.service_command not in ("ls", "ps", "inspect", "logs"):
        _need_root(f"labkit service {a.service_command}")
    from labkit.services import command
    return command.main(a)


def cmd_compose(a):
    if a.compose_command != "ps":
        _need_root(f"labkit compose {a.compose_command}")
    from labkit.services import compose
    return compose.main(a)


def cmd_logs(a):
    from labkit import home
    from labkit.containers import load
    load(a.id)
    path = os.path.join(home.containers_dir(a.id), "log")
    if os.path.exists(path):
        with open(path, "rb") as f:
            sys.stdout.buffer.write(f.read())
    return 0


def cmd_network(a):
    from labkit.cli import network as network_cli
    if a.network_command not in ("ls", "inspect"):
        _need_root(f"labkit network {a.network_command}")
    return network_cli.main(a)


def cmd_doctor(a):
    from labkit.course import doctor
    return doctor.main()


def cmd_rootfs_build(a):
    _need_root("labkit rootfs build")
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
    _need_root("labkit rootfs rm")
    from labkit.images import builder
    builder.remove(a.name)
    return 0


def cmd_tour(a):
    from labkit.course import tour
    unknown = [name for name in a.layers if name not in tour.LAYERS]
    if unknown:
        raise LabkitError(f"labkit tour: no stage named {', '.join(map(repr, unknown))}",
                          f"the stages are {' '.join(tour.LAYERS)}")
    _need_root("labkit tour")
    return tour.main(a.layers or tour.LAYERS)


def cmd_url(a):
    from labkit.course import jupyter
    return jupyter.print_url()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["oci"]:   # runc's own flags (--root, --help ...) pass through untouched
        from labkit.cli import runtime as runtime_cli
        return runtime_cli.main(argv[1:], prog="labkit oci")
    try:
        if argv[:1] == ["run"] and "--help" not in argv[1:]:
            from labkit.startpath import hold_gc
            hold_gc()                       # the monitor resumes it once the program runs
            args = parse_run(argv[1:])      # the start path: no argparse
            if args.detach and os.geteuid() == 0:
                from labkit.runtime.servers import reaper_client as reaper
                if reaper.wanted():          # the reaper runs it, and waits for the container
                    return reaper.run("labkit.cli.main:main", argv)
            from labkit.startpath import warm_cgroup_attach
            warm_cgroup_attach()            # its container is moved into a cgroup soon
        else:
            args = _parser().parse_args(argv)
        return args.func(args) or 0
    except LabkitError as e:
        print(f"labkit: {e.localized()}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt:
        print("labkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
