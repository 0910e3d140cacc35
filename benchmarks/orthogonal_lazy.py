"""The cost of OrthogonalLinear's lazy retraction (issue 25, item 5), same process, interleaved.

Since issue 25 a Newton–Schulz ``OrthogonalLinear`` retracts itself at the first forward after
its weight changed in place (the weight's version counter, a Python integer, tells it; no device
sync). Two measurements, medians of the thread's CPU time (``_timing.clock``), variants
interleaved and their order reversed every other repeat after a warm-up:

1. A training step (forward + backward + ``torch.optim.Adam`` step) of ``aei_mlp(64, W, 3, 10)``
   at batch 32 (the AEI runs of ``aei_step.py``):

   - ``explicit``: ``nn.retract_(model)`` after each step, the loop the book wrote before (the
     next forward then only compares a version number);
   - ``lazy``: no retraction call at all (the forward retracts);
   - ``relu``: ``relu_mlp`` with the same shape, the baseline of ``aei_step.py``.

   ``lazy / explicit`` is the cost of doing the same retraction at the forward instead of after
   the step (expected 1: the same work), ``lazy / relu`` the AEI step's ratio as before.
2. A forward alone with no change of the weight (inference, or a second forward in a step):
   ``OrthogonalLinear`` against ``nn.Linear`` (and ``torch.nn.functional.linear``) on the same
   tensors, batch 32: the price of the version check.

Measured (issue 25, 2026-12-04, torch 2.13 CPU, ``OMP_NUM_THREADS=1``, load 22-25 on 2 cores,
so compare ratios only; 40 repeats, two runs): width 256, batch 32: relu 2.10 ms, explicit
4.34-4.38 ms, lazy 4.39 ms: lazy / explicit 1.011 and 1.003 (paired 0.999 and 1.010), the same
work at another moment; lazy / relu 2.08-2.09 (``aei_step.py``'s 2.50 at load 8 was measured
with the explicit retraction). A forward with no change: nn.Linear 58.3 us, OrthogonalLinear
59.5 us (1.02x: the version check costs about a microsecond).

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/orthogonal_lazy.py [--width 256] [--repeats 40]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from isoplast_lite.nn import OrthogonalLinear, aei_mlp, relu_mlp, retract_

from _timing import clock, load  # noqa: E402  (benchmarks/ is on sys.path)


def make_step(model, explicit: bool, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if explicit:
            retract_(model)

    return step


def interleaved(fns: dict, repeats: int, warmup: int, inner: int = 1) -> dict:
    for _ in range(warmup):
        for f in fns.values():
            f()
    times = {k: [] for k in fns}
    for r in range(repeats):
        for k in list(fns) if r % 2 == 0 else list(reversed(fns)):
            t0 = clock()
            for _ in range(inner):
                fns[k]()
            times[k].append((clock() - t0) / inner)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {load()}")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(args.batch, 64, generator=g), torch.randint(0, 10, (args.batch,), generator=g)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    steps = {
        "relu": make_step(relu_mlp(64, args.width, 3, 10, generator=gen()), False, x, y),
        "explicit": make_step(aei_mlp(64, args.width, 3, 10, generator=gen()), True, x, y),
        "lazy": make_step(aei_mlp(64, args.width, 3, 10, generator=gen()), False, x, y),
    }
    times = interleaved(steps, args.repeats, args.warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = statistics.median(a / b for a, b in zip(times["lazy"], times["explicit"]))
    print(f"training step, width {args.width}, batch {args.batch}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in med.items()))
    print(f"  lazy / explicit {med['lazy'] / med['explicit']:.3f} (paired {paired:.3f}); lazy / relu {med['lazy'] / med['relu']:.2f}; "
          f"explicit / relu {med['explicit'] / med['relu']:.2f}")  # fmt: skip

    layer = OrthogonalLinear(args.width, args.width, generator=gen())
    h = torch.randn(args.batch, args.width, generator=g)
    w, b = layer.weight.detach(), layer.bias.detach()
    linear = torch.nn.Linear(args.width, args.width)
    linear.load_state_dict(layer.state_dict())
    with torch.no_grad():
        fwd = {"functional": lambda: torch.nn.functional.linear(h, w, b), "nn.Linear": lambda: linear(h), "layer": lambda: layer(h)}
        ft = interleaved(fwd, args.repeats, args.warmup, inner=200)
    fm = {k: statistics.median(v) for k, v in ft.items()}
    print(f"forward with no change, {args.width} x {args.width}, batch {args.batch}: "
          f"functional {fm['functional'] * 1e6:.1f} us, nn.Linear {fm['nn.Linear'] * 1e6:.1f} us, OrthogonalLinear {fm['layer'] * 1e6:.1f} us; "
          f"OrthogonalLinear / nn.Linear {fm['layer'] / fm['nn.Linear']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
