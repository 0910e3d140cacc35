"""Plasticity against the fresh reference (isoplast_lite.plasticity), checked by hand-made frames."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from isoplast_lite import plasticity as P


def _frame(n_seeds=5, n_tasks=10, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for m, drift in (("fresh", 0.0), ("adam", -0.03), ("adamo", -0.005)):
        for s in range(n_seeds):
            base = 0.9 + 0.02 * rng.standard_normal()
            for t in range(n_tasks):
                rows.append({"method": m, "seed": s, "task": t, "test_acc": base + drift * t + 0.01 * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_loss_is_the_fresh_minus_method_mean_over_the_last_fifth_per_seed():
    df = _frame()
    loss = P.plasticity_loss(df, "adam", "test_acc")
    for s in range(5):  # independent: plain loops over the last 2 of 10 tasks
        fresh = [r.test_acc for r in df.itertuples() if r.method == "fresh" and r.seed == s and r.task >= 8]
        adam = [r.test_acc for r in df.itertuples() if r.method == "adam" and r.seed == s and r.task >= 8]
        assert loss[s] == pytest.approx(np.mean(fresh) - np.mean(adam), abs=1e-12)


def test_loss_table_intervals_are_student_t_over_seeds_and_paired():
    df = _frame()
    table = P.loss_table(df, "test_acc")
    loss = P.plasticity_loss(df, "adam", "test_acc")
    lo, hi = stats.t.interval(0.95, len(loss) - 1, loc=loss.mean(), scale=stats.sem(loss))
    assert (table.loc["adam", "loss_lo"], table.loc["adam", "loss_hi"]) == pytest.approx((lo, hi), rel=1e-9)
    d = P.paired_difference(df, "adamo", "adam", "test_acc")
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert table.loc["adamo", "minus_adam"] == pytest.approx(d.mean())
    assert (table.loc["adamo", "minus_adam_lo"], table.loc["adamo", "minus_adam_hi"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert math.isnan(table.loc["adam", "minus_adam"]) and table.loc["fresh", "loss"] == 0.0
    assert table.loc["adam", "loss"] > 0.2 and P.verdict(table.loc["adamo", "minus_adam_lo"], table.loc["adamo", "minus_adam_hi"]) == "higher"
    assert (table.seeds == 5).all()


def test_last_tasks_and_verdict_edges():
    assert P.last_tasks(200) == range(160, 200) and P.last_tasks(1) == range(0, 1) and P.last_tasks(60) == range(48, 60)
    with pytest.raises(ValueError, match="last_fraction"):
        P.last_tasks(10, 0)
    assert P.verdict(float("nan"), 1.0) == "n/a" and P.verdict(0.0, 1.0) == "tie"


def test_bad_frames_are_refused_with_one_line():
    with pytest.raises(TypeError, match="DataFrame"):
        P.loss_table([1, 2], "test_acc")
    with pytest.raises(ValueError, match="lacks the columns"):
        P.loss_table(pd.DataFrame({"method": ["adam"]}), "test_acc")
    with pytest.raises(ValueError, match="reference 'fresh'"):
        P.loss_table(_frame().query("method != 'fresh'"), "test_acc")


def test_tuning_table_reports_choice_and_gain_over_the_default():
    entry = {"grids": {"redo": {"setting": "tau", "values": [0.0, 0.025, 0.1]}, "adamo": {"setting": "iso_strength", "values": [0.01, 0.1, 1.0]}},
             "scores": {"redo": [0.5, 0.7, 0.6], "adamo": [0.4, 0.8, float("-inf")]},
             "chosen": {"redo": {"tau": 0.025}, "adamo": {"iso_strength": 0.1}}}
    t = P.tuning_table(entry)
    assert t.loc["redo", "default"] == 0.1 and t.loc["redo", "gain_over_default"] == pytest.approx(0.1)
    assert t.loc["adamo", "gain_over_default"] == 0.0 and "1: -inf" in t.loc["adamo", "tried"]
