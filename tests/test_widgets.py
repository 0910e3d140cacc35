"""Tests of the book's lambda widgets (isoplast_lite.widgets)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from isoplast_lite import widgets as W


def synthetic_sweep(lams=(0.0, 1e-3, 1e-2, 1e-1, 1.0), seeds=3, tasks=4, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    rows = []
    for lam in lams:
        for s in range(seeds):
            for t in range(tasks):
                rows.append({"iso_strength": lam, "seed": s, "task": t,
                             "train_acc": float(rng.uniform()), "dead": float(rng.uniform())})
    return pd.DataFrame(rows)


def test_summarize_sweep_matches_independent_t_interval():
    df = synthetic_sweep()
    s = W.summarize_sweep(df, "train_acc")
    assert len(s) == 5 * 4
    for _, row in s.iterrows():
        vals = df[(df.iso_strength == row.iso_strength) & (df.task == row.task)].train_acc.to_numpy()
        lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=vals.mean(), scale=stats.sem(vals))
        assert row["mean"] == pytest.approx(vals.mean())
        assert row["lo"] == pytest.approx(lo) and row["hi"] == pytest.approx(hi)
        assert row["n"] == 3


def test_summarize_sweep_single_seed_collapses_and_rejects_bad_input():
    df = synthetic_sweep(seeds=1)
    s = W.summarize_sweep(df, "dead")
    assert np.allclose(s["lo"], s["mean"]) and np.allclose(s["hi"], s["mean"])
    with pytest.raises(ValueError, match="missing the column"):
        W.summarize_sweep(df, "nope")
    with pytest.raises(ValueError, match="level"):
        W.summarize_sweep(df, "dead", level=1.0)
    with pytest.raises(TypeError, match="df must be a pandas DataFrame"):
        W.summarize_sweep(df.to_dict(), "dead")


def test_lambda_grid_requires_geometric_grid():
    assert W.lambda_grid([0, 1e-3, 1e-2, 1e-1]).tolist() == [-3.0, -2.0, -1.0]
    with pytest.raises(ValueError, match="evenly spaced"):
        W.lambda_grid([1e-3, 1e-2, 1.0])
    with pytest.raises(ValueError, match="positive lambda"):
        W.lambda_grid([0.0])


def test_lambda_chart_spec_has_bound_slider_and_filters_on_it():
    df = synthetic_sweep()
    spec = W.lambda_chart(df, ["train_acc", "dead"], initial=1e-2).to_dict()
    (param,) = spec["params"]
    assert param["name"] == "log10_lambda" and param["value"] == -2.0
    assert param["bind"] == {"input": "range", "min": -3.0, "max": 0.0, "step": 1.0, "name": "log₁₀ λ "}
    text = json.dumps(spec)
    assert text.count("abs(datum.log10_lambda - log10_lambda) < 1e-6") >= 2 * 3  # band, line, label per panel
    # the data carried by the spec are the seed means of the sweep, for every lambda
    datasets = [pd.DataFrame(v) for v in spec["datasets"].values()]
    acc = next(d for d in datasets if "log10_lambda" in d and np.isclose(d["mean"].max(), W.summarize_sweep(df, "train_acc")["mean"].max()))
    expected = df[df.iso_strength > 0].groupby(["iso_strength", "task"]).train_acc.mean().to_numpy()
    assert np.allclose(np.sort(acc["mean"].to_numpy()), np.sort(expected))
    with pytest.raises(ValueError, match="initial"):
        W.lambda_chart(df, "train_acc", initial=0.5)


def test_lambda_chart_numbers_tasks_from_one_with_integer_ticks_and_words():
    df = synthetic_sweep()
    spec = W.lambda_chart(df, ["train_acc"]).to_dict()
    text = json.dumps(spec, ensure_ascii=False)
    datasets = [pd.DataFrame(v) for v in spec["datasets"].values()]
    # every dataset with an x column counts tasks from 1 to the number of tasks
    xs = sorted({int(v) for d in datasets if "x" in d for v in d["x"]})
    assert xs == list(range(1, df.task.nunique() + 1))
    axes = [layer["encoding"]["x"] for layer in spec["vconcat"][0]["layer"] if "x" in layer["encoding"] and "field" in layer["encoding"]["x"]]
    assert axes and all(a["title"] == "task" and a["axis"]["format"] == "d" and a["axis"]["tickMinStep"] == 1 for a in axes)
    assert "λ = 0 (reference)" in text and '"lambda = ' not in text
    # another x axis is left as it is, with words for its title
    steps = df.rename(columns={"task": "step"})
    spec = W.lambda_chart(steps, ["train_acc"], x="step").to_dict()
    xs = sorted({int(v) for d in spec["datasets"].values() for r in d for v in [r.get("x")] if v is not None})
    assert xs == sorted(steps.step.unique().tolist())


def test_offline_html_inlines_vendored_js_and_no_cdn():
    df = synthetic_sweep()
    frag = W.offline_html(W.lambda_chart(df, "train_acc"))
    for name in W.VENDORED_JS:
        body = (W._VENDOR / name).read_text(encoding="utf-8")
        assert body[:200] in frag
    assert "cdn.jsdelivr" not in frag and 'src="http' not in frag
    # the spec is embedded as JSON and cannot close its <script> early
    spec_js = re.search(r"var spec = (\{.*?\});vegaEmbed", frag, re.S).group(1)
    assert json.loads(spec_js.replace("<\\/", "</"))["params"][0]["name"] == "log10_lambda"
    assert "</script" not in spec_js
    # deterministic id, and no JS when asked
    assert frag == W.offline_html(W.lambda_chart(df, "train_acc"))
    small = W.offline_html({"mark": "point"}, include_js=False)
    assert len(small) < 1000 and "vegaEmbed(" in small


def test_lambda_panel_replots_selected_lambda_from_the_sweep():
    pytest.importorskip("ipywidgets")
    df = synthetic_sweep()
    panel = W.lambda_panel(df, "train_acc")
    for target in (1e-3, 1.0, 0.1):
        panel.slider.value = target * 1.3  # off-grid values snap to the nearest swept lambda
        assert panel.selected == pytest.approx(target)
        line = [ln for ln in panel.figure.axes[0].lines if "precomputed" in ln.get_label()][0]
        expected = df[np.isclose(df.iso_strength, target)].groupby("task").train_acc.mean()
        assert np.allclose(line.get_ydata(), expected.to_numpy())
        assert np.allclose(line.get_xdata(), expected.index.to_numpy() + 1)  # tasks from 1
    ax = panel.figure.axes[0]
    assert ax.get_xlabel() == "task" and [t for t in ax.get_xticks()] == list(range(1, df.task.nunique() + 1))
    ref = [ln for ln in panel.figure.axes[0].lines if "reference" in ln.get_label()][0]
    assert np.allclose(ref.get_ydata(), df[df.iso_strength == 0].groupby("task").train_acc.mean())
    assert panel.button.layout.display == "none"
    with pytest.raises(RuntimeError, match="rerun"):
        panel.run_selected()


def test_lambda_panel_button_reruns_through_the_runner():
    pytest.importorskip("ipywidgets")
    from isoplast_lite.results import expand_settings
    from isoplast_lite.run import Config, run

    small = dict(benchmark="random-label-digits", method="adamo", seeds=1, n_tasks=2, steps_per_task=5,
                 width=8, depth=1, n_train=16, probe_size=4)

    rerun = W.runner_rerun(cache_dir=False, **{k: v for k, v in small.items() if k != "method"})

    df = pd.concat([expand_settings(run(Config(settings={"iso_strength": lam}, **small), cache_dir=False, progress=False).rows) for lam in (0.01, 0.1)])
    panel = W.lambda_panel(df, "train_acc", rerun=rerun)
    panel.slider.value = 0.01
    panel.button.click()
    got = panel.last_rerun
    assert got is not None and (got.iso_strength == 0.01).all()
    pd.testing.assert_frame_equal(got, df[df.iso_strength == 0.01].reset_index(drop=True))
    overlay = [ln for ln in panel.figure.axes[0].lines if "re-run" in ln.get_label()][0]
    assert np.allclose(overlay.get_ydata(), got.train_acc.to_numpy())
    with pytest.raises(TypeError, match="rerun"):
        W.lambda_panel(df, "train_acc", rerun=3)
    # lambda = 0 re-runs the reference method
    ref = rerun(0.0)
    assert (ref.method == "adam").all() and (ref.iso_strength == 0).all()
    with pytest.raises(ValueError, match="benchmark"):
        W.runner_rerun("no-such-benchmark")


def test_range_param_steps_through_even_frames_and_rejects_others():
    p = W.range_param("step", [0, 5, 10, 15], label="steps ", initial=10).param
    assert (p.bind.min, p.bind.max, p.bind.step, p.value) == (0.0, 15.0, 5.0, 10.0)
    with pytest.raises(ValueError, match="evenly spaced"):
        W.range_param("step", [0, 1, 3], label="x")
    with pytest.raises(ValueError, match="initial"):
        W.range_param("step", [0, 1, 2], label="x", initial=7)
    with pytest.raises(ValueError, match="identifier"):
        W.range_param("the step", [0, 1], label="x")


def test_method_toggle_chart_draws_seed_summaries_with_fixed_styles_and_a_legend_selection():
    from isoplast_lite import plots

    rng = np.random.default_rng(0)
    df = pd.DataFrame([{"method": m, "seed": s, "task": t, "train_acc": rng.uniform(), "ntk_cond": 10 ** rng.uniform(1, 5)}
                       for m in ("adamo", "redo", "adam") for s in range(3) for t in range(4)])
    spec = W.method_toggle_chart(df, ["train_acc", "ntk_cond"]).to_dict()
    (param,) = spec["params"]
    assert param["name"] == "methods" and param["bind"] == "legend" and param["select"]["fields"] == ["label"]
    acc, cond = spec["hconcat"]
    # legend order by family (Adam-like, resets, the paper's) and each method's fixed colour
    scale = acc["encoding"]["color"]["scale"]
    assert scale["domain"] == ["adam", "redo", "adamo"]
    assert scale["range"] == [plots.method_style(m)["color"] for m in scale["domain"]]
    # both panels fade the unselected methods through the same selection
    for panel in (acc, cond):
        assert panel["encoding"]["opacity"]["condition"]["param"] == "methods"
    # the data are the seed summaries: arithmetic mean for accuracy, geometric mean (log axis) for kappa
    data = {k: pd.DataFrame(v) for k, v in spec["datasets"].items()}
    acc_data, cond_data = data[acc["data"]["name"]], data[cond["data"]["name"]]
    expected = df.groupby(["method", "task"]).train_acc.mean()
    got = acc_data.set_index(["method", "task"]).center
    assert np.allclose(got.sort_index().to_numpy(), expected.rename(index=lambda t: t + 1, level=1).sort_index().to_numpy())
    assert sorted(acc_data.task.unique()) == [1, 2, 3, 4]
    geo = 10 ** np.log10(df.ntk_cond).groupby([df.method, df.task]).mean()
    assert np.allclose(cond_data.set_index(["method", "task"]).center.sort_index().to_numpy(), geo.sort_index().to_numpy())
    assert cond["encoding"]["y"]["scale"]["type"] == "log"
    with pytest.raises(ValueError, match="no rows"):
        W.method_toggle_chart(df, "train_acc", methods=["adamw"])


def test_lambda_panel_under_the_book_theme_warns_nothing():
    # the book's theme lays every figure out with constrained layout; the panel must not ask
    # for a second layout engine (matplotlib warns on stderr, which a reader notebook would show)
    pytest.importorskip("ipywidgets")
    import warnings

    import matplotlib as mpl

    from isoplast_lite import plots

    with mpl.rc_context():
        plots.set_theme()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            panel = W.lambda_panel(synthetic_sweep(), "train_acc")
            panel.slider.value = 1.0
        assert panel.figure.get_layout_engine() is not None
