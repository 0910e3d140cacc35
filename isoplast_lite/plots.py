"""Seaborn figures from the runner's tidy results (:func:`isoplast_lite.run.run`).

Example:
    >>> import pandas as pd
    >>> rows = [dict(benchmark="random-label-digits", method=m, settings="{}", lr=1e-3, seed=s,
    ...              task=t, train_acc=0.9, test_acc=float("nan"), dead=0.1, ntk_cond=10.0)
    ...         for m in ("adam", "adamo") for s in range(2) for t in range(3)]
    >>> fig = plot_results(pd.DataFrame(rows), measures=["dead", "ntk_cond"])
    >>> len(fig.axes)
    3
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import pandas as pd

__all__ = ["plot_results", "DEFAULT_MEASURES", "LOG_MEASURES"]

DEFAULT_MEASURES = ("dead", "dormant_0.025", "feature_erank", "jac_sv_std", "ntk_cond", "weight_norm")
LOG_MEASURES = ("ntk_cond", "jac_sv_ratio")
_REQUIRED = ("method", "seed", "task")


def _label(df: pd.DataFrame) -> pd.Series:
    """One label per run: the method, plus the settings that vary between its runs in ``df``
    (``"adamo (iso_strength=0.01)"``); from the ``settings`` column (any method, built-in or
    registered), or from ``iso_strength`` in files written before that column existed."""
    if "settings" in df.columns:
        texts = df["settings"].astype(str)
        labels = df["method"].astype(str).copy()
        for method, rows in df.groupby("method", sort=False):
            parsed = {t: json.loads(t) for t in texts[rows.index].unique()}
            varying = [k for k in dict.fromkeys(k for v in parsed.values() for k in v) if len({json.dumps(v.get(k)) for v in parsed.values()}) > 1]
            if varying:
                shown = {t: ", ".join(f"{k}={v[k]:g}" if isinstance(v.get(k), float) else f"{k}={v.get(k)}" for k in varying) for t, v in parsed.items()}
                labels[rows.index] = f"{method} (" + texts[rows.index].map(shown) + ")"
        return labels
    if "iso_strength" not in df.columns:
        return df["method"].astype(str)
    iso = df["iso_strength"].astype(float)
    return df["method"].where(iso == 0, df["method"] + " (lambda=" + iso.map("{:g}".format) + ")")


def _diverged_from(data: pd.DataFrame) -> dict:
    """Run label -> the first task (as plotted) in which one of its seeds diverged."""
    if "diverged" not in data.columns:
        return {}
    flags = data["diverged"].astype(str).str.lower().isin(("true", "1", "1.0"))
    return {run: int(task) for run, task in data[flags].groupby("run")["task"].min().items()}


def plot_results(df: pd.DataFrame, *, measures: Optional[Sequence[str]] = None, accuracy: Optional[str] = None, ncols: int = 3):
    """Accuracy per task (mean over seeds with a 95% bootstrap CI) and the measures per task.

    Args:
        df: a tidy result frame (one row per seed x task) with at least the columns
            ``method, iso_strength, seed, task`` and the accuracy column.
        measures: metric columns to plot after the accuracy (default ``DEFAULT_MEASURES``
            that are present); ``ntk_cond`` and ``jac_sv_ratio`` use a log scale.
        accuracy: accuracy column; default ``test_acc`` when it has values, else ``train_acc``.
        ncols: panels per row.

    Returns:
        A ``matplotlib.figure.Figure`` with one panel per quantity, one line per method
        (and iso strength), seeds aggregated by seaborn's ``errorbar=("ci", 95)``. A run with
        diverged seeds (column ``diverged``, see :mod:`isoplast_lite.run`) is labelled
        "diverged from task k" in the legend and marked by a dotted vertical line at task k in
        every panel; its metrics are NaN from there on, so its lines stop.

    Raises:
        TypeError: ``df`` is not a DataFrame. ValueError: ``df`` has no rows, or a needed
        column is missing or not numeric.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas.DataFrame, got {type(df).__name__}")
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"df is missing the columns {missing}; it must come from isoplast_lite.run.run")
    if df.empty:
        raise ValueError("df has no rows")
    if accuracy is None:
        accuracy = "test_acc" if "test_acc" in df.columns and df["test_acc"].notna().any() else "train_acc"
    if measures is None:
        measures = [m for m in DEFAULT_MEASURES if m in df.columns]
    wanted = [accuracy, *measures]
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in df (available: {list(df.columns)})")
    not_numeric = [c for c in ["seed", "task", *wanted] if not pd.api.types.is_numeric_dtype(df[c])]
    if not_numeric:
        raise ValueError(f"columns {not_numeric} must be numeric, got dtypes {[str(df[c].dtype) for c in not_numeric]}")
    data = df.assign(run=_label(df), task=df["task"] + 1)
    diverged_from = _diverged_from(data)  # run label -> first diverged task (1-based)
    data["run"] = data["run"].map(lambda r: f"{r} [diverged from task {diverged_from[r]}]" if r in diverged_from else r)
    diverged_from = {f"{r} [diverged from task {t}]": t for r, t in diverged_from.items()}
    runs = list(dict.fromkeys(data["run"]))
    # distinct colours for many runs: the 10 dark hues of tab20 first, then their light pairs
    tab20 = sns.color_palette("tab20", 20)
    colors = (tab20[0::2] + tab20[1::2]) * (len(runs) // 20 + 1)
    palette = dict(zip(runs, colors))
    n = len(wanted)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + 2.2, 3.2 * nrows), squeeze=False, layout="constrained")
    for ax, col in zip(axes.flat, wanted):
        sns.lineplot(data=data, x="task", y=col, hue="run", hue_order=runs, palette=palette, errorbar=("ci", 95), n_boot=500,
                     seed=0, ax=ax, marker="o", markersize=3, legend=ax is axes.flat[0])
        for run, task in diverged_from.items():
            ax.axvline(task, color=palette[run], linestyle=":", linewidth=1.2)
        if col in LOG_MEASURES:
            ax.set_yscale("log")
        ax.set_title(col)
        ax.set_xlabel("task")
    # one legend for the figure, beside the panels (inside any panel it would hide the lines)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[0].get_legend().remove()
    fig.legend(handles, labels, title="run", loc="outside right upper", fontsize="small")
    for ax in list(axes.flat)[n:]:
        fig.delaxes(ax)
    if "benchmark" in df.columns:
        fig.suptitle(", ".join(sorted(df["benchmark"].astype(str).unique())))
    return fig
