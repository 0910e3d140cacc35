"""plots.plot_results: panels, the CI aggregation over seeds, and input errors."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from isoplast_lite.plots import plot_results  # noqa: E402


def _frame():
    rng = np.random.default_rng(0)
    rows = []
    for method, iso in (("adam", 0.0), ("adamo", 0.1)):
        for seed in range(3):
            for task in range(4):
                rows.append(dict(benchmark="random-label-digits", method=method, iso_strength=iso, lr=1e-3, seed=seed, task=task,
                                 train_acc=1.0 - 0.1 * task * (method == "adam") + 0.01 * rng.standard_normal(),
                                 test_acc=np.nan, dead=0.1 * task, ntk_cond=10.0 ** (1 + task)))  # fmt: skip
    return pd.DataFrame(rows)


def test_one_panel_per_quantity_and_lines_are_seed_means():
    df = _frame()
    fig = plot_results(df, measures=["dead", "ntk_cond"])
    assert [ax.get_title() for ax in fig.axes] == ["train_acc", "dead", "ntk_cond"]  # test_acc all NaN -> train_acc
    assert fig.axes[2].get_yscale() == "log"
    assert all(ax.get_legend() is None for ax in fig.axes)  # one figure legend, beside the panels
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["adam", "adamo (lambda=0.1)"]
    colors = [h.get_color() for h in fig.legends[0].legend_handles]
    assert colors[0] != colors[1]
    line = fig.axes[0].get_lines()[0]  # adam's mean line
    expected = df[df.method == "adam"].groupby("task").train_acc.mean().to_numpy()
    np.testing.assert_allclose(line.get_ydata(), expected)
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])  # tasks shown 1-based


def test_bad_input():
    with pytest.raises(TypeError, match="df"):
        plot_results([1, 2])
    with pytest.raises(ValueError, match="seed"):
        plot_results(_frame().drop(columns=["seed"]))
    with pytest.raises(ValueError, match="nope"):
        plot_results(_frame(), measures=["nope"])
