"""Cost of the target-spectrum intervention (issue 23): one projection of every hidden weight onto
its target spectrum, against one Adam training step, in the runner's seed-stacked layout.

A training step is forward + backward + fused Adam on the stacked ``relu_mlp(64, width, depth,
10)`` of ``seeds`` seeds (the runner's book scale: width 256, depth 3, batch 32). The projection
(``TargetSpectrum.after_step``) is one batched SVD of each hidden ``(S, d_out, d_in)`` weight
plus the products that rebuild it; with a spread, also ``R diag(sigma) R^T``. AdamO's step is
timed the same way for comparison. Steps are interleaved (order rotated every repeat) after a
warm-up; medians of the thread's CPU time (``_timing.clock`` with ``OMP_NUM_THREADS=1``).

Measured (issue 23, 2026-12-04, torch 2.13 CPU, ``OMP_NUM_THREADS=1``, load 9-12 on 2 cores,
``--repeats 30``, width 256, depth 3, 4 seeds, batch 32): Adam step 4.8 ms; AdamO step x2.7;
projection with every sigma equal (isometry forced, ``sigma * U V^T``) x10.2; projection with a
spread in a rotation x14.7 (the SVD dominates: ``torch.linalg.svd`` of three ``(4, 256, .)``
stacks). So a target-spectrum run trains about 11-16 times slower per step than Adam at this
scale; the runner's per-task measurements do not change. A cheaper exact projection (a few
Newton-Schulz iterations to the polar factor, warm-started by the previous step's) is possible
and not done.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/target_spectrum.py [--width 256] [--depth 3] [--seeds 4] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from isoplast_lite.engine import StackedModel
from isoplast_lite.methods import make_method
from isoplast_lite.run import Config

from _timing import clock, load  # noqa: E402  (benchmarks/ is on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    cfg = Config("permuted-digits", "adam", seeds=args.seeds, width=args.width, depth=args.depth, batch_size=args.batch)
    seeds = tuple(range(args.seeds))
    x = torch.randn(args.seeds, args.batch, 64)
    y = torch.randint(0, 10, (args.seeds, args.batch))

    def trainer(name, settings):
        method = make_method(name, settings)
        stack = StackedModel.build(lambda g: method.build_model(64, 10, cfg, g), seeds)
        method.setup(stack, cfg)
        opt = method.make_optimizer(stack, cfg)

        def step():
            opt.zero_grad(set_to_none=True)
            logits = stack(x)
            torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").backward()
            opt.step()

        return method, stack, opt, step

    _, _, _, adam_step = trainer("adam", None)
    _, _, _, adamo_step = trainer("adamo", None)
    iso, iso_stack, iso_opt, _ = trainer("target-spectrum", {})
    spread, spread_stack, spread_opt, _ = trainer("target-spectrum", {"scale": 1.0, "spread": 1.0})
    fns = {
        "Adam step (fwd + bwd + fused Adam)": adam_step,
        "AdamO step": adamo_step,
        "projection, isometry forced (sigma P)": lambda: iso.after_step(iso_stack, iso_opt, None),
        "projection, spread 1 in a rotation (R diag R^T P)": lambda: spread.after_step(spread_stack, spread_opt, None),
    }
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(args.repeats + 3):
        for k in names[r % len(names):] + names[: r % len(names)]:
            t0 = clock()
            fns[k]()
            dt = clock() - t0
            if r >= 3:
                times[k].append(dt)
    base = statistics.median(times[names[0]])
    print(f"width {args.width}, depth {args.depth}, {args.seeds} seeds, batch {args.batch}, threads {torch.get_num_threads()}, load {load()}")
    for k in names:
        med = statistics.median(times[k])
        print(f"  {k:52s} {1e3 * med:8.2f} ms   x{med / base:5.2f} of an Adam step")


if __name__ == "__main__":
    main()
