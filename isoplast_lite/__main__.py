"""Command line: ``python -m isoplast_lite run|plot|sweep ...`` (see ``--help``)."""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from .methods import ISO_METHODS, METHODS
from .tasks import BENCHMARKS

_EPILOG = f"""\
benchmarks: {", ".join(BENCHMARKS)}
methods:    {", ".join(METHODS)}
            (--iso-strength is lambda of {", ".join(ISO_METHODS)}; default 0.1)

The MNIST / Fashion-MNIST / CIFAR-10 benchmarks download their data once (SHA-256 verified;
CIFAR-10 is a 170 MB archive) into $ISOPLAST_DATA or ~/.cache/isoplast/data; the digits and
mnist1d ones need no network.
Results are cached in $ISOPLAST_CACHE or ~/.cache/isoplast (--no-cache to bypass); an
interrupted run resumes at the task where it stopped.

Full-scale GPU examples (the paper's setup: depth 4, width 512, lr 1e-4, lambda 1e-3, 8 seeds):
  python -m isoplast_lite run --benchmark permuted-mnist --method adamo --iso-strength 1e-3 \\
      --lr 1e-4 --seeds 8 --width 512 --depth 4 --tasks 50 --steps-per-task 2000 \\
      --batch-size 128 --n-train 10000 --device cuda --out permuted-mnist-adamo.csv
  python -m isoplast_lite sweep --benchmark random-label-mnist --method adam adamo \\
      --iso-strength 1e-3 1e-2 --lr 1e-4 --seeds 8 --width 512 --depth 4 --tasks 50 \\
      --steps-per-task 2000 --batch-size 128 --n-train 10000 --device cuda --out sweep.csv
  python -m isoplast_lite run --benchmark random-label-cifar10 --method adamo --iso-strength 1e-3 \\
      --lr 1e-4 --seeds 8 --width 512 --depth 4 --tasks 50 --steps-per-task 2000 \\
      --batch-size 128 --n-train 10000 --device cuda --out random-label-cifar10-adamo.csv
"""


def _choice(valid: Sequence[str], what: str):
    def parse(value: str) -> str:
        if value not in valid:
            raise argparse.ArgumentTypeError(f"unknown {what} {value!r}; valid {what}s: {', '.join(valid)}")
        return value

    parse.__name__ = what
    return parse


def _nonneg_float(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not f >= 0 or f != f or f == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {value!r}")
    return f


def _pos_float(value: str) -> float:
    f = _nonneg_float(value)
    if f == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value!r}")
    return f


def _pos_int(value: str) -> int:
    try:
        i = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if i < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}")
    return i


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=_pos_int, default=4, help="number of seeds (default 4)")
    p.add_argument("--tasks", type=_pos_int, default=20, help="number of tasks (default 20)")
    p.add_argument("--steps-per-task", type=_pos_int, default=800, help="optimizer steps per task (default 800)")
    p.add_argument("--batch-size", type=_pos_int, default=32, help="minibatch size (default 32)")
    p.add_argument("--width", type=_pos_int, default=256, help="hidden width (default 256)")
    p.add_argument("--depth", type=_pos_int, default=3, help="hidden layers (default 3)")
    p.add_argument("--n-train", type=_pos_int, default=512, help="training images per task (default 512)")
    p.add_argument("--init", choices=("orthogonal", "kaiming", "default"), default="orthogonal")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed-batch", type=_pos_int, default=None, help="seeds stacked per batch (default all)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default $ISOPLAST_CACHE or ~/.cache/isoplast)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of the CLI (exposed for tests and docs)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m isoplast_lite", description="Continual-learning experiments of the isoplast companion.", epilog=_EPILOG, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run one benchmark x method (all seeds) and write a tidy CSV", epilog=_EPILOG, formatter_class=fmt)
    p_run.add_argument("--benchmark", required=True, type=_choice(BENCHMARKS, "benchmark"), metavar="BENCH", help="one of: " + ", ".join(BENCHMARKS))
    p_run.add_argument("--method", required=True, type=_choice(tuple(METHODS), "method"), metavar="METHOD", help="one of: " + ", ".join(METHODS))
    p_run.add_argument("--iso-strength", type=_nonneg_float, default=None, help="lambda (iso methods only; default 0.1)")
    p_run.add_argument("--lr", type=_pos_float, default=1e-3, help="learning rate (default 1e-3)")
    p_run.add_argument("--out", default=None, help="CSV file to write (default: print a per-task summary only)")
    _add_common(p_run)

    p_sweep = sub.add_parser("sweep", help="run a grid of benchmarks x methods x iso strengths x lrs into one CSV", epilog=_EPILOG, formatter_class=fmt)
    p_sweep.add_argument("--benchmark", required=True, nargs="+", type=_choice(BENCHMARKS, "benchmark"), metavar="BENCH")
    p_sweep.add_argument("--method", required=True, nargs="+", type=_choice(tuple(METHODS), "method"), metavar="METHOD")
    p_sweep.add_argument("--iso-strength", nargs="+", type=_nonneg_float, default=[None], help="lambdas for the iso methods (others ignore the grid)")
    p_sweep.add_argument("--lr", nargs="+", type=_pos_float, default=[1e-3])
    p_sweep.add_argument("--out", required=True, help="CSV file to write (rewritten after every config)")
    _add_common(p_sweep)

    p_plot = sub.add_parser("plot", help="plot a result CSV (accuracy per task with seed CIs, plus the measures)")
    p_plot.add_argument("csv", help="a CSV written by run or sweep")
    p_plot.add_argument("-o", "--output", required=True, help="figure file (png, pdf, svg)")
    p_plot.add_argument("--measures", nargs="+", default=None, help="metric columns to plot (default: a standard set)")
    return parser


def _config(args, benchmark: str, method: str, iso: Optional[float], lr: float):
    from .run import Config

    return Config(
        benchmark=benchmark, method=method, iso_strength=iso, lr=lr, seeds=args.seeds, n_tasks=args.tasks,
        steps_per_task=args.steps_per_task, batch_size=args.batch_size, width=args.width, depth=args.depth,
        n_train=args.n_train, init=args.init, device=args.device, dtype=args.dtype,
    )  # fmt: skip


def _run_one(args, cfg):
    from .run import run

    cache = False if args.no_cache else args.cache_dir
    return run(cfg, cache_dir=cache, progress=False if args.no_progress else None, seed_batch=args.seed_batch)


def _write_csv(df, path: str) -> None:
    import os
    import tempfile

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        df.to_csv(handle, index=False)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the CSV the usual permissions
    os.replace(tmp, out)


def _summary(df) -> str:
    cols = ["train_acc", "test_acc", "dead", "dormant_0.025", "ntk_cond"]
    return df.groupby("task")[cols].mean().round(4).to_string()


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "plot":
        import pandas as pd

        from .plots import plot_results

        fig = plot_results(pd.read_csv(args.csv), measures=args.measures)
        fig.savefig(args.output, dpi=120, bbox_inches="tight")
        return 0
    if args.command == "run":
        if args.iso_strength not in (None, 0.0) and args.method not in ISO_METHODS:
            parser.error(f"--iso-strength is only used by {', '.join(ISO_METHODS)}, not by {args.method!r}")
        df = _run_one(args, _config(args, args.benchmark, args.method, args.iso_strength, args.lr))
        if args.out:
            _write_csv(df, args.out)
        print(_summary(df))
        return 0
    # sweep
    import pandas as pd

    configs = []
    for bench, method, lr in itertools.product(args.benchmark, args.method, args.lr):
        isos = args.iso_strength if method in ISO_METHODS else [None]
        configs.extend(_config(args, bench, method, iso, lr) for iso in dict.fromkeys(isos))
    frames = []
    for i, cfg in enumerate(configs):
        print(f"[{i + 1}/{len(configs)}] {cfg.benchmark} {cfg.method} iso={cfg.iso_strength} lr={cfg.lr}", flush=True)
        frames.append(_run_one(args, cfg))
        _write_csv(pd.concat(frames, ignore_index=True), args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
