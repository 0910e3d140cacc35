"""A PILOT of the referee's two falsifiers (issue 23) on one shifting stream of chapter 8.

    OMP_NUM_THREADS=1 .venv/bin/python tools/falsifier_pilot.py [--stream permuted-digits] [--seeds 3] [--tasks 200] [--out DIR]

The referee (``PAPER.md``, "What would settle the thesis"): "a controlled run in which Jacobian
singular values are forced to remain near one yet plasticity still collapses [...], or in which
isometry is deliberately broken yet plasticity is retained". Arms (``target-spectrum``, the
intervention that sets every hidden weight's singular values after each step):

* ``forced-isometry``: every sigma = 1 in a ReLU net (falsifier a);
* ``broken-spread``: mean log sigma 0, spread 1.0 of log sigma in a fixed random rotation;
* ``broken-spread-ln``: the same with LayerNorm before each ReLU, to keep units alive (falsifier b);
* the references ``adam`` and ``fresh`` (a new network at every task: no plasticity lost).

The stream's budget is chapter 8's (``isoplast_lite/data/streams/manifest.json``), with fewer
seeds (and tasks, if asked): a pilot, not a result. Decisions fixed before looking:
plasticity loss = ``fresh - arm`` of held-out accuracy averaged over the last 20% of tasks,
per seed; "collapse" = its 95% interval above the margin; "retained" = two one-sided tests
within the margin ``MARGIN`` (2 points of accuracy), Holm-corrected over the arms; an arm off
its target (:func:`isoplast_lite.interventions.manipulation_check`, tolerance 0.05 in log sigma)
is marked and gives no verdict. The smallest effect each comparison could detect (paired t,
power 0.8) is printed beside it.

Writes ``pilot-rows.csv.gz``, ``pilot-layers.csv.gz`` and ``pilot-summary.csv`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ARMS = {
    "adam": ("adam", {}),
    "fresh": ("fresh", {}),
    "forced-isometry": ("target-spectrum", {}),
    "broken-spread": ("target-spectrum", {"spread": 1.0}),
    "broken-spread-ln": ("target-spectrum", {"spread": 1.0, "layernorm": True}),
}
MARGIN = 0.02
LAST = 0.2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stream", default="permuted-digits")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=None, help="default: the stream's")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd

    from isoplast_lite import results
    from isoplast_lite.interventions import layer_sizes, manipulation_check
    from isoplast_lite.plasticity import last_tasks
    from isoplast_lite.run import Config, run
    from isoplast_lite.stats import holm, mean_ci, min_detectable_effect, tost

    entry = results.manifest("streams")[args.stream]
    budget = {k: v for k, v in entry["config"].items() if k not in ("benchmark", "first_seed")}
    budget["seeds"] = args.seeds
    if args.tasks:
        budget["n_tasks"] = args.tasks
    rows, layers = [], []
    for arm, (method, settings) in ARMS.items():
        result = run(Config(args.stream, method, settings=settings, **budget), progress=False, layers=True)
        df, lay = result.rows, result.layers
        rows.append(df.assign(arm=arm))
        layers.append(lay.assign(arm=arm))
        print(f"{arm}: done", flush=True)
    rows, layers = pd.concat(rows, ignore_index=True), pd.concat(layers, ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.out / "pilot-rows.csv.gz", index=False)
    layers.to_csv(args.out / "pilot-layers.csv.gz", index=False)

    in_dim = 64 if args.stream.endswith("digits") else 40
    check = manipulation_check(layers, rows, sizes=layer_sizes(in_dim, budget["width"], budget["depth"]))
    check = check.merge(rows[["method", "settings", "arm"]].drop_duplicates(), on=["method", "settings"])
    metric = entry["metric"]
    tasks = list(last_tasks(budget["n_tasks"], LAST))
    last = rows[rows.task.isin(tasks)]
    per_seed = last.groupby(["arm", "seed"])[metric].mean().unstack("arm")
    dead = last.groupby("arm").dead.mean()
    out = []
    for arm in ARMS:
        if arm == "fresh":
            continue
        loss = per_seed["fresh"] - per_seed[arm]  # plasticity loss per seed
        lo, mean, hi = mean_ci(loss)
        eq = tost(per_seed[arm], per_seed["fresh"], margin=MARGIN)
        sd = float(loss.std(ddof=1))
        out.append({"arm": arm, "acc": float(per_seed[arm].mean()), "loss": mean, "loss_lo": lo, "loss_hi": hi,
                    "collapse": bool(lo > MARGIN), "tost_p": eq["p"], "dead_last": float(dead[arm]),
                    "mde": min_detectable_effect(len(loss), sd) if sd > 0 else float("nan")})  # fmt: skip
    summary = pd.DataFrame(out)
    summary["tost_p_holm"] = holm(summary.tost_p).p_adjusted.to_numpy()
    summary["retained"] = summary.tost_p_holm <= 0.05
    summary = summary.merge(check[["arm", "on_target", "log_scale_target", "spread_target", "weight_scale", "weight_spread",
                                   "jac_scale", "jac_spread", "null_share", "ntk_cond_log10"]], on="arm", how="left")  # fmt: skip
    summary.to_csv(args.out / "pilot-summary.csv", index=False)
    import pandas as _pd

    with _pd.option_context("display.width", 250, "display.max_columns", 30):
        print(f"PILOT: {args.stream}, {args.seeds} seeds, {budget['n_tasks']} tasks, {metric} over the last {len(tasks)} tasks, margin {MARGIN}")
        print(summary.round(3).to_string(index=False))
    (args.out / "pilot-config.json").write_text(json.dumps({"stream": args.stream, "budget": budget, "arms": ARMS, "margin": MARGIN}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
