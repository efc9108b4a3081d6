"""The `labkit` command: docker's command line, one file per noun beside this
one (run, container, network, image, build, service, lab), each with its
flags and its handlers. Each command imports only what it uses: `labkit run`
is the container start path and must stay lean (labkit/startpath.py)."""

import os
import sys

# command -> the file of labkit/cli/ that parses and runs it. A command line
# imports that file alone; --help (or an unknown command) imports them all.
COMMANDS = {
    "run": "run",
    "exec": "container", "ps": "container", "stop": "container", "rm": "container",
    "commit": "container", "logs": "container", "gc": "container",
    "network": "network",
    "image": "image", "images": "image", "history": "image", "tag": "image", "rmi": "image",
    "save": "image", "load": "image", "pull": "image", "push": "image", "registry": "image",
    "rootfs": "image",
    "build": "build", "builder": "build",
    "service": "service", "compose": "service",
    "doctor": "lab", "tour": "lab", "lab": "lab", "url": "lab",
}
NOUNS = list(dict.fromkeys(COMMANDS.values()))


def _parser(nouns=NOUNS):
    import argparse
    import importlib
    p = argparse.ArgumentParser(prog="labkit", description=(
        "Build a container out of Linux primitives: chroot, namespaces, cgroups, "
        "union filesystem, container format."))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for noun in nouns:
        importlib.import_module(f"labkit.cli.{noun}").add_parsers(sub)
        if noun == "container":
            _oci_parser(sub)
    return p


def _oci_parser(sub):
    import argparse
    oci = sub.add_parser(
        "oci", help="the OCI runtime: spec, create, start, state, kill, delete, run, list, exec",
        description="An OCI runtime driven by a bundle's config.json, with runc's command line "
        "(the same as the labkit-runtime command): labkit oci [--root DIR] COMMAND ...", add_help=False)
    oci.add_argument("args", nargs=argparse.REMAINDER, help="runc's arguments, e.g. run -b BUNDLE ID")
    # main() hands `labkit oci ...` to labkit/cli/runtime.py before argparse
    # sees it (runc's flags must pass untouched): this entry only lists it in --help.


def _parse(argv):
    """The parsed command line: `labkit run` by its own parser (no argparse on
    the start path); any other command by argparse, with its noun's parsers alone."""
    if argv[:1] == ["run"] and "--help" not in argv[1:]:
        from labkit.cli import run
        from labkit.startpath import hold_gc
        hold_gc()                           # the monitor resumes it once the program runs
        args = run.parse_run(argv[1:])
        if args.detach and os.geteuid() == 0:
            from labkit.runtime.servers import reaper_client
            if reaper_client.wanted():      # the reaper runs it, and waits for the container
                return None
        from labkit.startpath import warm_cgroup_attach
        warm_cgroup_attach()                # its container is moved into a cgroup soon
        return args
    noun = COMMANDS.get(argv[0]) if argv and not argv[0].startswith("-") else None
    return _parser([noun] if noun else NOUNS).parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["oci"]:   # runc's own flags (--root, --help ...) pass through untouched
        from labkit.cli import runtime
        return runtime.main(argv[1:], prog="labkit oci")
    from labkit.errors import guarded

    def body():
        args = _parse(argv)
        if args is None:                    # `labkit run -d`: the reaper runs it, as this command
            from labkit.runtime.servers import reaper_client
            return reaper_client.run("labkit.cli.main:main", argv)
        return args.func(args)
    return guarded("labkit", body)
