"""A Containerfile (Dockerfile), read into instructions.

    FROM image | scratch        ENV K=V ... | ENV K V       CMD / ENTRYPOINT ["exec", "form"] or shell form
    RUN command (shell or exec) WORKDIR /dir                EXPOSE 80[/tcp] ...
    COPY [--chown=u:g] src... dest                          LABEL k=v ...
    ADD  [--chown=u:g] src... dest (a local tar is unpacked) ARG NAME[=default]
    USER user[:group]

Lines end with a backslash to go on; `#` starts a comment line. $NAME,
${NAME} and ${NAME:-default} take ARG and ENV values (not in RUN, CMD and
ENTRYPOINT, whose shell does that itself, as docker's builder). A RUN gets
the ARGs declared after FROM as environment variables (an ENV of the same
name wins), and they are part of its cache key, but no ARG is kept in the
image's config: what --build-arg changes is rebuilt, and nothing of it ships.
Every error names its line.
"""

import json
import re
import shlex

from labkit.errors import LabkitError

KNOWN = ("FROM", "RUN", "COPY", "ADD", "ENV", "WORKDIR", "USER", "CMD", "ENTRYPOINT", "EXPOSE", "LABEL", "ARG")
_VAR = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


class ContainerfileError(LabkitError):
    pass


class Instruction:
    def __init__(self, line, keyword, args, flags=None):
        self.line, self.keyword, self.args, self.flags = line, keyword, args, flags or {}

    def __repr__(self):
        return f"{self.keyword} {self.args!r} (line {self.line})"


def _logical_lines(text):
    start, buf = None, []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if start is None:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1])
            continue
        buf.append(line)
        yield start, " ".join(part.strip() for part in buf if part.strip())
        start, buf = None, []
    if buf:
        yield start, " ".join(buf)


def substitute(text, values, line):
    def repl(m):
        name = m.group(1) or m.group(3)
        if name in values:
            return values[name]
        if m.group(2) is not None:
            return m.group(2)
        return ""
    return _VAR.sub(repl, text)


def _json_or_shell(rest):
    """The exec form (a JSON array) stays as is; the shell form runs in /bin/sh -c."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", rest]


def _words(rest, line, keyword):
    """The shell words of an instruction's arguments, or one line saying
    which quote is open."""
    try:
        return shlex.split(rest)
    except ValueError as e:
        raise ContainerfileError(f"line {line}: {keyword}: {e}", "check the quotes") from None


def _pairs(rest, line, keyword):
    """K=V K2="v 2" (or, for ENV, the old form K V)."""
    words = _words(rest, line, keyword)
    if keyword == "ENV" and words and "=" not in words[0]:
        return [(words[0], rest.split(None, 1)[1] if len(words) > 1 else "")]
    out = []
    for w in words:
        if "=" not in w:
            raise ContainerfileError(f"line {line}: {keyword} {w}: expected NAME=VALUE", f"for example {keyword} A=1")
        k, v = w.split("=", 1)
        out.append((k, v))
    return out


def parse(text, build_args=None):
    """[Instruction] with ARG and ENV substituted; raises ContainerfileError."""
    values = dict(build_args or {})
    declared = set()
    in_stage = {}        # the ARGs declared after FROM: a RUN's environment
    out = []
    for line, content in _logical_lines(text):
        keyword, _, rest = content.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword not in KNOWN:
            raise ContainerfileError(f"line {line}: unknown instruction '{keyword}'",
                                     f"labkit build knows {', '.join(KNOWN)}")
        if not out and keyword not in ("FROM", "ARG"):
            raise ContainerfileError(f"line {line}: {keyword} before FROM", "a Containerfile starts with FROM")
        if not rest:
            raise ContainerfileError(f"line {line}: {keyword} needs arguments", "see `labkit build --help`")
        if keyword == "RUN":
            arg = {"arg": [[k, v] for k, v in in_stage.items()]} if in_stage else {}
            out.append(Instruction(line, keyword, _json_or_shell(rest), arg))
            continue
        if keyword in ("CMD", "ENTRYPOINT"):   # not substituted: the container's shell or program does that
            out.append(Instruction(line, keyword, _json_or_shell(rest)))
            continue
        rest = substitute(rest, values, line) if keyword != "ARG" else rest
        if keyword == "ARG":
            name, eq, default = rest.partition("=")
            declared.add(name)
            if name not in values and eq:
                values[name] = substitute(default, values, line)
            if out and name in values:     # before FROM, an ARG is FROM's only
                in_stage[name] = values[name]
            out.append(Instruction(line, keyword, [name, values.get(name, "")]))
        elif keyword in ("ENV", "LABEL"):
            pairs = _pairs(rest, line, keyword)
            if keyword == "ENV":
                values.update(pairs)
            out.append(Instruction(line, keyword, pairs))
        elif keyword in ("COPY", "ADD"):
            out.append(_copy(line, keyword, rest))
        elif keyword == "FROM":
            if any(i.keyword == "FROM" for i in out):
                raise ContainerfileError(f"line {line}: a second FROM", "labkit builds one stage")
            out.append(_from(line, rest))
        elif keyword == "EXPOSE":
            for p in rest.split():
                if not re.match(r"^\d{1,5}(/(tcp|udp))?$", p):
                    raise ContainerfileError(f"line {line}: EXPOSE {p}: not a port", "for example EXPOSE 80/tcp")
            out.append(Instruction(line, keyword, rest.split()))
        else:   # WORKDIR, USER
            out.append(Instruction(line, keyword, [rest]))
    if not any(i.keyword == "FROM" for i in out):
        raise ContainerfileError("no FROM instruction", "a Containerfile starts with FROM IMAGE (or FROM scratch)")
    unused = set(build_args or {}) - declared
    if unused:
        raise ContainerfileError(f"--build-arg {sorted(unused)[0]}: no ARG of that name in the Containerfile",
                                 "declare it with ARG NAME")
    return out


def _copy(line, keyword, rest):
    """COPY or ADD [--chown=USER[:GROUP]] SRC... DEST."""
    words = _words(rest, line, keyword)
    flags = {}
    while words and words[0].startswith("--"):
        flag, _, value = words.pop(0)[2:].partition("=")
        if flag != "chown":
            raise ContainerfileError(f"line {line}: {keyword} --{flag}: not an option labkit has",
                                     "labkit takes --chown=USER[:GROUP]")
        flags[flag] = value
    if len(words) < 2:
        raise ContainerfileError(f"line {line}: {keyword} needs a source and a destination",
                                 f"for example {keyword} app.py /app/")
    return Instruction(line, keyword, words, flags)


def _from(line, rest):
    """FROM IMAGE [AS NAME]: one stage."""
    words = rest.split()
    if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
        raise ContainerfileError(f"line {line}: FROM {rest}: expected FROM IMAGE", "one stage: FROM IMAGE")
    return Instruction(line, "FROM", [words[0]])
