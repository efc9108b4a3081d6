"""`labkit run`: docker run's command line, read twice from one table of
options: by parse_run() on the container start path (no argparse), and by
argparse for --help; build_config() turns the options into the runtime's
ContainerConfig, one step each (namespaces, image and command, network,
security), every check before anything is created."""

from labkit.errors import need_root
from labkit.errors import LabkitError

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
            i = _short_options(args, i, spec, values, store)
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


def _short_options(args, i, spec, values, store):
    """A cluster of short options at args[i] (-it, -dit, -m64m, -e K=V):
    flags up to the first option that takes a value, which takes the rest
    of the word or the next one. Returns the index of the last word used."""
    arg = args[i]
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
    return i


def add_parsers(sub):
    """argparse's view of RUN_OPTIONS: `labkit run --help`."""
    import argparse
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
    from labkit.runtime import container
    from labkit.runtime.config import ContainerConfig, RunOptions
    ns = _namespaces(a)
    _check_combinations(a, ns)
    cid = container.check_id(a.name) if a.name else container.new_id()
    image = getattr(a, "image", None)     # argparse's namespace (--help) has none
    what = _image_and_command(a, image)
    ns_paths, network = {}, None
    if a.network != "none" or a.publish or a.ip or a.aliases:
        from labkit.stages.network import from_cli
        ns, ns_paths, network = from_cli(a.network, a.ip, a.aliases, a.publish, ns)
    # A named rootfs or an image is shared by every container: each gets a
    # writable layer of its own over it (Docker's container layer). A
    # directory given on purpose is used as it is.
    shared = bool(image) or "/" not in (a.rootfs or "base")
    config = ContainerConfig(
        id=cid, namespaces=ns, hostname=a.hostname or (cid[:12] if "uts" in ns else None),
        mount_proc=not a.no_proc, readonly_rootfs=a.read_only, tty=a.tty, interactive=a.interactive,
        resources=_resources(a), lxcfs=a.lxcfs, network=network, ns_paths=ns_paths,
        writable_layer=shared,
        # In a user namespace root inside owns the union's lower layers only
        # through an idmapped view of them (labkit/linux/idmap.py).
        idmapped_layers="user" in ns and (shared or bool(a.layer)),
        **what, **_security(a))
    if config.lxcfs:   # its own PID and mount namespaces and a /proc: say so before anything exists
        from labkit.stages import lxcfs
        lxcfs.check(config)
    if config.layers:  # a missing layer or an unsafe tar: refused before anything exists
        from labkit.stages import unionfs
        unionfs.check_layers(config.layers)
    return config, RunOptions(detach=a.detach, remove=a.rm)


def _namespaces(a):
    """--ns, --all and --userns -> the set of namespace names, each one this
    kernel has."""
    from labkit.linux import namespaces
    from labkit.runtime.config import DEFAULT_NAMESPACES
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
    return ns


def _check_combinations(a, ns):
    """Options that make no sense together, refused before anything exists."""
    if a.hostname and "uts" not in ns:
        raise LabkitError("--hostname needs the uts namespace",
                          "add uts to --ns, or the hostname would be the host's")
    if "user" in ns and not {"mnt", "pid"} <= ns:
        raise LabkitError("the user namespace needs the mnt and pid namespaces too",
                          "root in a new user namespace may not chroot in the host's mount namespace "
                          "nor mount /proc for the host's PID namespace: use --ns user,mnt,pid,...")
    if a.tty and a.detach:
        raise LabkitError("-t with -d is not supported: a detached container has no terminal",
                          f"run it with -d only, then `labkit exec -it ID sh` for a shell")
    for item in a.env:
        if "=" not in item:
            raise LabkitError(f"-e {item}: expected NAME=VALUE", "for example -e LANG=C.UTF-8")


def _image_and_command(a, image):
    """The root filesystem, its layers, the command, environment, working
    directory and user: from the image (its Entrypoint, Cmd, Env, WorkingDir,
    User, as docker merges them with the options) or from --rootfs."""
    from labkit.runtime.config import DEFAULT_ENV
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if image is None:
        from labkit.images import builder
        return {"rootfs": builder.resolve(a.rootfs or "base"), "layers": list(a.layer), "image": None,
                "args": cmd or ["/bin/sh"], "env": list(DEFAULT_ENV) + a.env, "cwd": a.workdir or "/",
                "user": None}
    from labkit.images import runnable
    img = runnable.for_run(image)
    entrypoint = img["entrypoint"] if a.entrypoint is None else ([a.entrypoint] if a.entrypoint else [])
    cmd = entrypoint + (cmd or (img["cmd"] if a.entrypoint is None else []))
    if not cmd:
        raise LabkitError(f"image '{img['ref']}' has no Cmd nor Entrypoint", f"give a command: labkit run {image} CMD")
    return {"rootfs": img["lowers"][0], "layers": img["lowers"][1:] + list(a.layer), "image": img["ref"],
            "args": cmd, "env": runnable.merge_env(list(DEFAULT_ENV), img["env"]) + a.env,
            "cwd": a.workdir or img["cwd"], "user": img["user"]}


def _security(a):
    """Capabilities, seccomp, masked and read-only paths, no_new_privs: Docker's
    defaults, less what --cap-add, --cap-drop, --privileged and --security-opt lift."""
    from labkit.security import defaults as security
    sec = security.security_options(a.security_opt)
    guarded = not a.privileged
    caps = security.capabilities(a.cap_add, a.cap_drop, a.privileged)
    return {"capabilities": caps, "seccomp": security.seccomp_filter(sec["seccomp"], caps, a.privileged),
            "masked_paths": list(security.MASKED_PATHS) if guarded else [],
            "readonly_paths": list(security.READONLY_PATHS) if guarded else [],
            "privileged": a.privileged, "no_new_privileges": sec["no_new_privileges"]}


def cmd_run(a):
    need_root("labkit run")
    from labkit.runtime import runner
    config, options = build_config(a)
    code = runner.run(config, options)
    if options.detach:
        print(config.id)
    return code
