"""Measure how far re-runs of shipped results move on other CPU kernels and thread counts.

The shipped results (``isoplast_lite/data``) were made with one torch, one CPU capability
(AVX512) and one thread count. A reader's machine differs; float32 training then follows another
trajectory. This tool re-runs the reproduction entries below under PyTorch's native kernels and
its portable ones (``ATEN_CPU_CAPABILITY=default``, a stand-in for another CPU), with 1 and 2
torch threads, each in a fresh process, and compares every re-run with the shipped seeds
(:func:`isoplast_lite.stats.rerun_agreement`). It writes ``isoplast_lite/data/portability.json``: per entry and
setting, the largest bit-level difference (``max_seed_diff``) and how much of the statistical
bound each metric used. The tolerances of ``tests/test_shipped_results.py`` and of chapter 8
rest on these measurements. Usage (from the repository root)::

    .venv/bin/python tools/measure_portability.py            # all settings, ~2 min
    .venv/bin/python tools/measure_portability.py --worker   # one re-run in this process (CSV on stdout)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "isoplast_lite" / "data" / "portability.json"

#: The re-run entries: name -> (shipped file, methods, tasks re-run, Config overrides). All seeds
#: of the shipped config run batched, as shipped. permuted-digits/adamo: the whole short stream;
#: random-label-digits: chapter 8's live slice (memorization is the most chaotic stream of the
#: book); permuted-digits/aei-adam: the shipped AEI rows, made with the exact Cayley
#: parametrization before the Newton-Schulz retraction became the default.
ENTRIES = {
    "permuted-digits/adamo": ("permuted-digits", ["adamo"], 6, {}),
    "random-label-digits/adam+adamo": ("random-label-digits", ["adam", "adamo"], 4, {}),
    "permuted-digits/aei-adam-cayley": ("permuted-digits", ["aei-adam"], 2, {}),  # the rows' settings say orthogonal=cayley
}
SETTINGS = [(cap, threads) for cap in ("native", "default") for threads in (1, 2)]


def entry_config(name: str, method: str, n_tasks: int, **overrides):
    """The runner Config of shipped file ``name``'s ``method``, read from its manifest command
    (first ``n_tasks``; ``overrides`` are further Config fields)."""
    from isoplast_lite import results
    from isoplast_lite.__main__ import build_parser
    from isoplast_lite.run import Config

    shipped = results.load(name)
    rows = shipped[shipped.method == method]
    args = build_parser().parse_args(results.manifest()[name]["command"].split()[3:])
    return Config(
        benchmark=args.benchmark[0], method=method, settings={**json.loads(rows.settings.iloc[0]), **overrides.pop("settings", {})},  # the rows' own settings
        lr=float(rows.lr.iloc[0]), seeds=args.seeds, first_seed=0, n_tasks=n_tasks,
        steps_per_task=args.steps_per_task, batch_size=args.batch_size, width=args.width,
        depth=args.depth, n_train=args.n_train, init=args.init, dtype=args.dtype, **overrides,
    )  # fmt: skip


def rerun(name: str):
    """Re-run entry ``name`` in this process; returns ``(live, shipped)`` runner DataFrames."""
    import pandas as pd

    from isoplast_lite import results
    from isoplast_lite.run import run

    file, methods, n_tasks, overrides = ENTRIES[name]
    shipped = results.load(file)
    live = pd.concat([run(entry_config(file, m, n_tasks, **overrides), cache_dir=False, progress=False).rows for m in methods])
    shipped = shipped[shipped.method.isin(methods) & (shipped.task < n_tasks)]
    return live.reset_index(drop=True), shipped.reset_index(drop=True)


def _worker(threads: int) -> int:
    import pandas as pd
    import torch

    torch.set_num_threads(threads)
    frames = []
    for name in ENTRIES:
        live, _ = rerun(name)
        frames.append(live.assign(entry=name))
    pd.concat(frames).to_csv(sys.stdout, index=False)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help="re-run every entry here, CSV to stdout")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of a worker")
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.threads)

    import pandas as pd

    from isoplast_lite import results
    from isoplast_lite.run import METRIC_COLUMNS
    from isoplast_lite.stats import rerun_agreement

    report = {"entries": {k: {"file": v[0], "methods": v[1], "tasks": v[2], "config": v[3]} for k, v in ENTRIES.items()},
              "settings": {}}  # fmt: skip
    for cap, threads in SETTINGS:
        env = dict(os.environ)
        env.pop("ATEN_CPU_CAPABILITY", None)
        if cap == "default":
            env["ATEN_CPU_CAPABILITY"] = "default"
        start = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads)], env=env,
                             capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
        seconds = time.perf_counter() - start
        live_all = pd.read_csv(io.StringIO(out.stdout))
        setting = {"seconds": round(seconds, 1), "entries": {}}
        for name, (file, methods, n_tasks, _) in ENTRIES.items():
            shipped = results.load(file)
            shipped = shipped[shipped.method.isin(methods) & (shipped.task < n_tasks)]
            live = live_all[live_all.entry == name]
            agree = rerun_agreement(live, shipped, METRIC_COLUMNS)
            # how much of the bound each metric used: |diff| / bound (<= 1 passes)
            agree["used"] = agree["diff"].abs() / agree["bound"]
            per_metric = agree.groupby("metric").agg(max_seed_diff=("max_seed_diff", "max"), max_used=("used", "max"),
                                                     max_abs_diff=("diff", lambda d: d.abs().max()))  # fmt: skip
            first_task_differs = agree[agree.max_seed_diff > 0].task.min()
            setting["entries"][name] = {
                "all_consistent": bool(agree.consistent.all()),
                "bit_identical": bool((agree.max_seed_diff.fillna(0) == 0).all()),
                "first_task_that_differs": None if pd.isna(first_task_differs) else int(first_task_differs) + 1,
                "per_metric": per_metric.round(6).to_dict("index"),
            }
        label = f"{cap}, {threads} thread{'s' if threads > 1 else ''}"
        report["settings"][label] = setting
        print(label, json.dumps({k: {kk: v[kk] for kk in ("all_consistent", "bit_identical", "first_task_that_differs")}
                                 for k, v in setting["entries"].items()}), f"{seconds:.0f} s", flush=True)  # fmt: skip
    from isoplast_lite.results import provenance

    report["measured_with"] = provenance()
    from isoplast_lite.files import atomic_write
    from isoplast_lite.results import write_file_checksum

    atomic_write(OUT, lambda h: h.write((json.dumps(report, indent=1) + "\n").encode()))
    write_file_checksum("portability.json", base=OUT.parent)  # checked on load (results.portability)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
