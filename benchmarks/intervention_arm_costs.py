"""CPU seconds per task of each arm of chapter 7's intervention runs, against the manifest's.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/intervention_arm_costs.py [--tasks 3] [--streams S ...]

Runs every arm of ``tools/intervention_runs.py`` on each stream at its budget per task (8 seeds,
the cache off) for ``--tasks`` tasks, and prints the CPU seconds per task of tasks 2 to
``--tasks`` (the first task, which pays for loading the data and warming up, is left out), the
shipped manifest's seconds per task (``data/interventions``; ``unknown`` where it records none),
and their ratio. A ratio far below 1 (the shipped seconds cover only part of the run) is what a
run resumed from a checkpoint recorded before the tool counted every process (issue 23). The
per-task costs also price the runs not made (the full grid, the missing stream): multiply by
tasks, seeds / 8 and arms.

Measured (2026-12-05, AVX512, one thread, load ~9 on 2 cores, ``--tasks 3``; CPU seconds per
task, arms adam / adamo / fresh / forced-isometry / scale-only / spread-only / both / spread-only-ln):

    permuted-digits        0.15 0.21 0.17 0.82 0.75 0.78 0.80 0.82
    label-shuffle-digits   0.16 0.22 0.18 0.77 0.78 0.80 0.80 0.86
    permuted-mnist1d       0.98 1.11 0.90 4.01 4.02 3.65 3.73 4.26
    label-shuffle-mnist1d  0.41 0.49 0.35 0.97 0.97 0.93 1.02 1.09   (not in the shipped group)
    random-label-digits    0.76 1.08 0.76 4.51 4.72 5.13 5.18 5.41

The shipped seconds per task are 0.85 to 1.28 of these for every arm but eight (0 to 0.62: adam,
adamo and spread-only on both Digits streams, adam on permuted-mnist1d, spread-only on
random-label-digits), which were resumed from checkpoints: the manifest marks them unknown.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))


def main(argv=None) -> int:
    import intervention_runs as iv

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", nargs="+", default=list(iv.STREAMS), choices=iv.STREAMS)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args(argv)
    if args.tasks < 2:
        parser.error(f"--tasks must be >= 2 (the first task is left out), got {args.tasks}")

    from isoplast_lite import results
    from isoplast_lite.run import run

    shipped = results.manifest("interventions")
    print(f"{'stream':24s} {'arm':16s} {'s/task':>8s} {'shipped s/task':>15s} {'ratio':>6s}")
    for stream in args.streams:
        for arm, cfg in iv.arm_configs(stream, args.seeds).items():
            marks = []
            run(cfg.replace(n_tasks=args.tasks), cache_dir=False, progress=False, layers=True,
                callback=lambda task, rows: marks.append(time.process_time()))  # fmt: skip
            per_task = (marks[-1] - marks[0]) / (len(marks) - 1)
            entry = shipped.get(stream)
            recorded = None if entry is None else entry["cpu_seconds"].get(arm)
            if entry is not None and recorded is None:
                recorded = entry.get("cpu_seconds_partial", {}).get(arm)
                label = "unknown" + (f" ({recorded / entry['config']['n_tasks']:.3f} partial)" if recorded is not None else "")
                ratio = ""
            elif entry is None:
                label, ratio = "not run", ""
            else:
                label = f"{recorded / entry['config']['n_tasks']:.3f}"
                ratio = f"{recorded / entry['config']['n_tasks'] / per_task:.2f}"
            print(f"{stream:24s} {arm:16s} {per_task:8.3f} {label:>15s} {ratio:>6s}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
