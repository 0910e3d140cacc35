"""Tests of the book's chapters (``notebooks/NN-*.md`` paired with ``.ipynb``).

One test per chapter and check, so ``pytest -n auto`` spreads them over workers:

* papermill executes the MyST source in FAST mode (``FAST=True`` injected as a parameter), every
  exercise's solution and check cell included, and after each check re-runs it with each answer
  made wrong, which must fail (``tests/exercise_checks.py``);
* nbval re-executes the committed reader ``.ipynb`` in full mode, the mode its outputs were made
  in (``--nbval-lax``: only the cells whose source ends with ``# NBVAL_CHECK_OUTPUT`` are
  compared, after ``tests/nbval_sanitize.cfg``), in a subprocess so it is part of the one
  ``pytest`` command. Those cells print what holds on any CPU and thread count (exact float64
  checks, shipped data, statistical verdicts), never a chaotic float32 trajectory;
* each committed ``.ipynb`` is the current output of ``tools/reader_notebooks.py`` for its
  ``.md`` (same converted cells, generated from the same source bytes), executed in full mode,
  with plain Markdown only (no MyST syntax that Colab would show raw);
* ``_toc.yml`` lists every chapter and every entry of it exists;
* the first cell of every chapter is the install cell generated from ``_config.yml``;
* every chapter has a ``parameters``-tagged cell defining ``FAST`` with the env-var fallback.

Chapters are found by globbing, so the tests cover whatever chapters exist.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml
from exercise_checks import add_wrong_answer_cells
from tools_loader import load_tool

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.md"))
CHAPTER_IDS = [p.stem for p in CHAPTERS]
NBVAL_MARKER = "# NBVAL_CHECK_OUTPUT"


def _load_sync_tool():
    return load_tool("sync_install_cells")


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _toc_files(toc: dict) -> list[str]:
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


@pytest.fixture(params=CHAPTERS, ids=CHAPTER_IDS)
def chapter(request) -> Path:
    return request.param


def test_some_chapters_exist():
    assert CHAPTERS, f"no chapter sources notebooks/NN-*.md under {NOTEBOOKS}"


def test_papermill_fast(chapter, tmp_path, monkeypatch):
    """The chapter executes top to bottom in FAST mode (papermill injects FAST=True)."""
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("ISOPLAST_FAST", "1")
    nb = add_wrong_answer_cells(jupytext.read(chapter))  # and every exercise check must fail with a wrong answer
    source = tmp_path / f"{chapter.stem}.ipynb"
    nbformat.write(nb, source)
    out = tmp_path / f"{chapter.stem}.out.ipynb"
    executed = papermill.execute_notebook(
        str(source),
        str(out),
        parameters={"FAST": True},
        kernel_name="python3",
        cwd=str(NOTEBOOKS),
        progress_bar=False,
        execution_timeout=600,
    )
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "FAST = True" in injected[0].source
    errors = [
        o for c in _code_cells(executed) for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors, errors


def test_nbval_committed_outputs(chapter):
    """nbval re-runs the committed .ipynb and compares the marked cells' outputs.

    It re-runs them as another CPU would (PyTorch's portable kernels, ``ATEN_CPU_CAPABILITY=default``,
    one thread): the committed outputs were made with this machine's native kernels, and the book
    build has already executed every chapter in full mode with them, so a native re-run here would
    repeat the build's execution and test no new axis."""
    ipynb = chapter.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run tools/reader_notebooks.py"
    nb = nbformat.read(ipynb, as_version=4)
    marked = [c for c in _code_cells(nb) if NBVAL_MARKER in c.source]
    assert 1 <= len(marked) <= 3, f"{ipynb.name}: {len(marked)} cells marked {NBVAL_MARKER}"
    assert all(c.get("outputs") for c in marked), "a marked cell has no committed output"
    env = dict(os.environ, ISOPLAST_FAST="0",  # the committed outputs are full-mode ones
               ATEN_CPU_CAPABILITY="default", OMP_NUM_THREADS="1")  # fmt: skip
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
            "--nbval-lax", "--nbval-current-env",
            "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"),
            "--nbval-cell-timeout", "600",
            str(ipynb),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def test_reader_notebook_is_current(chapter):
    """The committed .ipynb is what tools/reader_notebooks.py makes from the current .md."""
    tool = load_tool("reader_notebooks")
    why = tool.stale(chapter)
    assert why is None, f"{why}: run `.venv/bin/python tools/reader_notebooks.py {chapter.relative_to(ROOT)}`"


MYST_ONLY = re.compile(r"\{[\w:-]+\}`|^```+\s*\{|^:::+\s*\{|^:[\w-]+:|^\$\$\s*\(", re.M)


def test_reader_notebook_renders_without_myst(chapter):
    """No MyST-only syntax in the Markdown a reader opens (Colab and plain Jupyter show it raw)."""
    nb = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
    raw = [m.group(0) for c in nb.cells if c.cell_type == "markdown" for m in MYST_ONLY.finditer(c.source)]
    assert not raw, f"{chapter.with_suffix('.ipynb').name} shows MyST syntax raw: {raw[:5]}"


def test_committed_ipynb_is_executed(chapter):
    """Every code cell of the committed notebook has run, in order, without error, in full mode."""
    nb = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
    counts = [c.execution_count for c in _code_cells(nb)]
    assert None not in counts, "some cells were not executed"
    assert counts == sorted(counts)
    assert not [o for c in _code_cells(nb) for o in c.outputs if o.output_type == "error"]
    made = nb.metadata["isoplast"]["executed_with"]
    assert {"torch", "cpu_capability", "isoplast_lite", "date"} <= set(made)
    assert made["mode"] == "full", "the reader notebook holds FAST-mode outputs"
    texts = "".join(o.get("text", "") for c in _code_cells(nb) for o in c.outputs)
    assert "FAST mode" not in texts and "FAST smoke run" not in texts


#: stderr a committed reader notebook still shows, with its cause; each entry must still occur
#: (fix the cause, then remove the entry): seaborn's figure-level functions call tight_layout on
#: a figure that the book's theme lays out with constrained layout (plots.set_theme)
KNOWN_STDERR: dict[str, str] = {}  # chapter stem -> a warning we cannot remove yet, with its cause


def test_committed_ipynb_has_no_stderr_noise(chapter):
    """What a reader opens carries no warnings (font lookups, layout engines) on stderr."""
    nb = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
    stderr = ["".join(o.get("text", "")) for c in _code_cells(nb) for o in c.outputs
              if o.output_type == "stream" and o.get("name") == "stderr"]  # fmt: skip
    assert not [t for t in stderr if "findfont" in t], "matplotlib font warnings in a committed notebook"
    known = KNOWN_STDERR.get(chapter.stem)
    unexplained = [t for t in stderr if not (known and known in t)]
    assert not unexplained, unexplained
    if known:
        assert any(known in t for t in stderr), f"{chapter.stem}: the known warning is gone: remove it from KNOWN_STDERR"


def test_toc_lists_every_chapter_and_every_entry_exists():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = _toc_files(toc)
    listed = {f.removesuffix(".md").removesuffix(".ipynb") for f in files}
    for md in sorted(NOTEBOOKS.glob("*.md")):
        assert f"notebooks/{md.stem}" in listed, f"{md.name} is not in _toc.yml"
    missing = [
        f for f in files
        if not any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb"))
        and not (ROOT / f).exists()
    ]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_install_cell_matches_config(chapter):
    """The first code cell is the install cell generated from _config.yml and the library version."""
    tool = _load_sync_tool()
    url, _ = tool.repository_url(ROOT / "_config.yml")
    version = tool.library_version(ROOT)
    expected = tool.install_cell_source(url, version)
    for nb in (jupytext.read(chapter), nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)):
        first = _code_cells(nb)[0]
        assert first.source == expected, "run `python tools/sync_install_cells.py`"
        assert "hide-cell" in first.metadata.get("tags", [])
    import isoplast_lite

    assert version == isoplast_lite.__version__
    # pinned to the release tag, with the extra the chapters need, and never torch
    assert expected.count(f"isoplast_lite[{tool.EXTRA}] @ git+{url}@v{version}") == 2
    assert "torch" not in expected.split("import sys", 1)[1]
    assert "%matplotlib inline" in expected.splitlines()  # figures whatever MPLBACKEND says
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert tool.install_requirement(url, version) in readme, "README's pip line names another release"


def test_parameters_cell(chapter):
    """A papermill `parameters` cell (the second code cell) defines FAST from ISOPLAST_FAST."""
    nb = jupytext.read(chapter)
    cells = _code_cells(nb)
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must carry the `parameters` tag"
    assert cells.index(tagged[0]) == 1, "the parameters cell must be the second code cell"
    src = tagged[0].source
    assert re.search(r"^FAST\s*=.*ISOPLAST_FAST", src, re.M), src
    assert re.search(r"^SEED\s*=", src, re.M), src


def test_chapters_do_not_redefine_library_functions(chapter):
    """STYLE rule 1: no chapter defines a function or class named like a public library name."""
    import isoplast_lite

    public = set(getattr(isoplast_lite, "__all__", []))
    for module in ("isometry", "diagnostics", "nn", "optim"):
        try:
            mod = importlib.import_module(f"isoplast_lite.{module}")
        except ImportError:
            continue
        public |= {
            n for n, obj in vars(mod).items()
            if not n.startswith("_") and getattr(obj, "__module__", None) == mod.__name__
        }
    defined = set(re.findall(r"^\s*(?:def|class)\s+(\w+)", chapter.read_text(), re.M))
    assert not (defined & public), f"{chapter.name} redefines {sorted(defined & public)}"
