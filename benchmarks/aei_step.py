"""Time one AEI (GroupSort) training step against one ReLU step, same process, interleaved.

A step is forward + backward + ``torch.optim.Adam`` step on a 64-W-W-W-10 net (depth 3) with a
batch of 32 (the issue-budget runs), plus whatever keeps the AEI weights orthogonal:

=================  ==========================================================================
variant            what keeps the hidden weights orthogonal
=================  ==========================================================================
``relu``           nothing (``relu_mlp``, the baseline; ratio 1)
``aei``            the library's default ``aei_mlp`` and, if the library has it,
                   ``isoplast_lite.nn.retract_`` after each step (before issue 13: Cayley)
``cayley``         ``aei_mlp(orthogonal="cayley")``: the exact parametrization (a linear solve
                   in every forward and backward)
``ns1``, ``ns3``   ``aei_mlp`` + ``retract_(model, steps=1 | 3)`` after each step
``ns1/2``, ``ns1/4``  one retraction every 2 (4) steps (amortized; *not* what the runner does)
``matrix_exp``     ``parametrizations.orthogonal(orthogonal_map="matrix_exp")``
``qr``             a QR retraction after each step (``W <- Q diag(sign(diag R))``)
=================  ==========================================================================

Repeats alternate the order of the variants (reversed every other repeat) after a warm-up; the
median per-step times are compared with the ReLU step's. The FLOP model next to each ratio
counts matmul multiply-adds x 2: forward + backward = ``6 * batch * d_out * d_in`` per layer, a
Newton-Schulz step ``4 * d_out * d_in * min(d_out, d_in)`` per hidden matrix; "bound" is
``1 + retraction FLOPs / training FLOPs``, the ratio if both ran at the same FLOP rate, and
"at peak" adds the retraction's time at the measured ``torch.mm`` peak to the measured ReLU
step (what the ratio would be if the retraction ran at the peak). Target from the issue:
``aei`` <= 1.3x ``relu`` at width 256.

Measured (issue 13, 2026-11-30, torch 2.13 CPU, one thread, times = the thread's CPU time, load
8-9 on 2 cores; 20 repeats; matmul peak 88 GFLOP/s; the retraction code is unchanged by part 2):

==========  ============  ==================  ==========================================
width 256   ms/step       ratio to relu       FLOP model (bound / at peak)
==========  ============  ==================  ==========================================
relu        1.49          1.00
aei (ns1)   3.73          2.50 (paired 2.48)  5.81x / 2.05x
cayley      18.93         12.68
ns3         7.08          4.74                15.42x / 4.16x
ns1/2       2.75          1.84                3.40x / 1.53x
ns1/4       2.28          1.53                2.20x / 1.26x
==========  ============  ==================  ==========================================

At width 512: relu 4.06 ms, aei 17.16 ms (4.23x; at peak 4.02x), cayley 23.6x, ns1/4 1.87x.
The target (aei <= 1.3x relu at width 256, batch 32) is out of reach by FLOPs: one Björck step
costs ``4 d_out d_in min(d_out, d_in)`` per hidden matrix, 138.4 MFLOP at width 256, against
``6 B sum(d_out d_in)`` = 28.8 MFLOP for the whole forward + backward at B = 32; at the measured
peak the retraction alone takes 1.57 ms, more than the whole ReLU step (1.49 ms), so even a
retraction at peak gives 2.05x. 1.3x needs B >= 513 at every-step retraction, or a retraction
every k >= 16 steps at B = 32, which ``retraction_every_k.py`` shows loses orthogonality
(|sigma - 1| up to 7% already at k = 2).

At batch 128 (2026-11-30, after the batched per-task measurement and fused AdamO, which do not
touch this step; load about 1; 15 repeats): relu 2.21 ms, aei 4.78 ms (2.17x; FLOP bound 2.20x,
1.64x if the retraction ran at the ``mm`` peak), cayley 18.97 ms (8.59x). The target (1.3x) is
below the FLOP bound at any batch under about 1000 at width 256.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/aei_step.py [--widths 256 512] [--batch 32]
        [--repeats 40] [--variants relu aei cayley ns1 ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrizations

import isoplast_lite
from isoplast_lite import aei_mlp, relu_mlp

from _timing import clock, load, matmul_peak  # noqa: E402  (benchmarks/ is on sys.path)

try:  # the retraction API exists from issue 13 on; before, aei_mlp was Cayley-only
    from isoplast_lite.nn import retract_
except ImportError:  # pragma: no cover - only when timing an older checkout
    retract_ = None

IN, DEPTH, OUT = 64, 3, 10
ALL = ("relu", "aei", "cayley", "ns1", "ns3", "ns1/2", "ns1/4", "matrix_exp", "qr")

TARGET = 1.3


def _ns_model(width, gen):
    return aei_mlp(IN, width, DEPTH, OUT, orthogonal="newton-schulz", generator=gen)


def _qr_retract(model):
    with torch.no_grad():
        for block in model[:-1]:
            W = block[0].weight
            Q, R = torch.linalg.qr(W if W.shape[0] >= W.shape[1] else W.T)
            Q = Q * torch.sign(torch.diagonal(R)).unsqueeze(0)
            W.copy_(Q if W.shape[0] >= W.shape[1] else Q.T)


def build(variant, width):
    """``(model, after_step)`` for one variant; ``after_step(t)`` runs after optimizer step t."""
    gen = torch.Generator().manual_seed(0)
    nothing = lambda t: None  # noqa: E731
    if variant == "relu":
        return relu_mlp(IN, width, DEPTH, OUT, generator=gen), nothing
    if variant == "aei":
        model = aei_mlp(IN, width, DEPTH, OUT, generator=gen)
        return model, (nothing if retract_ is None else (lambda t: retract_(model)))
    if variant == "cayley":
        return aei_mlp(IN, width, DEPTH, OUT, orthogonal="cayley", generator=gen), nothing
    if variant == "matrix_exp":
        model = relu_mlp(IN, width, DEPTH, OUT, generator=gen)  # orthogonal init; GroupSort below
        for block in model[:-1]:
            block[1] = isoplast_lite.GroupSort(2)
            parametrizations.orthogonal(block[0], "weight", orthogonal_map="matrix_exp")
        return model, nothing
    model = _ns_model(width, gen)
    if variant == "qr":
        return model, lambda t: _qr_retract(model)
    steps, every = {"ns1": (1, 1), "ns3": (3, 1), "ns1/2": (1, 2), "ns1/4": (1, 4)}[variant]
    return model, lambda t: retract_(model, steps) if (t + 1) % every == 0 else None


def make_step(model, after_step, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    count = [0]

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        after_step(count[0])
        count[0] += 1

    return step


def flops(width, batch):
    dims = [(width, IN)] + [(width, width)] * (DEPTH - 1)
    train = sum(6 * batch * o * i for o, i in dims + [(OUT, width)])
    ns = sum(4 * o * i * min(o, i) for o, i in dims)
    return train, ns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=40, help="interleaved repeats (each times 4 steps per variant)")
    parser.add_argument("--variants", nargs="+", default=None, help=f"subset of {ALL}")
    args = parser.parse_args()
    variants = list(args.variants or (ALL if retract_ is not None else ("relu", "aei")))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, isoplast_lite from {os.path.dirname(isoplast_lite.__file__)}")
    print(f"start: {load()}", flush=True)
    peak = matmul_peak()
    print(f"matmul peak (1024^3 torch.mm, best of 20): {peak / 1e9:.1f} GFLOP/s")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, IN, generator=gen)
    y = torch.randint(0, OUT, (args.batch,), generator=gen)
    for width in args.widths:
        steps = {v: make_step(*build(v, width), x, y) for v in variants}
        for step in steps.values():  # warm-up
            for _ in range(4):
                step()
        times = {v: [] for v in variants}
        for r in range(args.repeats):
            for v in variants if r % 2 == 0 else variants[::-1]:
                t = clock()
                for _ in range(4):  # 4 steps: the amortized variants do whole periods
                    steps[v]()
                times[v].append((clock() - t) / 4)
        med = {v: statistics.median(ts) for v, ts in times.items()}
        train, ns = flops(width, args.batch)
        print(f"\n== width {width}, batch {args.batch}, Adam, {args.repeats} interleaved repeats of 4 steps; "
              f"training {train / 1e6:.1f} MFLOP/step, one NS retraction {ns / 1e6:.1f} MFLOP")
        print(f"{'variant':<11} {'ms/step':>8} {'ratio':>6} {'paired':>6}   FLOP model")
        for v in variants:
            paired = statistics.median(a / b for a, b in zip(times[v], times["relu"])) if "relu" in times else float("nan")
            note = ""
            if v in ("aei", "ns1", "ns3", "ns1/2", "ns1/4") and (v != "aei" or retract_ is not None):
                k = {"aei": 1, "ns1": 1, "ns3": 3, "ns1/2": 0.5, "ns1/4": 0.25}[v]
                note = (f"bound {1 + k * ns / train:.2f}x, at peak {(med['relu'] + k * ns / peak) / med['relu']:.2f}x"
                        if "relu" in med else "")
            ratio = med[v] / med["relu"] if "relu" in med else float("nan")
            print(f"{v:<11} {1e3 * med[v]:8.2f} {ratio:6.2f} {paired:6.2f}   {note}")
        if "relu" in med and "aei" in med:
            r = med["aei"] / med["relu"]
            print(f"aei / relu at width {width}: {r:.2f} (target <= {TARGET}: {'meets' if r <= TARGET else 'misses'})")
    print(f"\nend: {load()}")


if __name__ == "__main__":
    main()
