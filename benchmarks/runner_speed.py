"""How far the runner is from the machine's limit, and how much faster than a baseline checkout.

For each method and scale, ``isoplast_lite.run.run`` (no cache, no progress bar) is timed on
2 tasks x ``--short`` steps and on 2 tasks x ``--long`` steps; the difference gives the time per
training step (all seeds at once) and the remainder the time per task spent outside training
(the per-task measurements: accuracies, dormant/dead units, ranks, layer Jacobians, eNTK).

* steps/s against the **FLOP-count bound**: the matmul FLOPs of one step (forward + backward
  ``6 * batch * d_out * d_in`` per layer and seed, plus ``4 * d_out * d_in * min(d_out, d_in)``
  per hidden matrix for a Newton-Schulz retraction (``aei-*``) or AdamO's isometry gradient)
  divided by the peak of a large ``torch.mm`` measured in the same process;
* with ``--baseline DIR`` (a checkout of an older ``isoplast_lite``, e.g.
  ``git archive 881f2e2 isoplast_lite | tar -x -C /tmp/before``), the same runs of that version,
  imported in the same process under another name and interleaved with the current one
  (order alternated every repeat), and the estimated time of chapter 8's book-scale
  precomputation (``tools/precompute_book_results.py``: every sweep's configs, per-step and
  per-task costs measured here, summed) for both versions; with ``--aei-orthogonal
  newton-schulz`` also for the current version with the AEI rows under Newton-Schulz (the
  library's default and the paper's) instead of the sweeps' ``orthogonal=cayley``, each ratio
  against the baseline as shipped; printed per method.

Scales: ``book`` = width 64, depth 3, 256 images, batch 32, 8 seeds (chapter 8's random-label
budget; its shift budget has 512 images) and ``w256`` = width 256, depth 3, 512 images,
batch 32, 4 seeds (the issue budget). Run with ``OMP_NUM_THREADS=1`` (the precomputation's
setting): times are then the thread's CPU time (``_timing.clock``), which a shared machine's
load barely moves (wall-clock times at load 9 gave negative per-step differences); still compare
ratios.

Measured (issue 13 part 2, 2026-11-30, torch 2.13 CPU, one thread, CPU time, load 5-10 on 2
cores, ``--repeats 2``, baseline = main at 0f370e3, i.e. after part 1; matmul peak 91 GFLOP/s):

=====  ========  ================  ================  =======  =============  ===========
scale  method    ms/step (before)  ms/step (after)   x step   % bound after  x per task
=====  ========  ================  ================  =======  =============  ===========
book   adam      1.92              1.67              1.15     13.0%          1.54
book   aei-adam  2.82              2.54              1.11     19.5%          1.64
book   adamo     2.77              2.41              1.15     20.5%          1.41
w256   adam      5.90              5.23              1.13     24.2%          1.83
w256   aei-adam  13.98             12.57             1.11     58.5%          1.94
w256   adamo     13.45             12.09             1.11     60.8%          1.69
=====  ========  ================  ================  =======  =============  ===========

Per task outside training (s, after): book 0.20-0.24, w256 0.67-0.82. The per-step ratios carry
about +-10% between processes (AdamO's step, unchanged by part 2, reads x1.11-1.15); the
optimizer microbenchmark is cleaner (fused Adam x1.22 at w256, x1.32 at book over foreach;
foreach x1.03-1.04 over the per-tensor loop). The runner at width 256 (Adam) is at 24% of the
matmul FLOP bound: the bound leaves out the optimizer's elementwise passes over 600 k
parameters and the batched (4, 32, 256) products run far below the 1024^3 peak; the AEI and
AdamO steps reach 58-61% because their extra FLOPs are (S, 256, 256) products near the peak.
Issue budget (20 tasks x 800 steps, 4 seeds): ReLU run 20 (800 x 5.23 ms + 0.81 s) = 100 s,
AEI run 215 s, 2.15x (before: 124 s and 250 s, 2.02x).
Chapter 7's precomputation (``--book-estimate --repeats 1 --short 10 --long 60``, with fused
Adam, before the last two per-task changes): before 665 s, after 643 s, x1.03 (an earlier run
with foreach Adam: 798 s and 757 s, x1.05). Its AEI rows use the exact Cayley parametrization
(the shipped results): 9 ms/step against 1.2 ms for Adam at book scale and 0.9 s/task, about half
of the total, and part 2 does not change their step. (Estimates made before this script passed
each sweep's settings timed the AEI rows with Newton-Schulz, which overstates the speed-up.)

Issue 13 part 3 (fused AdamO, ``empirical_ntk`` default; 2026-11-30, same settings, baseline =
main at 99de622, i.e. after part 2; load 2.4-2.9, ``--repeats 3``, matmul peak 92 GFLOP/s):

=====  =========  ================  ===============  ======  ==============  =============
scale  method     ms/step (before)  ms/step (after)  x step  % bound before  % bound after
=====  =========  ================  ===============  ======  ==============  =============
book   adamo      2.12              1.76             1.21    23.0%           27.7%
book   aei-adamo  2.24              2.09             1.07    21.8%           23.3%
w256   adamo      11.85             11.53            1.03    61.1%           62.8%
w256   aei-adamo  12.13             12.30            0.99    59.7%           58.9%
=====  =========  ================  ===============  ======  ==============  =============

Per task outside training unchanged (book 0.15-0.21 s, w256 0.58-0.79 s; the runner already
used the layer-wise eNTK). Chapter 8's precomputation (``--book-estimate --aei-orthogonal
newton-schulz --repeats 2 --short 20 --long 120``, load 3.1-4.9, peak 97 GFLOP/s), estimated
single-process seconds:

==============  ================  =============  =============================
method          before (shipped)  after, Cayley  after, AEI rows Newton-Schulz
==============  ================  =============  =============================
adam            24                22             22
adamo           50                46             46
adamw           22                22             22
l2              24                24             24
l2-init         26                26             26
shrink-perturb  20                23             23
redo            22                23             23
spectral        33                35             35
layernorm       27                26             26
coupled-iso     50                51             51
aei-adam        126               128            31
aei-adamo       131               133            30
total           554               560 (x0.99)    360 (x1.54)
==============  ================  =============  =============================

A second run (load 1.4-4.5, peak 90 GFLOP/s; every row slower in CPU time at this load):
before 639 s, after with Cayley 632 s (x1.01), with Newton-Schulz 417 s (x1.53); adamo 62 s ->
59 s, AEI rows 284 s -> 63 s.

The fused AdamO takes the adamo rows from 50 s to 46 s (the Cayley totals, 554 s and 560 s,
differ by the noise: rows of methods this change leaves alone differ by up to 3 s); Newton-Schulz instead of Cayley takes
the AEI rows from 257 s to 61 s. Together x1.54, short of the issue's 2x. What is left (a
book-scale Adam run of each stream, one process, ``_task_rows`` timed): the per-task
measurement, 0.20-0.24 s per task for 8 seeds, is 19-20% of a random-label run (10 tasks x 400
steps) and 54-59% of a shift run (6 tasks x 100 steps), about a third of every non-AEI row;
of it, 43% is ``torch.linalg.svdvals`` (two per-layer SVD passes, the Jacobians'
``jac_sv_*`` and ``layer_isometry``'s active directions) and 16% the eNTK, seed by seed. The
training steps are at 17% of the FLOP bound at book scale (width 64: per-op overhead, not
FLOPs). A 2x needs both the per-task measurement batched over seeds, as the training is, and
fewer ops per step.

After the seed-batched per-task measurement (``isoplast_lite/_stacked_measure.py``, now ``measure.py``; 2026-11-30,
baseline = 0f370e3, ``--methods adam --scales book --repeats 1 --short 10 --long 60
--book-estimate --aei-orthogonal newton-schulz``, load 1.1-2.7; the sweeps' ``redo.reset_step``
dropped for the baseline, which predates it): book-scale Adam 1.38 -> 1.03 ms/step (x1.33), 0.29
-> 0.10 s/task (x2.88). Chapter 8's book-scale precomputation: baseline as shipped 662 s, current
with the shipped Cayley AEI rows 502 s (x1.32), current with Newton-Schulz AEI rows 285 s
(**x2.33**; the AEI rows 132-135 s -> 24-25 s).

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/runner_speed.py [--baseline /tmp/before]
        [--methods adam adamo aei-adam] [--scales book w256] [--repeats 2] [--book-estimate]
        [--aei-orthogonal newton-schulz]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import isoplast_lite
import isoplast_lite.run  # noqa: F401  (the "current" version timed below)

from _timing import clock, load, matmul_peak  # noqa: E402  (benchmarks/ is on sys.path)

SCALES = {
    "book": dict(width=64, depth=3, n_train=256, batch_size=32, seeds=8),
    "w256": dict(width=256, depth=3, n_train=512, batch_size=32, seeds=4),
}
IN_DIM, OUT = 64, 10  # Digits


def load_baseline(path: str):
    """Import the package at ``path`` (a folder holding ``isoplast_lite/``) as ``isoplast_baseline``."""
    pkg = Path(path) / "isoplast_lite"
    spec = importlib.util.spec_from_file_location("isoplast_baseline", pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["isoplast_baseline"] = module
    spec.loader.exec_module(module)
    return importlib.import_module("isoplast_baseline.run")


def flops_per_step(method: str, scale: dict) -> float:
    w, d, b, s = scale["width"], scale["depth"], scale["batch_size"], scale["seeds"]
    dims = [(w, IN_DIM)] + [(w, w)] * (d - 1)
    train = sum(6 * b * o * i for o, i in dims + [(OUT, w)])
    extra = sum(4 * o * i * min(o, i) for o, i in dims) if method in ("aei-adam", "aei-adamo", "adamo", "coupled-iso") else 0
    return s * (train + extra)


def timed_run(mod, method, scale, steps, benchmark="random-label-digits", settings=None):
    cfg = mod.Config(benchmark, method, settings=settings, n_tasks=2, steps_per_task=steps, **scale)
    t = clock()
    mod.run(cfg, cache_dir=False, progress=False)
    return clock() - t


def measure(versions, method, scale, args, benchmark="random-label-digits", settings=None):
    """{version: (seconds per step, seconds per task outside training)}, medians over repeats.

    ``settings``: the method's settings, one dict for every version, or ``{version: dict}``.
    """
    per_version = settings if isinstance(settings, dict) and set(settings) == set(versions) else {v: settings for v in versions}
    for name, mod in versions.items():  # warm-up (imports, first-call overheads)
        timed_run(mod, method, scale, 5, benchmark, per_version[name])
    samples = {name: [] for name in versions}
    names = list(versions)
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            short = timed_run(versions[name], method, scale, args.short, benchmark, per_version[name])
            long = timed_run(versions[name], method, scale, args.long, benchmark, per_version[name])
            per_step = (long - short) / (2 * (args.long - args.short))
            samples[name].append((per_step, (short - 2 * args.short * per_step) / 2))
    return {n: (statistics.median(p for p, _ in v), statistics.median(q for _, q in v)) for n, v in samples.items()}


def book_estimate(versions, args):
    """Estimated seconds of tools/precompute_book_results.py for each version.

    ``versions`` maps a label to ``(runner module, orthogonal)``: ``orthogonal=None`` runs every
    sweep with its own settings (the shipped AEI rows: ``orthogonal=cayley``); a string replaces
    the AEI rows' ``orthogonal`` setting for that version (e.g. ``"newton-schulz"``). Returns
    ``(totals, breakdown)``: seconds per version, and per method per version.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import precompute_book_results as tool

    from isoplast_lite.__main__ import build_parser, settings_grids

    totals = {n: 0.0 for n in versions}
    breakdown = {}
    cache = {}
    for name, sweep in tool.SWEEPS.items():
        a = build_parser().parse_args(["sweep", *sweep, "--out", "x.csv"])
        scale = dict(width=a.width, depth=a.depth, n_train=a.n_train, batch_size=a.batch_size, seeds=a.seeds)
        bench = a.benchmark[0]
        kind = "shift" if not bench.startswith("random-label") else "random"
        grid = settings_grids(a)
        for method in a.method:
            n_lambdas = len(grid[method])
            # the sweep's own settings (the AEI rows: orthogonal=cayley); lambda does not change the cost
            settings = dict(grid[method][0]) if grid[method] else None
            if name == "lambda-sweep":  # adam and adamo at 0.1 are shared with random-label-digits (cached)
                n_lambdas = 0 if method == "adam" else n_lambdas - 1
            key = (method, kind, a.n_train)
            if key not in cache:
                # one measurement per distinct (module, settings): a version whose override does
                # not apply to this method shares the measurement of the version it equals
                per_version = {}
                for v, (mod, orthogonal) in versions.items():
                    own = dict(settings) if settings else None
                    if orthogonal is not None and own is not None and "orthogonal" in own:
                        own["orthogonal"] = orthogonal
                    if own:  # a setting the version does not know (redo's reset_step, added later) is its default
                        known = {f.name for f in dataclasses.fields(mod.method_class(method).Settings)}
                        own = {k: val for k, val in own.items() if k in known} or None
                    per_version[v] = (mod, own)
                distinct = {}
                for v, (mod, own) in per_version.items():
                    distinct.setdefault((id(mod), repr(own)), v)
                runs = {v: per_version[v][0] for v in distinct.values()}
                timed = measure(runs, method, scale, args, benchmark=bench, settings={v: per_version[v][1] for v in runs})
                cache[key] = {v: timed[distinct[(id(mod), repr(own))]] for v, (mod, own) in per_version.items()}
            for v, (per_step, per_task) in cache[key].items():
                seconds = n_lambdas * a.tasks * (a.steps_per_task * per_step + per_task)
                totals[v] += seconds
                breakdown.setdefault(method, {}).setdefault(v, 0.0)
                breakdown[method][v] += seconds
    return totals, breakdown


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=None, help="folder holding an older isoplast_lite/ to compare with")
    parser.add_argument("--methods", nargs="+", default=["adam", "adamo", "aei-adam"])
    parser.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    parser.add_argument("--short", type=int, default=20)
    parser.add_argument("--long", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--book-estimate", action="store_true", help="estimate chapter 8's precomputation (slow)")
    parser.add_argument("--aei-orthogonal", default=None, choices=["newton-schulz", "cayley"],
                        help="with --book-estimate: also estimate the current version with the AEI rows under this "
                             "orthogonal setting (the sweeps' own is cayley); ratios against the baseline as shipped")  # fmt: skip
    args = parser.parse_args()
    versions = {"current": sys.modules["isoplast_lite.run"]}
    if args.baseline:
        versions["baseline"] = load_baseline(args.baseline)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, current = {os.path.dirname(isoplast_lite.__file__)}"
          + (f", baseline = {args.baseline}" if args.baseline else ""))
    print(load())
    peak = matmul_peak()
    print(f"matmul peak (1024^3 torch.mm): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'scale':<5} {'method':<9} {'version':<9} {'ms/step':>8} {'steps/s':>8} {'bound/s':>8} {'% bound':>7} {'s/task':>7}")
    for scale_name in args.scales:
        scale = SCALES[scale_name]
        for method in args.methods:
            res = measure(versions, method, scale, args)
            bound = peak / flops_per_step(method, scale)
            for v, (per_step, per_task) in res.items():
                print(f"{scale_name:<5} {method:<9} {v:<9} {1e3 * per_step:8.2f} {1 / per_step:8.0f} {bound:8.0f} "
                      f"{100 / per_step / bound:6.1f}% {per_task:7.2f}", flush=True)
            if "baseline" in res:
                print(f"{'':<15} speed-up per step x{res['baseline'][0] / res['current'][0]:.2f}, per task x{res['baseline'][1] / res['current'][1]:.2f}")
    if args.book_estimate:
        variants = {v: (mod, None) for v, mod in versions.items()}
        if args.aei_orthogonal:
            variants[f"current+{args.aei_orthogonal}"] = (versions["current"], args.aei_orthogonal)
        totals, breakdown = book_estimate(variants, args)
        print("chapter 8 precomputation (tools/precompute_book_results.py), estimated single-process seconds per method:")
        print(f"{'method':<15}" + "".join(f"{v:>24}" for v in variants))
        for method, secs in breakdown.items():
            print(f"{method:<15}" + "".join(f"{secs[v]:24.0f}" for v in variants))
        print(f"{'total':<15}" + "".join(f"{totals[v]:24.0f}" for v in variants))
        ref = "baseline" if "baseline" in totals else "current"
        for v in variants:
            if v != ref:
                print(f"speed-up {v} against {ref} (the sweeps as shipped): x{totals[ref] / totals[v]:.2f}")
    print(load())


if __name__ == "__main__":
    main()
