"""Time ``empirical_ntk`` against a per-example autograd loop on the same model and data.

The baseline is the textbook computation: for every example and every output coordinate, one
``torch.autograd.grad`` call gives a row of the Jacobian ``J`` (N x O x P); the kernel is
``J1 J2^T``. ``empirical_ntk`` (its default and all three methods, unchunked and chunked) computes the same
``(N, N, O, O)`` tensor with ``torch.func``. The script checks the results agree, then prints
the median times, the speed ratio and the peak memory of each variant.

Peak memory: each variant is also run once in a fresh child process (``multiprocessing``
"spawn"), and we report the peak resident set size of that process (``VmHWM`` from
``/proc/self/status``) minus its RSS just before the call, i.e. the extra memory the call needed
(all of torch's CPU tensors included; ``tracemalloc`` would not see them). Timing is done in the
parent process with interleaved repeats. Target from the issue: ``empirical_ntk`` >= 10x faster.

Each timed call is preceded by an untimed call of the same variant: without it, the call that
follows the 0.6 s baseline pays the page faults of the memory the baseline freed (the default
read 14.0 ms against 6.7 ms for the identical ``layerwise`` call in the first run below).

Measured (issue 13, 2026-11-30, torch 2.13 CPU, ``OMP_NUM_THREADS=1``, times = the thread's CPU
time, ``--no-memory``, 3 repeats, N = 32, width 256, depth 3):

* before (load 7-9 on 2 cores; ``relu_mlp``): autograd loop 645 ms; ``jacobian`` (then the
  function's default) 410 ms (x1.6); ``ntk_vp`` 234 ms (x2.8), chunked 184 ms (x3.5);
  ``layerwise`` 12.7 ms (x51).
* after, ``empirical_ntk``'s default is ``"auto"`` (``layerwise`` wherever a plain linear layer
  is, else ``jacobian``; load 3.9-4.7):

  =============  =============  ==============  =============  =============  ============
  model          autograd loop  default (auto)  jacobian       ntk_vp         layerwise
  =============  =============  ==============  =============  =============  ============
  relu_mlp       591 ms         7.3 ms (x81)    386 ms (x1.5)  201 ms (x2.9)  7.5 ms (x79)
  aei_mlp (N-S)  583 ms         8.6 ms (x68)    422 ms (x1.4)  221 ms (x2.6)  8.7 ms (x67)
  =============  =============  ==============  =============  =============  ============

  (chunk 8: ``ntk_vp`` x3.9 / x3.6, ``layerwise`` x49 / x39.) ``--model aei-cayley`` (the
  Cayley-parametrized hidden weights, which only the head of the layered form covers): loop
  3.19 s, default 4.44 s (x0.7), ``jacobian`` 4.39 s, ``ntk_vp`` 7.80 s, ``layerwise`` 4.35 s
  (chunk 8: 3.69 s, x0.9): every ``torch.func`` method is slower than the per-example loop
  there (``vmap`` through the parametrization's linear solve). The runner's per-task
  measurement uses ``layerwise`` (``isoplast_lite.measure.NTK_METHOD``, the same choice as ``auto``
  on its models).

Usage:
    .venv/bin/python benchmarks/entk.py [--n 32] [--repeats 3] [--no-memory] [--model relu|aei|aei-cayley]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import statistics

import torch

from isoplast_lite import aei_mlp, empirical_ntk, relu_mlp

from _timing import clock  # noqa: E402  (benchmarks/ is on sys.path)


def autograd_loop_ntk(model, x1, x2):
    params = [p for p in model.parameters() if p.requires_grad]

    def jacobian(x):
        rows = []
        for n in range(x.shape[0]):
            out = model(x[n : n + 1]).reshape(-1)
            rows.append(
                torch.stack(
                    [
                        torch.cat([g.reshape(-1) for g in torch.autograd.grad(out[a], params, retain_graph=True)])
                        for a in range(out.shape[0])
                    ]
                )
            )
        return torch.stack(rows)  # (N, O, P)

    j1 = jacobian(x1)
    j2 = j1 if x2 is None else jacobian(x2)
    return torch.einsum("naf,mbf->nmab", j1, j2)


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _setup(args):
    gen = torch.Generator().manual_seed(0)
    if args.model == "relu":
        model = relu_mlp(args.in_dim, args.width, args.depth, args.out_dim, generator=gen)
    else:  # "aei" (Newton-Schulz weights, plain matrices) or "aei-cayley" (parametrized)
        orthogonal = "cayley" if args.model == "aei-cayley" else "newton-schulz"
        model = aei_mlp(args.in_dim, args.width, args.depth, args.out_dim, orthogonal=orthogonal, generator=gen)
    x = torch.randn(args.n, args.in_dim, generator=gen)
    return model, x


def _variants(model, x):
    return {
        "autograd loop (baseline)": lambda: autograd_loop_ntk(model, x, None),
        "empirical_ntk default (auto)": lambda: empirical_ntk(model, x),
        "empirical_ntk jacobian": lambda: empirical_ntk(model, x, method="jacobian"),
        "empirical_ntk jacobian chunk=8": lambda: empirical_ntk(model, x, method="jacobian", chunk_size=8),
        "empirical_ntk ntk_vp": lambda: empirical_ntk(model, x, method="ntk_vp"),
        "empirical_ntk ntk_vp chunk=8": lambda: empirical_ntk(model, x, method="ntk_vp", chunk_size=8),
        "empirical_ntk layerwise": lambda: empirical_ntk(model, x, method="layerwise"),
        "empirical_ntk layerwise chunk=8": lambda: empirical_ntk(model, x, method="layerwise", chunk_size=8),
    }


def _peak_memory_child(args, name, queue):
    torch.set_num_threads(args.threads)
    model, x = _setup(args)
    fn = _variants(model, x)[name]
    gc.collect()
    before = _status_kb("VmRSS")
    fn()
    queue.put((_status_kb("VmHWM") - before) / 1024)


def peak_memory_mb(args, name):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_memory_child, args=(args, name, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="number of examples")
    parser.add_argument("--in-dim", type=int, default=64)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--out-dim", type=int, default=10)
    parser.add_argument("--model", choices=["relu", "aei", "aei-cayley"], default="relu",
                        help="relu_mlp, or aei_mlp with Newton-Schulz (plain) or Cayley (parametrized) hidden weights")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the child-process memory runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()

    model, x = _setup(args)
    n_params = sum(p.numel() for p in model.parameters())
    variants = _variants(model, x)
    reference = variants["autograd loop (baseline)"]()
    for name, fn in variants.items():
        if name != "autograd loop (baseline)":
            torch.testing.assert_close(fn(), reference, atol=1e-4, rtol=1e-4)  # also the warm-up

    times = {name: [] for name in variants}
    for r in range(args.repeats):
        names = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in names:
            variants[name]()  # untimed: after another variant freed its memory, the first call pays the page faults
            t0 = clock()
            variants[name]()
            times[name].append(clock() - t0)
    medians = {name: statistics.median(ts) for name, ts in times.items()}

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, model {args.model}({args.in_dim}, "
          f"{args.width}, {args.depth}, {args.out_dim}) with {n_params} parameters, N = {args.n}, kernel "
          f"{tuple(reference.shape)}; every variant checked equal to the baseline; {args.repeats} interleaved repeats")
    print("peak memory: extra peak RSS (VmHWM - VmRSS before the call) of one call in a fresh process")
    base = medians["autograd loop (baseline)"]
    for name in variants:
        peak = peak_memory_mb(args, name) if not args.no_memory else float("nan")
        print(f"{name:32s} median {medians[name] * 1e3:9.1f} ms   speed-up x{base / medians[name]:6.1f}   "
              f"peak +{peak:7.1f} MB")


if __name__ == "__main__":
    main()
