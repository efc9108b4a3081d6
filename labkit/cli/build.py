"""`labkit build` and `labkit builder prune`: images from a Containerfile
(labkit/build/)."""

from labkit.errors import need_root


def add_parsers(sub):
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


def cmd_build(a):
    need_root("labkit build")
    from labkit.build import build
    if getattr(a, "builder_command", None) == "prune":
        print(f"removed {build.prune()} cached steps")
        return 0
    return build.main(a)
