"""The course map: the chapters in the seed's order, and for each the name
its facts and its exercises go by (a module of labkit/course/facts/ and of
labkit/course/lab/), and its notebook. `labkit tour`, the
exercises, the notebooks' tests and the translation tools read this list;
none keeps one of its own."""

from typing import NamedTuple


class Chapter(NamedTuple):
    number: str      # "01": the notebook's and the exercises' prefix (01.chroot)
    name: str        # the module of facts/ and of lab/
    notebook: str    # notebooks/NOTEBOOK.ipynb, and notebooks/es/ the same name


CHAPTERS = [
    Chapter("01", "chroot", "01-chroot"),
    Chapter("02", "namespaces", "02-namespaces"),
    Chapter("03", "cgroups", "03-cgroups"),
    Chapter("04", "unionfs", "04-unionfs"),
    Chapter("05", "oci", "05-container-format"),
    Chapter("06", "network", "06-network"),
    Chapter("07", "images", "07-images-registry"),
    Chapter("08", "services", "08-microservices-cluster"),
    Chapter("09", "security", "09-security"),
]
NAMES = [c.name for c in CHAPTERS]
# Before the chapters: the welcome, with no facts and no exercises of its own.
WELCOME = "00-welcome"
