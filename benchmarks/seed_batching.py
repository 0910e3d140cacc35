"""Seed batching: one stacked 8-seed run vs 8 sequential runs, same workload, same process.

Workloads (each 8 seeds x ``--steps`` steps, batch 32, orthogonal init, head opted out of AdamO):

1. the random-label-digits measurement net, MLP 64-256-256-256-10, AdamO lambda = 0.1;
2. the same net with Adam (AdamO with lambda = 0: no isometry FLOPs);
3. the book's precomputed-results net, MLP 64-64-64-64-10, AdamO lambda = 0.1.

* batched: :class:`isoplast_lite.engine.StackedModel` (``vmap`` over stacked ``(8, out, in)``
  weights) and one AdamO with ``seed_dims=1``;
* sequential: for each seed, ``relu_mlp`` + AdamO, a plain training loop.

Repeats are interleaved (batched, sequential, batched, ...) and the median is reported, as a
speed ratio and as achieved GFLOP/s (analytic FLOP count: forward + backward = 3x the forward
matmuls, plus the isometry step's ``4 * max(o, i) * min(o, i)^2`` per hidden matrix) against
the peak of a large ``torch.mm`` measured in the same process. Target: ratio >= 3. The time
spent in ``opt.step()`` is also reported, so the forward + backward ratio can be read apart.

What limits the ratio (measured on a 2-core laptop CPU, 2 threads): batching removes per-call
overhead, so it pays when the per-seed matmuls are small (width 64: ~3.8x). At width 256 a
sequential run's forward + backward already runs its 32 x 256 x 256 matmuls at ~40% of the
large-matmul peak; batched, they reach about the same efficiency (``bmm`` over 8 seeds is 8 such
matmuls), so forward + backward gains ~1.1x, and AdamO's exact isometry step (~70% of the time,
``d^3`` work per matrix) is compute-bound either way. A 3x ratio there would need more than the
machine's peak.

Run: ``.venv/bin/python benchmarks/seed_batching.py [--steps 100] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from isoplast_lite import AdamO, relu_mlp
from isoplast_lite.engine import StackedModel
from isoplast_lite.optim import hidden_head_groups

IN, DEPTH, OUT, BATCH, SEEDS, LR = 64, 3, 10, 32, 8, 1e-3
WORKLOADS = ((256, 0.1), (256, 0.0), (64, 0.1))  # (width, lambda)
WIDTH, LAM = WORKLOADS[0]  # set per workload by main()


def _data(steps):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SEEDS, steps, BATCH, IN, generator=g)
    y = torch.randint(0, OUT, (SEEDS, steps, BATCH), generator=g)
    return x, y


def _build(seed):
    return relu_mlp(IN, WIDTH, DEPTH, OUT, generator=torch.Generator().manual_seed(seed))


def run_batched(x, y):
    stack = StackedModel.build(lambda g: relu_mlp(IN, WIDTH, DEPTH, OUT, generator=g), range(SEEDS))
    head = set(stack.head_names())
    hidden = [p for n, p in stack.params.items() if n not in head]
    opt = AdamO(hidden_head_groups(hidden, [stack.params[n] for n in stack.head_names()], hidden_iso=LAM, seed_dims=1), lr=LR, iso_strength=LAM)
    t, t_opt = time.perf_counter(), 0.0
    for i in range(x.shape[1]):
        logits = stack(x[:, i])  # (S, B, O)
        loss = F.cross_entropy(logits.flatten(0, 1), y[:, i].flatten(), reduction="none").view(SEEDS, -1).mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t0 = time.perf_counter()
        opt.step()
        t_opt += time.perf_counter() - t0
    return time.perf_counter() - t, stack, t_opt


def run_sequential(x, y):
    models, total, t_opt = [], 0.0, 0.0
    for s in range(SEEDS):
        model = _build(s)
        hidden = [p for block in list(model)[:-1] for p in block.parameters()]
        opt = AdamO(hidden_head_groups(hidden, model[-1].parameters(), hidden_iso=LAM), lr=LR, iso_strength=LAM)
        t = time.perf_counter()
        for i in range(x.shape[1]):
            loss = F.cross_entropy(model(x[s, i]), y[s, i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t0 = time.perf_counter()
            opt.step()
            t_opt += time.perf_counter() - t0
        total += time.perf_counter() - t
        models.append(model)
    return total, models, t_opt


def flops_per_seed_step():
    dims = [IN] + [WIDTH] * DEPTH + [OUT]
    mats = list(zip(dims[1:], dims[:-1]))  # (out, in)
    fwd = sum(2 * BATCH * o * i for o, i in mats)
    iso = sum(4 * max(o, i) * min(o, i) ** 2 for o, i in mats[:-1]) if LAM > 0 else 0
    return 3 * fwd + iso


def matmul_peak(n=2048, repeats=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    global WIDTH, LAM
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    peak = matmul_peak()
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"matmul peak (2048^3 torch.mm, best of 5): {peak:.1f} GFLOP/s")
    for WIDTH, LAM in WORKLOADS:
        bench(args, peak)
    print(f"matmul peak again at the end: {matmul_peak():.1f} GFLOP/s (the machine is shared: compare the two)")


def bench(args, peak):
    x, y = _data(args.steps)
    run_batched(x[:, :5], y[:, :5])  # warm-up
    run_sequential(x[:, :5], y[:, :5])
    tb, ts, ob, os_ = [], [], [], []
    for _ in range(args.repeats):
        total, _, t_opt = run_batched(x, y)
        tb.append(total)
        ob.append(t_opt)
        total, _, t_opt = run_sequential(x, y)
        ts.append(total)
        os_.append(t_opt)
    # sanity: both paths train the same models
    _, stack, _ = run_batched(x[:, :10], y[:, :10])
    _, models, _ = run_sequential(x[:, :10], y[:, :10])
    err = max(float((stack.params[n][s] - p).detach().abs().max()) for s, m in enumerate(models) for n, p in m.named_parameters())
    b, s = statistics.median(tb), statistics.median(ts)
    flops = flops_per_seed_step() * SEEDS * args.steps
    print(f"\nworkload: {SEEDS} seeds x {args.steps} steps, MLP {IN}-{WIDTH}x{DEPTH}-{OUT}, batch {BATCH}, AdamO lambda={LAM}")
    print(f"batched:    {b:.3f} s  ({flops / b / 1e9:.2f} GFLOP/s)   repeats {[round(t, 3) for t in tb]}")
    print(f"sequential: {s:.3f} s  ({flops / s / 1e9:.2f} GFLOP/s)   repeats {[round(t, 3) for t in ts]}")
    ob_m, os_m = statistics.median(ob), statistics.median(os_)
    print(f"of which optimizer step: batched {ob_m:.3f} s ({100 * ob_m / b:.0f}%), sequential {os_m:.3f} s "
          f"({100 * os_m / s:.0f}%); forward + backward: batched {b - ob_m:.3f} s, sequential {s - os_m:.3f} s "
          f"(ratio {(s - os_m) / (b - ob_m):.2f}x)")
    print(f"speed ratio sequential / batched: {s / b:.2f}x  (target >= 3)")
    print(f"batched reaches {100 * flops / b / 1e9 / peak:.1f}% of the matmul peak, sequential {100 * flops / s / 1e9 / peak:.1f}%")
    print(f"max |batched - sequential| parameter difference after 10 steps: {err:.2e}")


if __name__ == "__main__":
    main()
