"""Command line: ``python -m isoplast_lite run|plot|sweep ...`` (see ``--help``).

Every command checks all its inputs before any work (output paths, cache folder, device, sizes,
data) and reports a bad input as one line on stderr, ``python -m isoplast_lite CMD: error:
--flag VALUE: what is wrong; allowed: ...``, with exit status 2 (``--debug`` shows the
traceback instead). Output files are written atomically, through symlinks, and never in place
of something that is not a regular file.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from . import files
from .signals import Interrupted, interrupt_on
from ._validation import ConfigError
from .methods import METHODS, describe_methods, method_class
from .settings import SettingError, parse_setting, setting_specs
from .tasks import BENCHMARKS, OFFLINE_SOURCES

_EPILOG_HEAD = """\
Method settings: --set NAME=VALUE sets a setting of the chosen method (repeat for several;
METHOD.NAME=VALUE names the method; in a sweep NAME=V1,V2,... is a grid, applied to every
chosen method that has the setting). A method defined in your own module is available after
--import MODULE (the module registers it with isoplast_lite.methods.register_method).

methods and their settings (name=default (allowed): meaning):
{methods}

benchmarks: {benchmarks}
"""

_EPILOG = """

The MNIST / Fashion-MNIST / CIFAR-10 benchmarks download their data once (SHA-256 verified;
CIFAR-10 is a 170 MB archive) into $ISOPLAST_DATA or ~/.cache/isoplast/data; the digits and
mnist1d ones need no network.
Results are cached in $ISOPLAST_CACHE or ~/.cache/isoplast (--no-cache to bypass); an
interrupted run resumes at the task where it stopped. A configuration whose loss or weights
become NaN/inf is recorded as diverged (column "diverged", metrics NaN) and a sweep goes on.
Bad input: one line on stderr and exit status 2 (--debug shows the traceback). A configuration
that needs more memory than the machine has, or more than 1 hour by a lower estimate of its time
(--max-hours H or $ISOPLAST_MAX_HOURS=H raise it), is refused before any work. SIGTERM or Ctrl-C
stops a command with one line and status 143 or 130; finished rows and cached tasks are kept.

Full-scale GPU examples (the paper states lr 1e-3, lambda 1e-3, 8 seeds; width and depth are our guesses):
  python -m isoplast_lite run --benchmark permuted-mnist --method adamo --set iso_strength=1e-3 \\
      --lr 1e-3 --seeds 8 --width 512 --depth 4 --tasks 50 --steps-per-task 2000 \\
      --batch-size 128 --n-train 10000 --device cuda --out permuted-mnist-adamo.csv
  python -m isoplast_lite run --benchmark random-label-cifar10 --method adamo --set iso_strength=1e-3 \\
      --lr 1e-3 --seeds 8 --width 512 --depth 4 --tasks 50 --steps-per-task 2000 \\
      --batch-size 128 --n-train 10000 --device cuda --out random-label-cifar10-adamo.csv

A sweep on a SLURM cluster (one GPU job per configuration, at most 16 at once, through
submitit; the cache must be on a file system the nodes share; re-running the same command
after a failure or a preemption recomputes nothing that finished):
  python -m isoplast_lite sweep --benchmark permuted-mnist random-label-cifar10 \\
      --method adam adamw l2 l2-init shrink-perturb redo spectral layernorm coupled-iso \\
      adamo aei-adam aei-adamo --set iso_strength=1e-4,1e-3,1e-2 --lr 1e-3 --seeds 8 --width 512 \\
      --depth 4 --tasks 50 --steps-per-task 2000 --batch-size 128 --n-train 10000 \\
      --device cuda --cache-dir /shared/$USER/isoplast-cache --out sweep.csv \\
      --executor slurm --slurm-partition gpu --slurm-gpus-per-job 1 --slurm-cpus-per-job 4 \\
      --slurm-time 720 --workers 16
The same sweep on this machine, 2 jobs at a time: --executor local --workers 2.
"""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (no usage block), exit 2."""

    def error(self, message: str):  # argparse's hook
        _fail(self.prog, message)


def _one_line(text) -> str:
    """``text`` on one line: line breaks become "; ", other control characters are escaped."""
    text = re.sub(r":\s*[\r\n]+\s*", ": ", str(text).strip())
    text = re.sub(r"\s*[\r\n]+\s*", "; ", text)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fail(prog: str, message: str):
    sys.stderr.write(f"{prog}: error: {_one_line(message)}\n")
    sys.stderr.flush()
    raise SystemExit(2)


class _InputError(Exception):
    """A bad command-line input, its message naming the flag, the value and what is allowed."""


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


def _lr(value: str) -> float:
    from .run import MAX_LR

    f = _pos_float(value)
    if f > MAX_LR:
        raise argparse.ArgumentTypeError(f"expected a learning rate in (0, {MAX_LR:g}] (Adam moves every weight by about lr per step), got {value!r}")
    return f


def _size(field: str):
    """An argparse type: an integer from 1 to ``run.LIMITS[field]``."""
    from .run import LIMITS

    def parse(value: str) -> int:
        try:
            i = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if not 1 <= i <= LIMITS[field]:
            raise argparse.ArgumentTypeError(f"expected an integer from 1 to {LIMITS[field]}, got {value!r}")
        return i

    parse.__name__ = field
    return parse


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _add_common(p: argparse.ArgumentParser) -> None:
    from .config import LIMITS, cli_fields

    for f in cli_fields():  # the run flags, generated from Config's fields and their metadata
        kind = {"choices": f.metadata["choices"]} if "choices" in f.metadata else {"type": _size(f.name)} if f.name in LIMITS else {}
        p.add_argument(f.metadata["flag"], default=f.default, help=f"{f.metadata['help']} (default {f.default})", **kind)
    p.add_argument("--seed-batch", type=_size("seeds"), default=None, help="seeds stacked per batch (default all)")
    p.add_argument("--max-hours", type=_pos_float, default=None, metavar="H",
                   help="refuse, before any work, a configuration whose estimated time exceeds H hours "
                        "(default $ISOPLAST_MAX_HOURS, else 1; the estimate is a lower one)")  # fmt: skip
    p.add_argument("--cache-dir", default=None, help="cache folder (default $ISOPLAST_CACHE or ~/.cache/isoplast)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_debug(p)


def _add_executor(p: argparse.ArgumentParser) -> None:
    from .sweep import EXECUTORS

    g = p.add_argument_group("where the configurations run (isoplast_lite.sweep; the cache is the single source of truth)")
    g.add_argument("--executor", choices=EXECUTORS, default="serial",
                   help="serial: one after the other in this process (default); local: one submitit job per "
                        "configuration on this machine; slurm: one submitit job per configuration on a SLURM cluster")  # fmt: skip
    g.add_argument("--workers", type=_size("seeds"), default=2, help="jobs at once (local processes; SLURM array parallelism; default 2)")
    g.add_argument("--max-retries", type=_count, default=2, help="times a job that died is submitted again (default 2)")
    g.add_argument("--jobs-dir", default=None, help="submitit's job files and logs (default: CACHE/jobs)")
    g.add_argument("--slurm-partition", default=None, help="SLURM partition, e.g. gpu")
    g.add_argument("--slurm-account", default=None, help="SLURM account to charge")
    g.add_argument("--slurm-gpus-per-job", type=_count, default=None, help="GPUs per job (default 1 with --device cuda, else 0)")
    g.add_argument("--slurm-cpus-per-job", type=_size("seeds"), default=None, help="CPUs per job (default: the largest --threads of the sweep)")
    g.add_argument("--slurm-time", type=_size("seeds"), default=None, metavar="MINUTES", help="time limit of a job in minutes (default 1440; also of local jobs)")
    g.add_argument("--slurm-mem-gb", type=_pos_float, default=None, help="memory per job in GB")


def _count(value: str) -> int:
    try:
        i = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if not 0 <= i <= 1000:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 1000, got {value!r}")
    return i


def _add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="on an error, show the full traceback instead of one line")
    _add_import(p)


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of the CLI (exposed for tests and docs)."""
    fmt = argparse.RawDescriptionHelpFormatter
    epilog = _EPILOG_HEAD.format(methods=describe_methods(), benchmarks=", ".join(BENCHMARKS)) + _EPILOG
    parser = _Parser(prog="python -m isoplast_lite", description="Continual-learning experiments of the isoplast companion.", epilog=epilog, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run one benchmark x method (all seeds) and write a tidy CSV", epilog=epilog, formatter_class=fmt)
    p_run.add_argument("--benchmark", required=True, type=_choice(BENCHMARKS, "benchmark"), metavar="BENCH", help="one of: " + ", ".join(BENCHMARKS))
    p_run.add_argument("--method", required=True, type=_choice(tuple(METHODS), "method"), metavar="METHOD", help="one of: " + ", ".join(METHODS))
    p_run.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
                       help="a setting of the method, e.g. --set iso_strength=1e-3 (repeat for several; see the list below)")
    p_run.add_argument("--lr", type=_lr, default=1e-3, help="learning rate (default 1e-3)")
    p_run.add_argument("--out", default=None, help="CSV file to write (default: print a per-task summary only)")
    p_run.add_argument("--force", action="store_true", help="let --out replace a file that is not a results CSV of this tool")
    _add_common(p_run)

    p_sweep = sub.add_parser("sweep", help="run a grid of benchmarks x methods x settings x lrs into one CSV", epilog=epilog, formatter_class=fmt)
    p_sweep.add_argument("--benchmark", required=True, nargs="+", type=_choice(BENCHMARKS, "benchmark"), metavar="BENCH")
    p_sweep.add_argument("--method", required=True, nargs="+", type=_choice(tuple(METHODS), "method"), metavar="METHOD")
    p_sweep.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2,...", dest="settings",
                         help="a grid of a setting, applied to every chosen method that has it (METHOD.NAME=... for one method)")
    p_sweep.add_argument("--lr", nargs="+", type=_lr, default=[1e-3])
    p_sweep.add_argument("--out", required=True, help="CSV file to write (rewritten after every config)")
    p_sweep.add_argument("--force", action="store_true", help="let --out replace a file that is not a results CSV of this tool")
    p_sweep.add_argument("--no-stack", action="store_true",
                         help="train every configuration alone (default: configurations differing only in --lr and in settings their "
                              "method reads per member are trained as one stacked model; isoplast_lite.stacking)")  # fmt: skip
    _add_common(p_sweep)
    _add_executor(p_sweep)

    p_plot = sub.add_parser("plot", help="plot a result CSV (accuracy per task with seed CIs, plus the measures)")
    p_plot.add_argument("csv", help="a CSV written by run or sweep")
    p_plot.add_argument("-o", "--output", required=True, help="figure file (png, pdf, svg)")
    p_plot.add_argument("--measures", nargs="+", default=None, help="metric columns to plot (default: a standard set)")
    _add_debug(p_plot)
    return parser


# Config field -> flag, where the flag is not "--" + the field with dashes
_FLAGS = {"n_tasks": "--tasks", "probe_size": "--probe-size"}


def _flag(field: str) -> str:
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def _add_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("--import", action="append", default=[], metavar="MODULE", dest="imports",
                   help="import MODULE first (a module that registers methods of its own; repeat for several)")


def _import_modules(argv: Sequence[str]) -> List[str]:
    """Import the modules named by ``--import`` in ``argv`` (before the parser lists the methods)."""
    import importlib

    names = []
    for i, arg in enumerate(argv):
        if arg == "--import" and i + 1 < len(argv):
            names.append(argv[i + 1])
        elif arg.startswith("--import="):
            names.append(arg.split("=", 1)[1])
    for name in names:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` does: modules beside the user are importable
        try:
            importlib.import_module(name)
        except Interrupted:  # a signal to this process, not the module's doing: the command stops
            raise
        except Exception as err:  # an ImportError, or any error the module raises while importing
            raise _InputError(f"--import {name!r}: cannot import it ({type(err).__name__}: {_one_line(err)}); allowed: an importable module that registers methods") from None
        except (SystemExit, KeyboardInterrupt) as err:  # a module that exits or is interrupted is an error, not a success
            what = f"it called sys.exit({err.code!r})" if isinstance(err, SystemExit) else "it was interrupted (KeyboardInterrupt)"
            raise _InputError(f"--import {name!r}: importing it did not finish: {what}; allowed: a module that registers methods and returns") from None
    return names


def _split_setting(flag: str, text: str) -> Tuple[Optional[str], str, str]:
    """``"[METHOD.]NAME=VALUE"`` -> (method or None, name, value)."""
    if "=" not in text:
        raise _InputError(f"{flag} {text!r}: expected NAME=VALUE (e.g. iso_strength=1e-3)")
    key, value = text.split("=", 1)
    method, _, name = key.strip().rpartition(".")
    if not name:
        raise _InputError(f"{flag} {text!r}: expected NAME=VALUE (e.g. iso_strength=1e-3)")
    return (method or None), name, value.strip()


def _no_repeats(flag: str, pairs: Sequence[Tuple[Optional[str], str, str]]) -> None:
    """A setting named twice (same method scope) is an error, not "the last one wins"."""
    seen: Dict[Tuple[Optional[str], str], str] = {}
    for target, name, value in pairs:
        key = (target, name)
        shown = f"{target}.{name}" if target else name
        if key in seen:
            raise _InputError(f"{flag} {shown}={value}: {shown} is already set ({shown}={seen[key]}); allowed: each setting once "
                              f"(a sweep takes several values as {shown}=V1,V2,...)")  # fmt: skip
        seen[key] = value


def _method_settings(flag: str, method: str, pairs: Sequence[Tuple[Optional[str], str, str]]) -> Dict[str, object]:
    """The settings of ``method`` from parsed ``--set`` pairs (all of which must apply to it)."""
    cls = method_class(method)
    out = {}
    _no_repeats(flag, pairs)
    for target, name, value in pairs:
        if target is not None and target != method:
            raise _InputError(f"{flag} {target}.{name}={value}: method {target!r} is not the chosen method {method!r}")
        try:
            out[name] = parse_setting(method, cls.Settings, name, value)
        except SettingError as err:
            raise _InputError(f"{flag} {name}={value}: method {method!r}, setting {name!r}: {err.problem}; allowed: {err.allowed}") from None
    return out


def _settings_grid(flag: str, methods: Sequence[str], pairs: Sequence[Tuple[Optional[str], str, str]]) -> Dict[str, List[Dict[str, object]]]:
    """Per method, the list of settings dicts of a sweep's ``--set`` grid (``[{}]``: defaults).

    An unqualified ``NAME=V1,V2`` applies to every chosen method that declares ``NAME`` and must
    be declared by at least one; ``METHOD.NAME=...`` applies to that method only.
    """
    grids: Dict[str, Dict[str, list]] = {m: {} for m in methods}
    _no_repeats(flag, pairs)
    for target, name, values in pairs:
        if target is not None and target not in grids:
            raise _InputError(f"{flag} {target}.{name}={values}: {target!r} is not one of the chosen methods ({', '.join(methods)})")
        applies = [m for m in ([target] if target else methods) if any(s.name == name for s in setting_specs(method_class(m).Settings))]
        if not applies:
            owners = [m for m in METHODS if any(s.name == name for s in setting_specs(method_class(m).Settings))]
            where = f"it is a setting of {', '.join(owners)}" if owners else "no registered method has it"
            chosen = f"method {target!r}" if target else f"none of the chosen methods ({', '.join(methods)})"
            raise _InputError(f"{flag} {name}={values}: {chosen} has the setting {name!r}; {where}")
        texts = [v for v in values.split(",") if v.strip()]
        if not texts:
            raise _InputError(f"{flag} {name}={values}: no value; allowed: NAME=V1,V2,...")
        for m in applies:
            grids[m][name] = [_method_settings(flag, m, [(None, name, v)])[name] for v in texts]
    return {m: [dict(zip(g, combo)) for combo in itertools.product(*g.values())] for m, g in grids.items()}


def settings_grids(args: argparse.Namespace) -> Dict[str, List[Dict[str, object]]]:
    """Per chosen method of a parsed sweep (``build_parser().parse_args(["sweep", ...])``), the
    settings dicts of its ``--set`` grid, in the order the sweep runs them (``[{}]``: defaults).

    A malformed or unknown ``--set`` raises the command line's input error (one line naming the
    flag, the value and what is allowed; the CLI prints it and exits with status 2).

    Example:
        >>> args = build_parser().parse_args(["sweep", "--benchmark", "permuted-digits", "--method", "adam", "adamo",
        ...                                   "--set", "iso_strength=0.01,0.1", "--out", "x.csv"])
        >>> settings_grids(args)
        {'adam': [{}], 'adamo': [{'iso_strength': 0.01}, {'iso_strength': 0.1}]}
    """
    return _settings_grid("--set", list(dict.fromkeys(args.method)), [_split_setting("--set", t) for t in args.settings])


def config_from_args(args: argparse.Namespace, benchmark: str, method: str, settings: Dict[str, object], lr: float):
    """The :class:`~isoplast_lite.config.Config` of one run of the parsed ``run`` or ``sweep`` command
    ``args``: its run flags (generated from the Config fields, :func:`~isoplast_lite.config.cli_fields`)
    with one benchmark, method, settings dict and learning rate.

    Example:
        >>> args = build_parser().parse_args(["run", "--benchmark", "permuted-digits", "--method", "adam", "--tasks", "3"])
        >>> cfg = config_from_args(args, "permuted-digits", "adam", {}, 1e-3)
        >>> cfg.n_tasks, cfg.width
        (3, 256)
    """
    from .config import Config, cli_fields

    run_fields = {f.name: getattr(args, _dest(f.metadata["flag"])) for f in cli_fields()}
    return Config(benchmark=benchmark, method=method, settings=settings, lr=lr, **run_fields)


def _run_one(args, cfg):
    from .run import run

    cache = False if args.no_cache else args.cache_dir
    return run(cfg, cache_dir=cache, progress=False if args.no_progress else None, seed_batch=args.seed_batch).rows


# ---------------------------------------------------------------- checks made before any work


def _check_output(flag: str, path: str, *, results: bool = False, force: bool = False) -> Path:
    """The file ``path`` will be written to (a symlink's target); leftovers of its earlier
    interrupted writes are removed. With ``results``, an existing file is replaced only if it is
    a CSV of results this tool wrote (its header is the result columns), or with ``force``."""
    try:
        target = files.check_output_file(flag, path)
    except ValueError as err:
        raise _InputError(str(err)) from None
    if results and not force and target.is_file() and target.stat().st_size > 0:
        from .run import RESULT_COLUMNS

        try:
            with open(target, "rb") as handle:
                header = handle.readline(1 << 16).decode("utf-8", "replace").strip()
        except OSError as err:
            raise _InputError(f"{flag} {path!r}: cannot read the existing file ({err.strerror})") from None
        if header != ",".join(RESULT_COLUMNS):
            raise _InputError(f"{flag} {path!r}: exists and is not a results CSV written by this tool (its first line is not the result "
                              "columns); allowed: a new file, a results CSV, or --force to replace it")  # fmt: skip
    files.clean_stale_temps(target.parent, target=target.name)
    return target


_LOCKS: list = []  # open lock files, held until the process ends


def _lock_output(flag: str, target: Path) -> None:
    """Hold an exclusive lock for the writer of ``target`` until this process ends; refuse if another process holds it."""
    import fcntl

    lock = target.with_name(f".{target.name}.lock")
    try:
        handle = open(lock, "a+")
    except OSError as err:
        raise _InputError(f"{flag} {str(target)!r}: cannot create its lock file {lock} ({err.strerror})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise _InputError(f"{flag} {str(target)!r}: another sweep is writing it ({holder}); allowed: another --out, or wait for it to finish") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    _LOCKS.append((lock, handle))


def _release_locks() -> None:
    """Release the ``--out`` locks of this command (its writes are done)."""
    while _LOCKS:
        lock, handle = _LOCKS.pop()
        lock.unlink(missing_ok=True)
        handle.close()


def _check_cache(args) -> None:
    if args.no_cache:
        return
    from .run import default_cache_dir

    if args.cache_dir is not None:
        name, folder = "--cache-dir", args.cache_dir
    else:
        name = "$ISOPLAST_CACHE" if "ISOPLAST_CACHE" in os.environ else "the default cache folder"
        folder = default_cache_dir()
    if str(folder) == "":
        raise _InputError(f"{name} '': allowed: a folder path (or --no-cache)")
    try:
        files.check_writable_folder(name, folder)
    except ValueError as err:
        raise _InputError(f"{err} (or --no-cache)") from None


def _check_configs(args, configs) -> None:
    """Device, n_train, method constraints and memory of every config; data available."""
    from .run import MAX_HOURS_ENV, check_config
    from .tasks import fetch_source, parse_benchmark

    if args.max_hours is not None:  # run() and the sweep's jobs (which inherit the environment) read it
        os.environ[MAX_HOURS_ENV] = repr(args.max_hours)
    for cfg in configs:
        try:
            check_config(cfg, seed_batch=args.seed_batch)
        except ConfigError as err:
            named = " ".join(f"{_flag(k)} {v!r}" if isinstance(v, str) else f"{_flag(k)} {v}" for k, v in err.fields.items())
            raise _InputError(f"{named}: {err.reason}") from err
    for benchmark in dict.fromkeys(cfg.benchmark for cfg in configs):
        source = parse_benchmark(benchmark)[1]
        if source not in OFFLINE_SOURCES:
            try:
                fetch_source(source)  # downloads once, before any training
            except RuntimeError as err:
                raise _InputError(f"--benchmark {benchmark!r}: {err}") from err


def _write_csv(df, path: str) -> None:
    """Write atomically, through a symlink, never in place of a non-regular file."""
    data = df.to_csv(index=False).encode()
    files.atomic_write(path, lambda h: h.write(data))


def _divergence_note(df) -> str:
    """One line naming the runs that diverged and from which task ("" if none)."""
    if not df["diverged"].any():
        return ""
    first = df[df["diverged"]].groupby(["method", "settings", "lr", "seed"])["task"].min()
    runs = ", ".join(f"{m} {st} lr={lr:g} seed {s} from task {t}" for (m, st, lr, s), t in first.items())
    return f"diverged (loss or weights non-finite; metrics NaN from that task on): {runs}"


def _summary(df) -> str:
    cols = ["train_acc", "test_acc", "dead", "dormant_0.025", "ntk_cond"]
    text = df.groupby("task")[cols].mean().round(4).to_string()
    note = _divergence_note(df)
    return text + ("\n" + note + " (the means above leave them out)" if note else "")


# ---------------------------------------------------------------- commands: prepare, then execute


def _prepare_run(args, parser):
    settings = _method_settings("--set", args.method, [_split_setting("--set", t) for t in args.settings])
    target = _check_output("--out", args.out, results=True, force=args.force) if args.out is not None else None
    _check_cache(args)
    cfg = config_from_args(args, args.benchmark, args.method, settings, args.lr)
    _check_configs(args, [cfg])
    if target is not None:
        _lock_output("--out", target)

    def execute() -> int:
        df = _run_one(args, cfg)
        if args.out:
            _write_csv(df, args.out)
        print(_summary(df))
        return 0

    return execute


def _check_executor(args) -> dict:
    """The executor flags, checked before any work; returns the SLURM settings."""
    import shutil

    slurm_flags = {k: getattr(args, "slurm_" + k) for k in ("partition", "account", "gpus_per_job", "cpus_per_job", "mem_gb")}
    slurm_flags["time_min"] = args.slurm_time
    if args.executor == "serial":
        return {}
    if args.no_cache:
        raise _InputError(f"--no-cache with --executor {args.executor}: the jobs' results travel through the cache; allowed: a cache (--cache-dir) or --executor serial")
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise _InputError(f"--executor {args.executor}: needs the submitit package (pip install 'submitit>=1.5'); allowed without it: serial") from None
    if args.jobs_dir is not None:
        try:
            files.check_writable_folder("--jobs-dir", args.jobs_dir)
        except ValueError as err:
            raise _InputError(str(err)) from None
    if args.executor == "local":
        return {"time_min": args.slurm_time} if args.slurm_time else {}
    if shutil.which("sbatch") is None:
        raise _InputError("--executor slurm: sbatch is not on PATH (run it on a SLURM login node); allowed here: serial or local")
    if slurm_flags["gpus_per_job"] is None and args.device.startswith("cuda"):
        slurm_flags["gpus_per_job"] = 1
    return slurm_flags


def _prepare_sweep(args, parser):
    import dataclasses

    target = _check_output("--out", args.out, results=True, force=args.force)
    _check_cache(args)
    slurm = _check_executor(args)
    grids = settings_grids(args)
    configs = []
    for bench, method, lr in itertools.product(args.benchmark, dict.fromkeys(args.method), args.lr):
        configs.extend(config_from_args(args, bench, method, settings, lr) for settings in grids[method])
    if args.executor == "slurm":  # the device is on the compute nodes: check the rest here
        from .config import check_device

        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", args.device):
            check_device(args.device)  # the usual one-line error for a device torch does not know
        _check_configs(args, [dataclasses.replace(c, device="cpu") for c in configs])
    else:
        _check_configs(args, configs)
    _lock_output("--out", target)

    def execute() -> int:
        import pandas as pd

        from .run import RESULT_COLUMNS
        from .sweep import describe, run_sweep

        done: Dict[int, "pd.DataFrame"] = {}

        def on_result(i, cfg, df) -> None:
            done[i] = df
            # written before it is announced: whoever reads "[k/n]" (or stops the sweep then) finds the k on disk
            _write_csv(pd.concat([done[k] for k in sorted(done)], ignore_index=True), args.out)
            args.finished = len(done)  # for the line of a stopped sweep
            print(f"[{len(done)}/{len(configs)}] {describe(cfg)}", flush=True)
            note = _divergence_note(df)
            if note:
                print("    " + note, flush=True)

        failures: list = []
        warnings.filterwarnings("ignore", message="configuration failed", category=RuntimeWarning)  # listed below
        run_sweep(configs, executor=args.executor, cache_dir=False if args.no_cache else args.cache_dir,
                  seed_batch=args.seed_batch, progress=False if args.no_progress else None, workers=args.workers,
                  jobs_dir=args.jobs_dir, max_retries=args.max_retries,
                  slurm=slurm or None, on_result=on_result, failures=failures, stack=not args.no_stack)  # fmt: skip
        if not done:  # nothing finished: an empty results CSV, so --out never holds what it held before
            _write_csv(pd.DataFrame(columns=list(RESULT_COLUMNS)), args.out)
        for f in failures:
            print(f"failed: {f}", file=sys.stderr, flush=True)
        ok = len(configs) - len(failures)
        print(f"{ok} of {len(configs)} configurations finished, {len(failures)} failed; {args.out} holds the rows of the {ok}", flush=True)
        return 1 if failures else 0

    return execute


def _figure_formats() -> Dict[str, str]:
    from matplotlib.backend_bases import FigureCanvasBase

    return FigureCanvasBase.get_supported_filetypes()


def _read_results(path: str):
    """The result CSV at ``path``, or an ``_InputError`` saying what is wrong with it."""
    import stat

    import pandas as pd

    from .run import with_diverged_column

    shown = f"CSV {path!r}"
    allowed = "allowed: a CSV file written by run or sweep"
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise _InputError(f"{shown}: no such file; {allowed}") from None
    except (OSError, ValueError) as err:
        raise _InputError(f"{shown} cannot be accessed ({err}); {allowed}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _InputError(f"{shown} is {files.file_kind(st.st_mode)}; {allowed}")
    if st.st_size == 0:
        raise _InputError(f"{shown} is empty; {allowed}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(8192)
    except OSError as err:
        raise _InputError(f"{shown} cannot be read ({err.strerror}); {allowed}") from None
    if b"\x00" in head and not head.startswith(b"\x1f\x8b"):  # binary, and not gzip (pandas reads .csv.gz)
        raise _InputError(f"{shown} is a binary file, not a text CSV; {allowed}")
    try:
        df = pd.read_csv(path)
    except Exception as err:  # pandas raises many kinds (ParserError, UnicodeDecodeError, BadGzipFile, ...)
        raise _InputError(f"{shown} cannot be read as a CSV ({type(err).__name__}: {err}); {allowed}") from None
    if df.empty:
        raise _InputError(f"{shown} has no rows (a header only?); {allowed}")
    return with_diverged_column(df)


def _prepare_plot(args, parser):
    import pandas as pd

    df = _read_results(args.csv)
    ext = Path(args.output).suffix.lower().lstrip(".")
    formats = _figure_formats()
    if ext not in formats:
        shown = f"extension .{ext}" if ext else "no extension"
        raise _InputError(f"-o/--output {args.output!r}: {shown}, not a figure format; allowed extensions: {', '.join(sorted(formats))}")
    _check_output("-o/--output", args.output)
    if args.measures is not None:
        numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and c not in ("seed", "task", "diverged")]
        for m in args.measures:
            if m not in numeric:
                raise _InputError(f"--measures {m!r}: not a numeric column of {args.csv!r}; allowed: {', '.join(numeric)}")

    from .plots import plot_results

    try:
        fig = plot_results(df, measures=args.measures)
    except (ValueError, TypeError) as err:
        raise _InputError(f"CSV {args.csv!r}: {err}; allowed: a CSV file written by run or sweep") from None

    def execute() -> int:
        import matplotlib.pyplot as plt

        try:
            files.atomic_write(args.output, lambda h: fig.savefig(h, format=ext, dpi=120, bbox_inches="tight"))
        finally:
            plt.close(fig)
        return 0

    return execute


_COMMANDS = {"run": _prepare_run, "sweep": _prepare_sweep, "plot": _prepare_plot}
# errors that stop a command with one line; ConfigError and _InputError are bad input by design
_EXPECTED = (_InputError, ValueError, TypeError, OSError, RuntimeError)


def _signal_status(err: KeyboardInterrupt) -> Tuple[str, int]:
    """The signal that stopped the command (its name) and the exit status ``128 + signal``: an
    :class:`~isoplast_lite.signals.Interrupted` names its signal (SIGTERM gives 143), any other
    ``KeyboardInterrupt`` is Ctrl-C (SIGINT, 130)."""
    import signal

    if isinstance(err, Interrupted):
        return err.name, err.status
    return signal.SIGINT.name, 128 + int(signal.SIGINT)


def _kept(args) -> str:
    """What a stopped ``run`` or ``sweep`` leaves: the finished rows in ``--out`` (a sweep rewrites
    it after every configuration) and the finished tasks in the cache, from which it resumes."""
    if args.command == "plot":
        return f"{args.output!r} was not written"
    if args.no_cache:
        cached = "nothing is cached (--no-cache)"
    else:
        from .cache import default_cache_dir

        cached = f"the tasks finished are cached in {str(args.cache_dir or default_cache_dir())!r}: the same command resumes from them"
    if args.command == "sweep":
        return f"{args.out!r} holds the rows of the {getattr(args, 'finished', 0)} configurations finished; {cached}"
    return (f"{args.out!r} was not written; " if args.out else "") + cached


def _stopped(prog: str, err: KeyboardInterrupt, kept: str):
    """One line for a command stopped by a signal, then ``SystemExit(128 + signal)``."""
    name, status = _signal_status(err)
    sys.stderr.write(f"{prog}: stopped by {name}; {kept}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; return 0 on success.

    Bad input (found before any work starts) is reported as one line on stderr and exits with
    status 2 (``SystemExit(2)``, as argparse does); an error during the work itself is one line
    too, with status 1. ``--debug`` re-raises instead, with the full traceback. SIGTERM and
    Ctrl-C (SIGINT) stop the command with one line saying what is kept (the rows and cache
    entries finished so far) and status 143 or 130 (128 + the signal, as a shell reports it).
    """
    import signal

    argv = sys.argv[1:] if argv is None else list(argv)
    # SIGINT and SIGTERM raise Interrupted, never a plain KeyboardInterrupt (see signals.py: CPython
    # would otherwise sometimes end the process by SIGINT itself, status -2, after the one line)
    restore = interrupt_on((signal.SIGINT, signal.SIGTERM))
    limit = os.environ.get("ISOPLAST_MAX_HOURS")  # --max-hours sets it for this command only
    try:
        return _main(argv)
    except KeyboardInterrupt as err:  # before a command was under way (importing --import modules, parsing)
        if "--debug" in argv:
            raise
        _stopped("python -m isoplast_lite", err, "nothing was started")
    finally:
        restore()
        if limit is None:
            os.environ.pop("ISOPLAST_MAX_HOURS", None)
        else:
            os.environ["ISOPLAST_MAX_HOURS"] = limit


def _main(argv: List[str]) -> int:
    try:
        _import_modules(argv)  # methods of the user's own modules, before the parser lists them
    except _InputError as err:
        if "--debug" in argv:
            raise
        _fail("python -m isoplast_lite", str(err))
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    try:
        execute = _COMMANDS[args.command](args, parser)
    except _EXPECTED as err:
        _release_locks()
        if args.debug:
            raise
        hint = "" if isinstance(err, _InputError) else " (--debug shows the traceback)"
        _fail(prog, f"{err}{hint}")
    except KeyboardInterrupt as err:
        _release_locks()
        if args.debug:
            raise
        _stopped(prog, err, "nothing was started")
    try:
        return execute()
    except _EXPECTED as err:
        if args.debug:
            raise
        sys.stderr.write(f"{prog}: error: {_one_line(err)} (--debug shows the traceback)\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        _stopped(prog, err, _kept(args))
    finally:
        _release_locks()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
