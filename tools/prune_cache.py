"""Bound the runner's result cache: remove the least recently written entries beyond a size.

CI restores the newest runner cache of any key (``.github/workflows/book.yml``) and saves it
again after the build: without a bound, entries of configurations no chapter asks for any more
pile up from build to build. This tool runs after the tests, before the cache is saved, so a
saved (and therefore every restored) cache holds at most ``--max-mb`` megabytes.

An entry is one folder directly under the cache folder (``run.py`` keeps a run in
``<cache>/<key>/``); its age is the newest modification time of a file inside (a chapter that
reads an entry does not touch it, but a build that trains it writes it, so the entries of
today's chapters are the newest). Entries are removed whole, oldest first, until the rest fits.
Nothing outside the cache folder is touched: symbolic links are neither followed nor removed,
and anything that is not a regular file or folder makes its entry stay.

Usage::

    .venv/bin/python tools/prune_cache.py ~/.cache/isoplast --max-mb 400
"""

from __future__ import annotations

import argparse
import shutil
import stat
import sys
from pathlib import Path


def _entry_stats(entry: Path) -> "tuple[int, float] | None":
    """``(bytes, newest mtime)`` of the regular files under ``entry``; None when it holds
    anything else (a link, a device, a socket): such an entry is never removed."""
    size, newest = 0, entry.lstat().st_mtime
    for path in [entry, *entry.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            return None
        info = path.lstat()
        size += info.st_size
        newest = max(newest, info.st_mtime)
    return size, newest


def prune(cache: Path, max_bytes: int) -> list:
    """Remove the oldest entries of ``cache`` until its entries hold at most ``max_bytes``.

    Args:
        cache: the cache folder (a missing folder is an empty cache).
        max_bytes: the bound, a non-negative int.

    Returns:
        The removed entries, oldest first.

    Raises:
        TypeError: if ``max_bytes`` is not an int.
        ValueError: if ``max_bytes`` is negative or ``cache`` is not a folder.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in "ab":
        ...     (root / name).mkdir(); _ = (root / name / "result.csv").write_text("x" * 10)
        >>> [p.name for p in prune(root, 10)] in (["a"], ["b"])
        True
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes must be an int, got {type(max_bytes).__name__}")
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    cache = Path(cache)
    if not cache.exists():
        return []
    if cache.is_symlink() or not cache.is_dir():
        raise ValueError(f"cache must be a folder (not a link), got {cache}")
    entries, total = [], 0
    for entry in cache.iterdir():
        mode = entry.lstat().st_mode
        if stat.S_ISREG(mode):
            total += entry.lstat().st_size  # a loose file: counted, never removed
            continue
        if not stat.S_ISDIR(mode):
            continue
        found = _entry_stats(entry)
        if found is None:
            continue
        total += found[0]
        entries.append((found[1], entry.name, found[0], entry))
    removed = []
    for _, _, size, entry in sorted(entries):
        if total <= max_bytes:
            break
        shutil.rmtree(entry)
        total -= size
        removed.append(entry)
    return removed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path, help="the runner's cache folder (e.g. ~/.cache/isoplast)")
    parser.add_argument("--max-mb", type=float, required=True, help="the bound in megabytes (10^6 bytes)")
    args = parser.parse_args(argv)
    if not args.max_mb >= 0:
        parser.error(f"--max-mb must be >= 0, got {args.max_mb}")
    try:
        removed = prune(args.cache.expanduser(), int(args.max_mb * 1e6))
    except ValueError as err:
        parser.error(str(err))
    print(f"{args.cache}: removed {len(removed)} entries beyond {args.max_mb:g} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
