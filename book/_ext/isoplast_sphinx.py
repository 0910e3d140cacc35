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
"""
from __future__ import annotations

import re

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


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("html-page-context", _list_items)
    app.add_css_file("isoplast-a11y.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
