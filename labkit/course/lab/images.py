"""Notebook 07's exercises: build an image, share it through the lab
registry. Each check asks the real system: the image runs and says what it
should; the registry's own API serves the same manifest, by digest."""

import hashlib
import http.client
import subprocess

from labkit.course.lab import Exercise, env
from labkit.errors import LabkitError
from labkit.i18n import _

REF = "lab07/hello:v1"
REMOTE = "127.0.0.1:5000/lab07/hello:v1"
CONTAINERFILE = 'FROM labkit/base\\nCMD ["echo", "hello lab"]\\n'   # for printf: \\n is its newline
# A reset's command: every image named lab07/… here, or 127.0.0.1:5000/lab07/…
RMI_LAB07 = ("for r in $(labkit images | awk '$1 ~ /^(127.0.0.1:5000\\/)?lab07\\// {print $1 \":\" $2}'); "
             "do labkit rmi -f $r >/dev/null; done")
SOLUTION_BUILD = [
    "mkdir -p /tmp/lab07-build",
    f"printf '{CONTAINERFILE}' > /tmp/lab07-build/Containerfile",
    f"labkit build -t {REF} /tmp/lab07-build",
]


def _image(ref):
    from labkit.images import image
    try:
        return image.get(ref)
    except LabkitError:
        return None


def _built():
    if _image(REF) is None:
        return False, _("there is no image {ref} (`labkit images`)", ref=REF)
    r = subprocess.run(["labkit", "run", "--rm", REF], capture_output=True, text=True, timeout=120, env=env())
    said = r.stdout.strip()
    if said != "hello lab":
        return False, _("`labkit run --rm {ref}` says {said}, not 'hello lab'", ref=REF, said=repr(said)) + (
            f" ({r.stderr.strip().splitlines()[-1]})" if r.returncode and r.stderr.strip() else "")
    return True, _("{ref} runs and says hello lab", ref=REF)


def _pushed():
    from labkit.images import registry, store
    st = registry.status()
    if st is None:
        return False, _("the lab registry is not running (`labkit registry status`)")
    if st["address"] != "127.0.0.1:5000":
        return False, _("the lab registry runs on {address}, not 127.0.0.1:5000", address=st["address"])
    img = _image(REF)
    if img is None:
        return False, _("there is no image {ref} here to compare with", ref=REF)
    conn = http.client.HTTPConnection(st["address"], timeout=10)
    conn.request("GET", "/v2/lab07/hello/manifests/v1", headers={"Accept": store.MEDIA_MANIFEST})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    if resp.status != 200:
        return False, _("the registry has no lab07/hello:v1 (GET /v2/lab07/hello/manifests/v1 answers {status})",
                         status=resp.status)
    remote = "sha256:" + hashlib.sha256(body).hexdigest()
    if remote != img["descriptor"]["digest"]:
        return False, _("the registry's lab07/hello:v1 is {remote}…, not the image {ref} here",
                         remote=remote[:19], ref=REF)
    return True, _("the registry serves {ref}'s manifest, {remote}…", ref=REF, remote=remote[:19])


EXERCISES = [
    Exercise("07.build", "an image that says hello",
             f"Build an image {REF} from labkit/base whose CMD prints `hello lab`, so that "
             f"`labkit run --rm {REF}` says exactly that.",
             ["a Containerfile: FROM, then CMD in exec form (a JSON array)",
              f"labkit build -t {REF} DIR, where DIR holds the Containerfile",
              f"mkdir -p /tmp/lab07-build && printf '{CONTAINERFILE}' > /tmp/lab07-build/Containerfile && "
              f"sudo labkit build -t {REF} /tmp/lab07-build"],
             _built,
             SOLUTION_BUILD,
             [RMI_LAB07, "labkit builder prune >/dev/null", "rm -rf /tmp/lab07-build"]),
    Exercise("07.push", "share it through the lab registry",
             f"Start the lab registry on 127.0.0.1:5000 and push {REF} to it as {REMOTE}, so that the "
             "registry's v2 API serves the very manifest you built.",
             ["a registry only knows names that start with its address: tag the image with one",
              f"labkit registry start; labkit tag {REF} {REMOTE}; labkit push …",
              f"sudo labkit registry start && sudo labkit tag {REF} {REMOTE} && sudo labkit push {REMOTE}"],
             _pushed,
             SOLUTION_BUILD + ["labkit registry status >/dev/null || labkit registry start",
                               f"labkit tag {REF} {REMOTE}", f"labkit push {REMOTE}"],
             [RMI_LAB07, "labkit builder prune >/dev/null", "rm -rf /tmp/lab07-build",
              "labkit registry stop >/dev/null",
              'rm -rf "${LABKIT_HOME:-/var/lib/labkit}/registry/data/docker/registry/v2/repositories/lab07"']),
]


def _build(containerfile, *flags, name="Containerfile", ref=REF):
    """Commands: write ``containerfile`` (printf's escapes) as /tmp/lab07-build/NAME, build it as ``ref``."""
    return ["mkdir -p /tmp/lab07-build", f"printf '{containerfile}' > /tmp/lab07-build/{name}",
            " ".join(["labkit build", *flags, "-t", ref, "/tmp/lab07-build"])]


ALTERNATIVES = {
    "07.build": {
        "a Dockerfile, CMD in shell form": _build("FROM labkit/base\\nCMD echo hello lab\\n", name="Dockerfile"),
        "ENTRYPOINT and CMD, a file named with -f": _build(
            'FROM labkit/base\\nENTRYPOINT ["echo"]\\nCMD ["hello lab"]\\n', "-f /tmp/lab07-build/hello.build",
            name="hello.build"),
    },
    "07.push": {
        "the tag made before the registry started": SOLUTION_BUILD + [
            f"labkit tag {REF} {REMOTE}", "labkit registry status >/dev/null || labkit registry start",
            f"labkit push {REMOTE}"],
        "built with the registry's name, tagged back": _build(CONTAINERFILE, ref=REMOTE) + [f"labkit tag {REMOTE} {REF}",
            "labkit registry status >/dev/null || labkit registry start", f"labkit push {REMOTE}"],
    },
}

NEAR_MISSES = {
    "07.build": {
        "no CMD": (_build("FROM labkit/base\\n"), "not 'hello lab'"),
        "another greeting": (_build('FROM labkit/base\\nCMD ["echo", "hello, lab"]\\n'), "not 'hello lab'"),
        "another tag": (_build(CONTAINERFILE, ref="lab07/hello:v2"), "there is no image"),
    },
    "07.push": {
        "pushed as v2": (SOLUTION_BUILD + ["labkit registry start", f"labkit tag {REF} {REMOTE[:-1]}2",
                                           f"labkit push {REMOTE[:-1]}2"], "has no lab07/hello:v1"),
        "tagged, never pushed, no registry": (SOLUTION_BUILD + [f"labkit tag {REF} {REMOTE}"],
                                              "the lab registry is not running"),
        "another image pushed under its name": (
            SOLUTION_BUILD + _build('FROM labkit/base\\nCMD ["echo", "bye"]\\n', ref=REMOTE)[1:] + [
                "labkit registry start", f"labkit push {REMOTE}"], "not the image"),
    },
}
