"""`labkit run`'s lean command-line reader agrees with the argparse parser
built from the same option table (no root needed)."""

import pytest

from labkit.cli import main as cli, run
from labkit.errors import LabkitError

CASES = [
    ["--", "true"],
    ["true"],
    ["-it", "--hostname", "box", "--", "sh"],
    ["-d", "--name=web", "-m", "64m", "--cpus", "0.5", "--pids-limit", "20", "sleep", "9"],
    ["-m64m", "-e", "A=1", "-eB=2", "--env=C=3", "--layer", "a", "--layer=b", "ls", "-l"],
    ["--ns", "pid,net", "--rm", "--read-only", "--no-proc", "--lxcfs", "-w", "/tmp", "echo", "--x"],
    ["--all", "--rootfs", "/srv/root", "--memory-swap", "-1", "--cpu-shares", "512",
     "--cpuset-cpus", "0", "--pids", "5", "-h", "n", "--", "-weird-name"],
]


@pytest.mark.parametrize("argv", CASES, ids=lambda a: " ".join(a))
def test_same_as_argparse(argv):
    lean = run.parse_run(argv)
    full = cli._parser().parse_args(["run", *argv])
    for _, dest, *_ in run.RUN_OPTIONS:
        assert getattr(lean, dest) == getattr(full, dest), dest
    strip = lambda cmd: cmd[1:] if cmd[:1] == ["--"] else cmd   # noqa: E731 — build_config does this
    # docker's order: the first word after the options is the IMAGE, unless
    # `--` (or --rootfs) says there is none.
    words = strip(full.cmd)
    if full.cmd[:1] == ["--"] or full.rootfs is not None or not words:
        assert lean.image is None and strip(lean.cmd) == words
    else:
        assert [lean.image] + lean.cmd == words


@pytest.mark.parametrize("argv, image, cmd", [
    (["busybox"], "busybox", []),
    (["-d", "--name", "w", "lab/web:v1", "httpd", "-f"], "lab/web:v1", ["httpd", "-f"]),
    (["--rm", "--", "echo", "hi"], None, ["echo", "hi"]),
    (["--rootfs", "base", "echo", "hi"], None, ["echo", "hi"]),
    (["--rm"], None, []),
])
def test_image_or_command(argv, image, cmd):
    a = run.parse_run(argv)
    assert a.image == image and [w for w in a.cmd if w != "--"] == cmd


@pytest.mark.parametrize("argv, words", [
    (["--bogus"], ["unknown option '--bogus'"]),
    (["-x"], ["unknown option '-x'"]),
    (["--name"], ["--name needs a value"]),
    (["--rm=yes"], ["--rm takes no value"]),
    (["--ns", "pid", "--all"], ["exclude each other"]),
])
def test_errors_are_one_line(argv, words):
    with pytest.raises(LabkitError) as info:
        run.parse_run(argv)
    for w in words:
        assert w in str(info.value)
    assert "\n" not in str(info.value)


def test_every_command_is_parsed_by_the_file_the_table_names():
    """labkit/cli/main.py's COMMANDS: `labkit CMD` imports only the file that
    parses CMD, so the table must name each command's own file."""
    import argparse
    for noun in cli.NOUNS:
        sub = argparse.ArgumentParser().add_subparsers()
        __import__(f"labkit.cli.{noun}", fromlist=["add_parsers"]).add_parsers(sub)
        mine = set(sub.choices)
        assert {c for c, n in cli.COMMANDS.items() if n == noun} == mine, noun


def test_labkit_runtime_has_a_handler_for_every_command():
    from labkit.cli import runtime
    assert set(runtime.HANDLERS) == set(runtime.COMMANDS)
