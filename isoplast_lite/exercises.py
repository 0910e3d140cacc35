"""Checks for the book's exercises: the skeleton and check cells of the student edition.

Every code exercise of the book has, in the student edition (``tools/student_edition.py``),

* a **skeleton** cell: the names the student must compute, each set to ``...``, and a call to
  :func:`require`, which raises :class:`NotImplementedError` naming what is still ``...``;
* a **check** cell: :func:`require` again, then :func:`check` / :func:`check_close` against a
  value the check computes itself from the chapter's data. It passes with the book's solution
  (the book build executes solution and check) and fails with a wrong answer.

Example:
    >>> answer = ...
    >>> require(answer=answer)
    Traceback (most recent call last):
    ...
    NotImplementedError: exercise not done yet: replace the `...` of answer with your code
    >>> check_close(0.5, 0.5, name="answer")
"""

from __future__ import annotations

import numpy as np

__all__ = ["require", "check", "check_close"]


def require(**answers) -> None:
    """Raise :class:`NotImplementedError` if any answer is still ``...`` (Ellipsis).

    Args:
        **answers: the student's answers by name.

    Raises:
        NotImplementedError: naming every answer that is still ``...``.
    """
    todo = [name for name, value in answers.items() if value is Ellipsis]
    if todo:
        raise NotImplementedError(f"exercise not done yet: replace the `...` of {', '.join(todo)} with your code")


def check(condition, hint: str) -> None:
    """Raise :class:`AssertionError` with ``hint`` unless ``condition`` is true.

    Example:
        >>> check(1 + 1 == 3, "count again")
        Traceback (most recent call last):
        ...
        AssertionError: count again
    """
    if not bool(condition):
        raise AssertionError(hint)


def check_close(value, expected, *, rtol: float = 1e-6, atol: float = 0.0, name: str = "the answer") -> None:
    """Raise :class:`AssertionError` unless ``value`` equals ``expected`` within ``atol + rtol*|expected|``.

    ``value`` and ``expected`` may be numbers, arrays or tensors of the same shape. The message
    says which answer is off, not the expected value (the student should find it).

    Example:
        >>> check_close([1.0, 2.0], [1.0, 2.1], name="sigma")
        Traceback (most recent call last):
        ...
        AssertionError: sigma is not what the chapter's data give (largest difference 0.1)
    """
    if rtol < 0 or atol < 0:
        raise ValueError(f"rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
    v = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=float)
    e = np.asarray(expected.detach().cpu() if hasattr(expected, "detach") else expected, dtype=float)
    if v.shape != e.shape:
        raise AssertionError(f"{name} has shape {v.shape}, expected shape {e.shape}")
    with np.errstate(invalid="ignore"):
        diff = np.abs(v - e)
    same = (diff <= atol + rtol * np.abs(e)) | (np.isnan(v) & np.isnan(e)) | (v == e)  # NaN matches NaN, inf matches inf
    if not np.all(same):
        worst = float(np.max(np.where(same, 0.0, np.nan_to_num(diff, nan=np.inf))))
        raise AssertionError(f"{name} is not what the chapter's data give (largest difference {worst:.3g})")
