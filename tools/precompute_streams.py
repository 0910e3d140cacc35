"""Precompute chapter 8's benchmarks: six streams, every method tuned the same way (isoplast_lite/data/streams).

    OMP_NUM_THREADS=1 .venv/bin/python tools/precompute_streams.py [--streams NAME ...] [--jobs 2]

Two phases, both through the runner's cache (``--cache``, default ``$ISOPLAST_CACHE``), so an
interrupted precomputation resumes where it stopped and no configuration is trained twice:

1. **Tuning** (the same small budget for every method that has a main hyperparameter,
   AdamO's lambda included): each value of :func:`grids` (each method's ``Method.tuning``) on :data:`TUNE_SEEDS` (seeds 100-101,
   never used for the results) over the first quarter of the stream (:func:`tuning_tasks`).
   The score of a value is the accuracy reached on each new task (:data:`STREAMS` ``metric``:
   held-out accuracy on the permuted and label-shuffled streams, end-of-task training accuracy
   on the random-label ones, which have no held-out labels), averaged over the second half of
   the tuning tasks and over the tuning seeds. The highest score wins; a value whose run
   diverged scores minus infinity; ties go to the earlier value of the grid.
2. **Results**: every method at its chosen value (and the untuned ones, :func:`untuned`:
   ``adam``, the ``fresh`` reference, ``layernorm``, ``aei-adam``) on seeds 0-7 over the whole
   stream. The methods are the registry's compared ones (``Method.compared``), so a method
   registered with a tuning grid is tuned and run with no edit here.

Writes, per stream, ``{stream}.csv.gz`` (the results' rows), ``{stream}-tuning.csv.gz`` (every
tuning run's rows), ``search.csv`` (a copy of ``tools/search_streams/summary.csv``, the search
that found the streams) and ``manifest.json`` (the configurations, the grids, the scores and the
chosen values, this command, the provenance, the seconds of each configuration). ``--jobs 2``
runs two configurations at a time, one thread each (this machine has 2 cores).

The streams (``STREAMS``) are ours: the random-label streams at the book scale of chapters 6-7
and the four permuted / label-shuffled configurations found and confirmed on new seeds by
``tools/search_streams.py`` (its README has every configuration tried), in which Adam loses
plasticity against a fresh network on a CPU. None of them is the paper's setting.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "isoplast_lite" / "data" / "streams"
SEARCH_SUMMARY = ROOT / "tools" / "search_streams" / "summary.csv"

_SEARCH = "tools/search_streams.py (confirmed on seeds 10-17)"
#: name -> Config fields of the results runs, the accuracy that measures plasticity, where it comes from
STREAMS = {
    "random-label-digits": dict(
        fields=dict(benchmark="random-label-digits", n_tasks=10, steps_per_task=400, width=64, depth=3, n_train=256, batch_size=32, lr=1e-3),
        metric="train_acc", source="the book scale of chapters 6-7 (random labels: memorization, no held-out labels)"),
    "random-label-mnist1d": dict(
        fields=dict(benchmark="random-label-mnist1d", n_tasks=10, steps_per_task=400, width=64, depth=3, n_train=256, batch_size=32, lr=1e-3),
        metric="train_acc", source="the book scale of chapters 6-7 (random labels: memorization, no held-out labels)"),
    "permuted-digits": dict(
        fields=dict(benchmark="permuted-digits", n_tasks=200, steps_per_task=90, width=64, depth=2, n_train=None, batch_size=16, lr=3e-3, probe_size=8, init="orthogonal"),
        metric="test_acc", source=f"{_SEARCH}: Kumar et al.'s permuted MNIST scaled to Digits, one epoch per task at batch 16"),
    "label-shuffle-digits": dict(
        fields=dict(benchmark="label-shuffle-digits", n_tasks=200, steps_per_task=90, width=64, depth=2, n_train=None, batch_size=16, lr=1e-3, probe_size=8, init="orthogonal"),
        metric="test_acc", source=f"{_SEARCH}: the same budget with the labels permuted at each task"),
    "permuted-mnist1d": dict(
        fields=dict(benchmark="permuted-mnist1d", n_tasks=60, steps_per_task=500, width=64, depth=2, n_train=None, batch_size=64, lr=1e-2, probe_size=8, init="orthogonal"),
        metric="test_acc", source=f"{_SEARCH}: 8 epochs of the 4000 samples per task, so a fresh network fits each task"),
    "label-shuffle-mnist1d": dict(
        fields=dict(benchmark="label-shuffle-mnist1d", n_tasks=300, steps_per_task=250, width=32, depth=2, n_train=None, batch_size=64, lr=1e-2, probe_size=8, init="orthogonal"),
        metric="test_acc", source="tools/search_streams.py (confirmed on seeds 10-15): a long stream of 4-epoch tasks, width 32"),
}

RESULT_SEEDS = dict(seeds=8, first_seed=0)
TUNE_SEEDS = dict(seeds=2, first_seed=100)


def grids() -> "dict[str, tuple[str, tuple]]":
    """Method -> (its main hyperparameter, the values tried), from each compared method's class
    (``Method.tuning``: 3-4 values around the method's published or default value), in the
    book's order (``plots.method_order``: AdamO first). Read from the registry at each call, so a
    method registered from a user module is tuned with no edit here."""
    from isoplast_lite.methods import method_info
    from isoplast_lite.plots import method_order

    infos = [method_info(m) for m in method_order()]
    return {i.name: i.tuning for i in infos if i.compared and i.tuning is not None}


def untuned() -> "tuple[str, ...]":
    """The compared methods without a main hyperparameter to tune (the learning rate is the
    stream's, for all), in the book's order: Adam, the ``fresh`` reference, LayerNorm, AEI."""
    from isoplast_lite.methods import method_info
    from isoplast_lite.plots import method_order

    return tuple(m for m in method_order() if method_info(m).compared and method_info(m).tuning is None)


def __getattr__(name: str):
    """``GRIDS`` and ``UNTUNED``: :func:`grids` and :func:`untuned` now (the registry's state)."""
    if name == "GRIDS":
        return grids()
    if name == "UNTUNED":
        return untuned()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tuning_tasks(n_tasks: int) -> int:
    """The tuning horizon: the first quarter of the stream (at least 2 tasks)."""
    return max(2, math.ceil(n_tasks / 4))


def score_window(n_tuning_tasks: int) -> "tuple[int, int]":
    """Tasks ``[start, stop)`` whose accuracies make a tuning score: the second half."""
    return n_tuning_tasks // 2, n_tuning_tasks


def tuning_configs(stream: str):
    """Every tuning run of ``stream``: ``[(method, value, Config)]``."""
    from isoplast_lite.run import Config

    spec = STREAMS[stream]
    fields = dict(spec["fields"], n_tasks=tuning_tasks(spec["fields"]["n_tasks"]), **TUNE_SEEDS)
    return [(m, v, Config(method=m, settings={name: v}, **fields)) for m, (name, values) in grids().items() for v in values]


def score(rows, metric: str, n_tuning_tasks: int) -> float:
    """The tuning score of one run's rows (``-inf`` if any seed diverged)."""
    start, stop = score_window(n_tuning_tasks)
    if "diverged" in rows and rows["diverged"].astype(bool).any():
        return -math.inf
    window = rows[(rows.task >= start) & (rows.task < stop)]
    value = float(window.groupby("seed")[metric].mean().mean())
    return value if math.isfinite(value) else -math.inf


def choose(scores: "dict[float, float]", values) -> float:
    """The value with the highest score; ties to the earlier value of the grid."""
    best = max(scores[v] for v in values)
    return next(v for v in values if scores[v] == best)


def result_configs(stream: str, chosen: "dict[str, dict]"):
    """The results runs of ``stream``: the untuned methods, then each tuned one at its chosen value."""
    from isoplast_lite.run import Config

    fields = dict(STREAMS[stream]["fields"], **RESULT_SEEDS)
    cfgs = [Config(method=m, **fields) for m in untuned()]
    cfgs += [Config(method=m, settings=chosen[m], **fields) for m in grids()]
    return cfgs


#: the files keep float32's precision (7 significant digits): the runs compute in float32, and
#: the full float64 repr of each number would double the size of the files
FLOAT_FORMAT = "%.7g"


def shipped_precision(df):
    """``df`` as it reads back from a file written with :data:`FLOAT_FORMAT` (scores and tests
    are computed from exactly the numbers that ship)."""
    import io

    import pandas as pd

    return pd.read_csv(io.StringIO(df.to_csv(index=False, float_format=FLOAT_FORMAT)))


def write_gz(path: Path, df) -> None:
    """``df`` at :data:`FLOAT_FORMAT` as a reproducible gzipped CSV at ``path`` (the chain tool's writer)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from precompute_chain import write_gz as chain_write_gz

    chain_write_gz(path, df, float_format=FLOAT_FORMAT)


def _label(cfg) -> str:
    from isoplast_lite.settings import settings_json

    return f"{cfg.method} {settings_json(cfg.settings)}"


def _cost(cfg) -> float:
    """Relative work of a run (the scheduler starts the largest first); ``Method.cost`` is the
    method's step cost relative to Adam's."""
    from isoplast_lite.methods import method_info

    return cfg.n_tasks * cfg.steps_per_task * math.sqrt(cfg.batch_size) * math.sqrt(cfg.seeds) * method_info(cfg.method).cost


def _init_worker():
    import torch

    torch.set_num_threads(1)


def _run_one(cfg, cache: str):
    from isoplast_lite.run import run

    t0, c0 = time.perf_counter(), time.process_time()
    run(cfg, cache_dir=cache, progress=False)
    return cfg.to_json(), time.perf_counter() - t0, time.process_time() - c0


def cached(cfg, cache: str) -> bool:
    """Whether the runner's cache holds the complete entry of ``cfg``."""
    from isoplast_lite.run import cache_key

    return (Path(cache) / cache_key(cfg) / "result.csv").is_file()


def run_all(cfgs, cache: str, jobs: int, log) -> "dict[str, tuple[float, float]]":
    """Train every config not yet cached, longest first, ``jobs`` at a time; ``{json: (wall s, cpu s)}``."""
    todo = sorted((c for c in cfgs if not cached(c, cache)), key=_cost, reverse=True)
    times = {}
    if not todo:
        return times
    log(f"  {len(todo)} of {len(cfgs)} configurations to train, {jobs} at a time")
    if jobs == 1:
        _init_worker()
        for c in todo:
            key, wall, cpu = _run_one(c, cache)
            times[key] = (wall, cpu)
            log(f"  done {c.benchmark} {c.method} {c.method_settings} ({wall:.0f} s wall, {cpu:.0f} s CPU)")
        return times
    import multiprocessing

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker) as pool:
        futures = {pool.submit(_run_one, c, cache): c for c in todo}
        for fut in as_completed(futures):
            key, wall, cpu = fut.result()
            times[key] = (wall, cpu)
            c = futures[fut]
            log(f"  done {c.benchmark} {c.method} {c.method_settings} ({wall:.0f} s wall, {cpu:.0f} s CPU)")
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    parser.add_argument("--jobs", type=int, default=1, help="configurations trained at once, one thread each (default 1)")
    parser.add_argument("--cache", default=None, help="the runner's cache folder (default: $ISOPLAST_CACHE or the runner's default)")
    parser.add_argument("--phase", choices=("tune", "all"), default="all", help="'tune': stop after the tuning runs")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")

    import pandas as pd

    from isoplast_lite.files import atomic_write
    from isoplast_lite.results import provenance
    from isoplast_lite.run import check_config, default_cache_dir, run

    cache = str(args.cache or default_cache_dir())
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    tuning = {s: tuning_configs(s) for s in args.streams}
    for s in args.streams:  # check every tuning configuration before any work
        for _, _, cfg in tuning[s]:
            check_config(cfg)
    out = args.out
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}

    GRIDS, UNTUNED = grids(), untuned()  # noqa: N806 (the registry's, read once per run)
    started = time.perf_counter()
    log(f"tuning: {sum(len(v) for v in tuning.values())} configurations")
    times = run_all([c for s in args.streams for _, _, c in tuning[s]], cache, args.jobs, log)
    chosen, scores = {}, {}
    for s in args.streams:
        metric, n_tune = STREAMS[s]["metric"], tuning_tasks(STREAMS[s]["fields"]["n_tasks"])
        scores[s] = {m: {} for m in GRIDS}
        for m, v, cfg in tuning[s]:
            scores[s][m][v] = score(shipped_precision(run(cfg, cache_dir=cache, progress=False).rows), metric, n_tune)
        chosen[s] = {m: {GRIDS[m][0]: choose(scores[s][m], GRIDS[m][1])} for m in GRIDS}
        log(f"{s}: chosen " + ", ".join(f"{m} {GRIDS[m][0]}={chosen[s][m][GRIDS[m][0]]:g}" for m in GRIDS))
    if args.phase == "tune":
        return 0

    results = {s: result_configs(s, chosen[s]) for s in args.streams}
    for s in args.streams:
        for cfg in results[s]:
            check_config(cfg)
    log(f"results: {sum(len(v) for v in results.values())} configurations")
    times.update(run_all([c for s in args.streams for c in results[s]], cache, args.jobs, log))

    for s in args.streams:
        spec = STREAMS[s]
        tune_rows = shipped_precision(pd.concat([run(c, cache_dir=cache, progress=False).rows for _, _, c in tuning[s]], ignore_index=True))
        rows = shipped_precision(pd.concat([run(c, cache_dir=cache, progress=False).rows for c in results[s]], ignore_index=True))
        write_gz(out / f"{s}-tuning.csv.gz", tune_rows)
        write_gz(out / f"{s}.csv.gz", rows)
        old = manifest.get(s, {})
        trained = any(c.to_json() in times for c in [c for _, _, c in tuning[s]] + results[s])
        secs = {"tuning": {}, "results": {}}
        for phase, cfgs in (("tuning", [c for _, _, c in tuning[s]]), ("results", results[s])):
            # a configuration not trained now keeps the seconds recorded when it was (labels repeat across phases)
            previous = {**old.get("cpu_seconds_per_config", {}), **old.get("cpu_seconds", {}).get(phase, {})}
            for c in cfgs:
                key = c.to_json()
                secs[phase][_label(c)] = round(times[key][1], 1) if key in times else previous.get(_label(c), previous.get(key))
        manifest[s] = {
            "file": f"{s}.csv.gz",
            "tuning_file": f"{s}-tuning.csv.gz",
            "command": f"python tools/precompute_streams.py --streams {s}",
            "source": spec["source"],
            "config": dict(spec["fields"], **RESULT_SEEDS),
            "metric": spec["metric"],
            "tuning": {
                **TUNE_SEEDS,
                "n_tasks": tuning_tasks(spec["fields"]["n_tasks"]),
                "score_tasks": list(score_window(tuning_tasks(spec["fields"]["n_tasks"]))),
                "rule": "highest mean of the metric over the score tasks and the tuning seeds; a diverged run scores -inf; ties to the earlier value",
            },
            "grids": {m: {"setting": name, "values": list(values)} for m, (name, values) in GRIDS.items()},
            "scores": {m: [scores[s][m][v] for v in GRIDS[m][1]] for m in GRIDS},
            "chosen": chosen[s],
            "untuned": list(UNTUNED),
            # when every run of the stream came from the cache, the provenance is that of the run that made them
            "provenance": provenance(threads=1) if trained or "provenance" not in old else old["provenance"],
            "cpu_seconds": secs,
            "float_format": FLOAT_FORMAT,
        }
    atomic_write(manifest_path, lambda h: h.write((json.dumps(manifest, indent=2, default=str) + "\n").encode()))
    from isoplast_lite.results import write_folder_checksums

    write_folder_checksums(out)  # each file's SHA-256, checked on load
    search = SEARCH_SUMMARY.read_bytes()  # the search log the chapter shows (every configuration tried)
    atomic_write(out / "search.csv", lambda h: h.write(search))
    log(f"wrote {out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
