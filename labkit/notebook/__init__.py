"""What notebooks import: ``record`` to state a fact, ``show`` to print the
command a cell ran next to its output.

record(name, value) displays the value as a custom MIME type; the nbclient
tests read those outputs back from the executed notebook and assert on them
(facts_of). A plain-text rendering goes along for the student.
"""

import json

MIME = "application/vnd.labkit.fact+json"


def record(name, value):
    """State a fact the tests will check (JSON-serialisable ``value``)."""
    from IPython.display import display
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > 300:
        text = text[:300] + "…"
    display({MIME: {"name": name, "value": value}, "text/plain": f"✔ recorded {name} = {text}"},
            raw=True)
    return value


def record_fact(f):
    """Record a fact dict (labkit.facts) under its name, and print it."""
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
