"""tools/reader_notebooks.py: MyST becomes plain Markdown, and a stale notebook is detected."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from tools_loader import load_tool

BIB = {
    "saxe2013exact": {"cite": "Saxe et al.", "year": "2013", "full": "Saxe A. (2013). Exact solutions."},
    "jacot2018neural": {"cite": "Jacot et al.", "year": "2018", "full": "Jacot A. (2018). NTK."},
}
CHAPTER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Demo

Isometry {cite:p}`saxe2013exact,jacot2018neural` as {cite:t}`jacot2018neural` showed.

$$
a = b
$$ (eq-first)

$$
c = d
$$ (eq-second)

See {eq}`eq-second` and {prf:ref}`prop-demo`.

````{prf:proposition} A claim
:label: prop-demo

Body of the claim.
````

````{exercise} Try it
:label: ex-demo

Compute {eq}`eq-first`.
````

```{solution-start} ex-demo
:class: dropdown
```

The answer is $42$.

```{code-cell} ipython3
answer = 42
```

More of the solution.

```{solution-end}
```

```{code-cell} ipython3
print("not a solution")
```

## References

```{bibliography}
:filter: docname in docnames
```
"""


@pytest.fixture
def tool():
    return load_tool("reader_notebooks")


@pytest.fixture
def chapter(tmp_path):
    path = tmp_path / "99-demo.md"
    path.write_text(CHAPTER)
    return path


def test_myst_becomes_plain_markdown(tool, chapter):
    nb = tool.reader_cells(chapter, BIB)
    md = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "(Saxe et al., 2013; Jacot et al., 2018)" in md
    assert "Jacot et al. (2018) showed" in md
    assert "a = b \\tag{1}" in md and "c = d \\tag{2}" in md
    assert "See (2) and Proposition 1 (A claim)." in md
    assert "> **Proposition 1 (A claim).**" in md and "> Body of the claim." in md
    assert "> **Exercise 1 (Try it).**" in md and "> Compute (1)." in md
    assert tool.SOLUTION_NOTE in md and "*(End of the solution.)*" in md
    # the reference list holds exactly the cited works, sorted by author
    refs = md.split("## References", 1)[1]
    assert refs.index("Jacot A.") < refs.index("Saxe A.")
    for raw in ("{cite", "{eq}", "{prf", ":label:", "```{", "$$ ("):
        assert raw not in md, raw
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].metadata["jupyter"]["source_hidden"] and "solution" in code[0].metadata["tags"]
    assert "jupyter" not in code[1].metadata  # only solutions are folded
    assert nb.metadata["isoplast"]["source_sha256"] == tool.source_sha256(chapter)


def test_unknown_references_and_syntax_are_errors(tool, tmp_path):
    bad = tmp_path / "98-bad.md"
    for text, err in [("{cite:p}`nobody2020`", KeyError), ("{eq}`eq-missing`", KeyError),
                      ("{unknownrole}`x`", ValueError), ("```{mystery}\nbody\n```", ValueError)]:  # fmt: skip
        bad.write_text(CHAPTER.replace("# Demo", f"# Demo\n\n{text}"))
        with pytest.raises(err):
            tool.reader_cells(bad, BIB)


def test_a_stale_reader_notebook_is_detected(tool, chapter, monkeypatch):
    monkeypatch.setattr(tool, "load_bibliography", lambda path=None: BIB)
    assert tool.stale(chapter, BIB) == f"{chapter.with_suffix('.ipynb').name} is missing"
    nb = tool.reader_cells(chapter, BIB)
    nbformat.write(nb, chapter.with_suffix(".ipynb"))
    assert tool.stale(chapter, BIB) is None
    # a hand edit of the notebook
    nb.cells[2].source += " edited"
    nbformat.write(nb, chapter.with_suffix(".ipynb"))
    assert "differs from the conversion" in tool.stale(chapter, BIB)
    # the source changed after the notebook was generated
    nbformat.write(tool.reader_cells(chapter, BIB), chapter.with_suffix(".ipynb"))
    chapter.write_text(CHAPTER.replace("Isometry", "Dynamical isometry"))
    assert "another version" in tool.stale(chapter, BIB)


def test_the_real_chapters_convert_completely(tool, tmp_path):
    """Every construct the chapters use is converted (no error, nothing left raw)."""
    bib = tool.load_bibliography()
    for md in sorted(tool.NOTEBOOKS.glob("[0-9][0-9]-*.md")):
        copy = tmp_path / md.name
        shutil.copy(md, copy)
        nb = tool.reader_cells(copy, bib)
        assert any("References" in c.source or "- " in c.source for c in nb.cells if c.cell_type == "markdown")


def test_solutions_are_collapsed(tool, chapter):
    nb = tool.reader_cells(chapter, BIB)
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    opening = next(t for t in md if tool.SOLUTION_NOTE in t)
    # the solution's text sits inside a closed <details> block, the exercise outside it
    before, inside = opening.split("<details>", 1)
    assert "Compute" in before and "The answer is $42$." in inside.split("</details>")[0]
    assert tool.SOLUTION_SUMMARY in inside and "<details open" not in opening
    rest = next(t for t in md if "More of the solution." in t)
    assert rest.startswith("<details>") and rest.index("More of the solution.") < rest.index("</details>")
    assert rest.index("</details>") < rest.index(tool.END_NOTE)
    code = next(c for c in nb.cells if c.cell_type == "code" and "answer = 42" in c.source)
    assert code.source.splitlines()[0] == tool.SOLUTION_TITLE and code.metadata["cellView"] == "form"
    assert code.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    plain = next(c for c in nb.cells if c.cell_type == "code" and "not a solution" in c.source)
    assert "cellView" not in plain.metadata and not plain.source.startswith("#@title")


def test_the_header_has_launch_badges_and_the_measured_run_time(tool, tmp_path):
    import json

    md = tmp_path / "03-demo.md"
    links = tool.launch_links(md)
    assert links["colab"].endswith("/blob/main/notebooks/03-demo.ipynb")
    assert links["binder"].startswith("https://mybinder.org/v2/gh/") and links["binder"].endswith("?urlpath=tree/notebooks/03-demo.ipynb")
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({"machine": {"cores": 2, "torch": "2.13.0+cpu"},
                                   "chapters": {"3": {"cold_s": 150.0, "warm_s": 20.4, "measured": "2026-12-05 01:00 UTC"}}}))
    sentence = tool.run_time_sentence(md, timings)
    assert "2.5 min the first time" in sentence and "20 s again" in sentence and "2026-12-05" in sentence
    assert "not measured" in tool.run_time_sentence(tmp_path / "04-other.md", timings)
    head = tool.header_cell(md).source
    assert f"]({links['colab']})" in head and f"]({links['binder']})" in head
