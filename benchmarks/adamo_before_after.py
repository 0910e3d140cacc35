"""AdamO's optimizer step from another ``optim.py`` (e.g. a checkout before a refactor) against
this one: same process, same models, interleaved, and the parameters compared bit for bit.

Both optimizers step the same ``relu_mlp(784, W, 4, 10)`` (isometry on the hidden weights, the
head in a group with ``iso_strength=0``, as ``adamo_overhead.py``) with a fixed gradient, fused
and per-tensor reference paths each. The other file is loaded as a module of this package, so
its relative imports resolve here (it must not import names this package lost). Times are the
thread's CPU time (``_timing.clock``, one thread); the order of the four optimizers is reversed
every other repeat; "paired" is the median of the per-repeat ratios. ``--swap`` builds this
tree's optimizers first: the position in the sequence alone moves a ratio by a few percent on a
loaded machine, so run both orders and compare their spread, not one number.

Measured (issue 25, 2026-12-04, torch 2.13 CPU, ``OMP_NUM_THREADS=1``, load 20-24 on 2 cores),
before = ``optim.py`` of main at b0f2523 (its own Gram/direction helpers), after = the one
isometry kernel: parameters equal bit for bit after every run (43 steps at width 512, 403 and
2003 at width 64), both paths.

===========  =========  ==========================  ==========================
width        repeats    fused after/before           reference after/before
===========  =========  ==========================  ==========================
512          40         1.003 (paired 0.996)         1.007 (paired 1.028)
64           2000       1.086 (paired 1.093)         0.973 (paired 0.961)
64, --swap   2000       0.993 (paired 0.962)         1.043 (paired 1.047)
===========  =========  ==========================  ==========================

The width-64 ratios flip with the construction order (position, not code); the kernel alone
(``isometry_direction`` against the old ``optim._isometry_direction`` on the four hidden
matrices, 3000 interleaved repeats) was 225 us against 223 us (1.01).

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adamo_before_after.py BEFORE/optim.py [--width 512] [--repeats 40] [--swap]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys

import torch

from isoplast_lite import relu_mlp
from isoplast_lite.optim import AdamO, hidden_head_groups

from _timing import clock, load  # noqa: E402  (benchmarks/ is on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="the other optim.py")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--swap", action="store_true", help="build this tree's optimizers first")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("isoplast_lite._optim_before", args.before)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old
    spec.loader.exec_module(old)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {load()}")

    def make(cls, fused):
        model = relu_mlp(784, args.width, 4, 10, generator=torch.Generator().manual_seed(0))
        opt = cls(hidden_head_groups(model[:-1].parameters(), model[-1].parameters(), hidden_iso=0.1), lr=1e-3, fused=fused)
        model(torch.randn(128, 784, generator=torch.Generator().manual_seed(1))).square().mean().backward()
        return model, opt

    order = (("after", AdamO), ("before", old.AdamO)) if args.swap else (("before", old.AdamO), ("after", AdamO))
    setups = {f"{n} {'fused' if f else 'ref'}": make(c, f) for n, c in order for f in (True, False)}
    for _ in range(3):
        for _, opt in setups.values():
            opt.step()
    times = {k: [] for k in setups}
    for r in range(args.repeats):
        for k in list(setups) if r % 2 == 0 else list(reversed(setups)):
            t0 = clock()
            setups[k][1].step()
            times[k].append(clock() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in med.items()))
    for f in ("fused", "ref"):
        paired = statistics.median(a / b for a, b in zip(times[f"after {f}"], times[f"before {f}"]))
        same = all(torch.equal(p, q) for p, q in zip(setups[f"after {f}"][0].parameters(), setups[f"before {f}"][0].parameters()))
        print(f"{f}: after / before {med[f'after {f}'] / med[f'before {f}']:.3f} (paired {paired:.3f}); parameters equal bit for bit: {same}")


if __name__ == "__main__":
    main()
