"""How long the course takes to run: each notebook executed once, top to
bottom, in a fresh Jupyter kernel, as a student who has done every exercise
runs it (each "Your turn" cell replaced by its reference solution, as
tests/test_notebooks.py's second run does).

One sample per notebook = kernel start, every cell, kernel shutdown, timed
with time.perf_counter. The goal is the whole course (the English
notebooks, 00 to 09) in at most TARGET seconds; the slowest cells of each
notebook are named, since they are where a student waits.

Usage: python bench/course.py [--lang en|es] [--slowest N] [--json FILE]
"""

import argparse
import glob
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = 120.0        # seconds, the whole course


def notebooks(lang):
    folder = os.path.join(ROOT, "notebooks", *([lang] if lang != "en" else []))
    return sorted(glob.glob(os.path.join(folder, "[0-9][0-9]-*.ipynb")))


def first_line(source):
    line = next((s for s in source.splitlines() if s.strip() and not s.startswith("#")), "")
    return line[:60]


def run_one(path):
    """(seconds for the whole notebook, [(seconds, cell's first line), ...])."""
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        turn = cell.metadata.get("labkit", {}).get("your_turn")
        if turn:
            cell.source = f"from labkit.course import lab\nlab.solve({turn!r})"
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}})
    cells = []
    t0 = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            c0 = time.perf_counter()
            client.execute_cell(cell, index)
            if cell.cell_type == "code":
                cells.append((time.perf_counter() - c0, first_line(cell.source)))
    return time.perf_counter() - t0, cells


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lang", default="en", help="en (notebooks/) or es (notebooks/es/)")
    ap.add_argument("--slowest", type=int, default=2, help="slowest cells shown per notebook")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("the notebooks run containers: run it as root (sudo make bench)")
    paths = notebooks(args.lang)
    if not paths:
        raise SystemExit(f"no notebooks for language {args.lang!r} under notebooks/")
    result, total = {}, 0.0
    print(f"{'notebook':<32} {'seconds':>8}   slowest cells")
    for path in paths:
        name = os.path.basename(path)[:-6]
        seconds, cells = run_one(path)
        total += seconds
        slow = sorted(cells, reverse=True)[:args.slowest]
        result[name] = {"seconds": seconds, "slowest": slow}
        print(f"{name:<32} {seconds:8.1f}   " + "; ".join(f"{s:.1f} s {line!r}" for s, line in slow))
        sys.stdout.flush()
    verdict = "met" if total <= TARGET else "NOT met"
    print(f"{'all ' + str(len(paths)) + ' notebooks':<32} {total:8.1f}   target <= {TARGET:.0f} s: {verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"lang": args.lang, "notebooks": result, "total": total}, f, indent=2)


if __name__ == "__main__":
    main()
