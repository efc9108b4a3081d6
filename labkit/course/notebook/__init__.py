"""What notebooks import: ``record`` to state a fact, ``show`` to print the
command a cell ran next to its output.

record(name, value) displays the value as a custom MIME type; the nbclient
tests read those outputs back from the executed notebook and assert on them
(facts_of). A plain-text rendering goes along for the student.
"""

import json

MIME = "application/vnd.labkit.fact+json"


def record(name, value):
    """State a fact the tests will check (JSON-serialisable ``value``). The
    student sees one compact row: a fact's check, inside, outside and ✔/✗."""
    from IPython.display import display
    display({MIME: {"name": name, "value": value}, "text/plain": row(name, value)}, raw=True)
    return value


def _short(value, width=60):
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def row(name, value):
    """One line for a recorded value: `✔ check | inside: … | outside: …` for
    a fact (labkit.course.facts.fact), `· name = value` for anything else."""
    if isinstance(value, dict) and "check" in value and "ok" in value:
        from labkit.i18n import _
        mark = {True: "✔", False: "✗"}.get(value["ok"], "·")
        return f"{mark} {value['check']} | " + _("inside: {inside} | outside: {outside}",
                                                 inside=_short(value.get("inside")), outside=_short(value.get("outside")))
    return f"· {name} = {_short(value, 100)}"


def record_fact(f):
    """Record a fact dict (labkit.course.facts) under its name, and print it."""
    return record(f["name"], f)


def facts_of(nb):
    """{name: value} of every fact recorded in an executed notebook."""
    found = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if MIME in data:
                item = data[MIME]
                found[item["name"]] = item["value"]
    return found


def show(result):
    """Print an api.Result the way a terminal would show it."""
    print(f"$ {result.command}")
    if result.stdout:
        print(result.stdout, end="" if result.stdout.endswith("\n") else "\n")
    if result.stderr:
        print(result.stderr, end="" if result.stderr.endswith("\n") else "\n")
    if result.returncode:
        print(f"[exit {result.returncode}]")
    return result


def trace(command, *words):
    """Run a shell ``command`` (with LABKIT_TRACE=1 in it) and print the calls
    it traced that name one of ``words``: the system calls of one stage, as
    labkit made them. Returns those lines."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + ":" + os.environ.get("PATH", ""))
    r = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=120)
    calls = [line for line in r.stderr.splitlines()
             if line.startswith("labkit-trace[") and any(w in line for w in words)]
    print(f"$ sudo {command}\n" + "\n".join(calls))
    return calls
