"""What retracting only every k optimizer steps costs in orthogonality (not a timing).

Amortizing the Newton-Schulz retraction (one Björck step after every k-th Adam step instead of
after every step) divides its cost by k, the only way to bring the AEI step near a ReLU step at
batch 32 (``aei_step.py``). This script measures what it gives up: an ``aei_mlp(64, 256, 3, 10)``
trained with Adam (lr 1e-3, batch 32) for 1 000 steps on 512 Digits images with random labels,
retracted every k steps; after every step, ``max |sigma - 1|`` over the singular values of the
hidden weights (= the hidden-layer Jacobian singular values of a GroupSort net), and the same
right after each retraction, and the final ``max ||W^T W - I||_F``.

Measured (torch 2.13 CPU, one thread; the numbers do not depend on the machine's load):

===  ==================  ====================  =================  =========
k    max |sigma-1| ever  after a retraction    final ||W^TW-I||_F  train acc
===  ==================  ====================  =================  =========
1    8.3e-3              8.3e-3                2.0e-3             0.973
2    7.4e-2              1.7e-2                6.3e-3             0.982
4    1.3e-1              3.3e-2                1.9e-2             0.990
===  ==================  ====================  =================  =========

One Adam step moves every entry by about lr, a matrix of spectral norm up to ``lr * sqrt(d_out
d_in)`` = 0.26 at width 256, so two unretracted steps already take the singular values 7% away
from 1 and one Björck step no longer brings them back (its error is quadratic in the distance).
The runner therefore retracts after every step (``AEIAdam.retraction_steps = 1``); amortizing
is left out.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/retraction_every_k.py [--every 1 2 4] [--steps 1000]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from isoplast_lite import aei_mlp
from isoplast_lite.nn import retract_
from isoplast_lite.tasks import load_source


def hidden_sv_error(model) -> float:
    with torch.no_grad():
        return max(float((torch.linalg.svdvals(b[0].weight.double()) - 1).abs().max()) for b in model[:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args()
    src = load_source("digits")
    X = src.x_train[:512].float()
    Y = torch.randint(0, 10, (512,), generator=torch.Generator().manual_seed(1))
    for k in args.every:
        model = aei_mlp(64, args.width, 3, 10, generator=torch.Generator().manual_seed(0))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(2)
        ever = after = 0.0
        for t in range(args.steps):
            idx = torch.randint(0, 512, (32,), generator=g)
            opt.zero_grad()
            F.cross_entropy(model(X[idx]), Y[idx]).backward()
            opt.step()
            if (t + 1) % k == 0:
                retract_(model)
                after = max(after, hidden_sv_error(model))
            ever = max(ever, hidden_sv_error(model))
        with torch.no_grad():
            grams = [w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T for w in (b[0].weight.double() for b in model[:-1])]
            err = max(float(torch.linalg.matrix_norm(G - torch.eye(G.shape[0], dtype=G.dtype))) for G in grams)
            acc = float((model(X).argmax(1) == Y).float().mean())
        print(f"k={k}: max|sigma-1| ever {ever:.2e}, right after a retraction {after:.2e}, "
              f"final ||W^T W - I||_F {err:.2e}, train acc {acc:.3f}", flush=True)


if __name__ == "__main__":
    main()
