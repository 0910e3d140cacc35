"""Wrong answers for the exercises' check cells (tests/test_student_edition.py, tests/test_notebooks.py).

A check cell must pass with its solution and fail with a wrong answer. ``wrong_answer`` makes a
wrong answer of the same kind as a right one; ``add_wrong_answer_cells`` puts, after every check
cell of a chapter, a cell that re-runs the check once per answer with that answer made wrong and
raises unless the check fails, so the papermill run of each chapter (which executes every solution
and check anyway) also proves that every check can fail.
"""

from __future__ import annotations

import inspect
import re

import nbformat


def wrong_answer(value):
    """A wrong answer of the same kind as ``value`` (numbers moved, booleans negated, strings changed)."""
    import numpy as np
    import pandas as pd
    import torch

    if isinstance(value, (bool, np.bool_)):
        return not value
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value * 1.5 + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, (torch.Tensor, pd.Series, pd.DataFrame)):
        return value + 0.5
    if isinstance(value, (list, tuple)):
        return type(value)(wrong_answer(v) for v in value)
    if isinstance(value, dict):
        return {k: wrong_answer(v) for k, v in value.items()}
    raise TypeError(f"no wrong answer for a {type(value).__name__}")


def answer_names(skeleton_source: str) -> list:
    """The names of ``require(a=a, b=b)`` in a skeleton."""
    return re.findall(r"(\w+)=\1\b", skeleton_source.split("require(")[-1])


_RUNNER = '''
def _isoplast_check_fails_with_wrong(names, check_source, label):
    namespace = globals()
    for name in names:
        saved = namespace[name]
        namespace[name] = wrong_answer(saved)
        try:
            exec(compile(check_source, label + "-check", "exec"), dict(namespace))
        except AssertionError:
            pass
        else:
            raise RuntimeError(f"the check of {label} passed with a wrong {name}")
        finally:
            namespace[name] = saved
'''


def add_wrong_answer_cells(nb):
    """``nb`` (a chapter read by jupytext) with a wrong-answer cell after every check cell."""
    cells, skeleton, label = [], None, "exercise"
    for cell in nb.cells:
        cells.append(cell)
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "markdown":
            label = next(iter(re.findall(r"^:label:\s*(\S+-ex-\S+)", cell.source, re.M)[-1:]), label)
        elif cell.cell_type == "raw" and "skeleton" in tags:
            skeleton = cell.source
        elif cell.cell_type == "code" and "check" in tags and skeleton is not None:
            source = (inspect.getsource(wrong_answer) + _RUNNER
                      + f"_isoplast_check_fails_with_wrong({answer_names(skeleton)!r}, {cell.source!r}, {label!r})\n")
            cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": ["wrong-answer-test"]}))
            skeleton = None
    out = nbformat.from_dict(nb)
    out.cells = cells
    return out
