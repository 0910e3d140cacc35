"""Build the student edition: the book with solutions hidden, and notebooks without solutions.

One command (from the repository root)::

    .venv/bin/python tools/student_edition.py            # both parts (full mode, ~4 min)
    .venv/bin/python tools/student_edition.py --smoke    # FAST-mode HTML, only to check the build

The student HTML is executed in full mode, like the published book: FAST outputs (too short to
show any effect) never reach students. ``--smoke`` builds a FAST-mode copy into
``_build/student-html-smoke`` for a quick check of the build itself; ``ISOPLAST_FAST`` in the
environment is ignored otherwise.

It writes

* ``student/notebooks/NN-slug.ipynb``: every chapter with its solutions removed (no outputs;
  students run them), its Markdown converted from MyST to plain Markdown as in the reader
  notebooks (``tools/reader_notebooks.py``), so it renders in plain Jupyter and Colab. Numbers
  the prose pastes with ``{glue:text}`` take the values of the full-mode run in the committed
  reader notebook ``notebooks/NN-slug.ipynb`` when it is current (the published page's values);
  otherwise the sentence shows the placeholder :data:`GLUE_PLACEHOLDER` naming the value. Every
  other cell stays, and every code exercise gets its **skeleton** cell (see below) followed by its
  **check** cell.
* ``book/student-edition.md``: the book's page that lists them, each with its Colab and Binder
  links and a download. The notebooks are committed (Colab and Binder open files of the
  repository); ``tests/test_student_edition.py`` fails when they or the page are stale, and the
  book build copies them into the site (``book/_ext/isoplast_sphinx.py``).
* ``_build/student-html/``: the HTML book built from those stripped chapters, with
  sphinx-exercise's ``hide_solutions: true`` set as a config override as well (it hides plain
  ``{solution}`` directives; gated ``{solution-start}``/``{solution-end}`` solutions, which hold
  executed code cells, are removed from the sources instead, because ``hide_solutions`` only
  drops their opening directive and would leave their code and outputs visible).

How a solution is recognised (the convention of ``DEVELOPING.md``): a ``{solution}`` directive
block inside a markdown cell, or everything from a ``{solution-start}`` directive to the end of
the matching ``{solution-end}`` directive, code cells in between included. Unbalanced markers
are an error.

Skeletons and checks (``DEVELOPING.md``, "Exercises"). In the chapter source a code exercise has

* a ``{raw-cell}`` tagged ``skeleton`` right after the exercise: the names the student computes,
  each ``= ...``, then ``require(...)`` (``isoplast_lite.exercises``), which raises
  ``NotImplementedError`` until every ``...`` is replaced. A raw cell is neither executed nor
  shown by the book, nor by papermill; the reader notebooks drop it; here it becomes a code cell;
* a code cell tagged ``check`` right after ``{solution-end}``: it recomputes the answer from the
  chapter's data and compares. The book build, papermill and the reader notebooks execute it
  after the solution (so every check passes with its solution); in the student edition it
  follows the skeleton. In the student HTML both are shown and tagged ``skip-execution``.

Options: ``--notebooks-only`` (skip the HTML build), ``--html-only``, ``--keep-source`` (keep the
temporary source copy under ``_build/student-src`` for inspection).

The solutions themselves are executed by the normal notebook tests (papermill runs the full
chapters); ``tests/test_student_edition.py`` checks the stripping.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
_OPEN = re.compile(r"^\s*(?P<fence>`{3,}|:{3,})\{(?P<name>solution|solution-start|solution-end)\}")
STUDENT_NOTE = (
    "**Student edition.** The solutions of the exercises have been removed from this notebook. "
    "Each code exercise has a skeleton cell (replace every `...` with your code; until then it "
    "raises `NotImplementedError`) and a check cell after it that tells you whether your answer "
    "agrees with the chapter's data. The full edition is in the repository's `notebooks/` folder."
)
#: What a student notebook shows for a glued number when no current full-mode run is at hand.
GLUE_PLACEHOLDER = "[*{key}*: computed by the code of this chapter; run it to see the value]"
# Copied into the temporary source tree of the student HTML build (everything the book needs).
_SKIP = {".git", ".venv", "_build", "student", "__pycache__", ".pytest_cache", ".ipynb_checkpoints"}


class SolutionMarkupError(ValueError):
    """Unbalanced or unterminated solution markers in a chapter."""


def strip_solutions(nb):
    """Return a copy of notebook ``nb`` without its solutions (see the module docstring).

    Args:
        nb: an ``nbformat`` notebook (e.g. from ``jupytext.read`` of a MyST chapter).

    Returns:
        ``(stripped, removed)``: the new notebook and the number of cells removed entirely
        (solution code cells and markdown cells left empty).

    Raises:
        SolutionMarkupError: a solution directive is not closed, or ``{solution-end}`` appears
            without a ``{solution-start}``.
    """
    out = nbformat.from_dict(nb)  # deep copy
    cells = []
    state, fence = "outside", None  # outside | directive (skipping a fenced block) | gated
    after_directive = "outside"
    removed = 0
    for cell in out.cells:
        if cell.cell_type != "markdown":
            if state == "outside":
                cells.append(cell)
            elif state == "gated":
                removed += 1
            else:
                raise SolutionMarkupError(f"a code cell interrupts an unclosed solution directive: {cell.source[:60]!r}")
            continue
        kept = []
        for line in cell.source.split("\n"):
            if state == "directive":
                if line.strip() == fence:
                    state = after_directive
                continue
            match = _OPEN.match(line)
            if match:
                name = match["name"]
                if state == "outside" and name in ("solution", "solution-start"):
                    after_directive = "outside" if name == "solution" else "gated"
                elif state == "gated" and name == "solution-end":
                    after_directive = "outside"
                else:
                    raise SolutionMarkupError(f"unexpected {{{name}}} while {state}: {line!r}")
                state, fence = "directive", match["fence"]
                continue
            if state == "outside":
                kept.append(line)
        text = "\n".join(kept).strip("\n")
        text = re.sub(r"\n{3,}", "\n\n", text)
        if text.strip():
            cell.source = text
            cells.append(cell)
        else:
            removed += 1
    if state != "outside":
        raise SolutionMarkupError(f"the notebook ends inside a solution ({state})")
    out.cells = cells
    return out, removed


def is_skeleton(cell) -> bool:
    """A skeleton cell of an exercise (a ``{raw-cell}`` tagged ``skeleton`` in the source)."""
    return cell.cell_type == "raw" and "skeleton" in cell.metadata.get("tags", [])


def is_check(cell) -> bool:
    """The check cell of an exercise (a code cell tagged ``check``)."""
    return cell.cell_type == "code" and "check" in cell.metadata.get("tags", [])


def skeletons_to_code(nb, extra_tags=()):
    """Turn the skeleton raw cells of ``nb`` into code cells tagged ``skeleton`` (in place)."""
    for i, cell in enumerate(nb.cells):
        if is_skeleton(cell):
            code = nbformat.v4.new_code_cell(cell.source.strip("\n"))
            code.pop("id", None)
            code.metadata["tags"] = ["skeleton", *extra_tags]
            nb.cells[i] = code
    return nb


def _reader_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reader_notebooks", Path(__file__).with_name("reader_notebooks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chapter_paths(root: Path = ROOT):
    """Every chapter source ``notebooks/NN-*.md``, sorted."""
    return sorted((root / "notebooks").glob("[0-9][0-9]-*.md"))


def published_glue(md: Path, bib=None) -> dict:
    """The glued values of the committed reader notebook of ``md`` if it is current, else ``{}``."""
    reader = _reader_tool()
    ipynb = md.with_suffix(".ipynb")
    if not ipynb.is_file() or reader.stale(md, bib) is not None:
        return {}
    return reader.glued_values(nbformat.read(ipynb, as_version=4))


def write_student_notebooks(root: Path = ROOT, out_dir: Path | None = None):
    """Write ``student/notebooks/NN-slug.ipynb`` for every chapter; return the written paths."""
    out_dir = out_dir or root / "student" / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    reader = _reader_tool()
    bib = reader.load_bibliography(root / "book" / "references.bib")
    written = []
    for md in chapter_paths(root):
        nb = jupytext.read(md)
        stripped, _ = strip_solutions(nb)
        skeletons_to_code(stripped)
        ctx = reader.Context(md.read_text(encoding="utf-8"), bib)
        for cell in stripped.cells:
            if cell.cell_type == "markdown":  # plain Markdown: Colab and Jupyter show MyST raw
                cell.source = reader.myst_to_markdown(cell.source, ctx)
        reader.fill_glue(stripped, published_glue(md, bib), missing=GLUE_PLACEHOLDER)
        first_md = next((i for i, c in enumerate(stripped.cells) if c.cell_type == "markdown"), None)
        # its own launch badges (this notebook, not the reader's) and the chapter's run time
        note = reader.header_cell(md, folder="student/notebooks", note=STUDENT_NOTE)
        note.metadata["tags"] = ["isoplast-student-note"]
        note.pop("id", None)
        stripped.cells.insert(1 if first_md == 0 else 0, note)
        stripped.metadata.pop("jupytext", None)
        for i, cell in enumerate(stripped.cells):
            cell.setdefault("id", f"student-{i}")
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        path = out_dir / (md.stem + ".ipynb")
        nbformat.write(stripped, path)
        written.append(path)
    return written


PAGE = ROOT / "book" / "student-edition.md"


def student_page(root: Path = ROOT) -> str:
    """The text of ``book/student-edition.md``: each student notebook with its Colab and Binder
    links and a download (the committed ``student/notebooks/NN-slug.ipynb``)."""
    reader = _reader_tool()
    rows = []
    for md in chapter_paths(root):
        title = re.search(r"^# (.+)$", md.read_text(encoding="utf-8"), flags=re.M).group(1).strip()
        links = reader.launch_links(md, folder="student/notebooks")
        name = f"{md.stem}.ipynb"
        rows.append(f"| {int(md.name[:2])}. {title} | [Open in Colab]({links['colab']}) | "
                    f"[Launch Binder]({links['binder']}) | {{download}}`{name} <../student/notebooks/{name}>` |")
    return (
        "# Student edition\n\n"
        "<!-- generated by tools/student_edition.py --notebooks-only; do not edit -->\n\n"
        "Every chapter as a notebook **without the solutions**, for a course: each code exercise "
        "keeps a skeleton cell (replace every `...`; until then it raises `NotImplementedError`) "
        "followed by a check cell that says whether the answer agrees with the chapter's data. "
        "The first cell installs the library, as in the full edition. The "
        "[course guide](course-guide.md) says how to teach from them.\n\n"
        "| chapter | Colab | Binder | download |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def write_student_page(root: Path = ROOT, page: "Path | None" = None) -> Path:
    """Write :func:`student_page` to ``book/student-edition.md`` (or ``page``); return the path."""
    page = page or root / "book" / "student-edition.md"
    page.write_text(student_page(root), encoding="utf-8")
    return page


def build_student_html(root: Path = ROOT, keep_source: bool = False, smoke: bool = False) -> Path:
    """Build the book from solution-stripped chapters into ``_build/student-html``; return it.

    Full mode (the published book's outputs); ``smoke=True`` executes the chapters in FAST mode
    into ``_build/student-html-smoke`` instead, a build check whose pages are not for students.
    """
    import os

    src = root / "_build" / "student-src"
    dest = root / "_build" / ("student-html-smoke" if smoke else "student-html")
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(root, src, ignore=lambda d, names: [n for n in names if n in _SKIP])
    for md in chapter_paths(src):
        nb = jupytext.read(md)
        stripped, _ = strip_solutions(nb)
        skeletons_to_code(stripped, extra_tags=("skip-execution",))
        for cell in stripped.cells:  # without the solution a check fails: shown, not executed
            if is_check(cell) and "skip-execution" not in cell.metadata["tags"]:
                cell.metadata["tags"].append("skip-execution")
        jupytext.write(stripped, md, fmt="md:myst")
    config = yaml.safe_load((src / "_config.yml").read_text(encoding="utf-8"))
    config.setdefault("sphinx", {}).setdefault("config", {})["hide_solutions"] = True
    config["title"] = str(config.get("title", "")) + " (student edition)"
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(src), "-W", "--builder", "html"]
    env = {**os.environ, "ISOPLAST_FAST": "1" if smoke else "0"}
    subprocess.run(cmd, check=True, cwd=src, env=env)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(src / "_build" / "html"), dest)
    if not keep_source:
        shutil.rmtree(src)
    return dest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--notebooks-only", action="store_true", help="only write student/notebooks")
    group.add_argument("--html-only", action="store_true", help="only build _build/student-html")
    parser.add_argument("--keep-source", action="store_true", help="keep _build/student-src")
    parser.add_argument("--smoke", action="store_true",
                        help="FAST-mode HTML into _build/student-html-smoke (a build check, not for students)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not args.html_only:
        for path in [*write_student_notebooks(), write_student_page()]:
            print(f"wrote {path.relative_to(ROOT)}")
    if not args.notebooks_only:
        dest = build_student_html(keep_source=args.keep_source, smoke=args.smoke)
        print(f"built {dest.relative_to(ROOT)}/index.html")
    print(f"student edition done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
