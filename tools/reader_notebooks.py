"""Generate the notebooks a reader opens (Colab, Binder, plain Jupyter) from the chapter sources.

The book builds from the MyST sources ``notebooks/NN-slug.md``. The ``notebooks/NN-slug.ipynb``
beside them are what the book's Colab and Binder buttons open, so they must show what the
published page shows and render without Sphinx. This tool makes them, and nothing else does:

* every Markdown cell is converted from MyST to plain Markdown (:func:`myst_to_markdown`):
  exercises and propositions become headed blocks, solutions are marked (and their code cells
  folded in JupyterLab/Notebook 7), ``{cite:p}``/``{cite:t}`` become "Author (year)" with a
  reference list where the chapter had ``{bibliography}``, ``{eq}``/``{prf:ref}`` become
  numbered references, ``:label:`` lines disappear;
* the chapter is executed top to bottom in **full mode** (``ISOPLAST_FAST=0``, the mode of the
  book build) in a fresh kernel, every cell included (``skip-execution`` cells too: they hold
  the live widgets that Colab users run);
* numbers in the prose come from the computation (myst-nb ``glue``): the conversion keeps the
  ``{glue:text}`key:fmt``` roles, and after execution :func:`fill_glue` replaces each with the
  value that this very execution glued, formatted with the same format spec as the book
  (``myst_nb.core.variables.format_plain_text``), so the Markdown a reader opens says what
  the outputs beside it say; :func:`stale` re-fills a fresh conversion with the committed
  notebook's own glued values, so prose and outputs cannot disagree in a committed notebook;
* the notebook records its source's SHA-256 and what it was executed with
  (``metadata.isoplast``), and is written atomically only when every cell ran without error.

Usage (from the repository root)::

    .venv/bin/python tools/reader_notebooks.py                    # every chapter (~3 min)
    .venv/bin/python tools/reader_notebooks.py notebooks/04-*.md  # some
    .venv/bin/python tools/reader_notebooks.py --check            # exit 1 if any is stale

``tests/test_notebooks.py`` fails when a committed notebook drifts from its source.
"""

from __future__ import annotations

import argparse
import codecs
import hashlib
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BIB = ROOT / "book" / "references.bib"
SOLUTION_NOTE = "**Solution** (try the exercise first). The code cell below is the solution."
END_NOTE = "*(End of the solution.)*"
#: the summary line of a collapsed solution (its Markdown folds in a <details> block)
SOLUTION_SUMMARY = "<summary><b>Solution</b> (try the exercise first; click to open)</summary>"
#: the first line of a solution code cell: Colab's form view shows this title, not the code
SOLUTION_TITLE = "#@title Solution (try the exercise first; double-click to show the code)"
TIMINGS = ROOT / "book" / "course-timings.json"
CONFIG = ROOT / "_config.yml"

_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$",
                    re.M | re.S)  # fmt: skip
_ROLE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<text>[^`]+)`")
_GLUE_ROLE = re.compile(r"\{glue:text\}`(?P<text>[^`]+)`")  # the one glue role the chapters use
_LABELED_MATH = re.compile(r"^\$\$\n(?P<body>.*?)\n\$\$[ \t]*\((?P<label>[\w:-]+)\)[ \t]*$", re.M | re.S)


# --------------------------------------------------------------------------- bibliography
def _latex_to_text(s: str) -> str:
    import latexcodec  # noqa: F401  (registers the "ulatex" codec; a dependency of pybtex)

    s = codecs.decode(s, "ulatex")
    return re.sub(r"[{}]", "", s).strip()


def load_bibliography(path: Path = BIB) -> dict:
    """``{key: {"cite": "Author et al.", "year": "2019", "full": "one-line reference"}}``."""
    from pybtex.database import parse_file

    entries = {}
    for key, entry in parse_file(str(path)).entries.items():
        people = entry.persons.get("author", [])
        lasts = [_latex_to_text(" ".join(p.prelast_names + p.last_names)) for p in people]
        if len(lasts) == 1:
            cite = lasts[0]
        elif len(lasts) == 2:
            cite = f"{lasts[0]} & {lasts[1]}"
        else:
            cite = f"{lasts[0]} et al." if lasts else key
        f = entry.fields
        names = ", ".join(
            _latex_to_text(" ".join(p.last_names)) + (f" {''.join(n[0] + '.' for n in p.first_names)}" if p.first_names else "")
            for p in people
        )  # fmt: skip
        venue = f.get("journal") or f.get("booktitle") or f.get("publisher") or f.get("note") or ""
        full = f"{names} ({f.get('year', 'n.d.')}). {_latex_to_text(f.get('title', ''))}."
        if venue:
            full += f" *{_latex_to_text(venue)}*."
        if f.get("url"):
            full += f" <{f['url']}>"
        entries[key] = {"cite": cite, "year": f.get("year", "n.d."), "full": full}
    return entries


# --------------------------------------------------------------------------- conversion
class Context:
    """What the conversion of one chapter knows: its labels, the bibliography, what it cited."""

    def __init__(self, md_text: str, bib: dict):
        self.bib = bib
        self.cited: list = []
        self.equations = {m.group("label"): i + 1 for i, m in enumerate(_LABELED_MATH.finditer(md_text))}
        self.blocks = {}  # label -> "Exercise 2 (title)" / "Proposition 1 (title)"
        counts = {}
        for m in _FENCE.finditer(md_text):
            kind = _block_kind(m.group("name"))
            if kind is None:
                continue
            counts[kind] = counts.get(kind, 0) + 1
            label = _option(m.group("body"), "label")
            if label:
                title = m.group("arg").strip()
                self.blocks[label] = f"{kind} {counts[kind]}" + (f" ({title})" if title else "")
        self._numbers = {}

    def number(self, kind: str) -> int:
        self._numbers[kind] = self._numbers.get(kind, 0) + 1
        return self._numbers[kind]


def _block_kind(name: str):
    if name == "exercise":
        return "Exercise"
    if name.startswith("prf:") and name != "prf:proof":
        return name.split(":", 1)[1].capitalize()
    return None


def _option(body: str, key: str):
    m = re.search(rf"^:{key}:[ \t]*(.*)$", body, re.M)
    return m.group(1).strip() if m else None


def _strip_options(body: str) -> str:
    lines = body.split("\n")
    while lines and re.match(r"^:[\w-]+:", lines[0]):
        lines.pop(0)
    return "\n".join(lines).strip("\n")


def _cite(ctx: Context, keys: str, textual: bool) -> str:
    parts = []
    for key in [k.strip() for k in keys.split(",") if k.strip()]:
        if key not in ctx.bib:
            raise KeyError(f"citation {key!r} is not in {BIB.name}")
        if key not in ctx.cited:
            ctx.cited.append(key)
        e = ctx.bib[key]
        parts.append(f"{e['cite']} ({e['year']})" if textual else f"{e['cite']}, {e['year']}")
    return "; ".join(parts) if textual else "(" + "; ".join(parts) + ")"


def _role(ctx: Context, m: re.Match) -> str:
    role, text = m.group("role"), m.group("text")
    if role in ("cite:p", "cite"):
        return _cite(ctx, text, textual=False)
    if role == "cite:t":
        return _cite(ctx, text, textual=True)
    if role == "eq":
        if text not in ctx.equations:
            raise KeyError(f"{{eq}} refers to an unknown equation label {text!r}")
        return f"({ctx.equations[text]})"
    if role in ("prf:ref", "ref", "numref"):
        if text not in ctx.blocks:
            raise KeyError(f"{{{role}}} refers to an unknown label {text!r}")
        return ctx.blocks[text]
    if role == "doc":
        name = text.rstrip("/").split("/")[-1].replace("-", " ")
        return f"the *{name}* page of the book"
    if role in ("term",):
        return text
    if role == "glue:text":
        return m.group(0)  # filled after execution with the value glued there (fill_glue)
    if role.startswith("glue"):
        raise ValueError(f"{{{role}}}`{text}`: the chapters paste numbers with {{glue:text}}`key:format` only")
    if role == "math":
        return f"${text}$"
    raise ValueError(f"unsupported MyST role {{{role}}} in {text!r}: teach tools/reader_notebooks.py to convert it")


def _directive(ctx: Context, m: re.Match) -> str:
    name, arg, body = m.group("name"), m.group("arg").strip(), m.group("body")
    inner = myst_to_markdown(_strip_options(body), ctx)
    kind = _block_kind(name)
    if kind is not None:
        n = ctx.number(kind)
        title = f" ({arg})" if arg else ""
        quoted = "\n".join("> " + line if line else ">" for line in inner.split("\n"))
        return f"> **{kind} {n}{title}.**\n>\n{quoted}"
    if name == "prf:proof":
        quoted = "\n".join("> " + line if line else ">" for line in inner.split("\n"))
        return f"> *Proof.*\n>\n{quoted} $\\blacksquare$"
    if name == "solution-start":
        return SOLUTION_NOTE
    if name == "solution-end":
        return END_NOTE
    if name == "bibliography":
        if not ctx.cited:
            return ""
        refs = sorted(ctx.cited, key=lambda k: (ctx.bib[k]["cite"].lower(), ctx.bib[k]["year"]))
        return "\n".join(f"- {ctx.bib[k]['full']}" for k in refs)
    if name in ("note", "tip", "warning", "important", "admonition"):
        head = arg if name == "admonition" else name.capitalize()
        quoted = "\n".join("> " + line if line else ">" for line in inner.split("\n"))
        return f"> **{head}.**\n>\n{quoted}"
    if name in ("math",):
        label = _option(body, "label")
        tag = f" \\tag{{{ctx.equations[label]}}}" if label in ctx.equations else ""
        return f"$$\n{_strip_options(body)}{tag}\n$$"
    raise ValueError(f"unsupported MyST directive {{{name}}}: teach tools/reader_notebooks.py to convert it")


def myst_to_markdown(text: str, ctx: Context) -> str:
    """Convert one Markdown cell from MyST to Markdown that plain Jupyter and Colab render."""
    text = _LABELED_MATH.sub(lambda m: f"$$\n{m.group('body')} \\tag{{{ctx.equations[m.group('label')]}}}\n$$", text)
    # directives first (their bodies are converted recursively), then the inline roles
    out, pos = [], 0
    for m in _FENCE.finditer(text):
        out.append(text[pos:m.start()])
        out.append(_directive(ctx, m))
        pos = m.end()
    out.append(text[pos:])
    text = "".join(out)
    return _ROLE.sub(lambda m: _role(ctx, m), text)


# --------------------------------------------------------------------------- glue
def glued_values(nb) -> dict:
    """``{key: mime bundle}`` of every ``myst_nb.glue`` output of the executed notebook ``nb``.

    The same extraction as myst-nb's (``myst_nb.ext.glue.extract_glue_data_cell``): an output
    whose metadata has ``scrapbook.name``; a ``display=False`` glue's mime types carry a prefix,
    removed here. A key glued twice is an error, as in the book build (myst-nb warns, ``-W``).
    """
    values = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            scrap = output.get("metadata", {}).get("scrapbook")
            if not scrap:
                continue
            prefix = scrap.get("mime_prefix", "")
            if scrap["name"] in values:
                raise ValueError(f"glue key {scrap['name']!r} is glued twice (the book build fails on it)")
            values[scrap["name"]] = {k[len(prefix):]: v for k, v in output.get("data", {}).items() if k.startswith(prefix)}
    return values


def glue_text(data: dict, role_text: str) -> str:
    """The text myst-nb's ``{glue:text}`` role shows for ``key:format_spec`` given the glued ``data``."""
    from myst_nb.core.variables import format_plain_text

    key, spec = role_text.rsplit(":", 1) if ":" in role_text else (role_text, "s")  # as myst-nb splits it
    if "text/plain" not in data:
        raise KeyError(f"glue key {key!r} has no text/plain output")
    return format_plain_text(data["text/plain"], spec)


def glue_keys(text: str) -> list:
    """The glue keys that the roles in Markdown ``text`` refer to."""
    return [m.group("text").rsplit(":", 1)[0] for m in _GLUE_ROLE.finditer(text)]


def fill_glue(nb, values: dict, missing: "str | None" = None):
    """Replace every glue role in the Markdown cells of ``nb`` by its value (in place; returns ``nb``).

    Args:
        nb: a converted notebook whose Markdown still holds ``{glue:text}`key:fmt``` roles.
        values: ``glued_values`` of the execution the text must describe.
        missing: ``None`` to raise ``KeyError`` for a key without a value; otherwise a format
            string with ``{key}`` used as a visible placeholder (the student edition).
    """

    def one(m: re.Match) -> str:
        key = m.group("text").rsplit(":", 1)[0]
        if key not in values:
            if missing is None:
                raise KeyError(f"the prose refers to glue key {key!r}, which no code cell glued")
            return missing.format(key=key)
        return glue_text(values[key], m.group("text"))

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _GLUE_ROLE.sub(one, cell.source)
    return nb


def _fold_solution_text(text: str, open_at_start: bool) -> "tuple[str, bool]":
    """Fold the solution parts of one converted Markdown cell into ``<details>`` blocks.

    A solution runs from :data:`SOLUTION_NOTE` (or the start of the cell, when a solution is
    open there) to :data:`END_NOTE` (or the end of the cell). Returns the text and whether a
    solution is still open at the end of the cell.
    """
    out, pos, is_open = [], 0, open_at_start
    while True:
        if not is_open:
            start = text.find(SOLUTION_NOTE, pos)
            if start < 0:
                out.append(text[pos:])
                return "".join(out), False
            out.append(text[pos:start])
            pos, is_open = start, True
        end = text.find(END_NOTE, pos)
        body = text[pos:end if end >= 0 else len(text)].strip("\n")
        if body:
            out.append(f"<details>\n{SOLUTION_SUMMARY}\n\n{body}\n\n</details>\n\n")
        if end < 0:
            return "".join(out).rstrip("\n"), True
        out.append(END_NOTE)
        pos, is_open = end + len(END_NOTE), False


def launch_links(md: Path, config: Path = CONFIG, folder: str = "notebooks") -> dict:
    """``{"colab": url, "binder": url}`` that open ``folder/<md stem>.ipynb`` of the repository.

    The repository and branch are ``repository`` of ``_config.yml``, as the book's buttons.
    """
    import yaml

    repo = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("repository") or {}
    url, branch = repo["url"].rstrip("/"), repo.get("branch", "main")
    owner_name = url.split("github.com/", 1)[1]
    path = f"{folder}/{md.stem}.ipynb"
    return {"colab": f"https://colab.research.google.com/github/{owner_name}/blob/{branch}/{path}",
            "binder": f"https://mybinder.org/v2/gh/{owner_name}/{branch}?urlpath=tree/{path}"}  # as the book's button


def run_time_sentence(md: Path, timings: Path = TIMINGS) -> str:
    """The measured run time of chapter ``md`` (``book/course-timings.json``, the course guide's).

    Cold: a fresh runner cache, every experiment trains; warm: a second run reads the cache.
    """
    import json

    chapter = str(int(md.name[:2])) if md.name[:2].isdigit() else None
    data = json.loads(timings.read_text(encoding="utf-8")) if timings.is_file() else {}
    row = data.get("chapters", {}).get(chapter) if chapter else None
    if not row:
        return "*Run time: not measured yet (`tools/course_timings.py --measure`).*"
    machine = data.get("machine", {})
    where = f"{machine.get('cores', '?')} CPU cores, torch {machine.get('torch', '?')}"
    date = str(row.get("measured", "")).split(" ")[0]
    return (f"*Run time, full mode: about {minutes(row['cold_s'])} the first time (cold: every experiment "
            f"trains) and {minutes(row['warm_s'])} again (warm: the runner cache answers), measured on "
            f"{where}" + (f" on {date}" if date else "") + " (`book/course-timings.json`).*")


def minutes(seconds: float) -> str:
    """A duration as the course guide writes it: seconds below 90 s, else minutes."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def header_cell(md: Path, folder: str = "notebooks", note: "str | None" = None) -> nbformat.NotebookNode:
    """The first cell of a generated notebook: launch badges, measured run time, and ``note``."""
    links = launch_links(md, folder=folder)
    badges = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({links['colab']}) "
              f"[![Launch Binder](https://mybinder.org/badge_logo.svg)]({links['binder']})")
    note = note if note is not None else (
        f"*This notebook is generated from the book's source `notebooks/{md.name}`; the outputs "
        "below come from a full run of the chapter (what the published page shows). Re-run it "
        "to train live: on another CPU the numbers differ within the spread of the seeds.*")
    head = nbformat.v4.new_markdown_cell(f"{badges}\n\n{run_time_sentence(md)}\n\n{note}")
    head.metadata["tags"] = ["isoplast-reader-note"]
    return head


def refresh_header(ipynb: Path, md: Path) -> bool:
    """Rewrite the header cell of the generated notebook ``ipynb`` (badges, run time) in place,
    without executing anything: ``tools/course_timings.py --render`` calls it after a measurement.
    Returns True when the file changed."""
    nb = nbformat.read(ipynb, as_version=4)
    if not nb.cells or "isoplast-reader-note" not in nb.cells[0].metadata.get("tags", []):
        raise ValueError(f"{ipynb} does not start with a header cell: regenerate it")
    fresh = header_cell(md).source
    if nb.cells[0].source == fresh:
        return False
    nb.cells[0].source = fresh
    from isoplast_lite.files import atomic_write

    text = nbformat.writes(nb).encode()
    atomic_write(ipynb, lambda h: h.write(text))
    return True


def reader_cells(md: Path, bib: "dict | None" = None) -> nbformat.NotebookNode:
    """The unexecuted reader notebook of chapter ``md``: converted Markdown, collapsed solutions.

    A solution's Markdown folds into a ``<details>`` block (closed in Jupyter and Colab); its code
    cells are folded (``jupyter.source_hidden`` and ``outputs_hidden`` in JupyterLab/Notebook 7;
    in Colab the form view shows only the first line, :data:`SOLUTION_TITLE`).
    """
    bib = load_bibliography() if bib is None else bib
    text = md.read_text(encoding="utf-8")
    nb = jupytext.read(md)
    ctx = Context(text, bib)
    # the exercises' skeleton cells are for the student edition only (tools/student_edition.py)
    nb.cells = [c for c in nb.cells if not (c.cell_type == "raw" and "skeleton" in c.metadata.get("tags", []))]
    in_solution = False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            was_open = in_solution
            for line in cell.source.splitlines():  # the markers, in order, as the student edition reads them
                if "{solution-start}" in line:
                    in_solution = True
                elif "{solution-end}" in line:
                    in_solution = False
            cell.source, still_open = _fold_solution_text(myst_to_markdown(cell.source, ctx), was_open)
            if still_open != in_solution:
                raise ValueError(f"{md.name}: the solution markers and their conversion disagree")
        elif cell.cell_type == "code" and in_solution:
            cell.metadata.setdefault("jupyter", {}).update(source_hidden=True, outputs_hidden=True)
            cell.metadata["cellView"] = "form"
            if not cell.source.startswith(SOLUTION_TITLE):
                cell.source = f"{SOLUTION_TITLE}\n{cell.source}"
            tags = cell.metadata.setdefault("tags", [])
            if "solution" not in tags:
                tags.append("solution")
    nb.metadata.pop("jupytext", None)
    nb.metadata["isoplast"] = {"source": f"notebooks/{md.name}", "source_sha256": source_sha256(md)}
    nb.cells.insert(0, header_cell(md))
    return nb


def source_sha256(md: Path) -> str:
    return hashlib.sha256(md.read_bytes()).hexdigest()


def comparable(nb) -> list:
    """What must agree between a committed reader notebook and its source: cells without outputs."""
    return [(c.cell_type, c.source.rstrip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def execute(nb, cwd: Path, timeout: int = 900) -> dict:
    """Execute ``nb`` in full mode, every cell; returns what it was executed with."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}},
                            skip_cells_with_tag="isoplast-execute-every-cell")  # fmt: skip
    start = time.perf_counter()
    client.execute(env={**os.environ, "ISOPLAST_FAST": "0"})
    from isoplast_lite.results import provenance

    made = provenance()
    made["mode"] = "full"
    made["threads"] = "1 (every chapter calls torch.set_num_threads(1))"
    made["seconds"] = round(time.perf_counter() - start, 1)
    return made


def generate(md: Path, out: "Path | None" = None, bib: "dict | None" = None) -> Path:
    """Convert, execute (full mode) and atomically write the reader notebook of ``md``."""
    out = out or md.with_suffix(".ipynb")
    nb = reader_cells(md, bib)
    made = execute(nb, md.parent)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    if errors:
        raise RuntimeError(f"{md.name}: a cell raised {errors[0].ename}: {errors[0].evalue}")
    fill_glue(nb, glued_values(nb))  # the prose's numbers are this execution's
    nb.metadata["isoplast"]["executed_with"] = made
    from isoplast_lite.files import atomic_write

    text = nbformat.writes(nb).encode()
    atomic_write(out, lambda h: h.write(text))
    return out


def stale(md: Path, bib: "dict | None" = None) -> "str | None":
    """Why the committed reader notebook of ``md`` is stale, or None when it is current."""
    path = md.with_suffix(".ipynb")
    if not path.is_file():
        return f"{path.name} is missing"
    committed = nbformat.read(path, as_version=4)
    meta = committed.metadata.get("isoplast", {})
    if meta.get("source_sha256") != source_sha256(md):
        return f"{path.name} was generated from another version of {md.name}"
    try:
        fresh = fill_glue(reader_cells(md, bib), glued_values(committed))
    except KeyError as err:
        return f"{path.name} lacks a glued value the prose of {md.name} needs ({err})"
    if comparable(committed) != comparable(fresh):
        return f"{path.name} differs from the conversion of {md.name} (filled with its own glued values)"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", type=Path, help="chapter sources (default: notebooks/NN-*.md)")
    parser.add_argument("--check", action="store_true", help="only report stale notebooks (exit 1 if any)")
    args = parser.parse_args(argv)
    sources = args.sources or sorted(NOTEBOOKS.glob("[0-9][0-9]-*.md"))
    bad = [str(p) for p in sources if p.suffix != ".md" or not p.is_file()]
    if bad:
        parser.error(f"sources: not an existing chapter .md file: {', '.join(bad)}")
    bib = load_bibliography()
    if args.check:
        problems = [why for md in sources if (why := stale(md.resolve(), bib))]
        print("\n".join(problems) or "every reader notebook is current")
        return 1 if problems else 0
    for md in sources:
        start = time.perf_counter()
        path = generate(md.resolve(), bib=bib)
        print(f"{path.relative_to(ROOT)}: {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
