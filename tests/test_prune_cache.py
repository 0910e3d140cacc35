"""tools/prune_cache.py: the runner cache CI saves stays under its bound, oldest entries first."""

from __future__ import annotations

import os

import pytest

from tools_loader import load_tool

prune_cache = load_tool("prune_cache")


def _entry(root, name, size, mtime):
    folder = root / name
    folder.mkdir()
    (folder / "result.csv").write_bytes(b"x" * size)
    (folder / "config.json").write_bytes(b"{}")
    for path in (folder / "result.csv", folder / "config.json", folder):
        os.utime(path, (mtime, mtime))
    return folder


def test_removes_the_oldest_entries_until_the_rest_fits(tmp_path):
    sizes = {"a": 500, "b": 300, "c": 200, "d": 100}  # a oldest ... d newest
    for i, (name, size) in enumerate(sizes.items()):
        _entry(tmp_path, name, size, 1_000_000 + i)
    total = sum(sizes.values()) + 2 * len(sizes)
    removed = prune_cache.prune(tmp_path, 320)
    assert [p.name for p in removed] == ["a", "b"]
    left = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert left == total - (502 + 302) and left <= 320
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d"]
    assert prune_cache.prune(tmp_path, 10**6) == []  # already within the bound


def test_never_follows_or_removes_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.csv").write_bytes(b"y" * 1000)
    cache = tmp_path / "cache"
    cache.mkdir()
    _entry(cache, "old", 100, 1_000_000)
    (cache / "linked").symlink_to(outside, target_is_directory=True)
    mixed = _entry(cache, "mixed", 100, 999_999)
    (mixed / "link").symlink_to(outside / "precious.csv")
    removed = prune_cache.prune(cache, 0)
    assert [p.name for p in removed] == ["old"]
    assert (outside / "precious.csv").read_bytes() == b"y" * 1000
    assert (cache / "linked").is_symlink() and mixed.is_dir()


def test_bad_input(tmp_path):
    with pytest.raises(TypeError, match="max_bytes"):
        prune_cache.prune(tmp_path, 1.5)
    with pytest.raises(ValueError, match="max_bytes must be >= 0, got -1"):
        prune_cache.prune(tmp_path, -1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="must be a folder"):
        prune_cache.prune(tmp_path / "file", 1)
    assert prune_cache.prune(tmp_path / "missing", 1) == []
