"""Precompute chapter 8's benchmarks under a tuning protocol that can see plasticity loss (isoplast_lite/data/retuned).

    OMP_NUM_THREADS=1 .venv/bin/python tools/precompute_streams.py [--streams NAME ...] [--executor local --workers 2]

Every grid runs through :func:`isoplast_lite.sweep.run_sweep` (plain lists of ``Config``; the
runner's cache, ``--cache``, default ``$ISOPLAST_CACHE``, is the single source of truth), so an
interrupted precomputation resumes where it stopped and no configuration is trained twice.

The protocol (issue 24; ours, not the paper's):

1. **Held-out seeds, half the stream.** Every tuning run uses :data:`TUNE_SEEDS` (seeds 100-102,
   never used for the results) over the first half of the stream (:func:`tuning_tasks`), and is
   scored on the last quarter of that horizon (:func:`score_window`): the mean over those tasks
   and the tuning seeds of the stream's ``metric`` (held-out accuracy on the permuted and
   label-shuffled streams, end-of-task training accuracy on the random-label ones). A run that
   diverged scores minus infinity; ties go to the smaller value.
2. **The main setting** of each tuned method (``Method.tuning``) at the stream's learning rate:
   the method's grid, then, while the chosen value sits at an edge of what was tried, one more
   value beyond that edge by the grid's own ratio there (:func:`next_value`), at most
   :data:`MAX_EXTENSIONS` times per method and stream. An edge that remains (the limit, or the
   setting's bound, such as ReDo's threshold 0) is reported in the protocol table, never hidden.
3. **The learning rate** of every compared method (the untuned ones and the ``fresh`` reference
   included), at its chosen setting: the stream's rate times :data:`LR_FACTORS`, then, by the
   same edge rule as the settings, one more rate beyond an edge while the choice sits there
   (:func:`next_value` with the runner's bound ``config.MAX_LR``; at most :data:`MAX_EXTENSIONS`
   per method). The same first budget for every method: 3 runs x :data:`TUNE_SEEDS` seeds x the
   tuning horizon's steps, plus its extensions (the protocol table counts them). The setting is
   not tuned again at the chosen rate (one pass: setting, then rate).
4. **Results**: every method at its chosen setting and learning rate on seeds 0-7 over the
   whole stream.

Writes, per stream, ``{stream}.csv.gz`` (the results' rows), ``{stream}-layers.csv.gz`` (the
results' per-layer table, ``run(..., layers=True)``: scale, spread and dead units per block,
read back from the runner's cache), ``{stream}-tuning.csv.gz`` (every
tuning run's rows), ``{stream}-search.csv`` (the search log: every tuning run's stage, value,
learning rate and score), ``{stream}-protocol.csv`` (the protocol as data: per method the
horizon, the values tried, the chosen value and learning rate, and whether each sits at an
edge) and ``manifest.json`` (configurations, protocol, command, provenance, the CPU seconds of
each phase; a run over fewer streams than :data:`STREAMS` is labelled ``reduced`` with the
command and the estimated CPU time of the full run).

The streams (``STREAMS``) are ours: the random-label streams at the book scale of chapters 6-7
and the four permuted / label-shuffled configurations found and confirmed on new seeds by
``tools/search_streams.py`` (its README has every configuration tried), in which Adam loses
plasticity against a fresh network on a CPU. None of them is the paper's setting. The
``streams`` group, the record of chapter 8's earlier protocol that the chapter compares with
this one, was made by this tool before issue 24 (commit dde1932: 2 tuning seeds, the first
quarter of the stream, one learning rate for all, the eNTK in float32).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "isoplast_lite" / "data" / "retuned"
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
TUNE_SEEDS = dict(seeds=3, first_seed=100)
#: the tuning horizon: this fraction of the stream's tasks (issue 24: at least half)
HORIZON_FRACTION = 0.5
#: the score: the mean over this last fraction of the tuning horizon (at least one task)
SCORE_FRACTION = 0.25
#: the learning rates tried for every method: the stream's rate times these factors
LR_FACTORS = (0.3, 1.0, 3.0)
#: at most this many values added beyond an edge of a method's grid, per stream
MAX_EXTENSIONS = 3


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
    """The tuning horizon: the first :data:`HORIZON_FRACTION` of the stream (at least 2 tasks)."""
    return max(2, math.ceil(n_tasks * HORIZON_FRACTION - 1e-9))


def score_window(n_tuning_tasks: int) -> "tuple[int, int]":
    """Tasks ``[start, stop)`` whose accuracies make a tuning score: the last
    :data:`SCORE_FRACTION` of the tuning horizon (at least one task)."""
    k = max(1, math.ceil(n_tuning_tasks * SCORE_FRACTION - 1e-9))
    return n_tuning_tasks - k, n_tuning_tasks


def lr_values(stream: str) -> "list[float]":
    """The learning rates tried for every method on ``stream`` (the stream's times :data:`LR_FACTORS`)."""
    lr = STREAMS[stream]["fields"]["lr"]
    return [float(f"{lr * f:.6g}") for f in LR_FACTORS]


def tuning_config(stream: str, method: str, settings: dict, lr: "float | None" = None):
    """The tuning run of ``method`` with ``settings`` (and learning rate ``lr``, default the stream's) on ``stream``."""
    from isoplast_lite.run import Config

    fields = dict(STREAMS[stream]["fields"], n_tasks=tuning_tasks(STREAMS[stream]["fields"]["n_tasks"]), **TUNE_SEEDS)
    if lr is not None:
        fields["lr"] = lr
    return Config(method=method, settings=dict(settings), **fields)


def tuning_configs(stream: str):
    """The first round of the setting stage on ``stream``: ``[(method, value, Config)]``, each
    tuned method's grid at the stream's learning rate (later rounds and the learning-rate stage
    depend on the scores: :func:`tune_stream`)."""
    return [(m, v, tuning_config(stream, m, {name: v})) for m, (name, values) in grids().items() for v in values]


def score(rows, metric: str, n_tuning_tasks: int) -> float:
    """The tuning score of one run's rows (``-inf`` if any seed diverged)."""
    start, stop = score_window(n_tuning_tasks)
    if "diverged" in rows and rows["diverged"].astype(bool).any():
        return -math.inf
    window = rows[(rows.task >= start) & (rows.task < stop)]
    value = float(window.groupby("seed")[metric].mean().mean())
    return value if math.isfinite(value) else -math.inf


def choose(scores: "dict[float, float]", values) -> float:
    """The value with the highest score; ties to the earlier value of ``values``."""
    best = max(scores[v] for v in values)
    return next(v for v in values if scores[v] == best)


def edge(values, chosen) -> "str | None":
    """``"low"`` or ``"high"`` when ``chosen`` is the smallest or largest of ``values`` (ascending), else ``None``."""
    values = sorted(values)
    return "low" if chosen == values[0] else "high" if chosen == values[-1] else None


def next_value(values, side: str, low=None, high=None) -> "float | None":
    """The value beyond the ``side`` edge of ``values`` (ascending): one more step of the grid's
    ratio at that edge (``v[-1]^2 / v[-2]`` above, ``v[0]^2 / v[1]`` below), half way to the
    setting's bound (``low`` / ``high``) when that step would leave its range, 3 significant
    digits. ``None`` when there is nothing beyond: the edge is the setting's bound (ReDo's
    threshold 0, a shrink of 1), or the grid has no ratio there.

    Example:
        >>> next_value([0.01, 0.1, 1.0], "high"), next_value([0.01, 0.1, 1.0], "low")
        (10.0, 0.001)
        >>> next_value([0.4, 0.8, 0.95], "high", low=0, high=1), next_value([0.0, 0.025, 0.1], "low", low=0)
        (0.975, None)
    """
    v = sorted(float(x) for x in values)
    if len(v) < 2 or side not in ("low", "high"):
        raise ValueError(f"values must hold at least 2 numbers and side must be 'low' or 'high', got {v}, {side!r}")
    a, b = (v[-2], v[-1]) if side == "high" else (v[1], v[0])  # b is the edge, a its neighbour
    bound = high if side == "high" else low
    if bound is not None and b == bound:
        return None
    if a <= 0 or b <= 0:
        return None  # no ratio at this edge (a grid through 0)
    step = b * (b / a)
    if bound is not None and ((side == "high" and step >= bound) or (side == "low" and step <= bound)):
        step = (b + bound) / 2
    step = float(f"{step:.3g}")
    return None if step in v else step


def _bounds(method: str, setting: str) -> "tuple[float | None, float | None]":
    """The declared range (``low``, ``high``) of ``method``'s ``setting``."""
    import dataclasses

    from isoplast_lite.methods import make_method

    for f in dataclasses.fields(make_method(method).settings):
        if f.name == setting:
            meta = f.metadata.get("isoplast_setting", {})
            return meta.get("low"), meta.get("high")
    raise ValueError(f"method {method!r} has no setting {setting!r}")


def result_configs(stream: str, chosen: "dict[str, dict]", chosen_lr: "dict[str, float] | None" = None):
    """The results runs of ``stream``: the untuned methods, then each tuned one at its chosen
    value, each at its chosen learning rate (``chosen_lr``; default the stream's for all)."""
    from isoplast_lite.run import Config

    fields = dict(STREAMS[stream]["fields"], **RESULT_SEEDS)
    if chosen_lr is None:
        chosen_lr = {m: fields["lr"] for m in (*untuned(), *grids())}
    cfgs = [Config(method=m, **{**fields, "lr": chosen_lr[m]}) for m in untuned()]
    cfgs += [Config(method=m, settings=chosen[m], **{**fields, "lr": chosen_lr[m]}) for m in grids()]
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
    """``df`` at :data:`FLOAT_FORMAT` as a reproducible gzipped CSV at ``path`` (:func:`isoplast_lite.files.write_csv_gz`)."""
    from isoplast_lite.files import write_csv_gz

    write_csv_gz(path, df, float_format=FLOAT_FORMAT)


def cached(cfg, cache: str) -> bool:
    """Whether the runner's cache holds the complete entry of ``cfg``."""
    from isoplast_lite.run import cache_key

    return (Path(cache) / cache_key(cfg) / "result.csv").is_file()


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the ``local`` executor's jobs)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Sweeper:
    """Runs lists of configurations through :func:`isoplast_lite.sweep.run_sweep`, keeps every
    run's rows (at the shipped precision) by its JSON, and adds up the CPU seconds it used."""

    def __init__(self, cache: str, executor: str, workers: int, log, stack: bool = True):
        self.cache, self.executor, self.workers, self.log, self.stack = cache, executor, workers, log, stack
        self.groups: list = []  # the stacked groups a cold run trains (``stacking.plan``'s), in order
        self.rows: dict = {}
        self.cpu = 0.0
        self.trained = 0  # configurations that were not in the cache when asked for

    def __call__(self, cfgs) -> None:
        from isoplast_lite.sweep import run_sweep

        todo = list({c.to_json(): c for c in cfgs if c.to_json() not in self.rows}.values())
        if not todo:
            return
        from isoplast_lite import stacking

        self.trained += sum(not cached(c, self.cache) for c in todo)
        self.log(f"  {len(todo)} configurations")
        # the trainings a cold run makes of this call (run_sweep's own plan covers only what is not in
        # the cache): recorded the same whether the runs come from the cache or not
        self.groups.extend(stacking.plan(todo, stack=self.stack))
        c0 = _cpu_seconds()
        run_sweep(todo, executor=self.executor, cache_dir=self.cache, workers=self.workers, threads=1, progress=False,
                  stack=self.stack, on_result=lambda i, cfg, df: self.rows.__setitem__(cfg.to_json(), shipped_precision(df)))
        self.cpu += _cpu_seconds() - c0

    def score(self, cfg, stream: str) -> float:
        return score(self.rows[cfg.to_json()], STREAMS[stream]["metric"], cfg.n_tasks)


def settle_or_extend(scores: dict, tried: list, low, high, extensions: int, bound: str):
    """One round of the edge rule for one method: ``((pick, scores, why), None)`` once its choice
    is interior, or at an edge it may not pass (``bound`` names the limit; or after
    ``MAX_EXTENSIONS`` extensions), else ``(None, value)``: the value to try next, beyond the edge."""
    pick = choose(scores, tried)
    side = edge(tried, pick)
    nxt = next_value(tried, side, low, high) if side else None
    if side is None or nxt is None or extensions == MAX_EXTENSIONS:
        why = "interior" if side is None else (f"{side} edge: {bound}" if nxt is None else f"{side} edge: extension limit ({MAX_EXTENSIONS})")
        return (pick, scores, why), None
    return None, nxt


def tune_stream(stream: str, sweep: "_Sweeper", log) -> dict:
    """The protocol on one stream: each tuned method's main setting (grid, extended while the
    choice sits at an edge), then every compared method's learning rate. Returns the search log
    (``log``), the protocol table (``table``), the choices (``chosen``, ``chosen_lr``) and the
    tuning configurations (``configs``)."""
    from isoplast_lite.config import MAX_LR

    GRIDS, UNTUNED = grids(), untuned()  # noqa: N806
    search, table, chosen, chosen_lr, configs = [], [], {}, {}, []
    tried = {m: sorted(float(v) for v in values) for m, (_, values) in GRIDS.items()}
    extensions = {m: 0 for m in GRIDS}
    settled: dict = {}
    for round_ in range(MAX_EXTENSIONS + 1):
        cfgs = {(m, v): tuning_config(stream, m, {GRIDS[m][0]: v}) for m in GRIDS if m not in settled for v in tried[m]}
        sweep(cfgs.values())
        for m in [m for m in GRIDS if m not in settled]:
            name = GRIDS[m][0]
            scores = {v: sweep.score(cfgs[m, v], stream) for v in tried[m]}
            done, nxt = settle_or_extend(scores, tried[m], *_bounds(m, name), extensions[m], "the setting's bound")
            if done:
                settled[m] = done
            else:
                tried[m] = sorted(tried[m] + [nxt])
                extensions[m] += 1
        log(f"{stream}: setting round {round_}: {len(settled)} of {len(GRIDS)} methods settled")
        if len(settled) == len(GRIDS):
            break
    for m, (pick, scores, why) in settled.items():
        name = GRIDS[m][0]
        chosen[m] = {name: pick}
        for v in tried[m]:
            cfg = tuning_config(stream, m, {name: v})
            configs.append(cfg)
            search.append({"stream": stream, "stage": "setting", "method": m, "setting": name, "value": v, "lr": cfg.lr,
                           "score": scores[v], "diverged": bool(sweep.rows[cfg.to_json()]["diverged"].astype(bool).any())})
    lrs = lr_values(stream)
    tried_lr = {m: list(lrs) for m in (*UNTUNED, *GRIDS)}
    lr_extensions = {m: 0 for m in tried_lr}
    lr_settled: dict = {}
    lr_cfgs: dict = {}
    for round_ in range(MAX_EXTENSIONS + 1):
        lr_cfgs.update({(m, lr): tuning_config(stream, m, chosen.get(m, {}), lr) for m in tried_lr if m not in lr_settled for lr in tried_lr[m]})
        sweep([lr_cfgs[m, lr] for m in tried_lr if m not in lr_settled for lr in tried_lr[m]])
        for m in [m for m in tried_lr if m not in lr_settled]:
            scores = {lr: sweep.score(lr_cfgs[m, lr], stream) for lr in tried_lr[m]}
            done, nxt = settle_or_extend(scores, tried_lr[m], None, MAX_LR, lr_extensions[m], "the runner's bound")
            if done:
                lr_settled[m] = done
            else:
                tried_lr[m] = sorted(tried_lr[m] + [nxt])
                lr_extensions[m] += 1
        log(f"{stream}: lr round {round_}: {len(lr_settled)} of {len(tried_lr)} methods settled")
        if len(lr_settled) == len(tried_lr):
            break
    for m in (*UNTUNED, *GRIDS):
        pick, scores, lr_why = lr_settled[m]
        chosen_lr[m] = pick
        for lr in tried_lr[m]:
            cfg = lr_cfgs[m, lr]
            if cfg.to_json() not in {c.to_json() for c in configs}:
                configs.append(cfg)
            search.append({"stream": stream, "stage": "lr", "method": m, "setting": GRIDS[m][0] if m in GRIDS else "",
                           "value": chosen[m][GRIDS[m][0]] if m in GRIDS else math.nan, "lr": lr, "score": scores[lr],
                           "diverged": bool(sweep.rows[cfg.to_json()]["diverged"].astype(bool).any())})
        row = {"stream": stream, "method": m, "horizon_tasks": tuning_tasks(STREAMS[stream]["fields"]["n_tasks"]),
               "score_tasks": "{}-{}".format(*(t + 1 for t in (score_window(tuning_tasks(STREAMS[stream]["fields"]["n_tasks"]))[0],
                                                                score_window(tuning_tasks(STREAMS[stream]["fields"]["n_tasks"]))[1] - 1)))}
        if m in GRIDS:
            pick, _, why = settled[m]
            row.update(setting=GRIDS[m][0], grid=" ".join(f"{v:g}" for v in GRIDS[m][1]), tried=" ".join(f"{v:g}" for v in tried[m]),
                       extensions=extensions[m], chosen=pick, setting_edge=why)
        else:
            row.update(setting="", grid="", tried="", extensions=0, chosen=math.nan, setting_edge="")
        row.update(lrs=" ".join(f"{v:g}" for v in lrs), lrs_tried=" ".join(f"{v:g}" for v in tried_lr[m]), lr_extensions=lr_extensions[m],
                   chosen_lr=chosen_lr[m], lr_edge=lr_why)
        table.append(row)
    return {"log": search, "table": table, "chosen": chosen, "chosen_lr": chosen_lr, "configs": configs}


def _group_sizes(groups) -> dict:
    """The trainings of a list of ``stacking.plan`` groups: how many, and how many configurations
    each held (size -> count), e.g. ``{"trainings": 20, "configurations": {"1": 15, "4": 5}}``."""
    import collections

    sizes = collections.Counter(len(g.configs) for g in groups)
    return {"trainings": len(groups), "configurations": {str(k): sizes[k] for k in sorted(sizes)}}


def _full_estimate(made: dict, old: dict) -> "dict | None":
    """The full run's CPU minutes, estimated: the CPU seconds measured here per stream over those
    the ``streams`` group's manifest records for the same stream (its protocol), averaged, times
    that manifest's total over every stream."""
    def old_cpu(entry):
        secs = entry.get("cpu_seconds", {})
        return sum(v for ph in ("tuning", "results") for v in secs.get(ph, {}).values() if v)

    ratios = {ph: [] for ph in ("tuning", "results")}
    for s, secs in made.items():
        if s in old:
            for ph in ratios:
                base = sum(v for v in old[s].get("cpu_seconds", {}).get(ph, {}).values() if v)
                if base > 0 and secs.get(ph):
                    ratios[ph].append(secs[ph] / base)
    if not all(ratios.values()):
        return None
    est = {ph: sum(r) / len(r) * sum(sum(v for v in old[s].get("cpu_seconds", {}).get(ph, {}).values() if v) for s in STREAMS if s in old)
           for ph, r in ratios.items()}
    return {"tuning_cpu_minutes": round(est["tuning"] / 60), "results_cpu_minutes": round(est["results"] / 60),
            "ratios_to_streams_group": {ph: [round(x, 2) for x in r] for ph, r in ratios.items()},
            "how": "per phase, the CPU seconds measured here over those of the streams group's manifest for the same streams "
                   "(mean ratio), times the streams group's total over all six streams (unstacked runs, one thread each)"}


def _write_manifest(out: Path, manifest: dict, made_here) -> dict:
    """Merge this run's entries (``made_here``) with the manifest on disk (another run of this tool
    over other streams may have written it since this one read it: keep its entries), label every
    entry ``reduced`` while a stream of :data:`STREAMS` is missing, write it atomically with each
    file's SHA-256. Called after every stream, so that an interrupted run loses no finished stream."""
    from isoplast_lite.files import atomic_write
    from isoplast_lite.results import manifest as shipped_manifest
    from isoplast_lite.results import write_folder_checksums

    manifest_path = out / "manifest.json"
    on_disk = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest = {s: manifest[s] if s in made_here else on_disk.get(s, manifest.get(s)) for s in STREAMS if s in manifest or s in on_disk}
    missing = [s for s in STREAMS if s not in manifest]
    if missing:
        try:
            old_streams = shipped_manifest("streams")
        except Exception:  # noqa: BLE001 (no estimate without the streams group)
            old_streams = {}
        estimate = _full_estimate({s: manifest[s]["cpu_seconds"] for s in manifest}, old_streams)
        for s in manifest:
            manifest[s]["reduced"] = {
                "streams_made": sorted(manifest), "streams_missing": missing,
                "full_command": "OMP_NUM_THREADS=1 python tools/precompute_streams.py --executor local --workers 2",
                "full_cpu_estimate": estimate,
            }
    else:
        for s in manifest:
            manifest[s].pop("reduced", None)
    atomic_write(manifest_path, lambda h: h.write((json.dumps(manifest, indent=2, default=str) + "\n").encode()))
    write_folder_checksums(out)  # each file's SHA-256, checked on load
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", nargs="+", default=list(STREAMS), choices=list(STREAMS))
    parser.add_argument("--executor", choices=("serial", "local"), default="serial", help="run_sweep's executor (default serial)")
    parser.add_argument("--workers", type=int, default=1, help="with --executor local: configurations at once, one thread each")
    parser.add_argument("--cache", default=None, help="the runner's cache folder (default: $ISOPLAST_CACHE or the runner's default)")
    parser.add_argument("--phase", choices=("tune", "all"), default="all", help="'tune': stop after the tuning runs")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-stack", action="store_true", help="train every configuration alone (run_sweep(stack=False))")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")

    import pandas as pd

    from isoplast_lite.files import atomic_write
    from isoplast_lite.results import provenance
    from isoplast_lite.run import check_config, default_cache_dir, run

    cache = str(args.cache or default_cache_dir())
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    for s in args.streams:  # check every first-round configuration before any work
        for m, (name, values) in grids().items():
            for v in values:
                for lr in lr_values(s):
                    check_config(tuning_config(s, m, {name: v}, lr))
    out = args.out
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    GRIDS, UNTUNED = grids(), untuned()  # noqa: N806 (the registry's, read once per run)
    started = time.perf_counter()
    made = {}
    for s in args.streams:
        spec = STREAMS[s]
        sweep = _Sweeper(cache, args.executor, args.workers, log, stack=not args.no_stack)
        tuned = tune_stream(s, sweep, log)
        cpu_tuning, n_tuning_groups = sweep.cpu, len(sweep.groups)
        log(f"{s}: tuning {cpu_tuning:.0f} CPU s; chosen " + ", ".join(f"{m} {v} lr {tuned['chosen_lr'][m]:g}" for m, v in tuned["chosen"].items()))
        if args.phase == "tune":
            continue
        cfgs = result_configs(s, tuned["chosen"], tuned["chosen_lr"])
        for cfg in cfgs:
            check_config(cfg)
        sweep(cfgs)
        cpu_results = sweep.cpu - cpu_tuning
        log(f"{s}: results {cpu_results:.0f} CPU s")
        old = manifest.get(s, {})
        secs = {"tuning": round(cpu_tuning, 1), "results": round(cpu_results, 1)}
        trained = sweep.trained > 0  # a run served from the cache keeps the seconds recorded when it was trained
        if not trained and "cpu_seconds" in old:
            secs = old["cpu_seconds"]
        elif not trained:  # every run came from a cache this manifest did not record: its cost is unknown here, not ~0
            secs = {"tuning": None, "results": None}
            old = {**old, "cpu_seconds_note": "every run was served from the runner's cache; the CPU time of its training was not recorded"}
        made[s] = secs
        write_gz(out / f"{s}-tuning.csv.gz", pd.concat([sweep.rows[c.to_json()] for c in tuned["configs"]], ignore_index=True))
        write_gz(out / f"{s}.csv.gz", pd.concat([sweep.rows[c.to_json()] for c in cfgs], ignore_index=True))
        # the per-layer tables were computed with the rows and cached beside them: read back, nothing trains
        write_gz(out / f"{s}-layers.csv.gz", pd.concat([run(c, cache_dir=cache, progress=False, layers=True).layers for c in cfgs],
                                                       ignore_index=True))
        atomic_write(out / f"{s}-search.csv", lambda h, d=pd.DataFrame(tuned["log"]): h.write(d.to_csv(index=False).encode()))
        atomic_write(out / f"{s}-protocol.csv", lambda h, d=pd.DataFrame(tuned["table"]): h.write(d.to_csv(index=False).encode()))
        h = tuning_tasks(spec["fields"]["n_tasks"])
        manifest[s] = {
            "file": f"{s}.csv.gz",
            "layers_file": f"{s}-layers.csv.gz",
            "tuning_file": f"{s}-tuning.csv.gz",
            "search_file": f"{s}-search.csv",
            "protocol_file": f"{s}-protocol.csv",
            "command": f"python tools/precompute_streams.py --streams {s}",
            "source": spec["source"],
            "config": dict(spec["fields"], **RESULT_SEEDS),
            "metric": spec["metric"],
            "protocol": {
                **TUNE_SEEDS,
                "n_tasks": h,
                "steps_per_task": spec["fields"]["steps_per_task"],
                "score_tasks": list(score_window(h)),
                "lr_values": lr_values(s),
                "max_extensions": MAX_EXTENSIONS,
                "budget": {"lr_runs_per_method": f"{len(LR_FACTORS)} plus its extensions (protocol table)", "seeds_per_run": TUNE_SEEDS["seeds"],
                           "steps_per_run": h * spec["fields"]["steps_per_task"],
                           "setting_runs_per_method": "its grid plus its extensions (protocol table)"},
                "rule": ("each tuned method's main setting at the stream's lr: highest mean of the metric over the score tasks and the tuning "
                         "seeds (a diverged run scores -inf; ties to the smaller value), the grid extended by its own ratio while the choice "
                         f"sits at an edge (at most {MAX_EXTENSIONS} values); then every compared method's lr among lr_values at its chosen "
                         f"setting, by the same score, extended by the same rule while the choice sits at an edge (at most {MAX_EXTENSIONS} "
                         "values, below the runner's bound on lr)"),
                "stacked": sweep.stack,
                # the trainings a cold run of the protocol makes (the same when the runs come from the cache)
                "tuning_groups": _group_sizes(sweep.groups[:n_tuning_groups]),
                "results_groups": _group_sizes(sweep.groups[n_tuning_groups:]),
            },
            "grids": {m: {"setting": name, "values": list(values)} for m, (name, values) in GRIDS.items()},
            "chosen": tuned["chosen"],
            "chosen_lr": tuned["chosen_lr"],
            "untuned": list(UNTUNED),
            "provenance": provenance(threads=1) if trained or "provenance" not in old else old["provenance"],
            "cpu_seconds": secs,
            **({"cpu_seconds_note": old["cpu_seconds_note"]} if not trained and "cpu_seconds_note" in old else {}),
            "float_format": FLOAT_FORMAT,
        }
        manifest = _write_manifest(out, manifest, made)  # after every stream: an interrupted run keeps what it finished
    if args.phase == "tune":
        return 0
    log(f"wrote {out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
