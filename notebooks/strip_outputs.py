"""Strip outputs, execution counts and run metadata from notebooks before committing them.

    python notebooks/strip_outputs.py              # every notebooks/*.ipynb, in place
    python notebooks/strip_outputs.py --check      # exit 1 (listing them) if any has outputs
    python notebooks/strip_outputs.py a.ipynb ...  # just these

The notebooks are stored without outputs so diffs show code changes only and nothing a run
printed (paths, timings, simulated numbers) lands in git; tests/notebook checks it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
# Cell metadata a run adds (execution timings, scroll state) that says nothing about the code.
_RUN_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(notebook: nbformat.NotebookNode) -> bool:
    """Remove outputs and run metadata in place; return whether anything changed."""
    changed = False
    for cell in notebook.cells:
        if cell.cell_type == "code":
            if cell.get("outputs") or cell.get("execution_count") is not None:
                cell.outputs = []
                cell.execution_count = None
                changed = True
        for key in _RUN_METADATA:
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    if "widgets" in notebook.metadata:  # saved widget state is an output too
        del notebook.metadata["widgets"]
        changed = True
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/)")
    parser.add_argument("--check", action="store_true", help="only report, change nothing")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(HERE.glob("*.ipynb"))
    dirty = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        if strip(notebook):
            dirty.append(path)
            if not args.check:
                nbformat.write(notebook, path)
    verb = "have outputs" if args.check else "stripped"
    for path in dirty:
        print(f"{path}: {verb}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
