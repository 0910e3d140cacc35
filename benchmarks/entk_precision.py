"""The cost of the eNTK in float64 (issue 22, item 3): float64 against float32, as ratios.

Two computations, each timed in float32 and in float64 on the same weights, interleaved, with
the thread's CPU time (``time.thread_time``; one thread), median of ``--repeats``:

* the runner's seed-batched eNTK (``measure.stacked_ntk_eigenvalues``: the layered kernel of
  every seed, its symmetric eigendecomposition and summary) on the probe, after one forward pass
  of the probe in that dtype (what ``measure_stacked`` now does in float64);
* the per-seed path: ``empirical_ntk(model, probe, method="layerwise", dtype=...)`` then
  ``ntk_summary``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/entk_precision.py [--seeds 8] [--width 64] [--probe 16]

Measured (issue 22, 2026-12-04, torch 2.13 CPU, AVX512, load ~20 on 2 cores: read the ratios):

==========================================  =====================  =====================
8 seeds, MLP 64 -> width 64, 10 classes     stacked (the runner)   per-seed path
==========================================  =====================  =====================
depth 3, probe 16 (M = 160)                 13.4 -> 26.4 ms, x1.98  6.0 -> 6.3 ms, x1.05
depth 2, probe 8 (M = 80)                   4.3 -> 8.1 ms, x1.87    4.0 -> 4.3 ms, x1.09
==========================================  =====================  =====================

The float64 kernel adds about 13 ms per task for 8 seeds at the book scale, against roughly
0.8 s of training per 400-step task (under 2%).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--probe", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from isoplast_lite import empirical_ntk, ntk_summary, relu_mlp
    from isoplast_lite.measure import stacked_blocks, stacked_forward, stacked_ntk_eigenvalues
    from isoplast_lite.engine import StackedModel

    stack = StackedModel.build(lambda g: relu_mlp(64, args.width, args.depth, 10, generator=g), list(range(args.seeds)))
    blocks = stacked_blocks(stack)
    x = torch.randn(args.seeds, args.probe, 64, generator=torch.Generator().manual_seed(0))
    params = {n: p.detach() for n, p in stack.params.items()}
    model = stack.model_for_seed(0).eval()

    def stacked(dtype):
        p = {n: t.to(dtype) for n, t in params.items()}
        inputs, zs, _ = stacked_forward(blocks, p, x.to(dtype))
        stacked_ntk_eigenvalues(blocks, p, inputs, zs, {})

    def per_seed(dtype):
        ntk_summary(empirical_ntk(model, x[0], method="layerwise", dtype=dtype), generator=torch.Generator().manual_seed(0))

    variants = {f"{name} {str(d).split('.')[-1]}": (fn, d) for name, fn in (("stacked", stacked), ("per-seed", per_seed))
                for d in (torch.float32, torch.float64)}  # fmt: skip
    times = {k: [] for k in variants}
    for fn, d in variants.values():
        fn(d)  # warm-up
    for _ in range(args.repeats):
        for k, (fn, d) in variants.items():
            t0 = time.thread_time()
            fn(d)
            times[k].append(time.thread_time() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"seeds {args.seeds}, width {args.width}, depth {args.depth}, probe {args.probe} (M = {args.probe * 10})")
    for name in ("stacked", "per-seed"):
        a, b = med[f"{name} float32"], med[f"{name} float64"]
        print(f"{name:9s} float32 {a * 1e3:8.2f} ms  float64 {b * 1e3:8.2f} ms  ratio x{b / a:.2f}")


if __name__ == "__main__":
    main()
