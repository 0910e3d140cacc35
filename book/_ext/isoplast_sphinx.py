"""Small Sphinx fixes for the isoplast book (Jupyter Book 1).

Note (duplicate scripts): Jupyter Book 1 registers sphinx-thebe's inline configuration script
twice, so every page declares ``const THEBE_JS_URL`` twice and the browser logs a
``SyntaxError`` on each page. We drop exact duplicates from the page's script list; the first
occurrence keeps its position, so load order is unchanged.
"""
from __future__ import annotations


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


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
