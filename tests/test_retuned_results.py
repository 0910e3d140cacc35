"""Chapter 8's re-tuned benchmarks (``isoplast_lite/data/retuned``, issue 24): the protocol and the verdicts.

Everything is recomputed from the shipped files with plain pandas and scipy, not with
``isoplast_lite.verdicts`` or the tool's scoring: every tuning score of the search log, every
choice (setting, then learning rate), every edge the protocol table reports, the budget of the
learning-rate stage, and the verdict table (paired t-tests, Holm's step-down written out here,
two one-sided t-tests, the rule for the measure each verdict rests on).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from isoplast_lite import results
from isoplast_lite.config import MAX_LR
from isoplast_lite.methods import make_method
from isoplast_lite.settings import settings_json
from tools_loader import load_tool

TOOL = load_tool("precompute_streams")
GROUP = "retuned"
MANIFEST = results.manifest(GROUP)
STREAMS = sorted(MANIFEST)


def _read(name, key):
    path = results.results_dir(GROUP) / MANIFEST[name][key]
    return pd.read_csv(path)


def test_the_group_is_labelled_reduced_exactly_when_streams_are_missing():
    missing = sorted(set(TOOL.STREAMS) - set(MANIFEST))
    for name, entry in MANIFEST.items():
        assert entry["command"] == f"python tools/precompute_streams.py --streams {name}"
        assert entry["config"] == {**TOOL.STREAMS[name]["fields"], **TOOL.RESULT_SEEDS}
        if missing:
            reduced = entry["reduced"]
            assert reduced["streams_missing"] == [s for s in TOOL.STREAMS if s in missing]
            assert reduced["full_command"].endswith("tools/precompute_streams.py --executor local --workers 2")
            assert reduced["full_cpu_estimate"]["tuning_cpu_minutes"] > 0
        else:
            assert "reduced" not in entry


@pytest.mark.parametrize("name", STREAMS)
def test_tuning_uses_held_out_seeds_over_half_the_stream_and_scores_its_last_quarter(name):
    entry, tune = MANIFEST[name], _read(name, "tuning_file")
    n_tasks, h = entry["config"]["n_tasks"], entry["protocol"]["n_tasks"]
    assert h >= n_tasks / 2
    start, stop = entry["protocol"]["score_tasks"]
    assert stop == h and h - start == max(1, math.ceil(h / 4))
    assert set(tune.seed).isdisjoint(range(entry["config"]["first_seed"], entry["config"]["first_seed"] + entry["config"]["seeds"]))
    assert sorted(tune.task.unique()) == list(range(h))


@pytest.mark.parametrize("name", STREAMS)
def test_every_choice_follows_from_the_tuning_runs_and_every_edge_is_reported(name):
    entry, tune, log, table = MANIFEST[name], _read(name, "tuning_file"), _read(name, "search_file"), _read(name, "protocol_file")
    metric, (start, stop) = entry["metric"], entry["protocol"]["score_tasks"]
    n_seeds = entry["protocol"]["seeds"]

    def run_score(method, settings, lr):
        key = settings_json(make_method(method, settings).settings)
        rows = tune[(tune.method == method) & (tune.settings == key) & np.isclose(tune.lr, lr, rtol=1e-9)]
        assert rows.seed.nunique() == n_seeds and len(rows) == n_seeds * entry["protocol"]["n_tasks"], (method, settings, lr)
        if rows.diverged.astype(bool).any():
            return -math.inf
        return rows[(rows.task >= start) & (rows.task < stop)].groupby("seed")[metric].mean().mean()

    table = table.set_index("method")
    stream_lr = entry["config"]["lr"]
    for method, grid in entry["grids"].items():
        name_ = grid["setting"]
        tried = log[(log.method == method) & (log.stage == "setting")].sort_values("value")
        values = tried.value.tolist()
        assert set(grid["values"]) <= set(values)
        scores = [run_score(method, {name_: v}, stream_lr) for v in values]
        assert tried.score.to_numpy() == pytest.approx(np.array(scores), abs=1e-12)
        best = values[scores.index(max(scores))]  # ties to the smaller value
        assert entry["chosen"][method] == {name_: best}
        row = table.loc[method]
        assert row.chosen == best
        # the protocol table says "interior" exactly when the choice is not an edge of what was tried
        assert (row.setting_edge == "interior") == (values[0] < best < values[-1]), (method, values, best, row.setting_edge)
        assert row.extensions == len(values) - len(grid["values"]) <= TOOL.MAX_EXTENSIONS
    lrs = entry["protocol"]["lr_values"]
    assert len(lrs) == 3 and stream_lr in lrs
    for method in [*entry["untuned"], *entry["grids"]]:
        runs = log[(log.method == method) & (log.stage == "lr")].sort_values("lr")
        settings = entry["chosen"].get(method, {})
        # the learning-rate stage replayed: the same first 3 rates for every method, then one more
        # rate beyond the edge (the grid's ratio there, 3 significant digits) while the best sits at an edge
        tried = list(lrs)
        for _ in range(TOOL.MAX_EXTENSIONS + 1):
            scores = [run_score(method, settings, lr) for lr in tried]
            best = tried[scores.index(max(scores))]
            if best not in (tried[0], tried[-1]) or len(tried) - 3 == TOOL.MAX_EXTENSIONS:
                break
            beyond = float(f"{tried[-1] ** 2 / tried[-2]:.3g}") if best == tried[-1] else float(f"{tried[0] ** 2 / tried[1]:.3g}")
            if beyond >= MAX_LR:  # half way to the runner's bound (not reached at these rates)
                beyond = float(f"{(tried[-1] + MAX_LR) / 2:.3g}")
            tried = sorted(tried + [beyond])
        assert runs.lr.tolist() == pytest.approx(tried), method
        assert runs.score.to_numpy() == pytest.approx(np.array(scores), abs=1e-12)
        assert entry["chosen_lr"][method] == pytest.approx(best)
        row = table.loc[method]
        assert row.lr_extensions == len(tried) - 3 and row.lrs_tried == " ".join(f"{v:g}" for v in tried)
        assert (row.lr_edge == "interior") == (tried[0] < best < tried[-1])


@pytest.mark.parametrize("name", STREAMS)
def test_results_hold_every_method_at_its_chosen_setting_and_learning_rate_on_8_seeds(name):
    entry, df = MANIFEST[name], _read(name, "file")
    expected = {(m, settings_json(make_method(m).settings), entry["chosen_lr"][m]) for m in entry["untuned"]}
    expected |= {(m, settings_json(make_method(m, entry["chosen"][m]).settings), entry["chosen_lr"][m]) for m in entry["grids"]}
    got = {(m, s, lr) for m, s, lr in zip(df.method, df.settings, df.lr)}
    assert {(m, s, round(lr, 12)) for m, s, lr in got} == {(m, s, round(lr, 12)) for m, s, lr in expected}
    assert sorted(df.seed.unique()) == list(range(8))
    assert len(df) == len(expected) * 8 * entry["config"]["n_tasks"]


@pytest.mark.parametrize("name", STREAMS)
def test_results_ship_their_per_layer_table_for_every_seed_task_and_block(name):
    """The per-layer table (scale, spread, dead units per block) covers the results' rows exactly:
    the same configurations, every seed and task, the depth's hidden blocks and the head."""
    from isoplast_lite.run import LAYER_COLUMNS

    entry, df = MANIFEST[name], _read(name, "file")
    layers = _read(name, "layers_file")
    assert list(layers.columns)[: len(LAYER_COLUMNS)] == list(LAYER_COLUMNS)
    per_row = layers.groupby(["method", "settings", "lr", "seed", "task"]).size()
    assert (per_row == entry["config"]["depth"] + 1).all()
    assert set(per_row.index) == set(zip(df.method, df.settings, df.lr, df.seed, df.task))
    assert set(layers.kind) == {"hidden", "head"} and (layers.kind == "head").sum() == len(df)
    assert sorted(layers.layer.unique()) == list(range(entry["config"]["depth"] + 1))
    ok = df[df.diverged == 0][["method", "settings", "lr", "seed", "task"]]  # a diverged run has no measures to check
    measured = layers.merge(ok, on=["method", "settings", "lr", "seed", "task"])
    assert len(measured) == len(ok) * (entry["config"]["depth"] + 1)
    live = measured[measured.n_directions > 0]  # a block whose units are all dead has no direction to measure
    assert len(live) > 0.9 * len(measured)
    # scale and spread are the mean and spread of log sigma over the active directions: the geometric mean
    # exp(scale) lies between the smallest and largest of those singular values, and a zero spread means they coincide
    assert np.isfinite(live.scale).all() and (live.spread >= 0).all()
    lo, hi, mid = np.log(live.jac_sigma_min), np.log(live.jac_sigma_max), live.scale
    assert ((lo - 1e-6 <= mid) & (mid <= hi + 1e-6)).all()
    assert (live.spread <= (hi - lo) / 2 + 1e-6).all()  # a spread (standard deviation) at most half the range


def _holm(p):
    """Holm's step-down, written out: reject in order while p_(k) <= alpha / (m - k + 1); adjusted p by the running max."""
    p = np.asarray(p, float)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def _independent_verdicts(group, name):
    entry = results.manifest(group)[name]
    df = pd.read_csv(results.results_dir(group) / entry["file"])
    metric, T = entry["metric"], entry["config"]["n_tasks"]
    k = max(1, math.ceil(0.2 * T))
    first = df[df.task < k].groupby(["method", "seed"])[metric].mean().unstack("method")
    last = df[df.task >= T - k].groupby(["method", "seed"])[metric].mean().unstack("method")
    loss = last.rsub(last["fresh"], axis=0)  # fresh - method, per seed
    decline = first - last
    margin = 0.02  # the margin fixed in advance (stats.DEFAULT_ATOL of accuracy)
    rows = []
    for m in [m for m in dict.fromkeys(df.method) if m != "adamo"]:
        for measure, table in (("loss vs fresh", loss), ("decline", decline)):
            d = (table[m] - table["adamo"]).to_numpy()
            p = stats.ttest_rel(table[m], table["adamo"]).pvalue if d.std() > 0 else float(d.mean() == 0)
            p_low = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
            p_high = stats.ttest_1samp(d, margin, alternative="less").pvalue
            rows.append({"method": m, "measure": measure, "diff": d.mean(), "p": p, "tost_p": max(p_low, p_high)})
    out = pd.DataFrame(rows)
    out["p_holm"], out["tost_p_holm"] = _holm(out.p), _holm(out.tost_p)
    out["outcome"] = np.where(out.p_holm <= 0.05, np.where(out["diff"] > 0, "AdamO keeps more", "AdamO keeps less"),
                              np.where(out.tost_p_holm <= 0.05, "equivalent", "undecided"))

    def above_fresh(m):  # the 95% interval of fresh - m lies below 0
        if m == "fresh":
            return False
        x = loss[m]
        return x.mean() + stats.t.ppf(0.975, len(x) - 1) * stats.sem(x) < 0

    verdicts = {}
    for m, group in out.groupby("method", sort=False):
        rests = "decline" if above_fresh("adamo") or above_fresh(m) else "loss vs fresh"
        verdicts[m] = (rests, group.set_index("measure").loc[rests])
    return out, verdicts


@pytest.mark.parametrize("group", [GROUP, "streams"])
def test_the_verdict_table_is_what_scipy_computes_from_the_shipped_files(group):
    """Chapter 8 shows the verdicts of the re-tuned streams and of the six streams of the earlier protocol."""
    from isoplast_lite.verdicts import shipped_verdicts

    table = shipped_verdicts(group)
    for name in results.manifest(group):
        _check_stream(table.loc[name], *_independent_verdicts(group, name))


def _check_stream(shipped, tests, verdicts):
    assert set(shipped.index) == set(verdicts)
    for m, (rests, row) in verdicts.items():
        got = shipped.loc[m]
        assert got.rests_on == rests, m
        assert got.verdict == row.outcome, (m, got.verdict, row.outcome)
        assert got["diff"] == pytest.approx(row["diff"], abs=1e-12)
        assert got.p_holm == pytest.approx(row.p_holm, rel=1e-6, abs=1e-12)
        assert got.tost_p_holm == pytest.approx(row.tost_p_holm, rel=1e-6, abs=1e-12)
        other = tests[(tests.method == m) & (tests.measure != rests)].outcome.item()
        assert got.other_agrees == (other == row.outcome)
