"""Summarize the runner's measurement CSVs (isoplast_lite/data/long/*.csv.gz) per (benchmark, method).

    .venv/bin/python tools/summarize_results.py isoplast_lite/data/long/random-label-digits.csv.gz \
        isoplast_lite/data/long/random-label-mnist1d.csv.gz --out isoplast_lite/data/long/summary.csv

Prints a Markdown table and writes a CSV. Accuracies are the final train accuracy of a task
(`train_acc`), mean over seeds with a 95% t-interval half-width; "dead" is `dead` (a unit
that is zero on every input of the task's training set) at the first and the last task.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from isoplast_lite.files import atomic_write
from isoplast_lite.stats import mean_ci


def _mean_ci(values: pd.Series) -> tuple[float, float]:
    """(mean, half-width of the 95% interval): the project's one convention (isoplast_lite.stats)."""
    lo, mean, hi = mean_ci(values)
    return mean, (hi - mean if len(values) > 1 else float("nan"))


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (bench, method, settings), g in frame.groupby(["benchmark", "method", "settings"], sort=False):
        first, last = g["task"].min(), g["task"].max()
        at_first, at_last = g[g["task"] == first], g[g["task"] == last]
        per_task = g.groupby("task")["train_acc"].mean()
        acc1, ci1 = _mean_ci(at_first["train_acc"])
        accn, cin = _mean_ci(at_last["train_acc"])
        rows.append({
            "benchmark": bench, "method": method, "settings": settings,
            "tasks": int(last - first + 1), "seeds": int(g["seed"].nunique()),
            "first_task_acc": acc1, "first_task_ci95": ci1,
            "last_task_acc": accn, "last_task_ci95": cin,
            "worst_task_acc": float(per_task.min()), "worst_task": int(per_task.idxmin()) + 1,
            "dead_first": float(at_first["dead"].mean()), "dead_last": float(at_last["dead"].mean()),
            "feature_erank_last": float(at_last["feature_erank"].mean()),
            "ntk_cond_last_median": float(at_last["ntk_cond"].median()),
        })
    return pd.DataFrame(rows)


def _cond(value: float) -> str:
    """A condition number as the table shows it: inf (beyond the eigenvalues' resolution) is no number."""
    return f"{value:.3g}" if np.isfinite(value) else "beyond resolution"


def _markdown(summary: pd.DataFrame) -> str:
    lines = ["| benchmark | method | task 1 acc | last task acc | worst task | dead first -> last | eNTK cond (last, median) |",
             "|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(
            f"| {r.benchmark} | {r.method} | {r.first_task_acc:.3f} ± {r.first_task_ci95:.3f} | "
            f"{r.last_task_acc:.3f} ± {r.last_task_ci95:.3f} | {r.worst_task_acc:.3f} (task {r.worst_task}) | "
            f"{100 * r.dead_first:.1f}% -> {100 * r.dead_last:.1f}% | {_cond(r.ntk_cond_last_median)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="+", type=Path, help="CSV files written by `python -m isoplast_lite run|sweep`")
    parser.add_argument("--out", type=Path, help="summary CSV to write (atomically)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.csv if not p.is_file()]
    if missing:
        parser.error(f"csv: no such file(s): {', '.join(missing)}")
    summary = summarize(pd.concat([pd.read_csv(p) for p in args.csv], ignore_index=True))
    print(_markdown(summary))
    if args.out is not None:
        data = summary.to_csv(index=False, float_format="%.6g").encode()
        atomic_write(args.out, lambda h: h.write(data))
        data_dir = Path(__file__).resolve().parents[1] / "isoplast_lite" / "data"
        if args.out.resolve() == data_dir / "long" / "summary.csv":  # the shipped file: its checksum, checked on load
            from isoplast_lite.results import write_file_checksum

            write_file_checksum("long/summary.csv", base=data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
