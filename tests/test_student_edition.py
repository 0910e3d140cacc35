"""The student edition (tools/student_edition.py): solutions stripped, skeletons and checks, plain Markdown.

The solutions and the check cells after them are executed by the normal notebook tests
(papermill over the chapters in tests/test_notebooks.py) and by the book build, so every check
passes with its solution; here every skeleton is executed with its check (cheaply, without the
chapter's state) and must fail it. The HTML build of the student edition is not run here (it
executes the whole book); its command is documented in the tool and timed in the course guide.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
import torch
from exercise_checks import add_wrong_answer_cells, answer_names, wrong_answer
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


MYST_ONLY = re.compile(r"\{[\w:-]+\}`|^```+\s*\{|^:::+\s*\{|^:[\w-]+:|^\$\$\s*\(", re.M)


def _exercises(nb):
    """Per exercise label: the index of its statement cell, of its skeleton, its solution code, its check."""
    found, current, inside = {}, None, False
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                m = re.match(r"^:label:\s*(\S+)", line)
                if m and m.group(1).startswith("ch") and "-ex-" in m.group(1):
                    current = m.group(1)
                    found[current] = {"statement": i, "skeleton": [], "solution": [], "check": []}
                if "{solution-start}" in line:
                    inside = True
                if "{solution-end}" in line:
                    inside = False
        elif current is not None:
            key = "skeleton" if "skeleton" in tags else "check" if "check" in tags else "solution" if inside else None
            if key:
                found[current][key].append(i)
    return found


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_code_exercise_has_a_skeleton_then_solution_then_check(md):
    """Source order: statement, skeleton (raw cell), solution code, check (code cell)."""
    nb = jupytext.read(md)
    for label, ex in _exercises(nb).items():
        if not ex["solution"]:
            continue  # a pen-and-paper exercise
        assert len(ex["skeleton"]) == 1 and len(ex["check"]) == 1, f"{md.name} {label}: {ex}"
        assert ex["statement"] < ex["skeleton"][0] < min(ex["solution"]) <= max(ex["solution"]) < ex["check"][0], label
        assert nb.cells[ex["skeleton"][0]].cell_type == "raw", f"{label}: the skeleton must be a raw cell (never executed by the book)"


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_student_notebook_plain_markdown_skeletons_and_no_solutions(md, student_dir):
    tool = _tool()
    full = jupytext.read(md)
    student = nbformat.read(student_dir / (md.stem + ".ipynb"), as_version=4)
    nbformat.validate(student)
    markdown = "\n".join(c.source for c in student.cells if c.cell_type == "markdown")
    raw = [m.group(0) for m in MYST_ONLY.finditer(markdown)]
    assert not raw, f"MyST left raw in the student notebook (Colab shows it as text): {raw[:5]}"
    assert "{solution" not in markdown and "Solution" not in markdown
    titles = re.findall(r"^````\{exercise\}\s*(.*)$", "\n".join(c.source for c in full.cells if c.cell_type == "markdown"), re.M)
    for n, title in enumerate(titles, 1):
        assert f"> **Exercise {n} ({title.strip()}).**" in markdown
    # code: the non-solution cells in order, each skeleton (raw in the source) now a code cell
    solutions = {i for ex in _exercises(full).values() for i in ex["solution"]}
    expected = [c.source.strip("\n") for i, c in enumerate(full.cells)
                if (c.cell_type == "code" and i not in solutions) or tool.is_skeleton(c)]  # fmt: skip
    got = [c.source.strip("\n") for c in student.cells if c.cell_type == "code"]
    assert got == expected
    assert not [c for c in student.cells if c.cell_type == "raw"]
    assert all(not c.outputs for c in student.cells if c.cell_type == "code")
    if titles:
        assert any("skeleton" in c.metadata.get("tags", []) for c in student.cells), f"{md.name}: exercises without skeletons"


def _skeleton_check_pairs(nb):
    cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(cells):
        if "skeleton" in cell.metadata.get("tags", []):
            assert i + 1 < len(cells) and "check" in cells[i + 1].metadata.get("tags", []), cell.source
            yield cell, cells[i + 1]


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_skeleton_raises_and_fails_its_check(md, student_dir):
    """A skeleton as given raises NotImplementedError, and its check cell fails on it (cheap: no chapter state)."""
    student = nbformat.read(student_dir / (md.stem + ".ipynb"), as_version=4)
    pairs = list(_skeleton_check_pairs(student))
    for skeleton, check in pairs:
        assert re.search(r"=\s*\.\.\.", skeleton.source), f"no `name = ...` for the student in {skeleton.source!r}"
        namespace = {}
        with pytest.raises(NotImplementedError, match="not done yet"):
            exec(compile(skeleton.source, f"{md.stem}-skeleton", "exec"), namespace)
        with pytest.raises((NotImplementedError, AssertionError)):
            exec(compile(check.source, f"{md.stem}-check", "exec"), namespace)


def test_checks_pass_with_the_solution_and_fail_with_a_wrong_answer(monkeypatch):
    """Every exercise whose solution needs only the chapter's imports (no trained model, no data):
    executed with its solution the check passes; with any one answer made wrong it fails. (All the
    others: the papermill run of tests/test_notebooks.py does the same after every check cell.)"""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setenv("ISOPLAST_FAST", "1")
    tested = []
    for md in CHAPTERS:
        nb = jupytext.read(md)
        code = [c for c in nb.cells if c.cell_type == "code"]
        base = {}
        for cell in code[1:3]:  # the parameters cell and the imports cell
            exec(compile(cell.source, f"{md.stem}-setup", "exec"), base)
        for label, ex in _exercises(nb).items():
            if not ex["solution"]:
                continue
            names = answer_names(nb.cells[ex["skeleton"][0]].source)
            ns = dict(base)
            try:
                for i in ex["solution"]:
                    exec(compile(nb.cells[i].source, label, "exec"), ns)
            except NameError:
                continue  # needs the chapter's state: executed with its check by the book build and papermill
            check_cell = compile(nb.cells[ex["check"][0]].source, f"{label}-check", "exec")
            exec(check_cell, dict(ns))
            for name in names:
                with pytest.raises(AssertionError):
                    exec(check_cell, {**ns, name: wrong_answer(ns[name])})
            tested.append(label)
    assert len(tested) >= 5, tested


def test_wrong_answer_cells_catch_a_check_that_checks_nothing():
    """The cells tests/test_notebooks.py adds after every check cell fail on a check that accepts anything."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("````{exercise} X\n:label: ch0-ex-x\n\nQ\n````"),
        nbformat.v4.new_raw_cell("x = ...\nrequire(x=x)", metadata={"tags": ["skeleton"]}),
        nbformat.v4.new_code_cell("x = 1.0"),
        nbformat.v4.new_code_cell("pass", metadata={"tags": ["check"]}),
    ])  # fmt: skip
    added = add_wrong_answer_cells(nb).cells[-1]
    assert "wrong-answer-test" in added.metadata["tags"]
    with pytest.raises(RuntimeError, match="ch0-ex-x passed with a wrong x"):
        exec(added.source, {"x": 1.0})
    exec(added.source.replace("'pass'", "'assert x == 1.0'"), {"x": 1.0})  # a real check fails on the wrong x: no error


def test_check_helpers_pass_the_right_answer_and_fail_a_wrong_one():
    from isoplast_lite.exercises import check, check_close, require

    require(a=1, b=None)  # anything but `...` counts as an answer
    with pytest.raises(NotImplementedError, match="b"):
        require(a=1, b=...)
    check_close(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]), rtol=1e-6)
    check_close(torch.tensor([0.5]), [0.5])
    with pytest.raises(AssertionError, match="sigma"):
        check_close(1.1, 1.0, rtol=0.05, name="sigma")
    with pytest.raises(AssertionError, match="shape"):
        check_close([1.0], [1.0, 2.0])
    with pytest.raises(AssertionError, match="not what"):
        check_close(float("nan"), 1.0, atol=1.0)
    with pytest.raises(AssertionError, match="hint"):
        check(False, "hint")
    with pytest.raises(ValueError, match="rtol"):
        check_close(1.0, 1.0, rtol=-1)


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


def test_the_committed_student_notebooks_and_their_page_are_current(student_dir):
    # Colab and Binder open the committed files: they must be what the tool writes now
    tool = _tool()
    committed = sorted((ROOT / "student" / "notebooks").glob("*.ipynb"))
    assert [p.name for p in committed] == [p.stem + ".ipynb" for p in CHAPTERS], \
        "run `python tools/student_edition.py --notebooks-only` and commit student/notebooks"
    for path in committed:
        fresh = nbformat.read(student_dir / path.name, as_version=4)
        old = nbformat.read(path, as_version=4)
        same = [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in old.cells] == \
               [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in fresh.cells]
        assert same, f"{path.name} is stale: run `python tools/student_edition.py --notebooks-only`"
    page = (ROOT / "book" / "student-edition.md").read_text(encoding="utf-8")
    assert page == tool.student_page(ROOT), "book/student-edition.md is stale"


def test_the_student_page_links_every_student_notebook():
    tool = _tool()
    page = tool.student_page(ROOT)
    for md in CHAPTERS:
        name = f"student/notebooks/{md.stem}.ipynb"
        assert f"/blob/main/{name})" in page and f"?urlpath=tree/{name})" in page
        assert f"<../{name}>`" in page
    nb_header = nbformat.read(ROOT / "student" / "notebooks" / f"{CHAPTERS[0].stem}.ipynb", as_version=4)
    head = next(c for c in nb_header.cells if "isoplast-student-note" in c.metadata.get("tags", []))
    assert f"/blob/main/student/notebooks/{CHAPTERS[0].stem}.ipynb)" in head.source and tool.STUDENT_NOTE in head.source
