"""isoplast_lite.plots: every helper rendered on small data; labels, ticks, legends, colours, aggregation."""

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from isoplast_lite import plots  # noqa: E402
from isoplast_lite.stats import mean_ci  # noqa: E402

METHODS = ("adam", "adamw", "l2", "l2-init", "shrink-perturb", "redo", "spectral", "layernorm", "coupled-iso",
           "adamo", "aei-adam", "aei-adamo")  # fmt: skip
RAW = {"train_acc", "test_acc", "ntk_cond", "jac_sv_std", "iso_strength", "lambda", "R_iso(W)", "dormant_0.025"}


def _frame(methods=METHODS, n_tasks=4, seeds=3):
    rng = np.random.default_rng(0)
    rows = []
    for m, method in enumerate(methods):
        for seed in range(seeds):
            for task in range(n_tasks):
                rows.append(dict(benchmark="random-label-digits", method=method, iso_strength=0.1 * (method == "adamo"),
                                 seed=seed, task=task, train_acc=min(1.0, 1.0 - 0.05 * task * (m % 3) + 0.01 * rng.standard_normal()),
                                 test_acc=np.nan, dead=0.1 * task, ntk_cond=10.0 ** (1 + task + 2 * seed)))  # fmt: skip
    return pd.DataFrame(rows)


def _texts(fig):
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    for leg in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        out += [t.get_text() for t in leg.get_texts()] + [leg.get_title().get_text()]
    return [t for t in out if t]


def _mean_lines(ax):
    """The labelled lines (one per method; per-seed lines carry no label)."""
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def _assert_legend_outside(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends
    for leg in legends:
        box = leg.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), (leg, ax.get_title())


def test_small_multiples_panels_labels_ticks_legend():
    df = _frame()
    fig = plots.small_multiples(df, ["train_acc", "ntk_cond"])
    assert [ax.get_title() for ax in fig.axes[:4]] == list(plots.FAMILIES)[:4]  # the families present (not the interventions)
    for ax in fig.axes:
        names = [ln.get_label() for ln in _mean_lines(ax)]
        assert names[-2:] == ["adam", "adamo"]  # the references in every panel, drawn last (on top)
        assert len(names) <= 5
        colours = [ln.get_color() for ln in _mean_lines(ax)]
        assert len(set(colours)) == len(colours)  # distinct within a panel
        ticks = ax.get_xticks()
        np.testing.assert_array_equal(ticks, [1, 2, 3, 4])
    assert [ax.get_xlabel() for ax in fig.axes] == [""] * 4 + ["task"] * 4  # shared x: labelled once, at the bottom
    assert fig.axes[0].get_ylabel() == "train accuracy"
    assert fig.axes[4].get_yscale() == "log" and fig.axes[4].get_ylabel() == "eNTK condition number\n$\\kappa$"  # wrapped, math kept whole
    assert not RAW & set(_texts(fig))
    assert all("_" not in t for t in _texts(fig) if "$" not in t)
    # a shared accuracy row shows every panel's data: the y range covers the lowest line of the row
    lowest = min(ln.get_ydata().min() for ax in fig.axes[:4] for ln in _mean_lines(ax))
    assert fig.axes[0].get_ylim()[0] <= lowest and fig.axes[0].get_ylim()[0] >= -0.03
    _assert_legend_outside(fig)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["adam", "adamo"] and sorted(legend) == sorted(METHODS)
    plt.close(fig)


@pytest.mark.parametrize("n_tasks, expected", [(4, [1, 2, 3, 4]), (10, list(range(1, 11))), (20, [1, 5, 10, 15, 20]), (16, [1, 4, 6, 8, 10, 12, 14, 16]),
                                               (40, [1, 5, 10, 15, 20, 25, 30, 35, 40])])  # fmt: skip
def test_task_ticks_are_integers_from_one(n_tasks, expected):
    fig, ax = plt.subplots()
    plots.lineplot(ax, _frame(("adam", "adamo"), n_tasks=n_tasks, seeds=2), "train_acc")
    ticks = ax.get_xticks()
    assert list(ticks) == expected and all(float(t).is_integer() for t in ticks)
    assert ax.get_xlim()[0] > 0 and ax.get_xlim()[1] < n_tasks + 1
    line = _mean_lines(ax)[0]
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, n_tasks + 1))  # task 0 of the frame is task 1
    plt.close(fig)


def test_fixed_colours_per_method_across_calls_and_processes():
    styles = {m: plots.method_style(m) for m in METHODS}
    # every method has its own (colour, line style) pair, and the same pair in every figure
    assert len({(s["color"], s["linestyle"]) for s in styles.values()}) == len(METHODS)
    df = _frame()
    seen = {}
    for order in (list(METHODS), list(reversed(METHODS)), ["redo", "adam"]):
        fig, ax = plt.subplots()
        plots.lineplot(ax, df, "train_acc", order=order)
        for ln in _mean_lines(ax):
            assert matplotlib.colors.to_hex(ln.get_color()) == styles[ln.get_label()]["color"].lower()
            seen.setdefault(ln.get_label(), ln.get_color())
            assert seen[ln.get_label()] == ln.get_color()
        plt.close(fig)
    # the colour-blind-safe palette only
    assert {s["color"] for s in styles.values()} <= set(plots.OKABE_ITO.values())
    # an unknown (user-registered) name: a palette colour, the same in another process
    mine = plots.method_style("my-registered-method")
    assert mine["color"] in plots.OKABE_ITO.values() and plots.family("my-registered-method") == "other"
    code = "from isoplast_lite.plots import method_style; print(method_style('my-registered-method')['color'])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()  # fmt: skip
    assert other == mine["color"]
    assert plots.method_palette(["adam", "my-registered-method"]) == {"adam": styles["adam"]["color"], "my-registered-method": mine["color"]}


def test_log_measures_use_the_geometric_mean_and_its_interval():
    df = _frame(("adam",), n_tasks=2, seeds=3)  # ntk_cond per seed: 10^(1+task), 10^(3+task), 10^(5+task)
    fig, ax = plt.subplots()
    plots.lineplot(ax, df, "ntk_cond")
    assert ax.get_yscale() == "log"
    line = _mean_lines(ax)[0]
    for task, y in zip(range(2), line.get_ydata()):
        values = df[df.task == task].ntk_cond.to_numpy()
        geo = 10 ** np.log10(values).mean()
        assert y == pytest.approx(geo) and y < values.mean() / 10  # not the arithmetic mean (ruled by the largest seed)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    lo, _, hi = mean_ci(np.log10(df[df.task == 0].ntk_cond))
    assert band.min() == pytest.approx(10**lo) and band.max() == pytest.approx(10 ** mean_ci(np.log10(df[df.task == 1].ntk_cond))[2])
    assert hi > lo
    summary = plots.seed_summary(df, "train_acc")
    for _, row in summary.iterrows():
        lo, mean, hi = mean_ci(df[df.task == row.task - 1].train_acc)
        assert (row.lo, row.center, row.hi) == pytest.approx((lo, mean, hi))  # the project's one convention
    plt.close(fig)


def test_individual_seeds_for_bimodal_sets():
    acc = {0: 0.13, 1: 0.13, 2: 0.66, 3: 0.70}  # Adam's long-run seeds at the last task
    df = pd.DataFrame([dict(method=m, seed=s, task=t, train_acc=(a if m == "adam" else 1.0)) for m in ("adam", "adamo")
                       for s, a in acc.items() for t in range(3)])  # fmt: skip
    fig, ax = plt.subplots()
    plots.lineplot(ax, df, "train_acc", seeds=["adam"])
    thin = [ln for ln in ax.get_lines() if ln.get_label().startswith("_")]
    assert sorted(ln.get_ydata()[-1] for ln in thin) == sorted(acc.values())
    assert all(ln.get_color() == plots.method_style("adam")["color"] for ln in thin)
    assert len(ax.collections) == 1  # a band only for AdamO, whose seeds agree
    plt.close(fig)


def test_legend_outside_an_axis_and_theme():
    plots.set_theme()
    assert matplotlib.rcParams["figure.constrained_layout.use"]
    fig, ax = plt.subplots()
    plots.lineplot(ax, _frame(("adam", "adamo", "redo")), "dead")
    leg = plots.legend_outside(ax, title="method")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    assert leg.get_window_extent(r).x0 >= ax.get_window_extent(r).x1
    assert ax.get_ylabel() == "dead units (fraction)"
    matplotlib.rcdefaults()
    plt.close(fig)


def test_plot_results_words_tasks_from_one_and_seed_means():
    df = _frame(("adam", "adamo"))
    fig = plots.plot_results(df, measures=["dead", "ntk_cond"])
    assert [ax.get_title() for ax in fig.axes] == ["train accuracy", "dead units (fraction)", r"eNTK condition number $\kappa$"]
    assert fig.axes[2].get_yscale() == "log"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["adam", "adamo"]
    line = _mean_lines(fig.axes[0])[0]
    np.testing.assert_allclose(line.get_ydata(), df[df.method == "adam"].groupby("task").train_acc.mean().to_numpy())
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
    _assert_legend_outside(fig)
    plt.close(fig)


def test_labels_are_words():
    for column in ("train_acc", "test_acc", "iso_strength", "lambda", "ntk_cond", "jac_sv_std", "dormant_0.025"):
        assert plots.label(column) != column and "_" not in plots.label(column).replace(r"_{", "")
    assert plots.label("some_new_column") == "some new column"


def test_bad_input():
    with pytest.raises(TypeError, match="df"):
        plots.plot_results([1, 2])
    with pytest.raises(ValueError, match="seed"):
        plots.plot_results(_frame().drop(columns=["seed"]))
    with pytest.raises(ValueError, match="nope"):
        plots.plot_results(_frame(), measures=["nope"])
    with pytest.raises(ValueError, match="families"):
        plots.small_multiples(_frame(), "dead", families=["nope"])
    with pytest.raises(TypeError, match="method"):
        plots.family(3)
    with pytest.raises(ValueError, match="numeric"):
        plots.seed_summary(_frame().assign(dead="x"), "dead")
    with pytest.warns(UserWarning, match="no logarithm"):
        plots.seed_summary(_frame().assign(ntk_cond=0.0), "ntk_cond")


@pytest.mark.parametrize("damage, needle", [
    (lambda df: df.assign(train_acc=df.train_acc - 2.0), "not a fraction"),
    (lambda df: df.assign(ntk_cond=-df.ntk_cond), "allowed: values >= 0"),
    (lambda df: pd.concat([df, df.iloc[:3]]), "duplicated rows"),
    (lambda df: df.assign(diverged="maybe"), "column diverged holds 'maybe'"),
])  # fmt: skip
def test_plot_results_rejects_impossible_values_duplicates_and_non_booleans(damage, needle):
    df = _frame(("adam", "adamo")).assign(diverged=False)
    plt.close(plots.plot_results(df, measures=["dead", "ntk_cond"]))  # the frame itself is fine
    with pytest.raises(ValueError, match=needle):
        plots.plot_results(damage(df), measures=["dead", "ntk_cond"])
