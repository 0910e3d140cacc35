"""Statistics of runs over seeds: one confidence-interval convention, and re-run agreement.

* :func:`mean_ci`: the mean over seeds and its Student-t interval, the one convention of the
  whole project (``mean -/+ t_{(1+level)/2, n-1} * s / sqrt(n)``).
* :func:`paired_t`, :func:`tost`, :func:`holm`, :func:`cluster_bootstrap`, :func:`min_detectable_effect`: what a
  referee asks of a comparison of arms over seeds: a paired t-test, equivalence within a margin fixed in advance
  (two one-sided tests), a family of tests corrected by Holm's step-down, intervals that
  resample whole seeds, and the smallest effect a paired comparison could have detected.
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

__all__ = ["mean_ci", "rerun_agreement", "spearman_ci", "paired_t", "tost", "holm", "cluster_bootstrap", "min_detectable_effect",
           "LOG_METRICS", "DEFAULT_ATOL"]

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
        none), ``n_beyond`` (values of both samples that are ``+inf``: beyond the resolution of
        their computation; on a metric of :data:`LOG_METRICS` they are censored at the largest
        resolved value of either sample, the same map for both) and ``consistent`` (bool).

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
            beyond = int(np.isposinf(a).sum() + np.isposinf(b).sum())
            if metric in LOG_METRICS:
                a, b, pa, pb = (np.log10(np.clip(v, 1e-300, None)) for v in (a, b, pa, pb))
                finite = np.concatenate([v[np.isfinite(v)] for v in (a, b)])
                cap = float(finite.max()) if finite.size else 0.0
                # +inf is a value beyond resolution (a condition number the computation cannot
                # resolve): censored at the largest resolved value of either sample, the same
                # monotone map for both, so equal distributions stay equal
                a, b, pa, pb = (np.where(np.isposinf(v), cap, v) for v in (a, b, pa, pb))
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
                "n_beyond": beyond, "consistent": bool(abs(diff) <= bound),
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
    drawn seeds, and takes the percentile interval of the ``n_boot`` replicates
    (:func:`cluster_bootstrap`). Rows where ``x`` or ``y`` is NaN are dropped.

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

    def rho(frame: pd.DataFrame) -> float:
        if np.ptp(frame[x].to_numpy(float)) == 0 or np.ptp(frame[y].to_numpy(float)) == 0:
            return math.nan  # a constant column has no rank correlation
        return float(stats.spearmanr(frame[x], frame[y]).statistic)

    return cluster_bootstrap(data, rho, cluster=cluster, n_boot=n_boot, level=level, seed=seed)


# ----------------------------------------------------------------------------------------------
# Comparisons a referee accepts: equivalence, multiplicity, seed-level intervals, power
# ----------------------------------------------------------------------------------------------


def _level(level) -> float:
    from ._validation import check_real

    level = check_real("level", level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return level


def _sample(name: str, values) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if np.isinf(x).any():
        raise ValueError(f"{name} must be finite or NaN (dropped), got an infinity")
    return x



def _paired_differences(x, y, who: str) -> np.ndarray:
    """``x - y`` per seed (or ``x`` when ``y`` is None), NaN pairs dropped; at least 2 left."""
    d = _sample("x", x)
    if y is not None:
        yy = _sample("y", y)
        if yy.shape != d.shape:
            raise ValueError(f"x and y must hold one value per seed each (paired), got {d.size} and {yy.size} values")
        d = d - yy
    d = d[~np.isnan(d)]
    if d.size < 2:
        raise ValueError(f"{who} needs at least 2 paired values that are not NaN, got {int(d.size)}")
    return d

def paired_t(x: Iterable[float], y: "Iterable[float] | None" = None, *, level: float = 0.95) -> dict:
    r"""Two-sided paired t-test of "no difference", with the :func:`mean_ci` interval of the difference.

    The differences :math:`d_s = x_s - y_s` (or :math:`d_s = x_s` when ``y`` is ``None``) of
    :math:`n` seeds have mean :math:`\bar d` and standard error :math:`se = s_d/\sqrt n`;
    :math:`t = \bar d / se` and :math:`p = 2 P(T_{n-1} \ge |t|)` (Student 1908). Pairs with a
    NaN are dropped. With zero spread :math:`p` is 0 when :math:`\bar d \ne 0` and 1 otherwise.

    Args:
        x: one value per seed (the arm), or the paired differences when ``y`` is ``None``.
        y: one value per seed of the reference arm, in the same seed order as ``x``.
        level: level of the interval ``lo``/``hi``.

    Returns:
        A dict: ``n``, ``diff`` (:math:`\bar d`), ``se``, ``lo``/``hi`` (the ``level``
        t-interval, :func:`mean_ci`), ``t`` and ``p``.

    Example:
        >>> r = paired_t([0.9, 0.8, 0.85, 0.95], [0.8, 0.75, 0.8, 0.85])
        >>> round(r["diff"], 4), round(r["p"], 4)
        (0.075, 0.0138)
    """
    from scipy import stats

    d = _paired_differences(x, y, "paired_t")
    n = int(d.size)
    lo, mean, hi = mean_ci(d, level)
    se = float(d.std(ddof=1) / math.sqrt(n))
    if se > 0:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), n - 1))
    else:
        t, p = (math.copysign(math.inf, mean), 0.0) if mean != 0 else (0.0, 1.0)
    return {"n": n, "diff": mean, "se": se, "lo": lo, "hi": hi, "t": float(t), "p": p}


def tost(x: Iterable[float], y: "Iterable[float] | None" = None, *, margin: float, alpha: float = 0.05) -> dict:
    r"""Two one-sided tests (TOST) of equivalence within ``margin``, paired over seeds.

    The differences :math:`d_s = x_s - y_s` (or :math:`d_s = x_s` when ``y`` is ``None``) of
    :math:`n` seeds have mean :math:`\bar d` and standard error :math:`se = s_d/\sqrt n`. The
    null hypothesis "the arms differ by at least the margin" (:math:`|\delta| \ge m`) is the
    union of :math:`\delta \le -m` and :math:`\delta \ge m`; each is tested one-sided,

    .. math:: t_- = \frac{\bar d + m}{se}, \quad p_- = P(T_{n-1} \ge t_-), \qquad
              t_+ = \frac{\bar d - m}{se}, \quad p_+ = P(T_{n-1} \le t_+),

    and equivalence is declared at level ``alpha`` when both reject: :math:`p = \max(p_-, p_+)
    \le \alpha`, which is the same as the :math:`1 - 2\alpha` interval of :math:`\delta` lying
    inside :math:`(-m, m)` (Schuirmann 1987). The margin must be fixed before the data are
    seen. Pairs with a NaN are dropped.

    Args:
        x: one value per seed (the arm), or the paired differences when ``y`` is ``None``.
        y: one value per seed of the reference arm, in the same seed order as ``x``.
        margin: the equivalence margin :math:`m > 0`, in the units of ``x``.
        alpha: level of each one-sided test.

    Returns:
        A dict: ``n``, ``diff`` (:math:`\bar d`), ``se``, ``lo``/``hi`` (the :math:`1 - 2\alpha`
        t-interval of :math:`\delta`), ``p_lower`` (:math:`p_-`), ``p_upper`` (:math:`p_+`),
        ``p`` (their maximum) and ``equivalent`` (bool). With zero spread the p-values are 0 or
        1 (the mean is inside the margin or not).

    Example:
        >>> r = tost([0.80, 0.82, 0.79, 0.81], [0.80, 0.81, 0.80, 0.80], margin=0.05)
        >>> r["equivalent"], round(r["diff"], 4)
        (True, 0.0025)

    References:
        Schuirmann (1987), "A comparison of the two one-sided tests procedure and the power
        approach for assessing the equivalence of average bioavailability", J. Pharmacokinet.
        Biopharm. 15(6).
    """
    from scipy import stats

    from ._validation import check_positive

    margin = check_positive("margin", margin)
    alpha = _level(alpha)
    if alpha >= 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
    d = _paired_differences(x, y, "tost")
    n = int(d.size)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n))
    if se > 0:
        p_lower = float(stats.t.sf((mean + margin) / se, n - 1))
        p_upper = float(stats.t.cdf((mean - margin) / se, n - 1))
        half = float(stats.t.ppf(1 - alpha, n - 1) * se)
    else:
        p_lower, p_upper, half = float(mean <= -margin), float(mean >= margin), 0.0
    p = max(p_lower, p_upper)
    return {"n": n, "diff": mean, "se": se, "lo": mean - half, "hi": mean + half,
            "p_lower": p_lower, "p_upper": p_upper, "p": p, "equivalent": bool(p <= alpha)}  # fmt: skip


def holm(pvalues: Iterable[float], alpha: float = 0.05) -> pd.DataFrame:
    r"""Holm's step-down correction of a family of ``m`` tests (strong control of the
    family-wise error rate at ``alpha``, any dependence between the tests).

    Sort the p-values :math:`p_{(1)} \le \dots \le p_{(m)}`; the adjusted p-values are
    :math:`\tilde p_{(i)} = \min\big(1, \max_{j \le i} (m - j + 1)\, p_{(j)}\big)`, and a test is
    rejected when :math:`\tilde p \le \alpha`: equivalently, reject :math:`p_{(1)}, \dots,
    p_{(k-1)}` where :math:`k` is the first index with :math:`p_{(k)} > \alpha / (m - k + 1)`.

    Args:
        pvalues: the family's p-values (each in ``[0, 1]``), in any order.
        alpha: the family-wise error rate.

    Returns:
        A frame in the input order: ``p``, ``p_adjusted``, ``reject`` (bool).

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(3).to_dict("list")
        {'p': [0.01, 0.04, 0.03], 'p_adjusted': [0.03, 0.06, 0.06], 'reject': [True, False, False]}

    References:
        Holm (1979), "A simple sequentially rejective multiple test procedure", Scand. J. Stat. 6(2).
    """
    alpha = _level(alpha)
    p = np.asarray(list(pvalues), dtype=float)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"pvalues must be a non-empty list of numbers, got {p.size} values")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"pvalues must lie in [0, 1] (no NaN), got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return pd.DataFrame({"p": p, "p_adjusted": adjusted, "reject": adjusted <= alpha})


def cluster_bootstrap(
    df: pd.DataFrame,
    statistic,
    *,
    cluster: str = "seed",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> "tuple[float, float, float]":
    r"""A statistic of the rows of ``df`` with a percentile interval that resamples whole clusters.

    Rows of one seed (its tasks, its streams, every arm run from that seed) are not independent;
    the seeds are. Each of ``n_boot`` replicates draws as many clusters as there are, with
    replacement, stacks all their rows (a cluster drawn twice appears twice) and evaluates
    ``statistic``; the interval is the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of the
    replicates (Efron & Tibshirani 1993; the cluster bootstrap of Davison & Hinkley 1997,
    section 3.8). Replicates where the statistic is NaN (e.g. a correlation of a constant
    column) are dropped; if none remains the interval collapses to the estimate.

    Args:
        df: tidy rows with a ``cluster`` column.
        statistic: ``frame -> float``, evaluated on ``df`` (the estimate) and on each replicate.
        cluster: the column naming the independent units (the seeds).
        n_boot: number of replicates (>= 1).
        level: confidence level in ``(0, 1)``.
        seed: the seed of the resampling (numpy's default generator).

    Returns:
        ``(lo, estimate, hi)``.

    Example:
        >>> df = pd.DataFrame({"seed": [0, 0, 1, 1, 2, 2], "acc": [0.5, 0.7, 0.6, 0.6, 0.8, 0.8]})
        >>> lo, est, hi = cluster_bootstrap(df, lambda d: d.acc.mean(), n_boot=200)
        >>> round(est, 3), lo <= est <= hi
        (0.667, True)
    """
    from ._validation import check_int

    level = _level(level)
    n_boot = check_int("n_boot", n_boot, minimum=1)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if cluster not in df.columns:
        raise ValueError(f"df has no column {cluster!r} (the cluster); columns: {list(df.columns)}")
    if not callable(statistic):
        raise TypeError(f"statistic must be a callable frame -> float, got {type(statistic).__name__}")
    if len(df) == 0:
        raise ValueError("df must have at least one row")
    estimate = float(statistic(df))
    groups = list(df.groupby(cluster, sort=True).indices.values())  # row positions of each cluster
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        drawn = df.iloc[np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])]
        value = float(statistic(drawn))
        if not math.isnan(value):
            reps.append(value)
    if not reps:
        return estimate, estimate, estimate
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), estimate, float(hi)


def min_detectable_effect(n: int, sd: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    r"""The smallest true mean difference a two-sided paired t-test detects with ``power``.

    With :math:`n` pairs whose differences have standard deviation :math:`s`, the test statistic
    at a true difference :math:`\delta` follows a noncentral t with :math:`n - 1` degrees of
    freedom and noncentrality :math:`\delta\sqrt n / s`; the result is the :math:`\delta > 0`
    at which :math:`P(|T| > t_{1-\alpha/2, n-1}) =` ``power``. For large :math:`n` it tends to
    :math:`(z_{1-\alpha/2} + z_{\text{power}})\, s/\sqrt n`. An arm whose difference with the
    reference was "not significant" could still differ by anything below this value: report it
    beside every null result.

    Args:
        n: number of pairs (seeds), >= 2.
        sd: standard deviation of the paired differences (> 0, e.g. the sample's).
        alpha: two-sided level of the test.
        power: the power required, in ``(alpha, 1)``.

    Returns:
        :math:`\delta` in the units of ``sd``.

    Example:
        >>> round(min_detectable_effect(8, 1.0), 2)  # 8 seeds: about 1.16 standard deviations
        1.16
    """
    from scipy import optimize, stats

    from ._validation import check_int, check_positive

    n = check_int("n", n, minimum=2)
    sd = check_positive("sd", sd)
    alpha = _level(alpha)
    power = _level(power)
    if power <= alpha:
        raise ValueError(f"power must exceed alpha ({alpha}), got {power}")
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))

    def shortfall(nc: float) -> float:
        lower_tail = float(stats.nct.cdf(-crit, df, nc))  # scipy returns NaN where it underflows
        return float(stats.nct.sf(crit, df, nc)) + (0.0 if math.isnan(lower_tail) else lower_tail) - power

    upper = crit + float(stats.norm.ppf(power)) + 10.0
    nc = optimize.brentq(shortfall, 0.0, upper, xtol=1e-12)
    return nc * sd / math.sqrt(n)
