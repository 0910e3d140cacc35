"""AdamO against every method, per stream: verdicts a referee accepts, and which measure each rests on.

Chapter 8's comparison (issue 24). Two measures of plasticity, per method and seed, from
:mod:`isoplast_lite.plasticity`'s definitions (``metric`` is the stream's accuracy reached):

* **(a) loss against the fresh network**: ``fresh - method`` over the last fifth of the tasks
  (:func:`isoplast_lite.plasticity.plasticity_loss`). It also counts *forward transfer*: a
  network that carries useful features from earlier tasks ends above a fresh network that
  underfits in its budget, and scores a negative loss whatever its plasticity does;
* **(b) decline within a run**: the method's accuracy over the first fifth of the tasks minus
  that over the last fifth (:func:`decline`). It compares the run with itself, so forward
  transfer from the same run does not flatter it (it can only hide a decline that transfer
  offsets).

For each other method ``m`` and each measure the paired difference over seeds is ``measure(m) -
measure(AdamO)`` (positive: AdamO keeps more plasticity), tested two-sided
(:func:`isoplast_lite.stats.paired_t`) and for equivalence within :func:`margin`
(:func:`isoplast_lite.stats.tost`); both families are Holm-adjusted per stream
(:func:`isoplast_lite.stats.holm`, the family = every method x both measures of the stream).
A comparison is "AdamO keeps more" / "AdamO keeps less" when its Holm-adjusted p is at most
``alpha``, "equivalent" only when the Holm-adjusted TOST p is, else "undecided".

**Which measure a verdict rests on** (the rule, fixed before the data): (a), unless one of the
two arms ends above the fresh network (the 95% interval of its loss (a) lies below zero: forward
transfer is present, and (a) mixes it with plasticity); then (b).

The equivalence margin is :data:`isoplast_lite.stats.DEFAULT_ATOL` of the metric (0.02 of
accuracy), fixed before these runs: it is the amount by which a re-run of the same
configuration on another CPU may move that metric (``tools/measure_portability.py``), so a
smaller difference is not resolved by our runs.

Example:
    >>> import pandas as pd
    >>> rows = [{"method": m, "seed": s, "task": t, "train_acc": acc}
    ...         for s in range(4) for t in range(5)
    ...         for m, acc in (("fresh", 0.9), ("adamo", 0.9 - 0.001 * s), ("adam", 0.9 - 0.1 * t - 0.01 * s))]
    >>> v = verdict_table(pd.DataFrame(rows), "train_acc")
    >>> v.loc["adam", ["verdict", "rests_on"]].tolist()
    ['AdamO keeps more', 'loss vs fresh']
"""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd

from .plasticity import REFERENCE, last_tasks, per_seed, plasticity_loss
from .stats import DEFAULT_ATOL, holm, mean_ci, paired_t, tost

__all__ = ["MEASURES", "FRACTION", "margin", "decline", "measures", "comparisons", "verdict_table", "shipped_verdicts"]

#: the two measures, by the names the tables use
MEASURES = ("loss vs fresh", "decline")
#: the share of the tasks at each end of a run that the measures average over
FRACTION = 0.2


def margin(metric: str) -> float:
    """The equivalence margin of ``metric``: :data:`isoplast_lite.stats.DEFAULT_ATOL` (fixed in advance).

    Example:
        >>> margin("test_acc")
        0.02
    """
    if metric not in DEFAULT_ATOL:
        raise ValueError(f"metric must be one of {sorted(DEFAULT_ATOL)} (a margin fixed in advance), got {metric!r}")
    return float(DEFAULT_ATOL[metric])


def decline(df: pd.DataFrame, method: str, metric: str, fraction: float = FRACTION) -> pd.Series:
    """Per seed: ``method``'s ``metric`` over the first ``fraction`` of the tasks minus that over
    the last ``fraction`` (positive: the run learns its late tasks worse than its early ones).

    Example:
        >>> df = pd.DataFrame({"method": "adam", "seed": [0] * 5, "task": range(5), "acc": [.9, .8, .7, .6, .5]})
        >>> decline(df, "adam", "acc").round(3).tolist()
        [0.4]
    """
    n_tasks = int(df.task.max()) + 1
    last = last_tasks(n_tasks, fraction)
    first = range(0, len(last))
    a, b = per_seed(df, method, metric, first), per_seed(df, method, metric, last)
    return (a - b).rename(f"decline of {method}")


def measures(df: pd.DataFrame, method: str, metric: str, reference: str = REFERENCE) -> pd.DataFrame:
    """Per seed (index): the two :data:`MEASURES` of ``method`` (the reference's own loss is 0)."""
    if method == reference:
        lost = per_seed(df, method, metric, last_tasks(int(df.task.max()) + 1, FRACTION)) * 0.0
    else:
        lost = plasticity_loss(df, method, metric, FRACTION, reference)
    return pd.DataFrame({MEASURES[0]: lost, MEASURES[1]: decline(df, method, metric)})


def comparisons(df: pd.DataFrame, metric: str, *, against: str = "adamo", methods: Optional[Sequence[str]] = None,
                reference: str = REFERENCE, alpha: float = 0.05) -> pd.DataFrame:
    """Every test of one stream: ``against`` (AdamO) versus each other method, on both measures.

    Args:
        df: runner rows of one stream (every method on the same seeds, the reference included).
        metric: the stream's accuracy reached (``test_acc`` or ``train_acc``).
        against: the method every other is compared with.
        methods: the other methods (default: every method of ``df`` but ``against``, in order).
        reference: the fresh network.
        alpha: the family-wise error rate of each Holm family.

    Returns:
        One row per method and measure: ``method``, ``measure``, ``n`` (seeds), ``diff``
        (mean of ``measure(method) - measure(against)``), ``lo``/``hi`` (95% t-interval),
        ``p`` and ``p_holm`` (two-sided paired t, Holm over the stream's family), ``tost_p`` and
        ``tost_p_holm`` (equivalence within :func:`margin`), ``margin`` and ``outcome``
        ("AdamO keeps more", "AdamO keeps less", "equivalent", "undecided").
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas.DataFrame of runner rows, got {type(df).__name__}")
    present = list(dict.fromkeys(df.method)) if "method" in df.columns else []
    for name, m in (("against", against), ("reference", reference)):
        if m not in present:
            raise ValueError(f"{name}={m!r} has no rows in df; methods present: {present}")
    others = [m for m in (methods if methods is not None else present) if m != against]
    tol = margin(metric)
    base = measures(df, against, metric, reference)
    rows = []
    for m in others:
        mine = measures(df, m, metric, reference)
        common = mine.index.intersection(base.index)
        for measure in MEASURES:
            x, y = mine.loc[common, measure].to_numpy(float), base.loc[common, measure].to_numpy(float)
            t = paired_t(x, y)
            eq = tost(x, y, margin=tol, alpha=alpha)
            rows.append({"method": m, "measure": measure, "n": t["n"], "diff": t["diff"], "lo": t["lo"], "hi": t["hi"],
                         "p": t["p"], "tost_p": eq["p"], "margin": tol})
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out.p, alpha).p_adjusted.to_numpy()
    out["tost_p_holm"] = holm(out.tost_p, alpha).p_adjusted.to_numpy()
    out["outcome"] = [
        ("AdamO keeps more" if d > 0 else "AdamO keeps less") if ph <= alpha else "equivalent" if th <= alpha else "undecided"
        for d, ph, th in zip(out["diff"], out.p_holm, out.tost_p_holm)
    ]
    return out[["method", "measure", "n", "diff", "lo", "hi", "p", "p_holm", "tost_p", "tost_p_holm", "margin", "outcome"]]


def _above_fresh(df: pd.DataFrame, method: str, metric: str, reference: str) -> bool:
    """Whether ``method`` ends above the fresh network: the 95% interval of its loss (a) lies below 0."""
    if method == reference:
        return False
    lo, _, hi = mean_ci(plasticity_loss(df, method, metric, FRACTION, reference))
    return hi < 0


def verdict_table(df: pd.DataFrame, metric: str, *, against: str = "adamo", methods: Optional[Sequence[str]] = None,
                  reference: str = REFERENCE, alpha: float = 0.05) -> pd.DataFrame:
    """One row per other method (index): the outcome on each measure (:func:`comparisons`), the
    measure the verdict rests on (see the module's rule) and the ``verdict`` itself, with the
    difference and Holm-adjusted p of that measure (``diff``, ``lo``, ``hi``, ``p_holm``,
    ``tost_p_holm``) and whether the other measure agrees (``other_agrees``: same outcome).
    """
    tests = comparisons(df, metric, against=against, methods=methods, reference=reference, alpha=alpha)
    transfer_against = _above_fresh(df, against, metric, reference)
    rows = []
    for m, group in tests.groupby("method", sort=False):
        by = group.set_index("measure")
        rests = MEASURES[1] if transfer_against or _above_fresh(df, m, metric, reference) else MEASURES[0]
        other = MEASURES[0] if rests == MEASURES[1] else MEASURES[1]
        chosen = by.loc[rests]
        rows.append({"method": m, f"{MEASURES[0]}": by.loc[MEASURES[0], "outcome"], f"{MEASURES[1]}": by.loc[MEASURES[1], "outcome"],
                     "rests_on": rests, "verdict": chosen.outcome, "diff": chosen["diff"], "lo": chosen.lo, "hi": chosen.hi,
                     "p_holm": chosen.p_holm, "tost_p_holm": chosen.tost_p_holm,
                     "other_agrees": bool(by.loc[other, "outcome"] == chosen.outcome)})
    return pd.DataFrame(rows).set_index("method")


def shipped_verdicts(group: str = "retuned", alpha: float = 0.05) -> pd.DataFrame:
    """:func:`verdict_table` of every stream of a shipped group (``tools/precompute_streams.py``'s
    files, loaded with their checks by :func:`isoplast_lite.results.load`), stacked with a
    ``stream`` column (index: ``stream``, ``method``)."""
    from . import results

    frames = []
    for stream, entry in results.manifest(group).items():
        table = verdict_table(results.load(stream, group=group), entry["metric"], alpha=alpha)
        frames.append(table.assign(stream=stream).reset_index().set_index(["stream", "method"]))
    if not frames:
        raise ValueError(f"group {group!r} has no streams")
    return pd.concat(frames)

