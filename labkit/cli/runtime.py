"""`labkit-runtime`: an OCI runtime with runc's command line.

    labkit-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND ...

    spec   [--bundle B]                       write a default config.json
    features                                  what this runtime supports (JSON)
    create [-b B] [--pid-file F] [--console-socket S] [--no-pivot] ID
    start  ID                                 state  ID
    pause  ID                                 resume ID
    ps     [--format table|json] ID [PS_ARGS] update [--resources FILE|-] [--memory N] ... ID
    kill   ID [SIGNAL]                        delete [-f] ID
    run    [-b B] [-d] [--pid-file F] [--console-socket S] [--no-pivot] [--keep] ID
    list   [-q] [--format table|json]
    exec   [-t] [-d] [--console-socket S] [--pid-file F] [--cwd D] [-e K=V] [-u UID[:GID]]
           [--process FILE] ID [CMD ...]

A small parser of its own instead of argparse: this is on the container
start path, which is timed against runc (labkit/startpath.py). The state of each container lives in
$LABKIT_HOME/containers/<id> (where `labkit gc` finds it), or <root>/<id>.
"""

import os
import sys

from labkit.errors import LabkitError

USAGE = __doc__.split("\n\n")[1]

# command -> {flag: (dest, takes a value)}; a dest ending in "+" collects a list.
_B = {"--bundle": ("bundle", True), "-b": ("bundle", True)}
_PID = {"--pid-file": ("pid_file", True)}
_CONSOLE = {"--console-socket": ("console_socket", True)}
_NOOP = {"--no-new-keyring": ("no_new_keyring", False), "--preserve-fds": ("preserve_fds", True),
         "--no-subreaper": ("no_subreaper", False)}
COMMANDS = {
    "spec": dict(_B, **{"--rootless": ("rootless", False)}),
    "create": dict(_B, **_PID, **_CONSOLE, **_NOOP, **{"--no-pivot": ("no_pivot", False)}),
    "run": dict(_B, **_PID, **_CONSOLE, **_NOOP, **{"--no-pivot": ("no_pivot", False),
                                                    "-d": ("detach", False), "--detach": ("detach", False),
                                                    "--keep": ("keep", False)}),
    "start": {}, "state": {}, "features": {}, "pause": {}, "resume": {},
    "ps": {"-f": ("format", True), "--format": ("format", True)},
    "update": {"-r": ("resources", True), "--resources": ("resources", True),
               "--memory": ("memory", True), "--memory-swap": ("memory_swap", True),
               "--cpu-shares": ("cpu_shares", True), "--cpu-quota": ("cpu_quota", True),
               "--cpu-period": ("cpu_period", True), "--cpuset-cpus": ("cpuset_cpus", True),
               "--cpuset-mems": ("cpuset_mems", True), "--pids-limit": ("pids_limit", True)},
    "kill": {"-a": ("all", False), "--all": ("all", False)},
    "delete": {"-f": ("force", False), "--force": ("force", False)},
    "list": {"-q": ("quiet", False), "--quiet": ("quiet", False),
             "-f": ("format", True), "--format": ("format", True)},
    "exec": dict(_PID, **_CONSOLE, **{"-t": ("tty", False), "--tty": ("tty", False),
                                      "-d": ("detach", False), "--detach": ("detach", False),
                                      "--cwd": ("cwd", True), "-e": ("env+", True), "--env": ("env+", True),
                                      "-u": ("user", True), "--user": ("user", True),
                                      "-p": ("process", True), "--process": ("process", True),
                                      "--no-new-privs": ("no_new_privs", False),
                                      "-c": ("cap+", True), "--cap": ("cap+", True),
                                      "-g": ("additional_gids+", True), "--additional-gids": ("additional_gids+", True),
                                      "--preserve-fds": ("preserve_fds", True)}),
}
GLOBAL = {"--root": ("root", True), "--log": ("log", True), "--log-format": ("log_format", True),
          "--debug": ("debug", False), "--systemd-cgroup": ("systemd_cgroup", False),
          "--rootless": ("rootless", True), "--criu": ("criu", True),
          "--help": ("help", False), "-h": ("help", False), "--version": ("version", False),
          "-v": ("version", False)}
# How many positional arguments each command takes (exec: the rest is the command).
POSITIONAL = {"features": 0, "pause": 1, "resume": 1, "ps": -1, "update": 1, "spec": 0, "create": 1, "run": 1, "start": 1, "state": 1, "kill": 2, "delete": 1,
              "list": 0, "exec": -1}


# A flag left out: a list for the "+" flags, None for those that take a
# value, False for the others; except these, runc's defaults.
DEFAULTS = {"log_format": "text", "format": "table", "rootless": "false"}


class Args:
    """The parsed command line: every flag runc has is an attribute, given or
    its default (a check of one command may look at another's flag)."""

    def __init__(self):
        self.positional = []
        for flags in (GLOBAL, *COMMANDS.values()):
            self.defaults(flags)

    def defaults(self, flags):
        for dest, takes in flags.values():
            name = dest.rstrip("+")
            if name not in self.__dict__:
                setattr(self, name, DEFAULTS.get(name, [] if dest.endswith("+") else (None if takes else False)))


def _take(flags, argv, i, a, stop_at_positional):
    """Parse flags from argv[i:] into ``a``; returns the index where it stopped."""
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            a.positional += argv[i + 1:]
            return len(argv)
        name, eq, value = arg.partition("=")
        if arg.startswith("-") and len(arg) > 1 and not (name.lstrip("-").isdigit() and name.startswith("-")):
            if name not in flags:
                raise LabkitError(f"flag provided but not defined: {name}", "see `labkit-runtime --help`")
            dest, takes = flags[name]
            if takes:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise LabkitError(f"flag needs an argument: {name}")
                    value = argv[i]
            elif eq:
                value = value.lower() not in ("false", "0")
            else:
                value = True
            if dest.endswith("+"):
                dest = dest[:-1]
                value = getattr(a, dest) + [value]
            setattr(a, dest, value)
            i += 1
            continue
        if stop_at_positional:
            return i
        a.positional.append(arg)
        i += 1
    return i


def parse(argv):
    a = Args()
    i = _take(GLOBAL, argv, 0, a, stop_at_positional=True)
    if a.help or a.version:
        a.command = "help" if a.help else "version"
        return a
    if i >= len(argv):
        raise LabkitError("no command given", "commands: " + ", ".join(COMMANDS))
    a.command = argv[i]
    if a.command in ("-h", "--help", "help"):
        a.command = "help"
        return a
    if a.command not in COMMANDS:
        raise LabkitError(f"No help topic for '{a.command}'", "commands: " + ", ".join(COMMANDS))
    flags = COMMANDS[a.command]
    if a.command in ("exec", "ps"):   # flags, the id, then the command's (ps's) own flags untouched
        i = _take(flags, argv, i + 1, a, stop_at_positional=True)
        a.positional = argv[i:]
        if a.positional[1:2] == ["--"]:
            a.positional = a.positional[:1] + a.positional[2:]
    else:
        _take(flags, argv, i + 1, a, stop_at_positional=False)
    want = POSITIONAL[a.command]
    if want == 1 and len(a.positional) != 1 or want == 0 and a.positional:
        raise LabkitError(f"{a.command}: expected {want} argument{'s' if want != 1 else ''} "
                          f"({'the container id' if want else 'none'}), got {len(a.positional)}",
                          f"labkit-runtime {a.command} {'ID' if want else ''}".strip())
    if want in (2, -1) and not a.positional:
        raise LabkitError(f"{a.command}: the container id is missing", f"labkit-runtime {a.command} ID ...")
    if a.command == "kill" and len(a.positional) > 2:
        raise LabkitError("kill: expected ID [SIGNAL]")
    return a


def _unsupported(a):
    if a.systemd_cgroup:
        raise LabkitError("--systemd-cgroup is not supported by labkit",
                          "labkit drives cgroups as runc's cgroupfs driver does (cgroupsPath as a path); drop the flag")
    if str(a.rootless).lower() not in ("false", "auto"):
        raise LabkitError("--rootless is not supported by labkit", "run it as root")
    preserve_fds(a)   # a bad count is refused before anything is created


def preserve_fds(a):
    """How many of the caller's fds after stdio (3, 4, ...) the container's
    process gets: --preserve-fds N, plus systemd's LISTEN_FDS (socket
    activation), as runc counts them."""
    counts = []
    for what, text in (("--preserve-fds", a.preserve_fds),
                       ("LISTEN_FDS", os.environ.get("LISTEN_FDS"))):
        if text in (None, ""):
            continue
        if not (str(text).isascii() and str(text).isdigit()):
            raise LabkitError(f"{what}: {text!r} is not a number of file descriptors",
                              "give a count, e.g. --preserve-fds 2 passes fds 3 and 4")
        counts.append(int(text))
    return sum(counts)


def _listen_env(c):
    """LISTEN_FDS passes through to the container, its pid 1 the listener (runc's rule)."""
    if os.environ.get("LISTEN_FDS"):
        c.env += [f"LISTEN_FDS={os.environ['LISTEN_FDS']}", "LISTEN_PID=1"]


def cmd_spec(a):
    from labkit.oci import spec
    spec.write_default(a.bundle or ".")
    return 0


def cmd_features(a):
    import json
    from labkit.oci.features import features
    print(json.dumps(features(), indent="    "))
    return 0


def cmd_pause(a):
    from labkit.oci import state
    state.pause(a.positional[0])
    return 0


def cmd_resume(a):
    from labkit.oci import state
    state.resume(a.positional[0])
    return 0


def _printed_json(a, value):
    """--format json: print ``value`` and say so; table: leave it to the caller."""
    fmt = a.format
    if fmt == "json":
        import json
        print(json.dumps(value))
        return True
    if fmt != "table":
        raise LabkitError(f"invalid format option {fmt!r}", "use --format table or json")
    return False


def cmd_ps(a):
    """runc ps: `ps -ef` (or the given ps flags) cut to the container's
    processes; --format json: their pids."""
    import subprocess
    from labkit.oci import state
    pids = state.processes(a.positional[0])
    if _printed_json(a, pids):
        return 0
    out = subprocess.run(["ps", *(a.positional[1:] or ["-ef"])], capture_output=True, text=True)
    lines = out.stdout.splitlines()
    if not lines or "PID" not in lines[0].split():
        raise LabkitError("ps: its output has no PID column", "give ps flags that print one (e.g. -ef)")
    column = lines[0].split().index("PID")
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            print(line)
    return 0


# runc update's flags -> config.json's linux.resources.
_UPDATE_FLAGS = {"memory": ("memory", "limit"), "memory_swap": ("memory", "swap"),
                 "cpu_shares": ("cpu", "shares"), "cpu_quota": ("cpu", "quota"),
                 "cpu_period": ("cpu", "period"), "cpuset_cpus": ("cpu", "cpus"),
                 "cpuset_mems": ("cpu", "mems"), "pids_limit": ("pids", "limit")}


def cmd_update(a):
    import json
    from labkit.oci import state
    res = {}
    source = a.resources
    if source:
        try:
            text = sys.stdin.read() if source == "-" else open(source).read()
            res = json.loads(text)
        except (OSError, ValueError) as e:
            raise LabkitError(f"update --resources {source}: {e}", "give linux.resources as JSON") from None
        if not isinstance(res, dict):
            raise LabkitError(f"update --resources {source}: not a JSON object", "give linux.resources as JSON")
    for dest, (group, key) in _UPDATE_FLAGS.items():
        value = getattr(a, dest)
        if value is not None:
            text = str(value)
            res.setdefault(group, {})[key] = text if key in ("cpus", "mems") else _number(f"--{dest.replace('_', '-')}", text)
    state.update(a.positional[0], res)
    return 0


def _number(flag, text):
    from labkit.linux.cgroups.resources import parse_memory
    if flag in ("--memory", "--memory-swap"):
        return parse_memory(text, flag=flag[2:])
    try:
        return int(text)
    except ValueError:
        raise LabkitError(f"update {flag} {text}: not a number", f"for example {flag} 100000") from None


def cmd_create(a):
    from labkit.oci import state
    state.create(a.bundle or ".", a.positional[0], pid_file=a.pid_file,
                 console_socket=a.console_socket, no_pivot=a.no_pivot,
                 preserve_fds=preserve_fds(a), edit=_listen_env)
    return 0


def cmd_run(a):
    from labkit.oci import state
    cid = a.positional[0]
    bundle = a.bundle or "."
    if a.detach:
        state.create(bundle, cid, pid_file=a.pid_file,
                     console_socket=a.console_socket, no_pivot=a.no_pivot,
                     preserve_fds=preserve_fds(a), edit=_listen_env)
        try:
            state.start(cid)
        except LabkitError:
            state.delete(cid, force=True)
            raise
        return 0
    from labkit.runtime import runner
    sock = a.console_socket
    pid_file = a.pid_file
    keep = a.keep
    c = state.config(bundle, cid)
    _listen_env(c)
    opts = state.options(pid_file, sock, a.no_pivot, remove=not keep,
                         preserve_fds=preserve_fds(a))
    state.check_terminal(c, opts)
    code = runner.run(c, opts)
    if c.hooks.get("poststop"):
        from labkit.stages.oci import run_hook_phases
        from labkit.containers import STOPPED
        run_hook_phases(c, ("poststop",), 0, STOPPED)
    return code


def cmd_start(a):
    from labkit.oci import state
    state.start(a.positional[0])
    return 0


def cmd_state(a):
    import json
    from labkit.oci import state
    print(json.dumps(state.oci_state(a.positional[0]), indent="  "))
    return 0


def cmd_kill(a):
    from labkit.oci import state
    state.kill(a.positional[0], a.positional[1] if len(a.positional) > 1 else "SIGTERM",
               all_processes=a.all)
    return 0


def cmd_delete(a):
    from labkit.oci import state
    state.delete(a.positional[0], force=a.force)
    return 0


def cmd_list(a):
    from labkit.oci import state
    states = state.list_states()
    if a.quiet:
        for s in states:
            print(s["id"])
        return 0
    if _printed_json(a, states):
        return 0
    import time
    print(f"{'ID':<14}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}{'CREATED':<30}OWNER")
    for s in states:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s["created"] or 0))
        print(f"{s['id']:<14}{s['pid']:<10}{s['status']:<10}{s['bundle']:<40}{created:<30}{s['owner']}")
    return 0


def _exec_process(a):
    """The ContainerConfig edit an exec asks for: --process FILE, or the flags."""
    import json
    proc = {}
    if a.process:
        try:
            with open(a.process) as f:
                proc = json.load(f)
        except (OSError, ValueError) as e:
            raise LabkitError(f"--process {a.process}: {e}", "give a JSON file holding a config.json 'process'")
        if not proc.get("args"):
            raise LabkitError(f"--process {a.process}: process.args must not be empty")
    user = None
    if a.user:
        uid, _, gid = a.user.partition(":")
        if not (uid.isascii() and uid.isdigit()) or (gid and not (gid.isascii() and gid.isdigit())):
            raise LabkitError(f"--user {a.user}: expected UID[:GID] as numbers")
        user = {"uid": int(uid), "gid": int(gid or 0)}
    extra_env = list(a.env)
    for e in extra_env:
        if "=" not in e:
            raise LabkitError(f"--env {e}: expected NAME=VALUE")

    def edit(config):
        if proc:
            config.env = list(proc.get("env") or ())
            config.cwd = proc.get("cwd") or config.cwd
            if "capabilities" in proc:
                config.capabilities = proc["capabilities"]
            if "user" in proc:
                config.user = {"uid": proc["user"].get("uid", 0), "gid": proc["user"].get("gid", 0),
                               "additionalGids": proc["user"].get("additionalGids") or [],
                               "umask": proc["user"].get("umask")}
            if "rlimits" in proc:
                config.rlimits = proc["rlimits"]
            if "noNewPrivileges" in proc:
                config.no_new_privileges = proc["noNewPrivileges"]
        config.env = config.env + extra_env
        if a.cwd:
            config.cwd = a.cwd
        if user is not None:
            config.user = dict(config.user or {}, **user)
        if a.additional_gids:
            config.user = dict(config.user or {"uid": 0, "gid": 0},
                               additionalGids=[int(g) for g in a.additional_gids])
        if a.cap:
            caps = config.capabilities or {}
            config.capabilities = {k: sorted(set(caps.get(k, [])) | set(a.cap))
                                   for k in ("bounding", "effective", "permitted")}
        if a.no_new_privs:
            config.no_new_privileges = True
        return config
    args = proc.get("args") if proc else a.positional[1:]
    tty = bool(proc.get("terminal")) if proc else a.tty
    return edit, args, tty


def cmd_exec(a):
    from labkit.runtime import execute
    from labkit.oci import state
    cid = a.positional[0]
    from labkit.containers import RUNNING
    _, status = state.load(cid)
    if status != RUNNING:
        raise LabkitError(f"cannot exec in a container that is {status}: {cid}", "start it first")
    edit, args, tty = _exec_process(a)
    if not args:
        raise LabkitError("exec: the command is missing", f"labkit-runtime exec {cid} CMD ...")
    sock = a.console_socket
    if sock and not tty:
        raise LabkitError("exec --console-socket needs a terminal", "add -t (or process.terminal: true)")
    if tty and a.detach and not sock:
        raise LabkitError("cannot allocate tty if labkit-runtime will detach without setting console socket",
                          "give --console-socket PATH, or drop -t")
    sock = os.path.abspath(sock) if sock else None
    pid_file = os.path.abspath(a.pid_file) if a.pid_file else None
    if a.detach:
        # runc's contract: the process is the caller's once it runs; nothing stays between.
        return execute.execute(cid, args, tty=tty, interactive=True, edit=edit, pid_file=pid_file,
                               preserve_fds=preserve_fds(a), detach=True, console_socket=sock)
    return execute.execute(cid, args, tty=tty, interactive=True, edit=edit, pid_file=pid_file,
                           preserve_fds=preserve_fds(a), console_socket=sock)


def _log(a, message, level="error"):
    path = a.log
    if not path:
        return
    import time
    try:
        with open(path, "a") as f:
            if a.log_format == "json":
                import json
                f.write(json.dumps({"level": level, "msg": message,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
            else:
                f.write(f"time=\"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\" level={level} msg=\"{message}\"\n")
    except OSError:
        pass


def main(argv=None, prog="labkit-runtime"):
    from labkit.startpath import hold_gc
    hold_gc()   # every command is short, or becomes a monitor that resumes it
    argv = sys.argv[1:] if argv is None else argv
    parsed = []   # the command line once parsed: its --log gets the error too

    def body():
        a = parse(argv)
        parsed.append(a)
        if a.command == "help":
            print(USAGE)
            return 0
        if a.command == "version":
            from labkit import __version__
            from labkit.oci.spec import OCI_VERSION
            # runc's shape, line by line: dockerd reads "version" and "commit:"
            # (`docker info`'s runtime), containerd and podman the first line.
            print(f"{prog} version {__version__}\ncommit: v{__version__}\nspec: {OCI_VERSION}")
            return 0
        _unsupported(a)
        if a.log_format not in ("text", "json"):
            raise LabkitError(f"invalid log-format: {a.log_format}", "use text or json")
        if a.log:           # runc's warnings go to its log, not to stderr
            from labkit import errors
            errors.WARN = lambda text: _log(a, text, level="warning")
        if a.root:
            os.environ["LABKIT_STATE_ROOT"] = os.path.abspath(a.root)
            os.makedirs(a.root, 0o711, exist_ok=True)
        if a.command != "spec" and os.geteuid() != 0:
            raise LabkitError(f"{prog} {a.command} needs root", "run it with sudo")
        if a.command in ("run", "create", "exec"):   # each moves a process into a cgroup
            from labkit.startpath import warm_cgroup_attach
            warm_cgroup_attach()
        return HANDLERS[a.command](a)

    from labkit.errors import guarded
    return guarded(prog, body, runc=True, log=lambda message: parsed and _log(parsed[0], message))


HANDLERS = {"spec": cmd_spec, "features": cmd_features, "create": cmd_create, "start": cmd_start,
            "state": cmd_state, "pause": cmd_pause, "resume": cmd_resume, "ps": cmd_ps,
            "update": cmd_update, "kill": cmd_kill, "delete": cmd_delete, "run": cmd_run,
            "list": cmd_list, "exec": cmd_exec}


if __name__ == "__main__":
    raise SystemExit(main())
