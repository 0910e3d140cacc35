"""The intervention runs of chapter 7 (issue 23): arms that SET the hidden weights' spectrum after
every step, beside Adam, AdamO and the fresh network, on chapter 8's streams.

    OMP_NUM_THREADS=1 .venv/bin/python tools/intervention_runs.py [--streams S ...] [--seeds 8] [--out DIR]

The referee's falsifier (``PAPER.md``, "What would settle the thesis"): "a controlled run in
which Jacobian singular values are forced to remain near one yet plasticity still collapses [...],
or in which isometry is deliberately broken yet plasticity is retained". The arms (ours, fixed
before any run; :class:`isoplast_lite.interventions.TargetSpectrum` sets every hidden weight's
singular values after each optimizer step, the spread in a fixed random rotation):

* ``forced-isometry``: every sigma = 1 in a ReLU net (the first falsifier);
* ``scale-only``: every sigma = 2 (perfectly conditioned, not norm-preserving);
* ``spread-only``: mean log sigma 0, standard deviation of log sigma 1.0 (isometry broken);
* ``both``: mean log sigma log 2 and spread 1.0;
* ``spread-only-ln``: spread 1.0 with LayerNorm before each ReLU, which keeps units alive (the
  second falsifier asks for isometry broken with units kept alive);
* the controls ``adam``, ``adamo`` (the iso_strength chapter 8's earlier protocol tuned on the stream, data/streams) and ``fresh``
  (a new network at every task: the reference of plasticity).

Each stream runs at chapter 8's budget (``isoplast_lite/data/streams/manifest.json``: tasks,
steps, width, depth, lr, batch, probe) with ``--seeds`` seeds (0, 1, ...), through the runner
(cached in ``$ISOPLAST_CACHE``), with its per-layer table. Writes, per stream,
``<stream>.csv.gz`` (the runner's rows of every arm, plus a column ``arm``) and
``<stream>-layers.csv.gz`` (the per-layer tables), and ``manifest.json`` (command, budget, arms,
the CPU seconds of each arm, provenance, what the full experiment would be and cost, SHA-256 of
every file: ``results.load(stream, "interventions")`` / ``results.load_layers``).

It is REDUCED (the machine was shared): one value per arm's scale and spread, one width per
stream, 8 seeds, and the shifting streams cut to the first ``HORIZON`` tasks. The full experiment (``FULL`` below: scales 0.5 and 2, spreads 0.5, 1 and 2, each
with and without LayerNorm, 16 seeds) is recorded in the manifest with its command and a cost
estimated from the CPU seconds measured here.

``--full-horizon`` runs a stream at chapter 8's whole horizon instead of ``HORIZON`` (to check that
the reduced horizon's verdicts hold at the full one); it never writes into the shipped folder
(give ``--out``), and its ledgers are apart from the reduced runs' (their names carry the tasks).

``--work DIR`` keeps each stream's CPU-second ledger there, so several processes can fill the
cache in parallel (``--streams``) and a last call assembles every stream (cached runs cost
nothing; their CPU seconds are read back from ``DIR``). The ledger counts the CPU seconds of
every process that worked on an arm: after each task is checkpointed (the runner's callback) the
process adds the CPU seconds it spent since its previous task to that task's entry, so an arm
killed and resumed from its checkpoint sums the tasks each process finished (a task interrupted
before its checkpoint is recomputed by the next process, and only the attempt that finished
counts). An arm whose ledger lacks a task (computed before the ledger existed, or from a cache
this tool did not fill) has unknown seconds: ``null`` in the manifest, never 0.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from isoplast_lite.files import write_csv_gz

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "isoplast_lite" / "data" / "interventions"
STREAMS = ("permuted-digits", "label-shuffle-digits", "permuted-mnist1d", "label-shuffle-mnist1d",
           "random-label-digits", "random-label-mnist1d")  # fmt: skip
#: arm -> (method, settings); "adamo" takes the stream's tuned settings (chapter 8)
ARMS = {
    "adam": ("adam", {}),
    "adamo": ("adamo", None),
    "fresh": ("fresh", {}),
    "forced-isometry": ("target-spectrum", {}),
    "scale-only": ("target-spectrum", {"scale": 2.0}),
    "spread-only": ("target-spectrum", {"spread": 1.0}),
    "both": ("target-spectrum", {"scale": 2.0, "spread": 1.0}),
    "spread-only-ln": ("target-spectrum", {"spread": 1.0, "layernorm": True}),
}
#: REDUCED horizons (tasks) of the shifting streams: chapter 8's budget per task, fewer tasks (the
#: SVD of every step makes an intervention arm cost about 3x an Adam run here). Chosen from
#: chapter 8's shipped Adam and fresh runs (not from any intervention arm), where Adam is already
#: below the fresh network. label-shuffle-mnist1d runs its full 300 tasks: at 40 Adam was ABOVE the
#: fresh network over the last fifth (in chapter 8's runs and in ours, 2026-12-05, issue 23d); its 95%
#: interval lies below the fresh network's at every task only from task 163 of 300 on (chapter 7
#: computes and glues it), so a shorter horizon cannot test a loss of plasticity there.
HORIZON = {"permuted-digits": 50, "label-shuffle-digits": 50, "permuted-mnist1d": 20, "label-shuffle-mnist1d": 300}
#: what the manifest's ``cpu_seconds`` are
CPU_SECONDS_NOTE = ("process CPU seconds of every process that worked on each arm, summed over the tasks the result holds "
                    "(each task counted once, in the process that checkpointed it); null: unknown (tasks computed before the ledger existed)")
#: the full experiment this reduced one stands for
FULL = {"seeds": 16, "scales": [0.5, 1.0, 2.0], "spreads": [0.0, 0.5, 1.0, 2.0], "layernorm": [False, True],
        "controls": ["adam", "adamo", "fresh", "layernorm"]}  # fmt: skip


def arm_configs(stream: str, seeds: int, full_horizon: bool = False):
    """``{arm: Config}`` of one stream at chapter 8's budget with ``seeds`` seeds (the first
    ``HORIZON`` tasks of a shifting stream, or all of chapter 8's with ``full_horizon``)."""
    from isoplast_lite import results
    from isoplast_lite.run import Config

    entry = results.manifest("streams")[stream]
    budget = {k: v for k, v in entry["config"].items() if k not in ("benchmark", "first_seed", "seeds")}
    if not full_horizon:
        budget["n_tasks"] = HORIZON.get(stream, budget["n_tasks"])
    out = {}
    for arm, (method, settings) in ARMS.items():
        if settings is None:
            settings = dict(entry["chosen"][method])
        out[arm] = Config(stream, method, settings=settings, seeds=seeds, **budget)
    return out


class CpuLedger:
    """The CPU seconds of every process that worked on one arm, per task: a JSON file
    ``{"tasks": {"<first seed>:<task>": seconds}, "tail": seconds}`` (one per arm, so processes
    running other arms never write it), rewritten atomically after each task."""

    def __init__(self, path: Path):
        self.path = path
        entry = json.loads(path.read_text()) if path.is_file() else {}
        self.tasks = dict(entry.get("tasks", {}))
        self.tail = float(entry.get("tail", 0.0))
        self.mark = time.process_time()
        self.worked = False

    def task_done(self, task: int, rows) -> None:
        """The runner's callback: the seconds since the previous task (or the start) go to this task."""
        now = time.process_time()
        self.tasks[f"{int(rows.seed.min())}:{task}"] = round(now - self.mark, 3)
        self.mark, self.worked = now, True
        self._save()

    def finish(self) -> None:
        """After ``run`` returned: the seconds spent since the last task (writing the cache entry), if this process trained."""
        if self.worked:
            self.tail = round(self.tail + time.process_time() - self.mark, 3)
            self._save()

    def _save(self) -> None:
        from isoplast_lite.files import atomic_write

        text = json.dumps({"tasks": self.tasks, "tail": self.tail}, indent=1, sort_keys=True)
        atomic_write(self.path, lambda h: h.write(text.encode()))

    def seconds(self, cfg):
        """The arm's CPU seconds if every task of ``cfg`` is in the ledger, else ``None`` (unknown)."""
        expected = {f"{cfg.seed_list[0]}:{t}" for t in range(cfg.n_tasks)}
        if not expected <= set(self.tasks):
            return None
        return round(sum(self.tasks[k] for k in expected) + self.tail, 1)


def ledger_path(work: Path, stream: str, seeds: int, arm: str, full_horizon: bool = False) -> Path:
    """The CPU-second ledger of one arm (:class:`CpuLedger`): a full-horizon run's name carries its
    tasks, so its first tasks are never counted in the reduced run's ledger (nor the reverse)."""
    tasks = f"-{arm_configs(stream, seeds, full_horizon)[arm].n_tasks}t" if full_horizon else ""
    return work / f"cpu-{stream}-{seeds}{tasks}-{arm}.json"


def run_stream(stream: str, seeds: int, work: Path, arms=None, full_horizon: bool = False):
    """Run (or load from the cache) every arm of ``stream``; returns its rows and layers, and the
    CPU seconds of each arm (``None``: unknown), from the ledgers in ``work`` (:class:`CpuLedger`)."""
    import pandas as pd

    from isoplast_lite.run import run

    work.mkdir(parents=True, exist_ok=True)
    rows, layers, seconds = [], [], {}
    for arm, cfg in arm_configs(stream, seeds, full_horizon).items():
        if arms is not None and arm not in arms:
            continue
        ledger = CpuLedger(ledger_path(work, stream, seeds, arm, full_horizon))
        res = run(cfg, progress=False, layers=True, callback=ledger.task_done)  # the tool runs every seed in one batch
        ledger.finish()
        seconds[arm] = ledger.seconds(cfg)
        rows.append(res.rows.assign(arm=arm))
        layers.append(res.layers.assign(arm=arm))
        print(f"{stream} {arm}: " + (f"{seconds[arm]} CPU s" if seconds[arm] is not None else "CPU seconds unknown (tasks computed outside the ledger)"), flush=True)
    return pd.concat(rows, ignore_index=True), pd.concat(layers, ignore_index=True), seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", nargs="+", default=list(STREAMS), choices=STREAMS)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--work", type=Path, default=ROOT / ".intervention-work")
    parser.add_argument("--run-only", action="store_true", help="fill the cache and the CPU seconds, write nothing shipped")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=None, help="with --run-only: these arms only")
    parser.add_argument("--full-horizon", action="store_true", help="chapter 8's whole horizon, not HORIZON (never into the shipped folder)")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error(f"--seeds must be >= 2 (intervals over seeds), got {args.seeds}")
    if args.full_horizon and not args.run_only and args.out.resolve() == OUT.resolve():
        parser.error(f"--full-horizon writes a stream's whole horizon: give --out outside the shipped folder {OUT}, got {args.out}")

    import torch

    from isoplast_lite import results
    from isoplast_lite.files import atomic_write

    manifest = {}
    if not args.run_only:
        args.out.mkdir(parents=True, exist_ok=True)
    for stream in args.streams:
        rows, layers, seconds = run_stream(stream, args.seeds, args.work, args.arms if args.run_only else None, args.full_horizon)
        if args.run_only:
            continue
        write_csv_gz(args.out / f"{stream}.csv.gz", rows, float_format="%.7g")
        write_csv_gz(args.out / f"{stream}-layers.csv.gz", layers, float_format="%.7g")
        configs = arm_configs(stream, args.seeds, args.full_horizon)
        cfg = next(iter(configs.values()))
        budget = {k: v for k, v in json.loads(cfg.to_json()).items() if k in results.manifest("streams")[stream]["config"]}
        n_full = len(FULL["scales"]) * len(FULL["spreads"]) * len(FULL["layernorm"]) + len(FULL["controls"])
        known = [v for v in seconds.values() if v is not None]
        per_arm = sum(known) / len(known) if known else None
        manifest[stream] = {
            "file": f"{stream}.csv.gz",
            "layers_file": f"{stream}-layers.csv.gz",
            "command": f"python tools/intervention_runs.py --streams {stream} --seeds {args.seeds}"
                       + (f" --full-horizon --out {args.out}" if args.full_horizon else ""),  # OMP_NUM_THREADS=1
            "config": {**budget, "seeds": args.seeds, "first_seed": 0},
            "metric": results.manifest("streams")[stream]["metric"],
            "arms": {arm: [c.method, json.loads(c.to_json()).get("settings", {})] for arm, c in configs.items()},
            "cpu_seconds": seconds,
            "horizons": {} if args.full_horizon else HORIZON,
            "reduced": True,
            "reduced_how": "one scale and one spread per arm, 8 seeds" + (f", the first {budget['n_tasks']} of the stream's "
                           f"{results.manifest('streams')[stream]['config']['n_tasks']} tasks" if budget["n_tasks"] < results.manifest('streams')[stream]['config']['n_tasks'] else ""),
            "cpu_seconds_note": CPU_SECONDS_NOTE,
            "full": {**FULL, "arms": n_full,
                     "command": f"python tools/intervention_runs.py --streams {stream} --seeds {FULL['seeds']} (with ARMS extended to the FULL grid)",
                     "estimated_cpu_seconds": None if per_arm is None else round(per_arm * n_full * FULL["seeds"] / args.seeds
                                                    * results.manifest("streams")[stream]["config"]["n_tasks"] / budget["n_tasks"])},  # fmt: skip
            "provenance": results.provenance(threads=torch.get_num_threads()),
        }
    if args.run_only:
        return 0
    path = args.out / "manifest.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(manifest)
    text = json.dumps(old, indent=2) + "\n"
    atomic_write(path, lambda h: h.write(text.encode()))
    results.write_folder_checksums(args.out)  # every file's SHA-256, checked on load
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
