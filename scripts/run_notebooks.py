"""Execute the book's chapters in place, top to bottom, so they are committed executed.

    python scripts/run_notebooks.py                 # every chapter in book/
    python scripts/run_notebooks.py book/01_*.ipynb # some of them

Each notebook runs in a fresh kernel from its own folder; the time it took is printed, and a
failing cell stops with the error (the notebook is then left unchanged). A chapter's box "This
chapter at a glance" says how long its code runs ("the code runs in about N s"): N is rewritten
with the time just measured (first cell started to last cell finished, rounded up to 5 s), so the
box always states the committed run's time; tests/test_book.py checks that it does.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


RUN_TIME = re.compile(r"the code runs in about \d+ s")


def cells_seconds(notebook) -> float:
    """Seconds from the first code cell's start to the last one's end (nbclient's timing metadata)."""
    stamps = [cell.metadata["execution"] for cell in notebook.cells if cell.cell_type == "code"]
    start = datetime.fromisoformat(stamps[0]["iopub.execute_input"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(stamps[-1]["shell.execute_reply"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def state_run_time(notebook) -> None:
    """Write the measured run time, rounded up to 5 s, into the first markdown cell's glance box."""
    first = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
    seconds = 5 * math.ceil(cells_seconds(notebook) / 5)
    first.source = RUN_TIME.sub(f"the code runs in about {seconds} s", first.source, count=1)


def run(path: Path, timeout: int) -> float:
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    elapsed = time.perf_counter() - start
    state_run_time(notebook)
    nbformat.write(notebook, path)
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "book").glob("*.ipynb"))
    for path in paths:
        print(f"{path.name}: {run(path, args.timeout):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
