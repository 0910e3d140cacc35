"""Execute chapters' committed ``.ipynb`` in FAST mode, in place (the outputs Colab and nbval see).

    .venv/bin/python tools/execute_chapters.py                      # every chapter
    .venv/bin/python tools/execute_chapters.py notebooks/04-*.ipynb # some

Run ``jupytext --sync notebooks/NN-*.md`` first so the ``.ipynb`` holds the cells of its source.
Every code cell runs, top to bottom, in a fresh kernel started in ``notebooks/`` with
``ISOPLAST_FAST=1``, *including* cells tagged ``skip-execution`` (the book build skips those
because they need a live kernel; their outputs in the ``.ipynb`` are what Colab users see first,
and ``tests/test_notebooks.py`` requires every cell executed in order). nbclient would skip them
by default, leaving stale execution counts. The file is written atomically, only when every
cell ran without error.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def execute(path: Path, timeout: int = 600) -> float:
    """Execute ``path`` in place; returns the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        skip_cells_with_tag="isoplast-execute-every-cell",  # a tag no cell has: run them all
    )
    start = time.perf_counter()
    client.execute(env={**os.environ, "ISOPLAST_FAST": "1"})  # the kernel's environment only
    elapsed = time.perf_counter() - start
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ipynb.tmp")
    os.close(fd)
    nbformat.write(nb, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="committed .ipynb files (default: notebooks/*.ipynb)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    bad = [str(p) for p in paths if p.suffix != ".ipynb" or not p.is_file()]
    if bad:
        parser.error(f"notebooks: not an existing .ipynb file: {', '.join(bad)}")
    for path in paths:
        print(f"{path.name}: {execute(path.resolve(), args.timeout):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
