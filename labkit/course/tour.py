"""`labkit tour`: every stage, headless, as one table.

Each row is a fact (labkit/course/facts): the layer, the check, what was seen
inside and outside, and the verdict. Exit status 0 only if every row passes.
"""

import importlib
import shutil
import sys

from labkit.course.chapters import NAMES
from labkit.i18n import _

# The stages in the seed text's order (the course map); each facts module has all_facts().
LAYERS = NAMES


def _cell(value, width):
    text = value if isinstance(value, str) else (
        ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def collect(layers=LAYERS):
    facts = []
    for name in layers:
        module = importlib.import_module(f"labkit.course.facts.{name}")
        try:
            facts += module.all_facts()
        except Exception as e:   # a layer that cannot run is a failed row, not a crash
            facts.append({"name": f"{name}_error", "layer": name, "check": _("the layer runs"),
                          "inside": str(e), "outside": "", "ok": False})
    return facts


def table(facts, width=None):
    width = width or max(100, shutil.get_terminal_size((140, 20)).columns)
    widths = [18, 50, 0, 0, 7]
    free = max(30, width - sum(widths) - 8)
    widths[2] = widths[3] = free // 2
    head = [_("LAYER"), _("CHECK"), _("INSIDE"), _("OUTSIDE"), _("VERDICT")]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    for f in facts:
        row = [f["layer"], f["check"], f["inside"], f["outside"], _("pass") if f["ok"] else _("FAIL")]
        lines.append("  ".join(_cell(v, w).ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def main(layers=LAYERS):
    facts = collect(layers)
    print(table(facts))
    failed = [f for f in facts if not f["ok"]]
    print("\n" + _("{passed} passed, {failed} failed", passed=len(facts) - len(failed), failed=len(failed)))
    sys.stdout.flush()
    return 1 if failed else 0
