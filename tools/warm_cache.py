"""Precompute what a lab needs: run its chapters once in full mode so the runner's cache is warm.

Every experiment a chapter runs through :func:`isoplast_lite.run.run` is cached under
``$ISOPLAST_CACHE`` (default ``~/.cache/isoplast``) by the SHA-256 of its configuration. Running a
chapter once fills that cache; the next run of the same chapter (the student's, in the lab) loads
those results instead of training. This tool runs the chapters of a lab headless, exactly as the
reader notebooks are executed (``tools/reader_notebooks.py``: every code cell, full mode, a fresh
kernel), and throws the outputs away. What is not a runner call (Jacobians, eNTKs, the small
hand-written training loops of chapters 4 and 5) is recomputed on every run; the course guide's
"warm" column measures what is left.

Usage (from the repository root; the night before a lab, or at its start)::

    .venv/bin/python tools/warm_cache.py --lab 2          # chapters 3 and 4
    .venv/bin/python tools/warm_cache.py --chapters 1 7   # any chapters
    .venv/bin/python tools/warm_cache.py --lab 3 --cache /shared/isoplast-cache

A shared cache folder (``--cache``, then ``ISOPLAST_CACHE=/shared/isoplast-cache`` for the
students) warms a whole room at once. ``--fast`` runs the FAST smoke budgets (for tests only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

#: the course guide's labs: lab number -> chapter numbers (book/course-guide.md).
LABS = {1: (1, 2), 2: (3, 4), 3: (5, 6), 4: (7, 8, 9)}


def chapter_source(number: int) -> Path:
    """``notebooks/NN-*.md`` of chapter ``number``."""
    found = sorted(NOTEBOOKS.glob(f"{number:02d}-*.md"))
    if len(found) != 1:
        raise ValueError(f"chapter must be one of the book's chapter numbers, got {number} (found {found})")
    return found[0]


def cache_entries(cache: Path) -> dict:
    """``{entry: mtime of its result.csv}`` for every complete runner cache entry under ``cache``."""
    return {p.parent.name: p.stat().st_mtime_ns for p in Path(cache).glob("*/result.csv")}


def run_chapter(number: int, cache: Path, *, fast: bool = False, timeout: int = 1800) -> float:
    """Execute chapter ``number`` top to bottom with ``ISOPLAST_CACHE=cache``; returns wall seconds.

    The notebook is the reader notebook (``tools/reader_notebooks.py``), executed in a fresh
    kernel with every code cell run; ``fast`` sets ``ISOPLAST_FAST=1`` (smoke budgets).
    Raises ``RuntimeError`` when a cell fails.
    """
    return run_notebook(chapter_source(number), cache, fast=fast, timeout=timeout)


def run_notebook(md: Path, cache: Path, *, fast: bool = False, timeout: int = 1800) -> float:
    """:func:`run_chapter` for any MyST notebook ``md`` (the tests use a tiny one)."""
    from nbclient import NotebookClient

    sys.path.insert(0, str(ROOT / "tools"))
    import reader_notebooks

    md = Path(md)
    nb = reader_notebooks.reader_cells(md)
    env = {**os.environ, "ISOPLAST_CACHE": str(cache), "ISOPLAST_FAST": "1" if fast else "0", "ISOPLAST_PROGRESS": "0"}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(md.parent)}},
                            skip_cells_with_tag="isoplast-execute-every-cell")  # fmt: skip
    start = time.perf_counter()
    client.execute(env=env)
    seconds = time.perf_counter() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    if errors:
        raise RuntimeError(f"{md.name}: a cell raised {errors[0].ename}: {errors[0].evalue}")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--lab", type=int, choices=sorted(LABS), help="warm the chapters of this lab")
    which.add_argument("--chapters", type=int, nargs="+", help="warm these chapters")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: $ISOPLAST_CACHE or ~/.cache/isoplast)")
    parser.add_argument("--fast", action="store_true", help="FAST smoke budgets (tests only; a lab needs full mode)")
    args = parser.parse_args(argv)
    from isoplast_lite.run import default_cache_dir

    cache = (args.cache or default_cache_dir()).expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    chapters = LABS[args.lab] if args.lab else args.chapters
    for number in chapters:
        before = cache_entries(cache)
        seconds = run_chapter(number, cache, fast=args.fast)
        new = len(set(cache_entries(cache)) - set(before))
        print(f"chapter {number}: {seconds:.0f} s, {new} new cache entries in {cache}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
