"""The runner's time estimate (``check_config``'s refusal of runs that would not end) against the
runner's measured time.

For each case, ``isoplast_lite.run.run`` (no cache, no progress bar) is timed (CPU time of one
thread, ``_timing.clock``) at two step counts; the difference divided by the extra steps is the
time of one training step, compared with the estimate's per-step part
(:func:`isoplast_lite.run.estimate_seconds` of the same config at one step per task, minus
zero steps). The cases isolate the estimate's terms: the fixed cost of a step (tiny net), the
cost per layer (depth 1 to 32), per example (batch up to 65 536) and per FLOP (width 256 and
512, several seeds stacked). The column ``est/meas`` must stay at most 1 (the estimate is a
lower one: a refusal is never wrong on a machine like this one) and not far below it (it
refuses what is out of reach).

Run with ``OMP_NUM_THREADS=1``::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/time_estimate.py

Measured (issue 27, 2026-12-05, torch 2.13 CPU, one thread, CPU time, load 12-16 on 2 cores,
matmul peak 93-96 GFLOP/s; the runner's side of the table, from which the constants of
``isoplast_lite/run.py`` (``_STEP_SECONDS`` ... ``_TASK_LAYER_SECONDS``, ``_FLOPS``) were set at about
half; with the final constants the per-step est/meas of the first run's cases was 0.37-0.72):

=================================  ================  ================
case                               measured ms/step  measured ms/task
=================================  ================  ================
tiny (fixed cost per step)         0.471             47.7
depth 8                            0.813             48.0
depth 32                           1.743             74.3
depth 128                          11.012            204.3
batch 4096                         2.719             42.7
batch 65536                        47.436            38.8
width 64, 8 seeds (book)           1.260             87.5
width 256, 4 seeds (issue budget)  4.005             258.3
width 512, batch 256               14.728            395.2
=================================  ================  ================

Outside the table: one step at batch 10**7 (width 8, depth 1) took 23 CPU s and 5 GB, about
2.3 us per example, three times the largest batch above: the estimate stays a lower one there.
"""

from __future__ import annotations

import argparse
import warnings

import torch
from _timing import clock, load, matmul_peak

from isoplast_lite.run import Config, estimate_seconds, run

CASES = {
    "tiny (fixed cost per step)": dict(width=8, depth=1, batch_size=8, seeds=1),
    "depth 8": dict(width=8, depth=8, batch_size=8, seeds=1),
    "depth 32": dict(width=8, depth=32, batch_size=8, seeds=1),
    "depth 128": dict(width=8, depth=128, batch_size=8, seeds=1),
    "batch 4096": dict(width=8, depth=1, batch_size=4096, seeds=1),
    "batch 65536": dict(width=8, depth=1, batch_size=65536, seeds=1),
    "width 64, 8 seeds (book)": dict(width=64, depth=3, batch_size=32, seeds=8),
    "width 256, 4 seeds (issue budget)": dict(width=256, depth=3, batch_size=32, seeds=4),
    "width 512, batch 256": dict(width=512, depth=2, batch_size=256, seeds=2),
}


def step_and_task_seconds(cfg: Config, short: int, long: int) -> tuple:
    """Seconds of one training step and of the rest of one task (staging, measurement)."""
    times = []
    for steps in (short, long):
        c = cfg.replace(steps_per_task=steps)
        t0 = clock()
        run(c, cache_dir=False, progress=False)
        times.append(clock() - t0)
    step = (times[1] - times[0]) / (long - short)
    return step, times[0] - short * step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", type=int, default=10)
    p.add_argument("--long", type=int, default=60)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {load()}, matmul peak {matmul_peak() / 1e9:.0f} GFLOP/s")
    print("| case | measured ms/step | estimated ms/step | est/meas | measured ms/task | estimated ms/task | est/meas |\n|---|---|---|---|---|---|---|")
    run(Config("random-label-digits", "adam", n_tasks=1, steps_per_task=5, n_train=512, probe_size=4, width=8, depth=1, seeds=1),
        cache_dir=False, progress=False)  # warm-up: data loaded, kernels chosen
    worst = 0.0
    for name, sizes in CASES.items():
        cfg = Config("random-label-digits", "adam", n_tasks=1, n_train=512, probe_size=4, **sizes)
        step, task = step_and_task_seconds(cfg, args.short, args.long)
        est_step = estimate_seconds(cfg.replace(steps_per_task=1001), threads=1) - estimate_seconds(cfg.replace(steps_per_task=1), threads=1)
        est_step /= 1000
        est_task = estimate_seconds(cfg.replace(steps_per_task=1), threads=1) - est_step
        worst = max(worst, est_step / step, est_task / task)
        print(f"| {name} | {step * 1e3:.3f} | {est_step * 1e3:.3f} | {est_step / step:.2f} | {task * 1e3:.1f} | {est_task * 1e3:.1f} | {est_task / task:.2f} |", flush=True)
    print(f"\nlargest est/meas: {worst:.2f} (must be <= 1: a lower estimate)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
