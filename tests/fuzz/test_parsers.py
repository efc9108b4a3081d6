"""Each parser of untrusted input answers every input with a result or one
clear line (a LabkitError: message and hint, no newline in the message):
never another exception, which the CLI would print as a traceback.

What is untrusted: a bundle's config.json (labkit-runtime, driven by podman
and containerd), a Containerfile and a compose file (a student's, or a
downloaded one), the -p, --device-cgroup-rule and duration specs of the
command line, an image reference, and the layer tars and archives of
tests/fuzz/test_archives.py."""

import copy
import json
import os

import pytest
import yaml
from hypothesis import given, strategies as st

from labkit.errors import LabkitError

COUNTS = {}


def answered(name, call, *args, **kw):
    """Call; a LabkitError is an answer, any other exception fails."""
    COUNTS[name] = COUNTS.get(name, 0) + 1
    try:
        return call(*args, **kw)
    except LabkitError as e:
        assert e.message and "\n" not in e.message.strip(), repr(e.message)
        assert "Traceback" not in str(e)
        return e


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)


def _paths(node, here=()):
    """Every path to a value in a JSON tree."""
    yield here
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, here + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, here + (i,))


def mutated(base):
    """A JSON tree like ``base`` with a few of its values replaced by
    anything, or removed: deep inputs that a random tree would rarely reach."""
    paths = [p for p in _paths(base) if p]

    @st.composite
    def build(draw):
        tree = copy.deepcopy(base)
        for _ in range(draw(st.integers(1, 4))):
            path = draw(st.sampled_from(paths))
            parent = tree
            try:
                for key in path[:-1]:
                    parent = parent[key]
                if draw(st.booleans()) and isinstance(parent, dict):
                    parent.pop(path[-1], None)
                else:
                    parent[path[-1]] = draw(json_values)
            except (KeyError, IndexError, TypeError):
                continue        # an earlier change took the path away
        return tree
    return build()


# -- the command line's specs -------------------------------------------------

@given(st.text(max_size=40) | st.from_regex(r"[\[\]0-9.:a-f]{0,20}(/(tcp|udp|sctp|))?", fullmatch=True))
def test_publish_specs(spec):
    from labkit.networks import ports
    answered("-p", ports.parse, spec)


@given(st.text(max_size=30) | st.from_regex(r"[abcup]? ?[0-9*]{0,4}:?[0-9*]{0,4} ?[rwmx]{0,4}", fullmatch=True))
def test_device_cgroup_rules(text):
    from labkit.linux.cgroups import devices
    answered("--device-cgroup-rule", devices.parse_line, text)


@given(st.text(max_size=20) | st.from_regex(r"[0-9.]{0,5}(h|m|s|ms)?[0-9.]{0,4}(s|ms)?", fullmatch=True))
def test_durations(text):
    from labkit.services import store
    answered("duration", store.parse_duration, text, "--health-interval")


@given(st.text(max_size=80) | st.from_regex(r"[a-z0-9.:/_@-]{0,40}(:[a-zA-Z0-9._-]{0,10})?(@sha256:[0-9a-f]{0,64})?",
                                             fullmatch=True))
def test_image_references(text):
    from labkit.images import reference
    answered("image reference", reference.parse, text)


# -- Containerfiles -------------------------------------------------------------

INSTRUCTIONS = ["FROM", "RUN", "CMD", "ENTRYPOINT", "ENV", "ARG", "COPY", "ADD", "WORKDIR", "USER", "EXPOSE",
                "LABEL", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "ONBUILD", "from", "run", "NOPE"]
ARGUMENTS = st.text(max_size=30) | st.sampled_from([
    "labkit/base", "scratch", "--from=x a b", '["sh", "-c", "echo"]', '["unclosed', "A=1 B='2", "$X ${Y:-z}",
    "a=b c", "../../etc/passwd /", "/ /", "--chown=0:0 a b", "\\", "'", '"', "${", "a:${b"])


@given(st.lists(st.tuples(st.sampled_from(INSTRUCTIONS), ARGUMENTS, st.sampled_from(["\n", "\\\n", "\n# c\n"])),
                max_size=8), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))
def test_containerfiles(lines, build_args):
    from labkit.build import containerfile
    text = "".join(f"{k} {a}{end}" for k, a, end in lines)
    answered("Containerfile", containerfile.parse, text, build_args)


@given(st.text(max_size=200))
def test_containerfiles_as_any_text(text):
    from labkit.build import containerfile
    answered("Containerfile", containerfile.parse, text)


# -- compose files ----------------------------------------------------------------

COMPOSE = {"name": "app", "services": {
    "web": {"image": "labkit/base", "command": ["sh", "-c", "httpd -f"], "ports": ["8080:80"],
            "environment": {"A": "1"}, "depends_on": ["api"], "deploy": {"replicas": 2},
            "healthcheck": {"test": ["CMD", "true"], "interval": "1s"}, "networks": ["front"]},
    "api": {"build": {"context": ".", "dockerfile": "Containerfile"}, "mem_limit": "64m",
            "networks": {"front": {"aliases": ["a"]}}}},
    "networks": {"front": {"driver": "bridge"}}}


@given(doc=mutated(COMPOSE))
def test_compose_files(doc, tmp_path_factory):
    from labkit.services import composefile
    d = tmp_path_factory.mktemp("compose")
    answered("compose file", composefile.parse, yaml.safe_dump(doc), directory=str(d))


@given(st.text(max_size=200))
def test_compose_files_as_any_text(text):
    from labkit.services import composefile
    answered("compose file", composefile.parse, text)


# -- config.json ------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundle")
    (d / "rootfs").mkdir()
    return str(d)


def _default_config():
    from labkit.oci import spec
    return spec.default(args=["sh"], terminal=False)


def _config_json(raw, bundle):
    """What labkit-runtime does with a bundle's config.json before it makes
    anything: parse and check (validate), then turn it into a start."""
    from labkit.oci import convert, validate
    cfg = validate.load_checked(raw, os.path.join(bundle, "config.json"))
    validate.check_meaning(cfg, bundle, "fuzz")
    return convert.to_config(cfg, bundle, "fuzz")


@given(data=st.data())
def test_config_json(bundle_dir, data):
    doc = data.draw(mutated(_default_config()))
    answered("config.json", _config_json, json.dumps(doc).encode(), bundle_dir)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_config_json_as_any_bytes(bundle_dir, raw):
    answered("config.json", _config_json, raw, bundle_dir)
