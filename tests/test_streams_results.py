"""Chapter 8's shipped benchmarks (``isoplast_lite/data/streams``) and what the chapter claims.

Everything here is recomputed from the shipped files with plain pandas and scipy, not with
``isoplast_lite.plasticity``: the tuning choice of every method (from the tuning runs, by the
rule the manifest states), the grid of each results file (from ``tools/precompute_streams.py``),
and the loss of plasticity the chapter reports (Adam against the fresh network), so that a
regeneration that no longer shows it fails here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from isoplast_lite import results
from isoplast_lite.methods import make_method
from isoplast_lite.settings import settings_json
from tools_loader import load_tool

TOOL = load_tool("precompute_streams")
MANIFEST = results.manifest("streams")
#: streams on which the chapter states that Adam loses plasticity against the fresh network
#: (95% interval of fresh - Adam over the last fifth of the tasks above zero): every permuted and
#: label-shuffled stream we ship, found by tools/search_streams.py
ADAM_LOSES = ("permuted-digits", "label-shuffle-digits", "permuted-mnist1d", "label-shuffle-mnist1d")


def _frame(name, key="file"):
    return pd.read_csv(results.results_dir("streams") / MANIFEST[name][key])


def _t_interval(x):
    x = np.asarray(x, dtype=float)
    return stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))


def test_every_stream_of_the_tool_is_shipped_with_its_configuration_and_grids():
    assert set(MANIFEST) == set(TOOL.STREAMS)
    for name, spec in TOOL.STREAMS.items():
        entry = MANIFEST[name]
        assert entry["config"] == {**spec["fields"], **TOOL.RESULT_SEEDS}, name
        assert entry["metric"] == spec["metric"]
        assert entry["grids"] == {m: {"setting": s, "values": list(v)} for m, (s, v) in TOOL.GRIDS.items()}
        assert entry["command"] == f"python tools/precompute_streams.py --streams {name}"
    assert (results.results_dir("streams") / "search.csv").is_file()


@pytest.mark.parametrize("name", sorted(TOOL.STREAMS))
def test_the_chosen_value_of_every_method_follows_from_the_tuning_runs(name):
    entry, tune = MANIFEST[name], _frame(name, "tuning_file")
    n_tune = entry["tuning"]["n_tasks"]
    assert sorted(tune.seed.unique()) == [100, 101] and sorted(tune.task.unique()) == list(range(n_tune))
    start, stop = entry["tuning"]["score_tasks"]
    assert (start, stop) == (n_tune // 2, n_tune)
    for method, (setting, values) in TOOL.GRIDS.items():
        scores = []
        for v in values:
            rows = tune[(tune.method == method) & (tune.settings == settings_json(make_method(method, {setting: v}).settings))]
            assert len(rows) == 2 * n_tune, (method, v)
            if rows["diverged"].astype(bool).any():
                scores.append(-math.inf)
                continue
            window = rows[(rows.task >= start) & (rows.task < stop)]
            scores.append(window.groupby("seed")[entry["metric"]].mean().mean())
        best = max(scores)
        assert entry["scores"][method] == pytest.approx(scores, abs=1e-12)
        assert entry["chosen"][method] == {setting: values[scores.index(best)]}, (method, scores)


@pytest.mark.parametrize("name", sorted(TOOL.STREAMS))
def test_results_file_holds_every_method_at_its_chosen_value_on_8_seeds(name):
    entry, df = MANIFEST[name], _frame(name)
    expected = {(m, settings_json(make_method(m).settings)) for m in TOOL.UNTUNED}
    expected |= {(m, settings_json(make_method(m, entry["chosen"][m]).settings)) for m in TOOL.GRIDS}
    assert set(zip(df.method, df.settings)) == expected
    assert sorted(df.seed.unique()) == list(range(8))
    assert sorted(df.task.unique()) == list(range(entry["config"]["n_tasks"]))
    assert not df.duplicated(["method", "seed", "task"]).any()
    assert len(df) == len(expected) * 8 * entry["config"]["n_tasks"]


@pytest.mark.parametrize("name", ADAM_LOSES)
def test_adam_loses_plasticity_against_the_fresh_network_where_the_chapter_says(name):
    entry, df = MANIFEST[name], _frame(name)
    T = entry["config"]["n_tasks"]
    last = df[df.task >= T - math.ceil(T / 5)]
    per_seed = last.groupby(["method", "seed"])[entry["metric"]].mean().unstack("method")
    loss = per_seed["fresh"] - per_seed["adam"]
    lo, hi = _t_interval(loss)
    assert lo > 0, f"{name}: fresh - Adam = {loss.mean():.3f} [{lo:.3f}, {hi:.3f}] does not exclude 0"
    # the fresh network itself does not lose anything: its accuracy on the last tasks is its first tasks'
    first = df[df.task < math.ceil(T / 5)].groupby(["method", "seed"])[entry["metric"]].mean().unstack("method")
    assert abs(per_seed["fresh"].mean() - first["fresh"].mean()) < 0.05
