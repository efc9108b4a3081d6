"""Errors that reach a student: one line that names the thing, and a hint.

Both command lines end through guarded(): a LabkitError is printed as one
line and exits non-zero, never with a traceback. Keep this module free of
imports: it is on the start path.
"""


def one_line(text):
    """``text`` with every character that is not printable (newline, tab,
    ESC ...) written as its Python escape."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class LabkitError(Exception):
    """A problem the user can fix. ``hint`` says how."""

    exit_code = 1

    def __init__(self, message, hint=None):
        # A message often quotes what the user gave, and that may hold a
        # newline or a terminal's escape sequence: shown escaped, the answer
        # stays one line and cannot rewrite the terminal.
        message = one_line(message)
        hint = one_line(hint) if hint else hint
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self):
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message

    def localized(self):
        """str(self) with the hint in the student's language (labkit.i18n;
        imported here, on the error path, never on the start path)."""
        if not self.hint:
            return self.message
        from labkit.i18n import _
        return f"{self.message} ({_(self.hint)})"


class SetupError(LabkitError):
    """The container could not be set up (docker's exit status 125)."""
    exit_code = 125


class NotRoot(LabkitError):
    exit_code = 1


class NotFound(LabkitError):
    """A named thing (rootfs, container, command) does not exist."""


class Conflict(LabkitError):
    """A named thing exists already or is in the wrong state."""


class Unsupported(LabkitError):
    """The kernel or the host lacks a feature."""


# Where a warning goes: stderr, unless labkit-runtime was given --log, as
# runc's warnings go to its log (a function of the text, set by the command line).
WARN = None


def warn(text, prog="labkit-runtime"):
    """Something ignored that the caller may want to know of (runc warns of
    the same): one line, on stderr or to the runtime's --log."""
    if WARN is not None:
        WARN(text)
    else:
        import sys
        print(f"{prog}: warning: {text}", file=sys.stderr)


def need_root(what):
    import os
    if os.geteuid() != 0:
        raise NotRoot(f"{what} needs root: namespaces, mounts and cgroups can only be created by root",
                      "run it with sudo, or inside the classroom VM (vagrant up; vagrant ssh)")


def guarded(prog, body, runc=False, log=None):
    """body()'s exit code, or the one of what stopped it: a LabkitError is
    printed as one line (``prog: what (the fix)``) and exits with its code
    (125 when labkit could not run the container, as `docker run`), or with
    1 for runc's command line, where every error of the runtime itself is 1;
    ^C is 130 and a closed pipe 141, as a shell reports them. The one way
    out of `labkit` and `labkit-runtime` (labkit/cli/)."""
    import sys
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
