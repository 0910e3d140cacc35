"""Small Sphinx fixes for the isoplast book (Jupyter Book 1).

Note (duplicate scripts): Jupyter Book 1 registers sphinx-thebe's inline configuration script
twice, so every page declares ``const THEBE_JS_URL`` twice and the browser logs a
``SyntaxError`` on each page. We drop exact duplicates from the page's script list; the first
occurrence keeps its position, so load order is unchanged.

Note (accessibility, checked by tests/test_accessibility.py with axe-core): docutils writes a
reference list as ``<div role="list">`` whose entries have ``role="doc-biblioentry"``, a role
that ARIA 1.2 deprecates and that is not a list item, so a screen reader announces an empty
list (axe: "aria-required-children", critical). The entries get ``role="listitem"``. The
theme's link colour is darkened for contrast in ``book/_static/isoplast-a11y.css``.

Note (downloads): the theme's "Download .ipynb" button links to ``_sources/notebooks/NN.ipynb``,
which myst-nb writes from the MyST source (raw directives and roles that plain Jupyter shows as
text). After the build, that file is replaced by the reader notebook ``notebooks/NN.ipynb``
(``tools/reader_notebooks.py``: plain Markdown, full-mode outputs), the notebook the Colab and
Binder buttons open; a reader notebook generated from another version of its source is an error
(a warning, which ``-W`` makes fatal). The student notebooks ``student/notebooks/*.ipynb``
(``tools/student_edition.py``) are copied to ``student/notebooks/`` of the site, where the page
``book/student-edition.md`` links them.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

_BIBLIOENTRY = re.compile(r'(<div class="citation"[^>]*?) role="doc-biblioentry"')


def _script_key(js) -> tuple:
    attributes = getattr(js, "attributes", {}) or {}
    filename = getattr(js, "filename", js)  # Sphinx >= 7.4: an object; older: a str subclass
    # an inline script has filename None when added in this build, "" when restored from the env
    return (str(filename or ""), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        key = _script_key(js)
        if key in seen:
            continue
        seen.add(key)
        unique.append(js)
    scripts[:] = unique  # in place: handlers after us may still add to the same list


def _list_items(app, pagename, templatename, context, doctree) -> None:
    body = context.get("body")
    if body and "doc-biblioentry" in body:
        context["body"] = _BIBLIOENTRY.sub(r'\1 role="listitem"', body)


def _reader_notebook_is_current(md: Path, ipynb: Path) -> bool:
    import hashlib
    import json

    meta = json.loads(ipynb.read_text(encoding="utf-8")).get("metadata", {}).get("isoplast", {})
    return meta.get("source_sha256") == hashlib.sha256(md.read_bytes()).hexdigest()


def _publish_notebooks(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    src, out = Path(app.srcdir), Path(app.outdir)
    for md in sorted((src / "notebooks").glob("[0-9][0-9]-*.md")):
        target = out / "_sources" / "notebooks" / f"{md.stem}.ipynb"
        reader = md.with_suffix(".ipynb")
        if not target.is_file():
            continue  # a page built without a download of its notebook
        if not reader.is_file() or not _reader_notebook_is_current(md, reader):
            logger.warning(f"{reader.relative_to(src)} is missing or stale: run tools/reader_notebooks.py {md.relative_to(src)}")
            continue
        shutil.copyfile(reader, target)
    student = src / "student" / "notebooks"
    if student.is_dir():
        dest = out / "student" / "notebooks"
        dest.mkdir(parents=True, exist_ok=True)
        for nb in sorted(student.glob("[0-9][0-9]-*.ipynb")):
            shutil.copyfile(nb, dest / nb.name)


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("html-page-context", _list_items)
    app.connect("build-finished", _publish_notebooks)
    app.add_css_file("isoplast-a11y.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
