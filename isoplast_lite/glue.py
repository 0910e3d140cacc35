"""Values for the prose: :func:`glue` records a computed value under a name.

The chapters quote numbers that come from their own computations. During the book build
(myst-nb) a sentence pastes such a value with ``{glue:text}`name:format```; in a reader
notebook (Colab, Binder, a download) ``tools/reader_notebooks.py`` has already pasted it into
the Markdown. Either way the code cell only has to *record* the value, and it must not need a
book-build package to do so: Colab has no ``myst_nb``.

:func:`glue` writes exactly the display output that ``myst_nb.glue`` writes (the same mime
bundle, the same ``scrapbook`` metadata), using IPython alone, so myst-nb's glue roles and the
reader-notebook tool find it, and a plain Jupyter front end shows nothing for ``display=False``
(the mime types are prefixed, so no renderer claims them).
"""
from __future__ import annotations

from typing import Any

__all__ = ["GLUE_PREFIX", "glue"]

#: The prefix myst-nb (and papermill's scrapbook before it) puts on the mime types of a value
#: that is recorded but not shown.
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value: Any, display: bool = True) -> None:
    """Record ``value`` under ``name`` for the prose (myst-nb's ``glue``, without myst-nb).

    Args:
        name: the key a sentence refers to (chapters prefix it: ``"ch4_dead_end_l1"``).
        value: what to record; its display forms (``text/plain`` and any other IPython
            formatter output) are what is stored, as with ``myst_nb.glue``.
        display: also show the value in the notebook (``False``: record only).

    Raises:
        TypeError: ``name`` is not a non-empty string.

    Example:
        >>> glue("example_value", 0.5, display=False)  # outside IPython: no output, no error
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"glue name must be a non-empty string, got {name!r}")
    try:
        from IPython.core.formatters import format_display_data
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.display import display as ipy_display
    except ImportError:  # plain Python without IPython: nothing to record into
        return
    if not InteractiveShell.initialized():  # a script, not a kernel: nothing to record into
        return
    mimebundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = dict(name=name, mime_prefix=prefix)
    ipy_display({prefix + k: v for k, v in mimebundle.items()}, raw=True, metadata=metadata)
