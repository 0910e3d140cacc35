"""tools/execute_chapters.py runs every cell, skip-execution ones included, in FAST mode."""

from __future__ import annotations

import nbformat
import pytest
from tools_loader import load_tool


def _tool():
    return load_tool("execute_chapters")


def test_every_cell_runs_in_order_with_fast_set(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import os\nprint(os.environ.get('ISOPLAST_FAST'))"),
        nbformat.v4.new_code_cell("print('live only')", metadata={"tags": ["skip-execution"]}),
    ]
    path = tmp_path / "99-demo.ipynb"
    nbformat.write(nb, path)
    _tool().execute(path, timeout=60)
    out = nbformat.read(path, as_version=4)
    assert [c.execution_count for c in out.cells] == [1, 2]
    assert out.cells[0].outputs[0]["text"] == "1\n"
    assert out.cells[1].outputs[0]["text"] == "live only\n"
    assert path.stat().st_mode & 0o644 == 0o644


def test_a_failing_cell_leaves_the_file_untouched(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("raise RuntimeError('boom')")]
    path = tmp_path / "98-fail.ipynb"
    nbformat.write(nb, path)
    before = path.read_bytes()
    with pytest.raises(Exception, match="boom"):
        _tool().execute(path, timeout=60)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))
