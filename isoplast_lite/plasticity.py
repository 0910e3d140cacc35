"""Plasticity measured as the continual-learning papers do: against a fresh network.

A network *keeps its plasticity* when it still learns each new task as well as a network
freshly initialized for that task, trained with the same budget (Kumar et al. 2023; Dohare et
al. 2024; Elsayed & Mahmood 2024). The runner's method ``fresh`` is that reference: the same
architecture re-initialized, with a fresh Adam, at every task, on the same seeds (seed ``s`` of
``fresh`` sees exactly seed ``s``'s task stream).

Definitions (the whole book uses these):

* **accuracy reached** on task ``t``: the run's ``metric`` at the end of the task (held-out
  ``test_acc`` on streams with a test split, end-of-task ``train_acc`` on random-label
  streams, which have no held-out labels);
* **plasticity loss** of a method, per seed: the mean over the *last* ``last_fraction`` of the
  tasks (at least one task) of ``fresh - method`` (positive: the method learns new tasks worse
  than a fresh network);
* **paired difference** of two methods, per seed: the mean over the same tasks of
  ``a - b`` (both methods share the seed's data, so the difference is paired);
* every interval is :func:`isoplast_lite.stats.mean_ci` over seeds: the mean and its Student-t
  95% interval (one number per seed; seeds are independent runs).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import pandas as pd

from .stats import mean_ci

__all__ = ["REFERENCE", "last_tasks", "per_seed", "plasticity_loss", "paired_difference", "loss_table", "verdict", "tuning_table"]

#: the method every plasticity loss is measured against
REFERENCE = "fresh"


def _check(df: pd.DataFrame, metric: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas.DataFrame of runner rows, got {type(df).__name__}")
    missing = [c for c in ("method", "seed", "task", metric) if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks the columns {missing}; allowed: runner rows with method, seed, task and {metric!r}")


def last_tasks(n_tasks: int, last_fraction: float = 0.2) -> range:
    """The last ``ceil(last_fraction * n_tasks)`` task indices (at least one).

    Example:
        >>> last_tasks(10), last_tasks(3)
        (range(8, 10), range(2, 3))
    """
    if not 0.0 < float(last_fraction) <= 1.0:
        raise ValueError(f"last_fraction must lie in (0, 1], got {last_fraction}")
    k = max(1, math.ceil(last_fraction * n_tasks - 1e-9))
    return range(n_tasks - k, n_tasks)


def per_seed(df: pd.DataFrame, method: str, metric: str, tasks: Sequence[int]) -> pd.Series:
    """``method``'s ``metric`` averaged over ``tasks``, one number per seed (indexed by seed)."""
    _check(df, metric)
    rows = df[(df.method == method) & df.task.isin(list(tasks))]
    if rows.empty:
        raise ValueError(f"no rows of method {method!r} at tasks {list(tasks)[:3]}...; methods present: {sorted(df.method.unique())}")
    return rows.groupby("seed")[metric].mean()


def plasticity_loss(df: pd.DataFrame, method: str, metric: str, last_fraction: float = 0.2, reference: str = REFERENCE) -> pd.Series:
    """Per seed: ``reference - method`` of ``metric``, averaged over the last tasks.

    Example:
        >>> df = pd.DataFrame({"method": ["fresh"] * 4 + ["adam"] * 4, "seed": [0, 0, 1, 1] * 2,
        ...                    "task": [0, 1] * 4, "test_acc": [.9, .9, .8, .8, .9, .5, .8, .6]})
        >>> plasticity_loss(df, "adam", "test_acc", last_fraction=0.5).round(3).tolist()
        [0.4, 0.2]
    """
    return paired_difference(df, reference, method, metric, last_fraction)


def paired_difference(df: pd.DataFrame, a: str, b: str, metric: str, last_fraction: float = 0.2) -> pd.Series:
    """Per seed: ``a - b`` of ``metric``, averaged over the last tasks (seeds both methods ran)."""
    _check(df, metric)
    tasks = last_tasks(int(df.task.max()) + 1, last_fraction)
    x, y = per_seed(df, a, metric, tasks), per_seed(df, b, metric, tasks)
    common = x.index.intersection(y.index)
    if common.empty:
        raise ValueError(f"methods {a!r} and {b!r} share no seed")
    return (x[common] - y[common]).rename(f"{a} - {b}")


def loss_table(df: pd.DataFrame, metric: str, last_fraction: float = 0.2, methods: Optional[Sequence[str]] = None,
               reference: str = REFERENCE, against: Sequence[str] = ("adam", "adamo")) -> pd.DataFrame:
    """One row per method: its accuracy reached over the last tasks, its plasticity loss against
    ``reference`` and its paired differences with each method of ``against``, each as
    ``mean``, ``lo``, ``hi`` (95% t-interval over seeds).

    Columns: ``acc``, ``acc_lo``, ``acc_hi``, ``loss``, ``loss_lo``, ``loss_hi`` and, for each
    ``m`` of ``against`` present in ``df``, ``minus_{m}``, ``minus_{m}_lo``, ``minus_{m}_hi``
    (``method - m``; NaN on ``m``'s own row); plus ``seeds``.
    """
    _check(df, metric)
    if reference not in set(df.method):
        raise ValueError(f"df has no rows of the reference {reference!r}; run it on the same seeds")
    tasks = last_tasks(int(df.task.max()) + 1, last_fraction)
    methods = list(methods) if methods is not None else list(dict.fromkeys(df.method))
    rows = []
    for m in methods:
        acc = per_seed(df, m, metric, tasks)
        lo, mid, hi = mean_ci(acc)
        row = {"method": m, "acc": mid, "acc_lo": lo, "acc_hi": hi, "seeds": len(acc)}
        lo, mid, hi = mean_ci(plasticity_loss(df, m, metric, last_fraction, reference)) if m != reference else (0.0, 0.0, 0.0)
        row.update(loss=mid, loss_lo=lo, loss_hi=hi)
        for other in against:
            if other not in set(df.method):
                continue
            if m == other:
                row.update({f"minus_{other}": math.nan, f"minus_{other}_lo": math.nan, f"minus_{other}_hi": math.nan})
                continue
            lo, mid, hi = mean_ci(paired_difference(df, m, other, metric, last_fraction))
            row.update({f"minus_{other}": mid, f"minus_{other}_lo": lo, f"minus_{other}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def verdict(lo: float, hi: float) -> str:
    """``"higher"`` if a 95% interval of a difference lies above 0, ``"lower"`` below, else ``"tie"``.

    Example:
        >>> verdict(0.01, 0.2), verdict(-0.1, 0.05), verdict(-0.3, -0.02)
        ('higher', 'tie', 'lower')
    """
    if math.isnan(lo) or math.isnan(hi):
        return "n/a"
    return "higher" if lo > 0 else "lower" if hi < 0 else "tie"


def tuning_table(entry: dict, defaults: Optional[dict] = None) -> pd.DataFrame:
    """The tuning of one stream (a ``data/streams`` manifest entry) as one row per method: the
    setting tuned, the values tried with their scores, the chosen value, the method's default
    and how much the choice moved the tuning score (``chosen - default``; 0 when the default won).
    """
    from .methods import make_method
    from .settings import settings_dict

    rows = []
    for m, grid in entry["grids"].items():
        name, values, scores = grid["setting"], grid["values"], entry["scores"][m]
        default = (defaults or {}).get(m, settings_dict(make_method(m).settings).get(name))
        chosen = entry["chosen"][m][name]
        by_value = dict(zip(values, scores))
        rows.append({
            "method": m, "setting": name,
            "tried": ", ".join(f"{v:g}: {s:.3f}" for v, s in by_value.items()),
            "chosen": chosen, "default": default,
            "gain_over_default": by_value[chosen] - by_value[default] if default in by_value else math.nan,
        })
    return pd.DataFrame(rows).set_index("method")
