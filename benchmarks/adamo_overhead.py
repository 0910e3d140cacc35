"""Time one AdamO training step against one Adam training step (same process, interleaved).

A step is forward + backward + optimizer step on ``relu_mlp(in_dim, 512, 4, 10)`` with a batch
of 128 (the paper's supervised setting: depth 4, width 512). AdamO applies the isometry step to
the four hidden weight matrices (head in a group with ``iso_strength=0``, as the runner does).
Repeats alternate Adam/AdamO (order flipped every repeat) after a warm-up; the medians are
compared. Target from the issue: ratio <= 1.15.

Usage:
    .venv/bin/python benchmarks/adamo_overhead.py [--repeats 60] [--in-dim 784] [--batch 128]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from isoplast_lite import AdamO, isometry_grad, relu_mlp


def make_step(model, opt, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--in-dim", type=int, default=784)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    base = relu_mlp(args.in_dim, args.width, args.depth, 10, generator=gen)
    x = torch.randn(args.batch, args.in_dim, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)

    adam_model, adamo_model = copy.deepcopy(base), copy.deepcopy(base)
    adam = torch.optim.Adam(adam_model.parameters(), lr=1e-4)
    hidden = [p for block in adamo_model[:-1] for p in block.parameters()]
    adamo = AdamO(
        [{"params": hidden}, {"params": adamo_model[-1].parameters(), "iso_strength": 0.0}],
        lr=1e-4,
        iso_strength=1e-3,
    )
    steps = {"Adam": make_step(adam_model, adam, x, y), "AdamO": make_step(adamo_model, adamo, x, y)}

    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    for r in range(args.repeats):
        order = ["Adam", "AdamO"] if r % 2 == 0 else ["AdamO", "Adam"]
        for name in order:
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)

    med = {name: statistics.median(ts) for name, ts in times.items()}
    # the isometry gradients alone, for the record
    with torch.no_grad():
        weights = [block[0].weight for block in adamo_model[:-1]]
        iso_times = []
        for _ in range(args.repeats // 2):
            t0 = time.perf_counter()
            for w in weights:
                isometry_grad(w)
            iso_times.append(time.perf_counter() - t0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, model relu_mlp({args.in_dim}, "
          f"{args.width}, {args.depth}, 10), batch {args.batch}, {args.repeats} interleaved repeats")
    print(f"median Adam step  (fwd+bwd+step): {1e3 * med['Adam']:.2f} ms")
    print(f"median AdamO step (fwd+bwd+step): {1e3 * med['AdamO']:.2f} ms")
    print(f"median isometry gradients alone : {1e3 * statistics.median(iso_times):.2f} ms")
    print(f"ratio AdamO / Adam: {med['AdamO'] / med['Adam']:.3f}  (target <= 1.15)")
    # Why: the exact isometry gradient needs two (d x d x d')-matmuls per hidden matrix, which
    # does not depend on the batch, while forward + backward costs 3 matmuls of (batch x d x d').
    dims = [(args.width, args.in_dim)] + [(args.width, args.width)] * (args.depth - 1)
    iso_flops = sum(2 * 2 * min(o, i) ** 2 * max(o, i) for o, i in dims)
    layer_dims = dims + [(10, args.width)]
    train_flops = sum(3 * 2 * args.batch * o * i for o, i in layer_dims)
    print(f"FLOPs: forward+backward {train_flops / 1e9:.2f} G, isometry gradients {iso_flops / 1e9:.2f} G "
          f"-> matmul-bound ratio about {1 + iso_flops / train_flops:.2f}")


if __name__ == "__main__":
    main()
