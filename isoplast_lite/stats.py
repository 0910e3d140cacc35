"""Statistics of runs over seeds: one confidence-interval convention, and re-run agreement.

* :func:`mean_ci`: the mean over seeds and its Student-t interval, the one convention of the
  whole project (``mean -/+ t_{(1+level)/2, n-1} * s / sqrt(n)``).
* :func:`rerun_agreement`: does a re-run (another CPU, thread count or torch) agree with shipped
  numbers? Float32 training is chaotic: the last bits of another SIMD kernel or another reduction
  order grow over the steps of a task into different trajectories, so a re-run is compared with
  the shipped seeds *statistically*, never bit for bit.

Example:
    >>> lo, mean, hi = mean_ci([1.0, 2.0, 3.0])
    >>> round(lo, 3), mean, round(hi, 3)
    (-0.484, 2.0, 4.484)
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = ["mean_ci", "rerun_agreement", "spearman_ci", "holm", "LOG_METRICS", "DEFAULT_ATOL"]

#: metrics that span orders of magnitude: compared as log10.
LOG_METRICS = frozenset({"ntk_cond", "jac_sv_ratio"})

#: absolute tolerances added to the statistical bound (in the metric's units, log10 for
#: :data:`LOG_METRICS`). They cover metrics with (almost) no spread over seeds, where a re-run
#: on another CPU can still move by one quantum (e.g. one probe image flipping: 1/256 of
#: accuracy). Measured by ``tools/measure_portability.py`` (``isoplast_lite/data/portability.json``).
DEFAULT_ATOL = {
    "train_acc": 0.02, "train_acc_online": 0.02, "test_acc": 0.02,
    "loss": 0.05, "loss_online": 0.05,
    "dormant_0.025": 0.02, "dormant_0.1": 0.02, "dead": 0.02,
    "feature_erank": 1.0, "weight_norm": 0.5,
    "jac_sv_mean": 0.02, "jac_sv_std": 0.02, "jac_sv_ratio": 0.1, "ntk_cond": 0.3,
}  # fmt: skip


def mean_ci(values: Iterable[float], level: float = 0.95) -> "tuple[float, float, float]":
    """``(lo, mean, hi)``: the mean and its Student-t ``level`` interval over independent seeds.

    With one value the interval collapses to the mean. NaN values are dropped.

    Args:
        values: one number per seed.
        level: confidence level in ``(0, 1)``.

    Example:
        >>> mean_ci([0.5, 0.5])
        (0.5, 0.5, 0.5)
    """
    from scipy import stats

    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        raise ValueError("values must hold at least one number that is not NaN")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    half = float(stats.t.ppf((1 + level) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean - half, mean, mean + half


def rerun_agreement(
    live: pd.DataFrame,
    shipped: pd.DataFrame,
    metrics: Sequence[str],
    *,
    keys: Sequence[str] = ("method", "task"),
    level: float = 0.999,
    atol: "dict | None" = None,
) -> pd.DataFrame:
    """Compare a re-run with shipped results, per ``keys`` group and metric, over seeds.

    For each group the difference of the means over seeds, ``d = mean(live) - mean(shipped)``,
    must satisfy ``|d| <= t_{(1+level)/2, df} * sqrt(s_live^2/n_live + s_shipped^2/n_shipped)
    + atol[metric]`` (Welch's two-sample bound, Welch-Satterthwaite ``df``, plus an absolute
    floor for metrics with no spread). The bound treats the re-run as an independent draw of the
    same distribution; a re-run with the shipped seeds on another machine is closer than that
    (same initializations, data and labels), so the test is conservative. Metrics in
    :data:`LOG_METRICS` are compared as log10.

    Args:
        live: the re-run (runner rows: ``keys``, ``seed``, ``metrics``).
        shipped: the shipped rows of the same configuration (other rows are ignored).
        metrics: the columns to compare.
        keys: the columns that identify a group (e.g. method and task).
        level: two-sided confidence level of the bound (0.999: with ~100 comparisons, an
            independent re-run trips it by chance about once in ten).
        atol: per-metric absolute floor (default :data:`DEFAULT_ATOL`; 0 for other metrics).

    Returns:
        One row per group and metric: ``keys, metric, n_live, n_shipped, live, shipped, diff,
        bound, max_seed_diff`` (largest ``|live - shipped|`` over seeds present in both, NaN if
        none) and ``consistent`` (bool).

    Example:
        >>> ship = pd.DataFrame({"method": "adam", "task": 0, "seed": [0, 1, 2], "acc": [0.9, 0.8, 0.7]})
        >>> live = ship.assign(acc=[0.91, 0.8, 0.7])
        >>> bool(rerun_agreement(live, ship, ["acc"], atol={}).consistent.all())
        True
    """
    from scipy import stats

    keys = list(keys)
    atol = DEFAULT_ATOL if atol is None else atol
    missing = [c for c in [*keys, "seed", *metrics] if c not in live.columns or c not in shipped.columns]
    if missing:
        raise ValueError(f"live and shipped must both have the columns {missing}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rows = []
    ship_groups = dict(tuple(shipped.groupby(keys)))
    for key, lv in live.groupby(keys):
        if key not in ship_groups:
            raise ValueError(f"the re-run has a group {dict(zip(keys, key if isinstance(key, tuple) else (key,)))} that the shipped rows lack")
        sh = ship_groups[key]
        paired = lv.merge(sh, on="seed", suffixes=("", "__shipped"))
        for metric in metrics:
            a, b = lv[metric].to_numpy(float), sh[metric].to_numpy(float)
            pa, pb = paired[metric].to_numpy(float), paired[metric + "__shipped"].to_numpy(float)
            if metric in LOG_METRICS:
                a, b, pa, pb = (np.log10(np.clip(v, 1e-300, None)) for v in (a, b, pa, pb))
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            if a.size == 0 or b.size == 0:
                continue
            va = a.var(ddof=1) / a.size if a.size > 1 else 0.0
            vb = b.var(ddof=1) / b.size if b.size > 1 else 0.0
            se = math.sqrt(va + vb)
            if se > 0:
                dof_den = (va**2 / (a.size - 1) if a.size > 1 else 0.0) + (vb**2 / (b.size - 1) if b.size > 1 else 0.0)
                dof = (va + vb) ** 2 / dof_den if dof_den > 0 else 1.0
                tq = float(stats.t.ppf((1 + level) / 2, max(dof, 1.0)))
            else:
                tq = 0.0
            diff = float(a.mean() - b.mean())
            bound = tq * se + float(atol.get(metric, 0.0))
            both = ~(np.isnan(pa) | np.isnan(pb))
            rows.append({
                **dict(zip(keys, key if isinstance(key, tuple) else (key,))), "metric": metric, "n_live": a.size, "n_shipped": b.size,
                "live": float(a.mean()), "shipped": float(b.mean()), "diff": diff, "bound": bound,
                "max_seed_diff": float(np.abs(pa[both] - pb[both]).max()) if both.any() else float("nan"),
                "consistent": bool(abs(diff) <= bound),
            })  # fmt: skip
    return pd.DataFrame(rows)


def spearman_ci(
    df: pd.DataFrame,
    x: str,
    y: str,
    *,
    cluster: str = "seed",
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> "tuple[float, float, float]":
    """Spearman's rank correlation of ``x`` and ``y`` over the rows of ``df``, with a bootstrap
    interval that resamples whole ``cluster`` groups (the seeds).

    Rows of one seed (its tasks, its methods' runs from the same seed) are not independent; the
    interval resamples the seeds with replacement, recomputes the correlation on all rows of the
    drawn seeds, and takes the percentile interval of the ``n_boot`` replicates (Efron &
    Tibshirani 1993, the cluster bootstrap). Rows where ``x`` or ``y`` is NaN are dropped.

    Returns:
        ``(lo, rho, hi)``.

    Example:
        >>> df = pd.DataFrame({"seed": [0, 0, 1, 1, 2, 2], "a": [1, 2, 3, 4, 5, 6], "b": [2, 4, 6, 8, 10, 12]})
        >>> [round(v, 6) for v in spearman_ci(df, "a", "b", n_boot=50)]
        [1.0, 1.0, 1.0]
    """
    from scipy import stats

    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    for col in (x, y, cluster):
        if col not in df.columns:
            raise ValueError(f"df has no column {col!r}; columns: {list(df.columns)}")
    data = df[[cluster, x, y]].dropna()
    if len(data) < 3:
        raise ValueError(f"need at least 3 rows with both {x!r} and {y!r}, got {len(data)}")
    rho = float(stats.spearmanr(data[x], data[y]).statistic)
    groups = {k: g[[x, y]].to_numpy(float) for k, g in data.groupby(cluster)}
    keys = list(groups)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(int(n_boot)):
        drawn = np.concatenate([groups[keys[i]] for i in rng.integers(0, len(keys), len(keys))])
        if np.ptp(drawn[:, 0]) == 0 or np.ptp(drawn[:, 1]) == 0:
            continue  # a constant column has no rank correlation
        reps.append(stats.spearmanr(drawn[:, 0], drawn[:, 1]).statistic)
    if not reps:
        return rho, rho, rho
    alpha = (1 - float(level)) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return float(lo), rho, float(hi)


def holm(p_values: Iterable[float]) -> "list[float]":
    """Holm's step-down adjusted p-values (family-wise error rate), in the order given.

    With ``m`` p-values sorted ascending, ``p_(i)`` is adjusted to
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; a hypothesis is rejected at level ``alpha`` iff its
    adjusted p-value is ``<= alpha`` (Holm 1979). Minimal (issue 22); NaN stays NaN and does
    not count in ``m``.

    Example:
        >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(list(p_values), dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p_values must lie in [0, 1], got {p.tolist()}")
    valid = np.flatnonzero(~np.isnan(p))
    out = np.full(p.shape, np.nan)
    m = valid.size
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()
