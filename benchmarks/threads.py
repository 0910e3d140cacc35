"""What a second torch thread buys a run of the book's size: 1 against 2 threads, one process.

Issue 22 made the thread count part of a run's configuration (``Config.threads``, pinned by the
runner), so it needs a default. This script runs the same configuration (the chapters' typical
ones: random-label Digits, width 64 and 256, depth 3, 8 seeds stacked, batch 32, 256 images, one
task of ``--steps`` steps and its measurement, eNTK included) under ``threads=1`` and
``threads=2``, interleaved (the order reversed every other repeat), and reports per
configuration the medians of the wall time and of the process's CPU time (every thread's), and
their ratios 2 threads / 1 thread. A wall ratio near 1 with a CPU ratio near 2 means the second
thread buys nothing; a wall ratio near 0.5 would mean it halves the time.

Measured (issue 22, 2026-12-05, torch 2.13 CPU, AVX512, 2 cores shared with other jobs: load
average 12-16 on 2 cores while it ran, so these are the times of a busy machine), ``--steps 150
--repeats 3`` (medians; the width-256 rows were not reached before the deadline):

==============  ===========  ===========  ==========  ==========  ==========  =========
config          wall 1t (s)  wall 2t (s)  wall 2t/1t  cpu 1t (s)  cpu 2t (s)  cpu 2t/1t
==============  ===========  ===========  ==========  ==========  ==========  =========
adam w64        1.19         54.51        45.9        0.36        14.36       39.7
adamo w64       3.86         59.40        15.4        0.52        13.48       26.0
==============  ===========  ===========  ==========  ==========  ==========  =========

Under that load a second thread made a width-64 run of 8 stacked seeds 15-46 times slower and
cost 26-40 times the CPU time (its threads spin-wait for a core that other jobs hold): the
default is 1. On an idle machine the ratio is closer to 1; re-run this script there before
choosing ``--threads 2`` for a large width.

Usage:
    .venv/bin/python benchmarks/threads.py [--widths 64 256] [--methods adam adamo] [--steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--methods", nargs="+", default=["adam", "adamo"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from isoplast_lite.run import Config, run

    print(f"{'config':<22} {'wall 1t (s)':>11} {'wall 2t (s)':>11} {'wall 2t/1t':>10} {'cpu 1t (s)':>10} {'cpu 2t (s)':>10} {'cpu 2t/1t':>9}")
    for width in args.widths:
        for method in args.methods:
            base = Config("random-label-digits", method, seeds=8, n_tasks=1, steps_per_task=args.steps, width=width, depth=3,
                          n_train=256, batch_size=32)  # fmt: skip
            run(base, cache_dir=False, progress=False)  # warm-up (data, kernels)
            wall = {1: [], 2: []}
            cpu = {1: [], 2: []}
            for r in range(args.repeats):
                for threads in ((1, 2) if r % 2 == 0 else (2, 1)):
                    c0, w0 = time.process_time(), time.perf_counter()
                    run(base.replace(threads=threads), cache_dir=False, progress=False)
                    cpu[threads].append(time.process_time() - c0)
                    wall[threads].append(time.perf_counter() - w0)
            w1, w2 = statistics.median(wall[1]), statistics.median(wall[2])
            c1, c2 = statistics.median(cpu[1]), statistics.median(cpu[2])
            print(f"{method + ' w' + str(width):<22} {w1:>11.2f} {w2:>11.2f} {w2 / w1:>10.2f} {c1:>10.2f} {c2:>10.2f} {c2 / c1:>9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
