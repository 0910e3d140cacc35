"""The runner on chapter 8's long small-network streams: where a task's time goes, before and after.

On these streams (width 32-64, depth 2, 90-250 steps per task, 8 seeds) the per-task
measurement (accuracies, dormant/dead units, feature rank, layer Jacobians, the layer-wise eNTK
and its spectrum, ``run._task_rows``) used to cost as much as the training. This script runs
``isoplast_lite.run.run(cfg, cache_dir=False, progress=False)`` on two of them and reports, per
version, the CPU time of the whole run, of the data loading (``load_source``: MNIST-1D is
generated at each run) and of the measurement (``_task_rows``), the rest being training and
staging. With ``--baseline DIR`` (``git archive main isoplast_lite | tar -x -C /tmp/before``)
the older version is imported in the same process under another name and timed interleaved
with the current one (order alternated every repeat); ratios are before / after.

Streams (``tools/precompute_streams.py``, fewer tasks): ``label-shuffle-mnist1d`` (20 tasks x
250 steps, width 32, batch 64) and ``permuted-digits`` (10 tasks x 90 steps, width 64, batch 16),
both depth 2, probe 8, orthogonal init, 8 seeds.

Measured (issue 13, seed-batched measurement, torch 2.13 CPU, ``OMP_NUM_THREADS=1``, CPU time,
machine shared with a 2-process precomputation, ``--repeats 2``, baseline = main at 9072df5),
medians, seconds per run:

=====================  ======  ===========  ==============  ==================  =======  ================
stream                 method  total (s)    data load (s)   measurement (s,     x total  x measurement
                               before/after before/after    ms/task) before/after
=====================  ======  ===========  ==============  ==================  =======  ================
label-shuffle-mnist1d  adam    10.88 / 8.35 1.60 / 1.19     2.25 / 0.94         1.30     2.39
                                                            (112 / 47)
permuted-digits        adam    2.49 / 1.51  0.22 / 0.02     1.36 / 0.54         1.65     2.53
                                                            (136 / 54)
=====================  ======  ===========  ==============  ==================  =======  ================

Training and staging (the rest) did not change: 7.0 / 6.2 s and 0.91 / 0.95 s. So on
label-shuffle-mnist1d (250 steps at batch 64, about 0.3 s per task) the measurement was about a
quarter of a task and is now about a seventh; on permuted-digits (90 steps at batch 16, about
0.09 s per task) it was 60% of a task and is now 35%.

Where the measurement's time went (permuted-digits, 8 seeds, ms per task, timed piece by piece
before the change): layer_isometry 41 (per-example ``svdvals`` of the active rows: 128 small
calls), the pooled layer-Jacobian singular values 27 (a second ``svdvals`` of the same
Jacobians), the eNTK 17 (``vmap(jacrev)`` through forward hooks, per seed) and its summary 7,
the features and dormant/dead fractions 14 and their effective rank 15 (a second forward pass
per seed), train/test evaluation 13, model copies 4. After: 54 ms, of which one batched
``svdvals`` of the masked Jacobians per ReLU block ~10 ms each, of the last features ~6 ms, of
the weights ~2 ms per block, the forward pass on the task data ~4 ms, the eNTK with its
``eigvalsh`` and summary a few ms: most of what is left is LAPACK on the needed matrices.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stream_measure.py [--baseline /tmp/before]
        [--methods adam] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

import isoplast_lite.run  # noqa: F401  (the "current" version timed below)

from _timing import clock, load  # noqa: E402  (benchmarks/ is on sys.path)
from runner_speed import load_baseline  # noqa: E402

STREAMS = {
    "label-shuffle-mnist1d": dict(n_tasks=20, steps_per_task=250, width=32, depth=2, n_train=None, batch_size=64, lr=1e-2),
    "permuted-digits": dict(n_tasks=10, steps_per_task=90, width=64, depth=2, n_train=None, batch_size=16, lr=3e-3),
}
COMMON = dict(seeds=8, probe_size=8, init="orthogonal")


def _timed(mod, name: str, spent: dict):
    """Wrap ``mod.<name>`` so that its CPU time accumulates in ``spent[name]``."""
    inner = getattr(mod, name)

    def wrapper(*args, **kwargs):
        t = clock()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[name] += clock() - t

    setattr(mod, name, wrapper)


def timed_run(mod, stream: str, method: str) -> dict:
    """CPU seconds of one whole run: ``total``, ``load_source`` and ``_task_rows``."""
    spent = {"load_source": 0.0, "_task_rows": 0.0}
    saved = {n: getattr(mod, n) for n in spent}
    for n in spent:
        _timed(mod, n, spent)
    try:
        cfg = mod.Config(stream, method, **STREAMS[stream], **COMMON)
        t = clock()
        mod.run(cfg, cache_dir=False, progress=False)
        spent["total"] = clock() - t
    finally:
        for n, f in saved.items():
            setattr(mod, n, f)
    return spent


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="folder holding an older isoplast_lite/ to compare with")
    parser.add_argument("--methods", nargs="+", default=["adam"])
    parser.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    versions = {"after": sys.modules["isoplast_lite.run"]}
    if args.baseline:
        versions = {"before": load_baseline(args.baseline), **versions}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load {load()}")
    for stream in args.streams:
        for method in args.methods:
            samples = {v: [] for v in versions}
            names = list(versions)
            for r in range(args.repeats):
                for v in names if r % 2 == 0 else names[::-1]:
                    samples[v].append(timed_run(versions[v], stream, method))
            med = {v: {k: statistics.median(s[k] for s in samples[v]) for k in samples[v][0]} for v in versions}
            n = STREAMS[stream]["n_tasks"]
            for v, m in med.items():
                rest = m["total"] - m["load_source"] - m["_task_rows"]
                print(f"{stream:22s} {method:10s} {v:6s} total {m['total']:7.2f} s  load {m['load_source']:6.2f} s  "
                      f"measure {m['_task_rows']:6.2f} s ({1e3 * m['_task_rows'] / n:6.1f} ms/task)  train+rest {rest:6.2f} s")  # fmt: skip
            if "before" in med:
                b, a = med["before"], med["after"]
                no_load = (b["total"] - b["load_source"]) / (a["total"] - a["load_source"])
                print(f"{'':33s} x total {b['total'] / a['total']:.2f}, x without data loading {no_load:.2f}, "
                      f"x measurement {b['_task_rows'] / a['_task_rows']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
