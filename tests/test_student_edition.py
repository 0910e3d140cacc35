"""The student edition (tools/student_edition.py) strips solutions and keeps everything else.

The solutions themselves are executed by the normal notebook tests (papermill over the full
chapters in tests/test_notebooks.py); the HTML build of the student edition is not run here (it
executes the whole book); its command is documented in the tool and timed in the course guide.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
from tools_loader import load_tool

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.md"))


def _tool():
    return load_tool("student_edition")


def _solution_code_cells(nb):
    """Code cells between a solution-start and a solution-end marker, found independently."""
    inside, found = False, []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if "{solution-start}" in line:
                    inside = True
                if "{solution-end}" in line:
                    inside = False
        elif inside:
            found.append(cell.source)
    return found


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    _tool().write_student_notebooks(ROOT, out)
    return out


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_student_notebook_has_exercises_but_no_solutions(md, student_dir):
    full = jupytext.read(md)
    student = nbformat.read(student_dir / (md.stem + ".ipynb"), as_version=4)
    nbformat.validate(student)
    text = "\n".join(c.source for c in student.cells)
    assert "{solution" not in text
    full_text = "\n".join(c.source for c in full.cells)
    assert text.count("{exercise}") == full_text.count("{exercise}")
    # every exercise's statement survives word for word
    for cell in full.cells:
        if cell.cell_type == "markdown" and "{exercise}" in cell.source:
            start = cell.source.index("{exercise}")
            body = cell.source[start:].split("\n````", 1)[0]
            assert body in text
    # code: exactly the non-solution cells, in order, unchanged, and no outputs
    solutions = _solution_code_cells(full)
    expected = [c.source for c in full.cells if c.cell_type == "code"]
    for sol in solutions:
        expected.remove(sol)
    got = [c.source for c in student.cells if c.cell_type == "code"]
    assert got == expected
    assert all(not c.outputs for c in student.cells if c.cell_type == "code")
    if "{exercise}" in full_text:
        assert solutions, f"{md.name} has exercises but no executed solution cells"


def test_strip_solutions_handles_plain_and_gated_and_rejects_unbalanced():
    tool = _tool()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("intro\n\n````{exercise} A\n:label: a\n\nDo it.\n````\n\n```{solution} a\n:class: dropdown\n\nsecret prose\n```\n\nafter"),
        nbformat.v4.new_code_cell("keep = 1"),
        nbformat.v4.new_markdown_cell("````{exercise} B\n:label: b\nQ\n````\n\n```{solution-start} b\n:class: dropdown\n```\n\nsecret"),
        nbformat.v4.new_code_cell("secret_code = 2"),
        nbformat.v4.new_markdown_cell("```{solution-end}\n```\n\ntail"),
    ]
    out, removed = tool.strip_solutions(nb)
    text = "\n".join(c.source for c in out.cells)
    assert "secret" not in text and "keep = 1" in text and "tail" in text and "after" in text
    assert text.count("{exercise}") == 2 and removed == 1
    bad = nbformat.v4.new_notebook()
    bad.cells = [nbformat.v4.new_markdown_cell("```{solution-start} x\n```\n"), nbformat.v4.new_code_cell("x = 1")]
    with pytest.raises(tool.SolutionMarkupError):
        tool.strip_solutions(bad)
    bad.cells = [nbformat.v4.new_markdown_cell("```{solution-end}\n```\n")]
    with pytest.raises(tool.SolutionMarkupError):
        tool.strip_solutions(bad)
