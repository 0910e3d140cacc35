"""Time ``layer_isometry`` against the runner's old isometry statistic ``_jacobian_spread``.

Both on the same model and probe: width 256, depth 3 (the 64-256-256-256-10 MLP of our probes),
16 probe inputs, float32, one thread, the way the runner calls them once per seed and task.
``_jacobian_spread`` (now ``isoplast_lite.measure.jacobian_spread``) takes ``vmap(jacrev(block))`` per block and the
SVD of every block Jacobian; ``layer_isometry`` needs no autograd for ReLU, LayerNorm, GroupSort
and linear blocks (one forward, the block Jacobian's active rows in closed form, one ``svdvals``
per input; GroupSort and linear blocks: one ``svdvals`` of the weight), and adds the weights'
singular values. Prints the median times (interleaved repeats) and the ratio.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/layer_isometry.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _timing import load
from isoplast_lite import aei_mlp, relu_mlp
from isoplast_lite.diagnostics import layer_isometry
from isoplast_lite.measure import jacobian_spread as _jacobian_spread  # the labels below keep its old name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--probe", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    models = {
        "relu": relu_mlp(64, 256, 3, 10, generator=gen),
        "relu+layernorm": relu_mlp(64, 256, 3, 10, layernorm=True, generator=gen),
        "aei (groupsort)": aei_mlp(64, 256, 3, 10, generator=gen),
    }
    probe = torch.randn(args.probe, 64, generator=gen)
    print(f"width 256, depth 3, {args.probe} probe inputs, 1 thread; {load()}")
    for name, model in models.items():
        layer_isometry(model, probe), _jacobian_spread(model, probe)  # warm-up
        times = {"layer_isometry": [], "_jacobian_spread": []}
        for _ in range(args.repeats):
            for label, fn in (("layer_isometry", layer_isometry), ("_jacobian_spread", _jacobian_spread)):
                t0 = time.perf_counter()
                fn(model, probe)
                times[label].append(time.perf_counter() - t0)
        new, old = statistics.median(times["layer_isometry"]), statistics.median(times["_jacobian_spread"])
        print(f"{name:>16}: layer_isometry {1e3 * new:7.1f} ms, _jacobian_spread {1e3 * old:7.1f} ms, ratio {new / old:.2f}")


if __name__ == "__main__":
    main()
