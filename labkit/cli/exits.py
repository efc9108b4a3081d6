"""How both command lines end: one line on stderr for an error, and the exit
code a caller can tell apart (docker's and runc's conventions)."""

import os
import sys

from labkit.errors import LabkitError, NotRoot


def need_root(what):
    if os.geteuid() != 0:
        raise NotRoot(f"{what} needs root: namespaces, mounts and cgroups can only be created by root",
                      "run it with sudo, or inside the classroom VM (vagrant up; vagrant ssh)")


def guarded(prog, body, runc=False, log=None):
    """body()'s exit code, or the one of what stopped it: a LabkitError is
    printed as one line (``prog: what; the fix``) and exits with its code
    (125 when labkit could not run the container, as `docker run`), or with
    1 for runc's command line, where every error of the runtime itself is 1;
    ^C is 130 and a closed pipe 141, as a shell reports them."""
    try:
        return body() or 0
    except LabkitError as e:
        # runc's clients (podman, containerd) read its English; a student reads labkit's.
        print(f"{prog}: {e if runc else e.localized()}", file=sys.stderr)
        if log is not None:
            log(str(e))
        code = getattr(e, "exit_code", 1)
        return 1 if runc and code in (0, 125) else code
    except KeyboardInterrupt:
        if not runc:
            print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
