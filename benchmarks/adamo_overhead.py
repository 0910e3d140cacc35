"""Time one AdamO training step against one Adam training step (same process, interleaved).

A step is forward + backward + optimizer step on ``relu_mlp(in_dim, 512, 4, 10)`` with a batch
of 128 (our full-scale configuration: depth 4, width 512; the paper's widths and depths are unknown to us). AdamO applies the isometry step to
the four hidden weight matrices (head in a group with ``iso_strength=0``, as the runner does).
Target from the issue: ratio <= 1.15.

Two measurements, both against Adam in the same process:

1. Exact AdamO (``iso_every=1``, the default): single steps of Adam (torch's single-tensor loop),
   fused Adam, AdamO's per-tensor reference (``fused=False``, the implementation before the
   fused path) and AdamO (the default, fused on CPU), in turn (order reversed every repeat)
   after a warm-up; the medians are compared; then the optimizer steps alone, the same way.
2. Amortized AdamO (the default, fused path), ``iso_every`` in (1, 4, 16, 32), against fused Adam: with ``iso_every=k`` only every k-th step
   computes the isometry gradient, so single-step times are bimodal and their median would hide
   the expensive step. The unit timed is therefore a *block* of ``lcm(k's)`` consecutive steps
   (every block holds exactly ``block / k`` isometry steps for every k); the per-step time is the
   block time divided by its length. Blocks of all optimizers are interleaved (order rotated
   every repeat) and the medians over repeats are compared with Adam's ("ratio"; "paired" is the
   median of the per-repeat ratios, less sensitive to load that drifts during the run). "meets"
   is decided on "ratio".

The arithmetic estimate printed next to each ratio counts matmul multiply-adds only: forward +
backward is ``3 * batch * d_out * d_in`` per layer, the isometry gradient
``2 * d_out * d_in * min(d_out, d_in)`` per hidden matrix, divided by k. The exact AdamO step
is also compared with its FLOP-count bound: those FLOPs (x 2) at the peak of a ``1024^3``
``torch.mm`` measured in the same process.

Measured (issue 13, 2026-11-30, torch 2.13 CPU, ``OMP_NUM_THREADS=1``, times = the thread's CPU
time (``_timing.clock``), width 512, batch 128):

* before the fused path (load 7-9 on 2 cores, ``--repeats 20 --block-repeats 5``): Adam 17.3 ms,
  exact AdamO 52.0 ms (3.00x; FLOP model 3.66x), isometry gradients alone 30.1 ms; exact AdamO
  at 72% of its FLOP-count bound (37.5 ms at the measured 89 GFLOP/s peak; Adam at 59%).
  Amortized: k = 4 1.52x, k = 16 1.15x (meets), k = 32 1.08x.
* with the fused path (load 2.0-2.5, ``--repeats 40 --block-repeats 8``; the peak was 98
  GFLOP/s, so compare ratios, not the milliseconds of the line above):

  =============  ===================  ====================
  step           fwd + bwd + step     optimizer step alone
  =============  ===================  ====================
  Adam           12.61 ms             2.38 ms
  Adam fused     11.22 ms             0.99 ms
  AdamO ref      37.72 ms             28.49 ms
  AdamO (fused)  36.53 ms             27.59 ms
  =============  ===================  ====================

  Isometry gradients alone 28.08 ms. The fused path saves the elementwise passes (AdamO's
  optimizer step minus its isometry gradients: about 1 ms instead of 2.4 ms), x1.03 on the
  whole step here: at width 512 the exact step is the isometry matrix products, and they run
  at 94% of the FLOP-count bound (reference 91%; fused Adam 83%, Adam 74%). AdamO / Adam
  fused 3.25x (FLOP model 3.66x). Amortized, against fused Adam: k = 4 1.61x, k = 16 1.15x
  (meets), k = 32 1.09x. In the runner (``runner_speed.py``) the fused path is x1.21 per step
  at book scale (width 64, 8 seeds), where the elementwise passes weigh more.

Usage:
    .venv/bin/python benchmarks/adamo_overhead.py [--repeats 60] [--block-repeats 15]
        [--iso-every 1 4 16 32] [--threads N] [--in-dim 784] [--batch 128]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics

import torch
from torch import nn

from isoplast_lite import AdamO, isometry_grad, relu_mlp
from isoplast_lite.optim import hidden_head_groups

from _timing import clock, load, matmul_peak  # noqa: E402  (benchmarks/ is on sys.path)

TARGET = 1.15


def make_step(model, opt, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def make_adamo(model, iso_every, fused=None):
    hidden = [p for block in model[:-1] for p in block.parameters()]
    return AdamO(
        hidden_head_groups(hidden, model[-1].parameters(), hidden_iso=1e-3),
        lr=1e-4,
        iso_strength=1e-3,
        iso_every=iso_every,
        fused=fused,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=60, help="single-step repeats of the exact measurement")
    parser.add_argument("--block-repeats", type=int, default=15, help="block repeats of the iso_every measurement")
    parser.add_argument("--iso-every", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--in-dim", type=int, default=784)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"start: {load()}", flush=True)
    if torch.get_num_threads() > 1 and os.getloadavg()[0] > (os.cpu_count() or 1):
        print(f"note: {torch.get_num_threads()} torch threads on a machine whose load exceeds its "
              f"{os.cpu_count()} CPUs; oversubscribed threads can slow every step many times over "
              f"(try --threads 1)", flush=True)

    gen = torch.Generator().manual_seed(0)
    base = relu_mlp(args.in_dim, args.width, args.depth, 10, generator=gen)
    x = torch.randn(args.batch, args.in_dim, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)

    # FLOP model (multiply-adds x 2) for the arithmetic estimates
    dims = [(args.width, args.in_dim)] + [(args.width, args.width)] * (args.depth - 1)
    iso_flops = sum(2 * 2 * min(o, i) ** 2 * max(o, i) for o, i in dims)
    layer_dims = dims + [(10, args.width)]
    train_flops = sum(3 * 2 * args.batch * o * i for o, i in layer_dims)

    def estimate(k: int) -> float:
        return 1 + iso_flops / (k * train_flops)

    # ---------------------------------------------------------------- 1. exact AdamO, single steps
    # "AdamO" is the library's default (the fused path on CPU), "AdamO ref" its per-tensor
    # reference (fused=False: the implementation before the fused path, op for op); each is
    # compared with the Adam of the same kind (torch's single-tensor loop, or its fused kernel).
    models = {name: copy.deepcopy(base) for name in ("Adam", "Adam fused", "AdamO ref", "AdamO")}
    opts = {
        "Adam": torch.optim.Adam(models["Adam"].parameters(), lr=1e-4),
        "Adam fused": torch.optim.Adam(models["Adam fused"].parameters(), lr=1e-4, fused=True),
        "AdamO ref": make_adamo(models["AdamO ref"], 1, fused=False),
        "AdamO": make_adamo(models["AdamO"], 1),
    }
    steps = {name: make_step(models[name], opts[name], x, y) for name in opts}
    adamo_model = models["AdamO"]

    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    for r in range(args.repeats):
        order = list(steps) if r % 2 == 0 else list(steps)[::-1]
        for name in order:
            t0 = clock()
            steps[name]()
            times[name].append(clock() - t0)
    # the optimizer steps alone (gradients of the last step kept), same interleaving
    opt_times = {name: [] for name in opts}
    for r in range(args.repeats):
        order = list(opts) if r % 2 == 0 else list(opts)[::-1]
        for name in order:
            t0 = clock()
            opts[name].step()
            opt_times[name].append(clock() - t0)
    opt_med = {name: statistics.median(ts) for name, ts in opt_times.items()}

    med = {name: statistics.median(ts) for name, ts in times.items()}
    # the isometry gradients alone, for the record
    with torch.no_grad():
        weights = [block[0].weight for block in adamo_model[:-1]]
        iso_times = []
        for _ in range(args.repeats // 2):
            t0 = clock()
            for w in weights:
                isometry_grad(w)
            iso_times.append(clock() - t0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, model relu_mlp({args.in_dim}, "
          f"{args.width}, {args.depth}, 10), batch {args.batch}")
    print(f"== exact AdamO (iso_every=1): {args.repeats} interleaved single-step repeats")
    for name in steps:
        print(f"median {name + ' step':<16} (fwd+bwd+step): {1e3 * med[name]:6.2f} ms   optimizer step alone {1e3 * opt_med[name]:6.2f} ms")
    print(f"median isometry gradients alone : {1e3 * statistics.median(iso_times):.2f} ms")
    print(f"ratio AdamO / Adam fused: {med['AdamO'] / med['Adam fused']:.3f}, AdamO ref / Adam: {med['AdamO ref'] / med['Adam']:.3f}, "
          f"AdamO / Adam: {med['AdamO'] / med['Adam']:.3f}  (target <= {TARGET})")
    print(f"fused AdamO against its reference: whole step x{med['AdamO ref'] / med['AdamO']:.3f}, "
          f"optimizer step alone x{opt_med['AdamO ref'] / opt_med['AdamO']:.3f}")
    # Why: the exact isometry gradient needs two (d x d x d')-matmuls per hidden matrix, which
    # does not depend on the batch, while forward + backward costs 3 matmuls of (batch x d x d').
    print(f"FLOPs: forward+backward {train_flops / 1e9:.2f} G, isometry gradients {iso_flops / 1e9:.2f} G "
          f"-> matmul-bound ratio about {estimate(1):.2f}")
    peak = matmul_peak()
    bound = (train_flops + iso_flops) / peak
    print(f"exact AdamO step against its FLOP-count bound at the measured matmul peak ({peak / 1e9:.1f} GFLOP/s): "
          f"bound {1e3 * bound:.2f} ms, measured {1e3 * med['AdamO']:.2f} ms = {100 * bound / med['AdamO']:.0f}% of the bound "
          f"(AdamO ref: {100 * bound / med['AdamO ref']:.0f}%; Adam fused: {100 * (train_flops / peak) / med['Adam fused']:.0f}%, "
          f"Adam: {100 * (train_flops / peak) / med['Adam']:.0f}%)")
    print(f"({load()})", flush=True)

    # ---------------------------------------------------------------- 2. iso_every, blocks of steps
    ks = sorted(set(args.iso_every))
    block = math.lcm(*ks)
    runs = {"Adam": None, **{f"AdamO k={k}": k for k in ks}}
    block_steps = {}
    for name, k in runs.items():
        model = copy.deepcopy(base)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True) if k is None else make_adamo(model, k)
        block_steps[name] = make_step(model, opt, x, y)

    def run_block(step):
        for _ in range(block):
            step()

    for step in block_steps.values():  # warm-up: one whole block, so every block starts at a multiple of k
        run_block(step)
    names = list(block_steps)
    btimes = {name: [] for name in names}
    for r in range(args.block_repeats):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        if r % 2:
            order.reverse()
        for name in order:
            t0 = clock()
            run_block(block_steps[name])
            btimes[name].append((clock() - t0) / block)

    bmed = {name: statistics.median(ts) for name, ts in btimes.items()}
    print(f"== amortized AdamO: {args.block_repeats} interleaved repeats of blocks of {block} steps "
          f"(per-step time = block time / {block})")
    print(f"{'optimizer':<14} {'ms/step':>8} {'IQR ms':>13} {'ratio':>6} {'paired':>6} {'estimate':>8}  target <= {TARGET}")
    q = lambda ts: statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0]] * 3
    qa = q(btimes["Adam"])
    print(f"{'Adam':<14} {1e3 * bmed['Adam']:8.2f} {1e3 * qa[0]:6.2f}-{1e3 * qa[2]:<6.2f} {1.0:6.3f} {1.0:6.3f} {1.0:8.2f}")
    meets = []
    for k in ks:
        name = f"AdamO k={k}"
        ratio = bmed[name] / bmed["Adam"]
        qs = q(btimes[name])
        # median over repeats of the ratio to Adam's block in the same repeat (robust to load drift)
        paired = statistics.median(a / b for a, b in zip(btimes[name], btimes["Adam"]))
        ok = ratio <= TARGET
        if ok:
            meets.append(k)
        print(f"{name:<14} {1e3 * bmed[name]:8.2f} {1e3 * qs[0]:6.2f}-{1e3 * qs[2]:<6.2f} {ratio:6.3f} {paired:6.3f} {estimate(k):8.2f}  "
              f"{'meets' if ok else 'misses'}")
    if meets:
        print(f"iso_every settings meeting the target ratio <= {TARGET}: {', '.join(map(str, meets))} "
              f"(smallest: iso_every={min(meets)})")
    else:
        print(f"no iso_every setting met the target ratio <= {TARGET}")
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
