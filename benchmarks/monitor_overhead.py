"""What PlasticityMonitor costs: the overhead on a training loop at the default cadence, and each measure alone.

Two models, those of chapter 9 (``isoplast_lite.beyond_mlp``): the small CNN on 8x8 Digits
images and the small transformer on token sequences, Adam, batch 32, the monitor's probe of
128 examples (the chapter's settings). Times are the thread's CPU time (``_timing.clock``, one
torch thread), all in one process:

1. **Overhead at a cadence** ``k``: blocks of ``k`` training steps, alternately without and with
   the monitor (``monitor.step()`` after each step, so exactly one record per block), the order
   swapped every repeat; the overhead is ``median(with) / median(without) - 1``. The target of
   issue 26 is <= 5% at the default cadence (``isoplast_lite.monitor.DEFAULT_EVERY``).
2. **Each measure alone**, per record: the probe's forward pass with the hooks, the weight
   singular values (``matrix_isometry`` per layer), the layer Jacobians, the unit measures
   (dormant, dead, feature rank) and the eNTK (float64, 8 probe examples: optional, the CNN
   only: the transformer's probe is integer tokens), each in units of one training step.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/monitor_overhead.py [--repeats 7] [--write]``; ``--write``
stores the table, this command and the provenance in ``isoplast_lite/data/yourmodel/overhead.json``,
which chapter 9 shows.

Measured (issue 26, 2026-12-04, torch 2.13 CPU, one thread, load 13-25 on 2 cores;
``isoplast_lite/data/yourmodel/overhead.json``, shown in chapter 9):

=============  =====  =====  =====  =============================
every          50     100    200    400
=============  =====  =====  =====  =============================
CNN            15.1%  7.5%   4.4%   2.6%
transformer    12.9%  4.9%   3.5%   0.0% (below the timing noise)
=============  =====  =====  =====  =============================

One record, in training steps (CNN 2.1 ms, transformer 4.3 ms a step): CNN 6.5 (layer
Jacobians 3.6, dormant/dead/rank 1.6, weight singular values 0.8; the optional eNTK on 8
examples 4.8 more), transformer 6.6 (Jacobians 3.0, units 2.6). The default cadence
``every=200`` (``DEFAULT_EVERY``) is the smallest of these that meets the 5% target on both
models; ``every=100`` did not (7.5% on the CNN).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _timing import clock, load
from torch.nn import functional as F

from isoplast_lite.beyond_mlp import RunSpec, build_model, task_stream
from isoplast_lite.diagnostics import dead_units, dormant_units, effective_rank, empirical_ntk, layer_isometry, matrix_isometry, ntk_summary
from isoplast_lite.monitor import DEFAULT_EVERY, PlasticityMonitor


def _setup(model_name: str):
    spec = RunSpec(model_name)
    torch.manual_seed(0)
    model = build_model(spec)
    x, y = task_stream(spec, 0)[0]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)

    def train_step():
        idx = torch.randint(0, len(y), (32,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return model, x[:128], train_step


def _timed(fn) -> float:
    t0 = clock()
    fn()
    return clock() - t0


def overhead(model_name: str, every: int, repeats: int) -> dict:
    model, probe, train_step = _setup(model_name)
    monitor = PlasticityMonitor(model, probe, every=every)
    for _ in range(5):
        train_step()

    def plain():
        for _ in range(every):
            train_step()

    def monitored():
        for _ in range(every):
            train_step()
            monitor.step()

    without, with_ = [], []
    for r in range(repeats):
        pair = [(without, plain), (with_, monitored)]
        for store, fn in (pair if r % 2 == 0 else pair[::-1]):
            store.append(_timed(fn))
    base, mon = statistics.median(without), statistics.median(with_)
    return {"model": model_name, "every": every, "step_ms": 1e3 * base / every, "overhead": mon / base - 1.0}


def measures_alone(model_name: str, repeats: int) -> dict:
    model, probe, train_step = _setup(model_name)
    monitor = PlasticityMonitor(model, probe)
    steps = [_timed(train_step) for _ in range(20)]
    step = statistics.median(steps)
    tensors = monitor.probe_features()

    def weights():
        for layer in monitor.layers:
            matrix_isometry(layer.weight().detach())

    def jacobians():
        for layer, (inputs, _) in zip(monitor.layers, tensors):
            if layer.jacobian == "block":
                h = inputs.reshape(-1, inputs.shape[-1])[: monitor.jacobian_rows]
                block = torch.nn.Sequential(torch.nn.Sequential(layer.owner, *layer.follow))
                layer_isometry(block, h)

    def units():
        for _, feats in tensors:
            u = feats.reshape(-1, feats.shape[-1])
            dormant_units(u), dead_units(u), effective_rank(u)

    parts = {"forward (hooks)": monitor.probe_features, "weight sigma": weights, "layer Jacobians": jacobians,
             "dormant/dead/rank": units, "whole record": monitor.record}
    if probe.is_floating_point():
        m64 = build_model(RunSpec(model_name)).double()
        m64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})

        def ntk():
            ntk_summary(empirical_ntk(m64, probe[:8].double()), generator=torch.Generator().manual_seed(0))

        parts["eNTK (8 ex., float64)"] = ntk
    out = {"model": model_name, "step_ms": 1e3 * step}
    for name, fn in parts.items():
        fn()
        out[name] = statistics.median(_timed(fn) for _ in range(repeats)) / step
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cadences", type=int, nargs="+", default=[50, 100, DEFAULT_EVERY, 400])
    parser.add_argument("--write", action="store_true", help="store the table for chapter 9 (isoplast_lite/data/yourmodel/overhead.json)")
    args = parser.parse_args(argv)
    cadence_rows, measure_rows = [], []
    torch.set_num_threads(1)
    print(load())
    print("\noverhead of the whole monitor on the training loop (one record per block of `every` steps)")
    print(f"{'model':12s} {'every':>6s} {'step ms':>8s} {'overhead':>9s}")
    for model_name in ("cnn", "transformer"):
        for every in args.cadences:
            r = overhead(model_name, every, args.repeats)
            cadence_rows.append(r)
            mark = "  <- default" if every == DEFAULT_EVERY else ""
            print(f"{model_name:12s} {every:6d} {r['step_ms']:8.2f} {100 * r['overhead']:8.1f}%{mark}")
    print("\neach measure alone, per record, in training steps")
    for model_name in ("cnn", "transformer"):
        r = measures_alone(model_name, args.repeats)
        measure_rows.append(dict(r))
        print(f"{model_name} (one step {r.pop('step_ms'):.2f} ms)")
        for name, v in list(r.items())[1:]:
            print(f"  {name:24s} {v:7.2f} steps")
    print(load())
    if args.write:
        import json
        from pathlib import Path

        from isoplast_lite.files import atomic_write
        from isoplast_lite.results import provenance, write_file_checksum

        command = "OMP_NUM_THREADS=1 python benchmarks/monitor_overhead.py --write" + (f" --repeats {args.repeats}" if args.repeats != 7 else "")
        out = {"command": command, "provenance": provenance(threads=1), "default_every": DEFAULT_EVERY,
               "unit": "overhead: (with monitor) / (without) - 1 of the CPU time of blocks of `every` steps; measures: CPU time per record / one training step",
               "cadence": cadence_rows, "measures": measure_rows}
        text = (json.dumps(out, indent=2) + "\n").encode()
        atomic_write(Path(__file__).resolve().parent.parent / "isoplast_lite" / "data" / "yourmodel" / "overhead.json", lambda h: h.write(text))
        write_file_checksum("yourmodel/overhead.json", base=Path(__file__).resolve().parent.parent / "isoplast_lite" / "data")  # checked on load
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
