"""The referee's statistics (issue 23): TOST, Holm, the cluster bootstrap and the detectable effect,
each against an independent computation (scipy or a brute-force loop)."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from isoplast_lite.stats import cluster_bootstrap, holm, min_detectable_effect, tost


def test_tost_is_two_scipy_one_sided_t_tests_and_the_interval_rule():
    rng = np.random.default_rng(0)
    for n, shift, margin in [(8, 0.0, 0.05), (8, 0.04, 0.05), (5, -0.1, 0.05), (20, 0.01, 0.02)]:
        x = rng.normal(0.8 + shift, 0.03, n)
        y = rng.normal(0.8, 0.03, n)
        r = tost(x, y, margin=margin)
        lower = sps.ttest_rel(x, y - margin, alternative="greater").pvalue  # H0: delta <= -m
        upper = sps.ttest_rel(x, y + margin, alternative="less").pvalue  # H0: delta >= m
        assert r["p_lower"] == pytest.approx(lower, rel=1e-9) and r["p_upper"] == pytest.approx(upper, rel=1e-9)
        assert r["p"] == pytest.approx(max(lower, upper), rel=1e-9)
        # equivalence at alpha <=> the 1 - 2 alpha interval lies inside the margin
        ci = sps.ttest_rel(x, y).confidence_interval(0.90)
        assert (r["lo"], r["hi"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
        assert r["equivalent"] == (-margin < ci.low and ci.high < margin)


def test_tost_declares_equivalence_only_when_it_should():
    same = tost([0.80, 0.81, 0.79, 0.80, 0.81, 0.80], [0.80, 0.80, 0.80, 0.80, 0.80, 0.80], margin=0.05)
    far = tost([0.70, 0.71, 0.69, 0.70, 0.71, 0.70], [0.80] * 6, margin=0.05)
    noisy = tost([0.5, 1.0, 0.6, 0.9], [0.8] * 4, margin=0.05)  # mean close, too few and too noisy
    assert same["equivalent"] and not far["equivalent"] and not noisy["equivalent"]
    assert tost([0.01, 0.01], margin=0.05)["equivalent"] and not tost([0.06, 0.06], margin=0.05)["equivalent"]


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(x=[1.0, 2.0], margin=0.0), "margin must be > 0"),
    (dict(x=[1.0, 2.0], y=[1.0], margin=0.1), "paired"),
    (dict(x=[1.0], margin=0.1), "at least 2"),
    (dict(x=[1.0, 2.0], margin=0.1, alpha=0.6), "alpha must lie in"),
])  # fmt: skip
def test_tost_rejects_bad_input(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        tost(**kwargs)


def _holm_brute_force(p, alpha):
    """Holm's procedure as stated: walk up the sorted p-values, stop at the first failure."""
    m = len(p)
    reject = [False] * m
    for k, i in enumerate(sorted(range(m), key=lambda i: p[i])):
        if p[i] > alpha / (m - k):
            break
        reject[i] = True
    return reject


def test_holm_rejects_what_the_step_down_procedure_rejects():
    rng = np.random.default_rng(1)
    for m in (1, 2, 5, 12):
        for _ in range(50):
            p = np.where(rng.random(m) < 0.5, rng.random(m) * 0.02, rng.random(m)).tolist()
            out = holm(p, alpha=0.05)
            assert out.reject.tolist() == _holm_brute_force(p, 0.05)
            # the adjusted p-value is the smallest alpha at which the test is rejected
            for i in range(m):
                a = out.p_adjusted[i]
                if a < 1:
                    assert _holm_brute_force(p, a * (1 + 1e-9))[i] and not _holm_brute_force(p, a * (1 - 1e-6))[i]


def test_holm_rejects_bad_input():
    with pytest.raises(ValueError, match=r"pvalues must lie in \[0, 1\]"):
        holm([0.1, 1.2])
    with pytest.raises(ValueError, match="non-empty"):
        holm([])


def test_cluster_bootstrap_agrees_with_scipy_on_one_row_per_seed_and_widens_with_correlated_rows():
    rng = np.random.default_rng(2)
    values = rng.normal(size=12)
    df = pd.DataFrame({"seed": range(12), "v": values})
    lo, est, hi = cluster_bootstrap(df, lambda d: d.v.mean(), n_boot=4000, seed=3)
    ref = sps.bootstrap((values,), np.mean, n_resamples=4000, method="percentile", random_state=4).confidence_interval
    assert est == pytest.approx(values.mean())
    sd = values.std(ddof=1) / math.sqrt(12)  # the bootstrap's quantiles are known to about 0.1 sd at 4000 draws
    assert abs(lo - ref.low) < 0.15 * sd and abs(hi - ref.high) < 0.15 * sd
    # 5 identical rows per seed carry no more information than one: the interval must not shrink
    copies = pd.concat([df] * 5, ignore_index=True)
    clo, cest, chi = cluster_bootstrap(copies, lambda d: d.v.mean(), n_boot=4000, seed=3)
    assert cest == pytest.approx(est) and (clo, chi) == pytest.approx((lo, hi), abs=1e-12)
    with pytest.raises(ValueError, match="no column 'run'"):
        cluster_bootstrap(df, lambda d: d.v.mean(), cluster="run")


def test_min_detectable_effect_has_the_stated_power_by_simulation():
    rng = np.random.default_rng(5)
    for n in (4, 8, 16):
        delta = min_detectable_effect(n, 1.0)
        draws = rng.normal(delta, 1.0, size=(40_000, n))
        power = (sps.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05).mean()
        assert power == pytest.approx(0.8, abs=0.012)  # 3.5 binomial standard errors at 40 000 draws
    # the large-sample limit (z_{0.975} + z_{0.8}) s / sqrt(n)
    assert min_detectable_effect(4000, 2.0) == pytest.approx((sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * 2.0 / math.sqrt(4000), rel=2e-3)
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        min_detectable_effect(1, 1.0)


def test_rerun_agreement_censors_values_beyond_resolution():
    """A condition number beyond resolution (+inf) is neither a NaN comparison nor ignored: on a
    log metric it is censored at the largest resolved value of both samples (the same map for
    both), counted in n_beyond; a re-run with the same inf agrees, one far below it does not."""
    import warnings

    from isoplast_lite.stats import rerun_agreement

    shipped = pd.DataFrame({"method": "adam", "task": 0, "seed": range(8),
                            "ntk_cond": [1e4, 2e4, 5e4, 1e5, 3e4, 8e4, 6e4, np.inf]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN arithmetic warnings either
        same = rerun_agreement(shipped, shipped, ["ntk_cond"])
    assert same.consistent.all() and same.n_beyond.iloc[0] == 2 and same["diff"].iloc[0] == 0.0
    # the censored sample's mean, computed independently: inf -> the largest resolved value (1e5)
    logs = np.log10([1e4, 2e4, 5e4, 1e5, 3e4, 8e4, 6e4, 1e5])
    assert np.isclose(same.shipped.iloc[0], logs.mean())
    far = shipped.assign(ntk_cond=shipped.ntk_cond.where(np.isfinite(shipped.ntk_cond), 1e4) / 1e3)  # three decades lower
    assert not rerun_agreement(far, shipped, ["ntk_cond"]).consistent.any()


def test_paired_t_is_scipys_paired_test_with_the_mean_ci_interval():
    from isoplast_lite.stats import mean_ci, paired_t

    rng = np.random.default_rng(3)
    for n in (2, 5, 8):
        x, y = rng.normal(0.5, 0.1, n), rng.normal(0.45, 0.1, n)
        r = paired_t(x, y)
        ref = sps.ttest_rel(x, y)
        assert r["p"] == pytest.approx(ref.pvalue, rel=1e-10) and r["t"] == pytest.approx(ref.statistic, rel=1e-10)
        assert (r["lo"], r["diff"], r["hi"]) == pytest.approx(mean_ci(x - y), rel=1e-12)
        assert paired_t(x - y)["p"] == pytest.approx(r["p"], rel=1e-12)  # differences given directly
    # no spread: certain when the mean is not zero, no evidence when it is
    assert paired_t([0.5, 0.5, 0.5])["p"] == 0.0 and paired_t([0.0, 0.0])["p"] == 1.0
    with pytest.raises(ValueError, match="paired"):
        paired_t([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        paired_t([1.0, float("nan")])
