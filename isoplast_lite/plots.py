"""Figures for the book and the CLI: one theme, fixed method colours, small multiples.

Every figure of the book goes through these helpers, so the same method has the same colour,
line style and marker in every chapter, tasks are numbered from 1 with integer ticks, labels are
words (never column names), legends sit outside the data, and seeds are aggregated by the
project's one interval convention (:func:`isoplast_lite.stats.mean_ci`).

* :func:`set_theme`: the book's seaborn theme (call once per chapter).
* :func:`method_style` / :func:`method_palette`: fixed colour, line style and marker per method;
  colours and :data:`FAMILIES` (the groups) come from each method's class (``Method.colour``,
  ``Method.family``), so a user-registered method declares its own; one that declares no
  colour gets a colour from a hash of its name, the same in every process.
* :func:`method_order`: the book's order of methods (references, then family by family).
* :func:`label`: the words or math for a column name (``"test_acc"`` -> ``"test accuracy"``).
* :func:`seed_summary`: per group and x, the mean over seeds and its interval; on log measures
  the geometric mean (the interval of the mean of log10, mapped back).
* :func:`lineplot`: one axis, one line per method with its interval band, or every seed.
* :func:`small_multiples`: one panel per method family, with Adam and AdamO in each panel.
* :func:`task_axis`, :func:`legend_outside`: integer task ticks from 1; a legend beside the axes.
* :func:`plot_results`: the CLI's overview of a result frame (``python -m isoplast_lite plot``).

Example:
    >>> import pandas as pd
    >>> rows = [dict(method=m, seed=s, task=t, train_acc=0.9, ntk_cond=10.0 ** (t + s))
    ...         for m in ("adam", "adamo", "redo") for s in range(2) for t in range(3)]
    >>> fig = small_multiples(pd.DataFrame(rows), "train_acc")
    >>> [ax.get_title() for ax in fig.axes]
    ['resets']
    >>> method_style("adamo")["color"] == method_style("adamo")["color"]
    True
"""

from __future__ import annotations

import math
import warnings
import zlib
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .stats import mean_ci

__all__ = [
    "set_theme", "FAMILIES", "REFERENCES", "LABELS", "LOG_MEASURES", "FRACTIONS", "DEFAULT_MEASURES",
    "family", "method_style", "method_palette", "method_order", "label", "seed_summary", "lineplot",
    "small_multiples", "task_axis", "legend_outside", "run_labels", "plot_results",
]  # fmt: skip

#: Okabe & Ito (2008) colour-blind-safe palette (black first).
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
}  # fmt: skip

#: families that get no panel of their own: "other" (undeclared) and the fresh-network reference
_NOT_PANELS = ("other", "reference")


class _Families(Mapping):
    """``{family: (method, ...)}`` read from the registry at each use: every registered method
    (user-registered ones too) with its class's ``family``, families in the order of their first
    method's registration, methods in registration order; ``"other"`` and ``"reference"`` have no
    panel and are left out."""

    def _current(self) -> Dict[str, tuple]:
        from .methods import METHODS, method_info

        out: Dict[str, list] = {}
        for name in METHODS:
            fam = method_info(name).family
            if fam not in _NOT_PANELS:
                out.setdefault(fam, []).append(name)
        return {f: tuple(ms) for f, ms in out.items()}

    def __getitem__(self, key: str) -> tuple:
        return self._current()[key]

    def __iter__(self):
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __repr__(self) -> str:
        return repr(self._current())


#: Method families in panel order, from each method's declaration (``Method.family``, see
#: :mod:`isoplast_lite.methods`): "Adam-like", "resets", "regularizers", "the paper's", then our
#: interventions and any family a user-registered method declares.
FAMILIES: Mapping = _Families()
#: drawn in every panel of :func:`small_multiples` as references.
REFERENCES = ("adam", "adamo")

# A method's colour is declared on its class (``Method.colour``: unique within its family and
# never the references' black and vermillion, so a panel, one family + the references, has at
# most 5 distinct colours); the family sets line style and marker, so (colour, style) is unique
# over the whole book.
_FAMILY_STYLE = {
    "Adam-like": ("-", "o"), "resets": ("--", "s"), "regularizers": ("-.", "^"),
    "the paper's": ("-", "D"), "interventions": (":", "P"), "reference": ("--", "."), "other": (":", "v"),
}  # fmt: skip
_HASHED = ("orange", "sky", "green", "blue", "purple", "yellow")  # for names we do not know

#: column -> the words (or math) a figure shows.
LABELS = {
    "task": "task", "step": "step", "seed": "seed", "method": "method",
    "train_acc": "train accuracy", "train_acc_online": "train accuracy (online)",
    "test_acc": "test accuracy", "loss": "training loss", "loss_online": "training loss (online)",
    "dead": "dead units (fraction)", "dormant_0.025": r"dormant units, $\tau = 0.025$ (fraction)",
    "dormant_0.1": r"dormant units, $\tau = 0.1$ (fraction)", "feature_erank": "effective rank of the features",
    "weight_norm": r"weight norm $\|\theta\|$", "jac_sv_mean": r"mean singular value $\sigma$ of layer Jacobians",
    "jac_sv_std": r"std of singular values $\sigma$ of layer Jacobians", "jac_sv_ratio": r"$\sigma_{\max}/\sigma_{\min}$ of layer Jacobians",
    "ntk_cond": r"eNTK condition number $\kappa$", "ntk_progress": "expected-progress fraction",
    "iso_strength": r"isometry strength $\lambda$", "lambda": r"isometry strength $\lambda$", "lr": r"learning rate $\eta$",
    "R_iso": r"$R_{\mathrm{iso}}(W)$", "riso": r"$R_{\mathrm{iso}}(W)$",
}  # fmt: skip
#: measures drawn on a log axis and aggregated by the geometric mean.
LOG_MEASURES = ("ntk_cond", "jac_sv_ratio")
#: measures that lie in [0, 1] (accuracies and unit fractions): their axis never extends past [0, 1].
FRACTIONS = ("train_acc", "train_acc_online", "test_acc", "dead", "dormant_0.025", "dormant_0.1")
DEFAULT_MEASURES = ("dead", "dormant_0.025", "feature_erank", "jac_sv_std", "ntk_cond", "weight_norm")


def set_theme() -> None:
    """The book's seaborn theme: white grid, notebook context, constrained layout (no clipped labels).

    Example:
        >>> set_theme()
    """
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette=list(OKABE_ITO.values()))
    mpl.rcParams.update({"figure.constrained_layout.use": True, "axes.titlesize": "medium",
                         "legend.fontsize": "small", "legend.title_fontsize": "small",
                         "savefig.bbox": "tight", "figure.dpi": 100})  # fmt: skip


def family(method: str) -> str:
    """The family ``method``'s class declares (``Method.family``), or ``"other"`` for a name not registered.

    Example:
        >>> family("redo"), family("my-method")
        ('resets', 'other')
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    from .methods import METHODS, method_info

    return method_info(method).family if method in METHODS else "other"


def method_style(method: str) -> dict:
    """Fixed ``{"color", "linestyle", "marker"}`` of ``method``, the same in every figure.

    The colour is the one the method's class declares (``Method.colour``); a method that
    declares none, or a name not registered, gets a colour chosen by the CRC-32 of its name
    (deterministic across processes, unlike ``hash``). The family sets the line style and marker
    (dotted for ``"other"``); the reference ``"fresh"`` (a fresh network at every task) is grey
    and dashed.

    Example:
        >>> method_style("adam")
        {'color': '#000000', 'linestyle': '-', 'marker': 'o'}
    """
    from .methods import METHODS, method_info

    fam = family(method)
    declared = method_info(method).colour if method in METHODS else None
    name = declared or _HASHED[zlib.crc32(method.encode("utf-8")) % len(_HASHED)]
    linestyle, marker = _FAMILY_STYLE.get(fam, _FAMILY_STYLE["other"])
    return {"color": OKABE_ITO.get(name, name), "linestyle": linestyle, "marker": marker}


def method_order(methods: Optional[Sequence[str]] = None) -> list:
    """The book's order of methods: :data:`REFERENCES`, then those outside the panel families
    (the fresh reference, undeclared families), then family by family (:data:`FAMILIES`).

    Args:
        methods: the names to order (default: every registered method); names not registered
            go with those outside the families, in their given order.

    Example:
        >>> method_order(["layernorm", "fresh", "redo", "adam"])
        ['adam', 'fresh', 'redo', 'layernorm']
    """
    from .methods import METHODS

    names = list(METHODS) if methods is None else [str(m) for m in methods]
    in_families = [m for ms in FAMILIES.values() for m in ms]
    refs = [m for m in REFERENCES if m in names]
    outside = [m for m in names if m not in refs and m not in in_families]
    return refs + outside + [m for m in in_families if m in names and m not in refs]


def method_palette(methods: Sequence[str]) -> dict:
    """``{method: colour}`` for seaborn's ``palette=`` (fixed colours, see :func:`method_style`).

    Example:
        >>> method_palette(["adam", "adamo"])
        {'adam': '#000000', 'adamo': '#D55E00'}
    """
    return {m: method_style(str(m))["color"] for m in methods}


def label(column: str) -> str:
    """Words or math for ``column`` (:data:`LABELS`; otherwise underscores become spaces).

    Example:
        >>> label("test_acc"), label("iso_strength")
        ('test accuracy', 'isometry strength $\\\\lambda$')
    """
    return LABELS.get(column, str(column).replace("_", " "))


def _check_frame(df, columns, numeric=()):
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas.DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ValueError("df has no rows")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"df is missing the columns {missing} (available: {list(df.columns)})")
    not_numeric = [c for c in numeric if not pd.api.types.is_numeric_dtype(df[c])]
    if not_numeric:
        raise ValueError(f"columns {not_numeric} must be numeric, got dtypes {[str(df[c].dtype) for c in not_numeric]}")


def seed_summary(df: pd.DataFrame, y: str, *, x: str = "task", by: str = "method", log: Optional[bool] = None,
                 level: float = 0.95) -> pd.DataFrame:
    """Per ``by`` and ``x``: the centre over seeds and its interval, by :func:`~isoplast_lite.stats.mean_ci`.

    Args:
        df: tidy rows (one per seed and ``x``).
        y: the measure.
        x: the horizontal variable (``"task"``: shown from 1, so 1 is added).
        by: the column that makes one line per value.
        log: aggregate ``log10(y)`` and map back (the geometric mean and its interval); default
            ``y in LOG_MEASURES``. Non-positive values are dropped on a log measure.
        level: confidence level of the interval.

    Returns:
        Columns ``by, x, lo, center, hi, n`` (``n`` seeds that are not NaN).

    Example:
        >>> d = pd.DataFrame({"method": "adam", "task": 0, "ntk_cond": [1e1, 1e3]})
        >>> float(seed_summary(d, "ntk_cond").center.iloc[0])  # geometric, not arithmetic, mean
        100.0
    """
    _check_frame(df, [by, x, y], numeric=[y])
    log = y in LOG_MEASURES if log is None else bool(log)
    if log and (df[y] <= 0).any():
        warnings.warn(f"{y}: {int((df[y] <= 0).sum())} values <= 0 have no logarithm and are left out of the geometric mean",
                      stacklevel=2)
    if log and np.isinf(df[y].to_numpy(float)).any():
        warnings.warn(f"{y}: {int(np.isinf(df[y].to_numpy(float)).sum())} values beyond resolution (inf) are left out of the geometric mean",
                      stacklevel=2)
    rows = []
    for (key, xv), group in df.groupby([by, x], sort=True, observed=True):
        v = group[y].to_numpy(float)
        v = v[~np.isnan(v)]
        if log:  # inf: a condition number beyond resolution (diagnostics.ntk_resolution) has no logarithm either
            v = np.log10(v[(v > 0) & np.isfinite(v)])
        if v.size == 0:
            continue
        lo, center, hi = mean_ci(v, level)
        if log:
            lo, center, hi = 10.0**lo, 10.0**center, 10.0**hi
        rows.append({by: key, x: xv + 1 if x == "task" else xv, "lo": lo, "center": center, "hi": hi, "n": v.size})
    return pd.DataFrame(rows, columns=[by, x, "lo", "center", "hi", "n"])


def task_axis(ax, n_tasks: Optional[int] = None) -> None:
    """Label ``ax``'s x axis "task" with integer ticks starting at 1 (1-based tasks).

    Args:
        ax: a matplotlib axis whose x data are tasks numbered from 1.
        n_tasks: the last task (default: from the axis limits).

    Example:
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots(); _ = ax.plot([1, 2, 3], [0, 1, 0]); task_axis(ax, 3)
        >>> [int(t) for t in ax.get_xticks()]
        [1, 2, 3]
    """
    if n_tasks is None:
        n_tasks = max(1, int(math.floor(ax.get_xlim()[1] + 1e-9)))
    if n_tasks <= 10:
        ticks = list(range(1, n_tasks + 1))
    else:  # 1, then round multiples of a step giving at most ~8 ticks (none crowding the 1)
        step = next((s for s in (2, 5, 10, 20, 50, 100, 200, 500, 1000) if n_tasks / s <= 8), -(-n_tasks // 8))
        ticks = [1] + [t for t in range(step, n_tasks + 1, step) if t - 1 >= 0.75 * step]
    ax.set_xticks(ticks)
    ax.set_xlim(0.5, n_tasks + 0.5)
    ax.set_xlabel("task")


def legend_outside(target, *, title: Optional[str] = None, handles=None, labels=None):
    """A legend beside the data: right of the axes (``target`` an axis) or of all panels (a figure).

    Returns the legend; any legend inside an axis of the figure is removed.
    """
    from matplotlib.figure import Figure

    if isinstance(target, Figure):
        axes = target.axes
        if handles is None:
            seen = {}
            for ax in axes:
                for h, lab in zip(*ax.get_legend_handles_labels()):
                    seen.setdefault(lab, h)
            labels, handles = list(seen), list(seen.values())
        for ax in axes:
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        if target.get_layout_engine() is None:
            target.set_layout_engine("constrained")
        return target.legend(handles, labels, title=title, loc="outside right upper")
    if handles is None:
        handles, labels = target.get_legend_handles_labels()
    return target.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def lineplot(ax, df: pd.DataFrame, y: str, *, x: str = "task", hue: str = "method", order: Optional[Sequence[str]] = None,
             log: Optional[bool] = None, seeds: Union[bool, Sequence[str]] = False, band: bool = True,
             names: Optional[dict] = None, level: float = 0.95):
    """One line per ``hue`` value: the mean (geometric on log measures) over seeds and its interval band.

    Args:
        ax: the matplotlib axis to draw on.
        df: tidy rows with the columns ``hue``, ``x``, ``y`` (and ``seed`` when ``seeds``).
        y: the measure; the y label is :func:`label` of it.
        x: ``"task"`` (0-based in the frame, drawn from 1 with :func:`task_axis`) or another column.
        hue: one line per value, styled by :func:`method_style`.
        order: the values of ``hue`` to draw, in legend order (default: as they appear).
        log: log axis and geometric mean (default ``y in LOG_MEASURES``).
        seeds: also draw every seed as a thin line (``True``: for every line; a sequence: for
            those values), for sets where a mean hides two modes.
        band: draw the ``level`` interval of :func:`seed_summary` as a band.
        names: ``{value: legend text}`` (default: the value).
        level: confidence level of the band.

    Returns:
        ``ax``.
    """
    log = y in LOG_MEASURES if log is None else bool(log)
    summary = seed_summary(df, y, x=x, by=hue, log=log, level=level)
    order = list(dict.fromkeys(df[hue])) if order is None else [o for o in order if o in set(df[hue])]
    names = names or {}
    with_seeds = set(order) if seeds is True else set(seeds or ())
    for value in order:
        s = summary[summary[hue] == value]
        style = method_style(str(value))
        if value in with_seeds:
            if "seed" not in df.columns:
                raise ValueError("seeds=True needs a 'seed' column")
            for _, one in df[df[hue] == value].groupby("seed"):
                one = one.sort_values(x)
                xs = one[x] + 1 if x == "task" else one[x]
                ax.plot(xs, one[y], color=style["color"], linestyle=style["linestyle"], lw=0.8, alpha=0.45)
        ax.plot(s[x], s["center"], label=names.get(value, str(value)), color=style["color"], linestyle=style["linestyle"],
                marker=style["marker"], markersize=3.5, lw=1.8)
        if band and value not in with_seeds and len(s):
            ax.fill_between(s[x], s["lo"], s["hi"], color=style["color"], alpha=0.15, lw=0)
    if log and len(summary):  # nothing to draw (every value NaN or beyond resolution): a linear, empty axis
        ax.set_yscale("log")
    elif y in FRACTIONS:  # an interval may reach past [0, 1]: the axis stops at the possible range
        boxes = [a.dataLim for a in ax.get_shared_y_axes().get_siblings(ax) if a.has_data()]  # a shared row: all of it
        lo, hi = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
        pad = 0.05 * (hi - lo) or 0.05
        ax.set_ylim(max(lo - pad, -0.03), min(hi + pad, 1.03))
    ax.set_ylabel(label(y))
    if x == "task":
        task_axis(ax, int(df["task"].max()) + 1)
    else:
        ax.set_xlabel(label(x))
    return ax


def small_multiples(df: pd.DataFrame, y: Union[str, Sequence[str]], *, families: Optional[Sequence[str]] = None,
                    references: Sequence[str] = REFERENCES, seeds: Union[bool, Sequence[str]] = False,
                    log: Optional[bool] = None, sharey: str = "row", title: Optional[str] = None, panel_size=(3.2, 2.6)):
    """One panel per method family (columns) and measure (rows), the references in every panel.

    Args:
        df: tidy runner rows (``method, seed, task`` and the measures).
        y: a measure or a list of measures (one row of panels each).
        families: the families to show, in order (default: every family of :data:`FAMILIES`
            with a method in ``df`` besides the references, then ``"other"``).
        references: methods drawn in every panel (Adam and AdamO).
        seeds: passed to :func:`lineplot` (draw each seed of those methods).
        log: passed to :func:`lineplot`.
        sharey: ``"row"`` (default), ``True`` or ``False``, as in ``plt.subplots``.
        title: the figure title.
        panel_size: ``(width, height)`` of one panel in inches.

    Returns:
        A figure with one legend beside the panels; panel titles name the family. At most
        ``len(references) + len(family)`` lines per axis (five for the book's families).
    """
    import matplotlib.pyplot as plt

    measures = [y] if isinstance(y, str) else list(y)
    _check_frame(df, ["method", "task", *measures], numeric=["task", *measures])
    present = list(dict.fromkeys(df["method"].astype(str)))
    refs = [r for r in references if r in present]
    members = {f: [m for m in ms if m in present and m not in refs] for f, ms in FAMILIES.items()}
    members["other"] = [m for m in present if family(m) not in members and m not in refs]
    if families is None:
        families = [f for f, ms in members.items() if ms] or ["the paper's"]
    unknown = [f for f in families if f not in members]
    if unknown:
        raise ValueError(f"families must be among {list(members)}, got {unknown}")
    data = df.assign(method=df["method"].astype(str))
    fig, axes = plt.subplots(len(measures), len(families), figsize=(panel_size[0] * len(families) + 1.6, panel_size[1] * len(measures)),
                             squeeze=False, sharex=True, sharey=sharey, layout="constrained")  # fmt: skip
    for r, measure in enumerate(measures):
        for c, (ax, fam) in enumerate(zip(axes[r], families)):
            shown = [m for m in members[fam] if m not in refs] + refs  # the references drawn last, on top
            lineplot(ax, data[data.method.isin(shown)], measure, order=shown, seeds=seeds, log=log)
            ax.set_title(fam if r == 0 else "")
            ax.set_ylabel(_wrap(label(measure), 26) if c == 0 else "")
            if r < len(measures) - 1:
                ax.set_xlabel("")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    order = refs + [m for f in families for m in members[f]]  # legend: references, then family by family
    legend_outside(fig, title="method", handles=[handles[m] for m in order if m in handles], labels=[m for m in order if m in handles])
    if title:
        fig.suptitle(title)
    return fig


def _wrap(text: str, width: int) -> str:
    """Break ``text`` into lines of about ``width`` characters, never inside ``$...$`` math."""
    import re

    lines, line = [], ""
    for token in re.findall(r"\$[^$]*\$\S*|\S+", text):
        if line and len(line) + 1 + len(token) > width:
            lines.append(line)
            line = token
        else:
            line = f"{line} {token}" if line else token
    return "\n".join([*lines, line])


#: columns that hold a fraction: a value outside [0, 1] is not a result of the runner
_FRACTIONS = ("train_acc", "train_acc_online", "test_acc", "dormant_0.025", "dormant_0.1", "dead")
#: columns that cannot be negative
_NONNEGATIVE = ("loss", "loss_online", "feature_erank", "weight_norm", "jac_sv_mean", "jac_sv_std", "jac_sv_ratio", "ntk_cond", "ntk_erank")


def _check_result_values(df: pd.DataFrame, wanted: Sequence[str]) -> None:
    """Ranges, duplicated rows and the booleans of ``diverged``: one-line ``ValueError``s."""
    for col in wanted:
        values = pd.to_numeric(df[col], errors="coerce")
        finite = values[np.isfinite(values)]
        if col in _FRACTIONS and ((finite < 0) | (finite > 1)).any():
            bad = float(finite[(finite < 0) | (finite > 1)].iloc[0])
            raise ValueError(f"column {col} holds {bad:g}, not a fraction; allowed: values in [0, 1] (or NaN)")
        if col in _NONNEGATIVE and (finite < 0).any():
            raise ValueError(f"column {col} holds {float(finite[finite < 0].iloc[0]):g}; allowed: values >= 0 (or NaN)")
    ident = [c for c in ("benchmark", "method", "settings", "iso_strength", "lr", "seed", "task") if c in df.columns]
    dup = df.duplicated(ident)
    if dup.any():
        raise ValueError(f"{int(dup.sum())} duplicated rows (the same {', '.join(ident)}); allowed: one row per run, seed and task")
    if "diverged" in df.columns:
        text = df["diverged"].astype(str).str.strip().str.lower()
        bad = ~text.isin(("true", "false", "1", "0", "1.0", "0.0"))
        if bad.any():
            raise ValueError(f"column diverged holds {df['diverged'][bad].iloc[0]!r}; allowed: True or False")


def _diverged_from(data: pd.DataFrame) -> dict:
    """Run label -> the first task (0-based) in which one of its seeds diverged."""
    if "diverged" not in data.columns:
        return {}
    flags = data["diverged"].astype(str).str.lower().isin(("true", "1", "1.0"))
    return {run: int(task) for run, task in data[flags].groupby("run")["task"].min().items()}


def run_labels(df: pd.DataFrame) -> pd.Series:
    """One label per run: the method, plus the settings that vary between its runs in ``df``.

    Reads the runner's ``settings`` column (any method, built-in or registered), or
    ``iso_strength`` in files written before that column existed.

    Example:
        >>> df = pd.DataFrame({"method": ["adam", "adamo", "adamo"],
        ...                    "settings": ["{}", '{"iso_strength":0.01}', '{"iso_strength":0.1}']})
        >>> run_labels(df).tolist()
        ['adam', 'adamo (iso_strength=0.01)', 'adamo (iso_strength=0.1)']
    """
    import json

    if "settings" in df.columns:
        texts = df["settings"].astype(str)
        labels = df["method"].astype(str).copy()
        for method, rows in df.groupby("method", sort=False):
            parsed = {t: json.loads(t) for t in texts[rows.index].unique()}
            keys = dict.fromkeys(k for v in parsed.values() for k in v)
            varying = [k for k in keys if len({json.dumps(v.get(k)) for v in parsed.values()}) > 1]
            if varying:
                shown = {t: ", ".join(f"{k}={v[k]:g}" if isinstance(v.get(k), float) else f"{k}={v.get(k)}" for k in varying)
                         for t, v in parsed.items()}  # fmt: skip
                labels[rows.index] = f"{method} (" + texts[rows.index].map(shown) + ")"
        return labels
    labels = df["method"].astype(str)
    if "iso_strength" in df.columns and df.groupby("method")["iso_strength"].nunique().max() > 1:
        iso = df["iso_strength"].astype(float)
        labels = labels.where(iso == 0, labels + " (λ = " + iso.map("{:g}".format) + ")")
    return labels


def plot_results(df: pd.DataFrame, *, measures: Optional[Sequence[str]] = None, accuracy: Optional[str] = None, ncols: int = 3):
    """Accuracy per task and the measures per task, one line per run (mean over seeds, 95% interval).

    Args:
        df: a tidy result frame (one row per seed x task) with at least the columns
            ``method, seed, task`` and the accuracy column; runs of one method with different
            settings (column ``settings``, or ``iso_strength`` in older files) are told apart
            (:func:`run_labels`).
        measures: metric columns to plot after the accuracy (default ``DEFAULT_MEASURES``
            that are present); :data:`LOG_MEASURES` use a log scale and the geometric mean.
        accuracy: accuracy column; default ``test_acc`` when it has values, else ``train_acc``.
        ncols: panels per row.

    Returns:
        A figure with one panel per quantity (titled in words, :func:`label`), seeds aggregated
        by :func:`seed_summary`, one legend beside the panels. A run with diverged seeds (column
        ``diverged``) is labelled "diverged from task k" and marked by a dotted vertical line at
        task k; its metrics are NaN from there on, so its lines stop.

    Raises:
        TypeError: ``df`` is not a DataFrame. ValueError: ``df`` has no rows, or a needed
        column is missing or not numeric.
    """
    import matplotlib.pyplot as plt

    _check_frame(df, ["method", "seed", "task"], numeric=["seed", "task"])
    if accuracy is None:
        accuracy = "test_acc" if "test_acc" in df.columns and df["test_acc"].notna().any() else "train_acc"
    if measures is None:
        measures = [m for m in DEFAULT_MEASURES if m in df.columns]
    wanted = [accuracy, *measures]
    _check_frame(df, ["method", "seed", "task", *wanted], numeric=wanted)
    _check_result_values(df, wanted)
    data = df.assign(run=run_labels(df))
    diverged = _diverged_from(data)
    names = {r: f"{r} [diverged from task {t + 1}]" for r, t in diverged.items()}
    runs = list(dict.fromkeys(data["run"]))
    n = len(wanted)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols + 2.4, 2.8 * nrows), squeeze=False, layout="constrained")
    for ax, col in zip(axes.flat, wanted):
        lineplot(ax, data, col, hue="run", order=runs, names=names)
        ax.set_title(label(col))
        ax.set_ylabel("")
        for run, task in diverged.items():
            ax.axvline(task + 1, color=method_style(run)["color"], linestyle=":", linewidth=1.2)
    for ax in list(axes.flat)[n:]:
        fig.delaxes(ax)
    legend_outside(fig, title="run")
    if "benchmark" in df.columns:
        fig.suptitle(", ".join(sorted(df["benchmark"].astype(str).unique())))
    return fig
