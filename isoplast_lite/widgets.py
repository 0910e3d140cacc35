"""Penalty-strength widgets for the book: a live ipywidgets panel and an offline Altair chart.

Both read a *lambda sweep*: the runner's tidy DataFrame (one row per method x seed x task, see
:mod:`isoplast_lite.run`) for several values of ``iso_strength`` (lambda). Rows with
``iso_strength == 0`` are the reference (Adam) and are drawn as a dashed baseline.

* :func:`summarize_sweep` (pure): mean and Student-t confidence interval over seeds for every
  (lambda, task).
* :func:`lambda_chart`: an Altair chart of the summary with a slider bound to log10(lambda)
  (``alt.param`` + ``alt.binding_range``). The slider is part of the Vega-Lite spec, so it works
  in static HTML without a kernel.
* :func:`range_param`: a slider over the precomputed frames of an explorable (a training step,
  a task); the chart filters its data on it (chapters 2 and 4).
* :func:`method_toggle_chart`: many methods' seed means with a clickable legend that keeps the
  chosen methods and fades the others (chapters 6 and 7).
* :class:`OfflineChart` / :func:`offline_html`: HTML for a chart that carries the Vega, Vega-Lite
  and vega-embed JavaScript *inline* (the files vendored in ``isoplast_lite/_vendor``), so the
  chart renders with no network (book pages served from disk, air-gapped machines). Pages that
  load RequireJS (ipywidgets) are handled: ``define`` is hidden while the UMD bundles run.
* :class:`LambdaPanel` (:func:`lambda_panel`): an ``ipywidgets`` panel with a log slider for
  lambda that re-plots from the sweep instantly (no training), and a button that re-runs a small
  configuration at the selected lambda through a caller-supplied function (in the book, the
  runner) and overlays the result.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"iso_strength": [0.0, 0.0, 0.1, 0.1], "seed": [0, 1, 0, 1],
    ...                    "task": [0, 0, 0, 0], "train_acc": [0.5, 0.7, 0.9, 1.0]})
    >>> s = summarize_sweep(df, "train_acc")
    >>> s[["iso_strength", "task", "mean", "n"]].to_dict("records")
    [{'iso_strength': 0.0, 'task': 0, 'mean': 0.6, 'n': 2}, {'iso_strength': 0.1, 'task': 0, 'mean': 0.95, 'n': 2}]
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from ._validation import check_probability

__all__ = [
    "VENDORED_JS",
    "summarize_sweep",
    "lambda_grid",
    "lambda_chart",
    "range_param",
    "method_toggle_chart",
    "offline_html",
    "OfflineChart",
    "LambdaPanel",
    "lambda_panel",
    "runner_rerun",
]

_VENDOR = Path(__file__).resolve().parent / "_vendor"
#: The vendored bundles, in load order (versions match Altair 6's ``VEGA_VERSION`` etc.).
VENDORED_JS = ("vega@6.4.0.min.js", "vega-lite@6.4.1.min.js", "vega-embed@7.3.0.min.js")


def _check_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"df is missing the column(s) {missing}; it has {list(df.columns)}")
    if len(df) == 0:
        raise ValueError("df must have at least one row, got an empty DataFrame")


def summarize_sweep(
    df: pd.DataFrame,
    metric: str,
    *,
    strength: str = "iso_strength",
    x: str = "task",
    seed: str = "seed",
    level: float = 0.95,
) -> pd.DataFrame:
    """Mean and Student-t confidence interval of ``metric`` over seeds, per (lambda, x).

    The interval is :func:`isoplast_lite.stats.mean_ci` (the project's one convention:
    ``mean -/+ t_{(1+level)/2, n-1} * sd / sqrt(n)`` over the ``n`` seeds; with one seed it
    collapses to the mean).

    Args:
        df: tidy runner output with columns ``strength``, ``x``, ``seed`` and ``metric``.
        metric: the column to summarize (e.g. ``"train_acc"``).
        strength: the lambda column. x: the x-axis column (usually the task index).
        seed: the seed column. level: confidence level in ``(0, 1)``.

    Returns:
        A DataFrame with columns ``strength, x, mean, lo, hi, n`` sorted by ``(strength, x)``.

    Example:
        >>> df = pd.DataFrame({"iso_strength": [0.1] * 3, "seed": [0, 1, 2], "task": [0] * 3,
        ...                    "acc": [1.0, 2.0, 3.0]})
        >>> row = summarize_sweep(df, "acc").iloc[0]
        >>> [round(float(row[c]), 3) for c in ("mean", "lo", "hi")]
        [2.0, -0.484, 4.484]
    """
    from .stats import mean_ci

    _check_columns(df, [strength, x, seed, metric])
    level = check_probability("level", level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rows = []
    for (s, xv), values in df.groupby([strength, x])[metric]:
        values = values.dropna()
        lo, mean, hi = mean_ci(values, level) if len(values) else (np.nan, np.nan, np.nan)  # the project's one convention
        rows.append({strength: s, x: xv, "mean": mean, "lo": lo, "hi": hi, "n": int(len(values))})
    out = pd.DataFrame(rows, columns=[strength, x, "mean", "lo", "hi", "n"])
    return out[[strength, x, "mean", "lo", "hi", "n"]].sort_values([strength, x]).reset_index(drop=True)


def lambda_grid(values: Sequence[float]) -> np.ndarray:
    """The positive lambdas of a sweep as sorted log10 values, checked to be evenly spaced.

    A static slider steps through ``min, min + step, ..., max`` in log10 space, so the positive
    lambdas must form a geometric grid (e.g. ``1e-3, 1e-2, 1e-1, 1``).

    Returns:
        The sorted log10 values (rounded to 6 decimals).

    Raises:
        ValueError: if there is no positive lambda or the grid is not geometric.

    Example:
        >>> lambda_grid([0.0, 1.0, 0.01, 0.1]).tolist()
        [-2.0, -1.0, 0.0]
    """
    vals = np.unique(np.asarray(values, dtype=float))
    pos = vals[vals > 0]
    if pos.size == 0:
        raise ValueError(f"values must contain at least one positive lambda, got {vals.tolist()}")
    logs = np.round(np.log10(pos), 6)
    if logs.size > 2:
        steps = np.diff(logs)
        if not np.allclose(steps, steps[0], rtol=0, atol=1e-6):
            raise ValueError(f"the positive lambdas must be evenly spaced in log10, got {pos.tolist()}")
    return logs


def _lambda_label(lam: float) -> str:
    return f"λ = {lam:g}"


def _x_values(values, x: str):
    """Tasks are shown numbered from 1 (the runner counts them from 0); other axes as they are."""
    return values + 1 if x == "task" else values


def _x_title(x: str) -> str:
    from .plots import label

    return label(x)


def lambda_chart(
    df: pd.DataFrame,
    metrics: Sequence[str] = ("train_acc",),
    *,
    strength: str = "iso_strength",
    x: str = "task",
    seed: str = "seed",
    titles: Optional[Sequence[str]] = None,
    initial: Optional[float] = None,
    width: int = 420,
    height: int = 160,
):
    """An Altair chart of a lambda sweep with a slider for log10(lambda) that needs no kernel.

    One panel per metric (stacked vertically), all driven by the same slider: the line and its
    confidence band show the selected lambda, the dashed grey line is the ``lambda = 0``
    reference when the sweep has one. Tasks are drawn numbered from 1 with integer ticks
    (``x="task"``; the runner counts them from 0); axis titles are words
    (:func:`isoplast_lite.plots.label`), the selected value reads "λ = 0.1". The slider is an ``alt.param`` bound to
    ``alt.binding_range`` over the log10 grid of :func:`lambda_grid`; the charts filter on it.

    Args:
        df: tidy sweep (see :func:`summarize_sweep`). metrics: columns to plot, one panel each.
        strength, x, seed: column names. titles: y-axis titles (default: the metric names).
        initial: lambda selected at load (default: the middle of the grid).
        width, height: size of each panel in pixels.

    Returns:
        An ``altair.VConcatChart``.

    Example:
        >>> df = pd.DataFrame({"iso_strength": [0.0, 0.01, 0.1] * 2, "seed": [0] * 6,
        ...                    "task": [0, 0, 0, 1, 1, 1], "train_acc": [1, 1, 1, .5, .8, .9]})
        >>> spec = lambda_chart(df).to_dict()
        >>> spec["params"][0]["bind"]["input"], spec["params"][0]["bind"]["step"]
        ('range', 1.0)
    """
    import altair as alt

    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ValueError("metrics must name at least one column, got []")
    _check_columns(df, [strength, x, seed, *metrics])
    titles = list(titles) if titles is not None else metrics
    if len(titles) != len(metrics):
        raise ValueError(f"titles must have one entry per metric ({len(metrics)}), got {len(titles)}")
    logs = lambda_grid(df[strength])
    step = float(np.round(logs[1] - logs[0], 6)) if logs.size > 1 else 1.0
    if initial is None:
        init_log = float(logs[len(logs) // 2])
    else:
        if not initial > 0:
            raise ValueError(f"initial must be a positive lambda of the sweep, got {initial}")
        init_log = float(np.round(math.log10(initial), 6))
        if not np.any(np.abs(logs - init_log) < 1e-6):
            raise ValueError(f"initial must be one of the swept lambdas {(10 ** logs).tolist()}, got {initial}")

    param = alt.param(
        name="log10_lambda",
        value=init_log,
        bind=alt.binding_range(min=float(logs[0]), max=float(logs[-1]), step=step, name="log₁₀ λ "),
    )
    selected = "abs(datum.log10_lambda - log10_lambda) < 1e-6"
    panels = []
    for metric, title in zip(metrics, titles):
        s = summarize_sweep(df, metric, strength=strength, x=x, seed=seed)
        s = s.rename(columns={strength: "lambda", x: "x"})
        s["x"] = _x_values(s["x"], x)
        ref = s[s["lambda"] == 0]
        s = s[s["lambda"] > 0].copy()
        integer_x = pd.api.types.is_integer_dtype(s["x"]) or x == "task"
        s["log10_lambda"] = np.round(np.log10(s["lambda"]), 6)
        s["label"] = [_lambda_label(v) for v in s["lambda"]]
        axis = alt.Axis(format="d", tickMinStep=1) if integer_x else alt.Axis()
        xenc = alt.X("x:Q", title=_x_title(x), axis=axis, scale=alt.Scale(nice=False) if x == "task" else alt.Undefined)
        yscale = alt.Scale(zero=False)
        base = alt.Chart(s).transform_filter(selected)
        layers = []
        if len(ref):
            layers.append(
                alt.Chart(ref.assign(label="λ = 0 (reference)"))
                .mark_line(strokeDash=[5, 3], color="gray")
                .encode(x=xenc, y=alt.Y("mean:Q", title=title, scale=yscale), tooltip=["label:N", "x:Q", "mean:Q"])
            )
        layers.append(base.mark_area(opacity=0.25).encode(x=xenc, y=alt.Y("lo:Q", title=title, scale=yscale), y2="hi:Q"))
        layers.append(
            base.mark_line(point=True).encode(
                x=xenc, y=alt.Y("mean:Q", title=title, scale=yscale), tooltip=["label:N", "x:Q", "mean:Q", "lo:Q", "hi:Q", "n:Q"]
            )
        )
        layers.append(
            base.transform_aggregate(label="min(label)")
            .mark_text(align="left", baseline="top", fontWeight="bold")
            .encode(x=alt.value(6), y=alt.value(4), text="label:N")
        )
        panels.append(alt.layer(*layers).properties(width=width, height=height))
    return alt.vconcat(*panels).add_params(param)


def range_param(name: str, values: Sequence[float], *, label: str, initial: Optional[float] = None):
    """An ``alt.param`` bound to a range slider over evenly spaced ``values`` (a static slider).

    The frames of a precomputed explorable (a training step, a task) are rows of the chart's
    data with a column ``name``; the chart filters on ``datum[name] == param`` and the slider,
    part of the Vega-Lite spec, steps through ``values`` in the page without a kernel.

    Args:
        name: the parameter's name (a valid JavaScript identifier; also the data column).
        values: the frame values, evenly spaced (e.g. steps ``0, 10, ..., 200`` or tasks ``1..10``).
        label: the words shown beside the slider. initial: the value at load (default: the first).

    Returns:
        An ``altair.Parameter``.

    Example:
        >>> p = range_param("task", [1, 2, 3], label="task ")
        >>> p.param.bind.step, p.param.value
        (1.0, 1.0)
    """
    import altair as alt

    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be an identifier such as 'step', got {name!r}")
    vals = np.unique(np.asarray(values, dtype=float))
    if vals.size == 0:
        raise ValueError("values must hold at least one frame value, got none")
    step = float(vals[1] - vals[0]) if vals.size > 1 else 1.0
    if vals.size > 2 and not np.allclose(np.diff(vals), step, rtol=0, atol=1e-9 * max(1.0, abs(step))):
        raise ValueError(f"values must be evenly spaced, got {vals.tolist()}")
    value = float(vals[0] if initial is None else initial)
    if not np.any(np.isclose(vals, value)):
        raise ValueError(f"initial must be one of the values {vals.tolist()}, got {initial}")
    return alt.param(name=name, value=value, bind=alt.binding_range(min=float(vals[0]), max=float(vals[-1]), step=step, name=label))


_GREEK = {r"\kappa": "κ", r"\lambda": "λ", r"\tau": "τ", r"\sigma": "σ", r"\theta": "θ", r"\eta": "η",
          r"\max": "max", r"\min": "min", r"\|": "‖", r"\mathrm": "", "{": "", "}": "", "$": ""}


def _plain(text: str) -> str:
    """A matplotlib math label as plain Unicode for Vega (which does not typeset TeX)."""
    for tex, uni in _GREEK.items():
        text = text.replace(tex, uni)
    return text


def method_toggle_chart(
    df: pd.DataFrame,
    metrics: Sequence[str] = ("train_acc",),
    *,
    x: str = "task",
    methods: Optional[Sequence[str]] = None,
    names: Optional[dict] = None,
    width: int = 180,
    height: int = 170,
):
    """Seed means of many methods in side-by-side panels, with a clickable legend (no kernel).

    One panel per metric; one line per method in its fixed colour and dash of
    :func:`isoplast_lite.plots.method_style`, aggregated over seeds by
    :func:`isoplast_lite.plots.seed_summary` (the geometric mean for the measures of
    ``plots.LOG_MEASURES``, drawn on a log axis). Clicking a method in the legend keeps it
    (and shift-click adds more) at full opacity and fades the others; a double click
    (or a click on the empty plot) shows all again. The legend is bound to an
    ``alt.selection_point(fields=["method"], bind="legend")`` named ``methods``; it sits above
    the panels, so that three panels and the legend fit the width of a book page (~700 px).

    Args:
        df: tidy runner rows with ``method``, ``seed``, ``x`` and every metric.
        metrics: the measures, one panel each. x: the horizontal column (tasks drawn from 1).
        methods: the methods to draw, in legend order (default: all, by family).
        names: legend labels per method (default: the method names).
        width, height: size of each panel in pixels.

    Returns:
        An ``altair.HConcatChart``.

    Example:
        >>> d = pd.DataFrame({"method": ["adam", "adamo"] * 2, "seed": 0, "task": [0, 0, 1, 1],
        ...                   "train_acc": [0.5, 0.9, 0.4, 0.9]})
        >>> spec = method_toggle_chart(d).to_dict()
        >>> param = spec["params"][0]  # Altair lifts it to the top, naming the view it lives in
        >>> param["name"], param["bind"]
        ('methods', 'legend')
    """
    import altair as alt

    from . import plots

    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ValueError("metrics must name at least one column, got []")
    _check_columns(df, ["method", "seed", x, *metrics])
    present = list(dict.fromkeys(df["method"].astype(str)))
    if methods is None:
        order = [m for fam in plots.FAMILIES.values() for m in fam]
        methods = sorted(present, key=lambda m: (order.index(m) if m in order else len(order), m))
    else:
        methods = list(methods)
        missing = [m for m in methods if m not in present]
        if missing:
            raise ValueError(f"methods {missing} have no rows; df has {present}")
    names = {m: (names or {}).get(m, m) for m in methods}
    dash = {"-": [1, 0], "--": [6, 3], "-.": [6, 2, 1, 2], ":": [1, 2]}
    styles = {m: plots.method_style(m) for m in methods}
    legend = [names[m] for m in methods]
    colour = alt.Color("label:N", title="method (click)",
                       scale=alt.Scale(domain=legend, range=[styles[m]["color"] for m in methods]),
                       legend=alt.Legend(orient="top", columns=6, symbolType="stroke"))  # fmt: skip
    stroke = alt.StrokeDash("label:N", scale=alt.Scale(domain=legend, range=[dash[styles[m]["linestyle"]] for m in methods]),
                            legend=None)  # fmt: skip
    pick = alt.selection_point(name="methods", fields=["label"], bind="legend")
    panels = []
    for metric in metrics:
        log = metric in plots.LOG_MEASURES
        s = plots.seed_summary(df[df["method"].isin(methods)], metric, x=x, log=log)
        s["label"] = s["method"].map(names)
        axis = alt.Axis(format="d", tickMinStep=1) if x == "task" else alt.Axis()
        scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
        yaxis = alt.Axis()
        if log and len(s):  # one tick per decade (Vega's log ticks would draw every 2, 3, ..., 9 too)
            lo, hi = np.floor(np.log10(s["center"].min())), np.ceil(np.log10(s["center"].max()))
            yaxis = alt.Axis(values=[float(10.0**k) for k in np.arange(lo, hi + 1)], format=".0e")
        panels.append(
            alt.Chart(s, title=alt.Title(_plain(plots.label(metric)), subtitle="geometric mean over seeds" if log else "mean over seeds"))
            .mark_line(point=True, strokeWidth=2)
            .encode(
                x=alt.X(f"{x}:Q", title=plots.label(x), axis=axis),
                y=alt.Y("center:Q", title=None, scale=scale, axis=yaxis),
                color=colour, strokeDash=stroke,
                opacity=alt.condition(pick, alt.value(1.0), alt.value(0.12)),
                tooltip=["label:N", f"{x}:Q", alt.Tooltip("center:Q", format=".3g"), "n:Q"],
            )
            .properties(width=width, height=height)
        )
    panels[0] = panels[0].add_params(pick)  # defined once; the other panels' conditions refer to it
    return alt.hconcat(*panels)


@lru_cache(maxsize=1)
def _vendored_js() -> tuple:
    return tuple((_VENDOR / name).read_text(encoding="utf-8") for name in VENDORED_JS)


def offline_html(chart, *, element_id: Optional[str] = None, include_js: bool = True) -> str:
    """HTML that renders ``chart`` with the vendored Vega JavaScript inlined (no network).

    Args:
        chart: an Altair chart (anything with ``to_dict()``) or a Vega-Lite spec ``dict``.
        element_id: id of the ``<div>`` (default: derived from a hash of the spec, so the output
            is deterministic).
        include_js: inline the three bundles (about 830 kB). Set ``False`` for further charts on
            a page that already has one with ``include_js=True`` above it.

    Returns:
        A self-contained HTML fragment: a ``<div>``, the bundles, and a ``vegaEmbed`` call that
        renders SVG, appends the Vega view to ``window.isoplastVegaViews`` and reports failures
        with ``console.error``.

    Example:
        >>> frag = offline_html({"mark": "point", "data": {"values": [{"a": 1}]},
        ...                      "encoding": {"x": {"field": "a", "type": "quantitative"}}})
        >>> "vegaEmbed(" in frag and "cdn.jsdelivr" not in frag
        True
    """
    spec = chart if isinstance(chart, dict) else chart.to_dict()
    if not isinstance(spec, dict):
        raise TypeError(f"chart must be an Altair chart or a dict spec, got {type(chart).__name__}")
    payload = json.dumps(spec, sort_keys=True, default=str)
    if element_id is None:
        element_id = "isoplast-vega-" + hashlib.sha256(payload.encode()).hexdigest()[:12]
    safe_id = html.escape(element_id, quote=True)
    # "</" inside a <script> would end it early; "<\/" is the same string to JavaScript.
    payload = payload.replace("</", "<\\/")
    parts = [f'<div id="{safe_id}" class="isoplast-vega"></div>']
    if include_js:
        # UMD bundles register as anonymous AMD modules when RequireJS is on the page
        # (ipywidgets pages, classic Jupyter): hide `define` while they run, then restore it.
        parts.append("<script>window.__isoplastDefine = window.define; window.define = undefined;</script>")
        parts.extend(f"<script>{js}</script>" for js in _vendored_js())
        parts.append("<script>window.define = window.__isoplastDefine;</script>")
    parts.append(
        "<script>(function () {"
        f"var spec = {payload};"
        f'vegaEmbed("#{safe_id}", spec, {{"renderer": "svg", "actions": false, "mode": "vega-lite"}})'
        # keep the Vega views reachable (browser tests read their signals and data)
        ".then(function (res) { (window.isoplastVegaViews = window.isoplastVegaViews || []).push(res.view); })"
        '.catch(function (err) { console.error("isoplast chart:", err); });'
        "})();</script>"
    )
    return "\n".join(parts)


class OfflineChart:
    """Display wrapper: shows an Altair chart through :func:`offline_html` in Jupyter and books.

    Example:
        >>> import altair as alt
        >>> c = OfflineChart(alt.Chart(pd.DataFrame({"a": [1]})).mark_point().encode(x="a:Q"))
        >>> c._repr_html_().count("<script>") >= 4
        True
    """

    def __init__(self, chart, *, include_js: bool = True):
        self.chart = chart
        self.include_js = include_js

    def _repr_html_(self) -> str:
        return offline_html(self.chart, include_js=self.include_js)


class LambdaPanel:
    """Live lambda panel (ipywidgets): log slider, instant re-plot from a sweep, re-run button.

    Build it with :func:`lambda_panel`; display ``panel.widget``.

    Attributes:
        slider: ``FloatLogSlider`` over the swept lambdas (snaps to the nearest swept value).
        button: re-runs ``rerun(lambda)`` and overlays its result (hidden when ``rerun`` is None).
        output: ``Output`` widget holding the figure. status: ``Label`` with what is shown.
        figure: the last matplotlib figure drawn. selected: the lambda currently shown.
        last_rerun: the DataFrame returned by the last re-run (or None).
    """

    def __init__(self, df, metric, *, strength="iso_strength", x="task", seed="seed", rerun=None, title=None):
        import ipywidgets as widgets

        _check_columns(df, [strength, x, seed, metric])
        if rerun is not None and not callable(rerun):
            raise TypeError(f"rerun must be a callable lambda -> DataFrame or None, got {type(rerun).__name__}")
        self.df, self.metric, self.strength, self.x, self.seed = df, metric, strength, x, seed
        self.rerun, self.title = rerun, title or metric
        self.summary = summarize_sweep(df, metric, strength=strength, x=x, seed=seed)
        self.logs = lambda_grid(df[strength])
        step = float(self.logs[1] - self.logs[0]) if self.logs.size > 1 else 1.0
        self.slider = widgets.FloatLogSlider(
            value=10 ** float(self.logs[len(self.logs) // 2]),
            base=10,
            min=float(self.logs[0]),
            max=float(self.logs[-1]),
            step=step,
            description="λ",
            readout_format=".0e",
            continuous_update=False,
        )
        self.button = widgets.Button(description="re-run this lambda", icon="play")
        self.button.layout.display = None if rerun is not None else "none"
        self.status = widgets.Label()
        self.output = widgets.Output()
        self.figure = None
        self.selected = None
        self.last_rerun = None
        self.slider.observe(lambda change: self.redraw(), names="value")
        self.button.on_click(lambda _: self.run_selected())
        self.widget = widgets.VBox([widgets.HBox([self.slider, self.button]), self.status, self.output])
        self.redraw()

    def nearest_lambda(self, value: float) -> float:
        """The swept lambda closest to ``value`` in log10."""
        if not value > 0:
            raise ValueError(f"value must be a positive lambda, got {value}")
        i = int(np.argmin(np.abs(self.logs - math.log10(value))))
        return float(10 ** self.logs[i])

    def selected_summary(self) -> pd.DataFrame:
        """Rows of the summary for the lambda shown (what the solid line plots)."""
        logs = np.round(np.log10(self.summary[self.strength].where(self.summary[self.strength] > 0)), 6)
        return self.summary[np.abs(logs - round(math.log10(self.selected), 6)) < 1e-6]

    def redraw(self, extra: Optional[pd.DataFrame] = None) -> None:
        """Re-plot from the sweep for the slider's lambda (and ``extra``, a re-run's result)."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.selected = self.nearest_lambda(self.slider.value)
        sel = self.selected_summary()
        ref = self.summary[self.summary[self.strength] == 0]
        fig, ax = plt.subplots(figsize=(6, 3))
        xs = lambda frame: _x_values(frame[self.x], self.x)  # noqa: E731  (tasks from 1)
        if len(ref):
            ax.plot(xs(ref), ref["mean"], "--", color="gray", label=r"$\lambda = 0$ (reference)")
        ax.fill_between(xs(sel), sel["lo"], sel["hi"], alpha=0.25)
        ax.plot(xs(sel), sel["mean"], "o-", label=rf"$\lambda = {self.selected:g}$ (precomputed)")
        if extra is not None:
            rs = summarize_sweep(extra, self.metric, strength=self.strength, x=self.x, seed=self.seed)
            ax.plot(xs(rs), rs["mean"], "s:", color="black", label=rf"$\lambda = {self.selected:g}$ (re-run now)")
        if self.x == "task":
            from .plots import task_axis

            task_axis(ax, int(self.summary[self.x].max()) + 1)
        else:
            ax.set_xlabel(_x_title(self.x))
        ax.set_ylabel(self.title)
        ax.legend(fontsize=8)
        if fig.get_layout_engine() is None:  # the book's theme lays figures out (constrained layout)
            fig.tight_layout()  # already; a second engine would only warn on stderr
        self.figure = fig
        self.status.value = f"showing λ = {self.selected:g}, mean over {int(sel['n'].max())} seed(s)"
        with self.output:
            self.output.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    def run_selected(self) -> pd.DataFrame:
        """Call ``rerun(selected lambda)``, store and overlay its DataFrame, and return it."""
        if self.rerun is None:
            raise RuntimeError("this panel has no rerun function; pass rerun= to lambda_panel")
        lam = self.nearest_lambda(self.slider.value)
        self.status.value = f"re-running λ = {lam:g} ..."
        result = self.rerun(lam)
        _check_columns(result, [self.strength, self.x, self.seed, self.metric])
        self.last_rerun = result
        self.redraw(extra=result)
        return result


def lambda_panel(
    df: pd.DataFrame,
    metric: str = "train_acc",
    *,
    strength: str = "iso_strength",
    x: str = "task",
    seed: str = "seed",
    rerun: Optional[Callable[[float], pd.DataFrame]] = None,
    title: Optional[str] = None,
) -> LambdaPanel:
    """Build the live lambda panel over a precomputed sweep.

    Args:
        df: tidy sweep (see :func:`summarize_sweep`); its positive lambdas must form a geometric
            grid (:func:`lambda_grid`).
        metric: the column plotted. strength, x, seed: column names.
        rerun: ``lambda -> DataFrame`` with the same columns, called by the button (e.g. a small
            runner configuration that takes a few seconds); ``None`` hides the button.
        title: y-axis label.

    Returns:
        A :class:`LambdaPanel`; display ``panel.widget``.
    """
    return LambdaPanel(df, metric, strength=strength, x=x, seed=seed, rerun=rerun, title=title)


def runner_rerun(
    benchmark: str,
    *,
    method: str = "adamo",
    reference_method: str = "adam",
    cache_dir=None,
    **config,
) -> Callable[[float], pd.DataFrame]:
    """A ``rerun`` function for :func:`lambda_panel` that trains a small config with the runner.

    Args:
        benchmark: runner benchmark name (e.g. ``"random-label-digits"``).
        method: the method run for ``lambda > 0`` (an iso method such as ``"adamo"``).
        reference_method: the method run for ``lambda == 0``.
        cache_dir: passed to :func:`isoplast_lite.run.run` (``None``: the default cache, so a
            second click on the same lambda returns at once; ``False``: no cache).
        **config: the other :class:`isoplast_lite.run.Config` fields (seeds, n_tasks, width, ...).

    Returns:
        ``rerun(lam) -> DataFrame``: the runner's tidy rows with the method's settings as
        columns (:func:`isoplast_lite.results.expand_settings`); the reference rows
        (``lam == 0``) get ``iso_strength = 0``.

    Example:
        >>> rerun = runner_rerun("random-label-digits", seeds=1, n_tasks=1, steps_per_task=2,
        ...                      width=8, depth=1, n_train=8, probe_size=2, cache_dir=False)
        >>> df = rerun(0.1)
        >>> df.method.tolist(), df.iso_strength.tolist()
        (['adamo'], [0.1])
    """
    from .results import expand_settings
    from .run import Config, run

    Config(benchmark, method, **config)  # validate the fields now, not at the first click

    def rerun(lam: float) -> pd.DataFrame:
        if lam > 0:
            cfg = Config(benchmark, method, settings={"iso_strength": float(lam)}, **config)
            return expand_settings(run(cfg, cache_dir=cache_dir, progress=False).rows)
        cfg = Config(benchmark, reference_method, **config)
        return expand_settings(run(cfg, cache_dir=cache_dir, progress=False).rows).assign(iso_strength=0.0)

    return rerun
