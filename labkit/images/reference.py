"""Image names, as docker reads them: [REGISTRY/]REPOSITORY[:TAG][@DIGEST].

    busybox                      repository busybox, tag latest
    labkit/base:latest           a repository with a path
    127.0.0.1:5000/lab/web:v1    on the registry 127.0.0.1:5000
    web@sha256:<hex>             one manifest, by its digest

The first component is a registry when it has a '.' or a ':' or is
localhost (docker's rule). A local name keeps what was typed, with ':latest'
added: it is the ref.name annotation of the layout's index.json.
"""

import re

from labkit.errors import LabkitError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")


class Reference:
    def __init__(self, registry, repository, tag, digest):
        self.registry, self.repository, self.tag, self.digest = registry, repository, tag, digest

    @property
    def name(self):
        """[REGISTRY/]REPOSITORY: what tags belong to."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def __str__(self):
        text = self.name + (f":{self.tag}" if self.tag else "")
        return text + (f"@{self.digest}" if self.digest else "")

    def __repr__(self):
        return f"Reference({str(self)!r})"


def parse(text):
    """A Reference, or one line saying what is wrong with ``text``."""
    original = text
    hint = "an image is named like busybox, labkit/base:latest or 127.0.0.1:5000/lab/web:v1"
    if not text or len(text) > 255 or text != text.strip():
        raise LabkitError(f"bad image name {original!r}", hint)
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise LabkitError(f"bad image name {original!r}: '{digest}' is not a sha256 digest", hint)
    registry = None
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.match(first):
            raise LabkitError(f"bad image name {original!r}: '{first}' is not a registry address", hint)
        registry, text = first, rest
    tag = None
    if ":" in text.rsplit("/", 1)[-1]:
        text, tag = text.rsplit(":", 1)
        if not _TAG.match(tag):
            raise LabkitError(f"bad image name {original!r}: '{tag}' is not a tag", hint)
    if not _REPO.match(text):
        raise LabkitError(f"bad image name {original!r}: '{text}' is not a repository name",
                          "lowercase letters, digits and . _ - between slashes; " + hint)
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, text, tag, digest)
