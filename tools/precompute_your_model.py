"""Precompute chapter 9's runs ("Your model"): a small CNN and a small transformer on streams that
lose plasticity, with Adam, AdamO and a fresh network per task, monitored.

Writes ``isoplast_lite/data/yourmodel/{cnn,transformer}.csv.gz`` (one row per method x seed x
task: end-of-task training accuracy), ``{cnn,transformer}-layers.csv.gz`` (the
PlasticityMonitor's rows: one per record and layer) and ``manifest.json`` (this command, the
configuration, the provenance, the CPU seconds). Every run uses one thread.

With ``--tune-lambda`` it runs the protocol that chooses AdamO's ``iso_strength`` instead
(:func:`tune_lambda`) and writes ``lambda-search.csv.gz`` (one row per model x value x seed x
task), ``lambda-protocol.csv`` (one row per model x value: its score, the choice, whether it is
interior) and their manifest entry ``lambda-search``; the shipped runs then use the chosen values
(``DEFAULTS``).

Usage:
    python tools/precompute_your_model.py --tune-lambda   # the lambda protocol (run first)
    python tools/precompute_your_model.py                 # both models, the shipped configuration
    python tools/precompute_your_model.py --models cnn --seeds 2 --out /tmp/explore   # explore
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FLOAT_FORMAT = "%.7g"
#: the shipped configurations; iso_strength is the lambda protocol's choice (--tune-lambda, lambda-protocol.csv)
DEFAULTS = {
    "cnn": dict(model="cnn", n_tasks=10, steps_per_task=400, batch_size=32, n_train=256, lr=1e-3, iso_strength=100.0, every=100, probe=128),
    # lr 1e-2: at 1e-3 Adam memorized every task (ending above a fresh network: forward transfer,
    # no plasticity loss; n_train 1024 at 1e-3 too); at 1e-2 a fresh network memorizes and Adam
    # stops (seed 100 explored, the chapter's table on seeds 0-2)
    "transformer": dict(model="transformer", n_tasks=10, steps_per_task=400, batch_size=32, n_train=256, lr=1e-2, iso_strength=0.1,
                        every=100, probe=128),
}
#: the lambda protocol: AdamO's iso_strength on this grid (extended by settle_or_extend of
#: precompute_streams while the choice sits at an edge, never past the stability limit),
#: held-out seeds (the shipped runs use 0 .. 4), scored by the mean end-of-task training
#: accuracy over the last fifth of the tasks (plasticity.last_tasks), mean over the seeds
LAMBDA_GRID = (1e-3, 1e-2, 1e-1, 1.0)
LAMBDA_SEEDS = (100, 101)
SOURCES = {
    "cnn": "random-label-digits (tasks.make_stream) reshaped to 1x8x8 images: memorization of fresh random labels per task",
    "transformer": "beyond_mlp.random_label_sequences: 256 fixed random sequences (vocab 16, length 8), fresh random labels per task",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(DEFAULTS), choices=list(DEFAULTS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. SEEDS-1")
    parser.add_argument("--methods", nargs="+", default=["adam", "adamo", "fresh"])
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="override a RunSpec field (explore only)")
    parser.add_argument("--out", type=Path, default=ROOT / "isoplast_lite" / "data" / "yourmodel")
    parser.add_argument("--tune-lambda", action="store_true", help="run the lambda protocol (tune_lambda) instead of the shipped runs")
    args = parser.parse_args(argv)
    if args.tune_lambda:
        if args.set:  # the protocol tunes the shipped configurations (DEFAULTS); an override would be ignored
            parser.error(f"--set {' '.join(args.set)}: not allowed with --tune-lambda, which tunes the shipped "
                         "configurations; allowed: --set without --tune-lambda")
        return tune_lambda(args)

    import torch

    from isoplast_lite.beyond_mlp import RunSpec, continual_run

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    for name in args.models:
        fields = {**DEFAULTS[name]}
        for k, v in overrides.items():
            fields[k] = type(fields[k])(v)
        spec = RunSpec(**fields)
        accs, layers, seconds = [], [], {m: 0.0 for m in args.methods}
        for seed in range(args.seeds):  # seed by seed, all methods: the files always hold complete seeds
            for method in args.methods:
                start = time.process_time()
                acc, lay = continual_run(spec, method, seed)
                seconds[method] = round(seconds[method] + time.process_time() - start, 1)
                accs.append(acc)
                layers.append(lay)
                print(f"{name} {method} seed {seed}: acc {acc.train_acc.round(3).tolist()}", flush=True)
            _write(args, name, spec, accs, layers, seconds, seed + 1)
    return 0


def _score(acc) -> float:
    """The protocol's score of one run set: mean over seeds of the mean training accuracy over the last fifth of the tasks."""
    from isoplast_lite.plasticity import last_tasks

    last = acc[acc.task.isin(last_tasks(int(acc.task.max()) + 1))]
    return float(last.groupby("seed").train_acc.mean().mean())


def tune_lambda(args) -> int:
    """Choose AdamO's iso_strength per model: LAMBDA_GRID on LAMBDA_SEEDS (Adam on the same seeds
    as the reference row), extended while the best value sits at an edge, bounded above by the
    isometry step's stability limit (8 * lr * lambda <= 2, optim.ISO_STABILITY_LIMIT)."""
    import pandas as pd
    import torch

    from precompute_streams import settle_or_extend

    from isoplast_lite.beyond_mlp import RunSpec, continual_run
    from isoplast_lite.files import atomic_write, write_csv_gz
    from isoplast_lite.optim import ISO_STABILITY_LIMIT
    from isoplast_lite.results import provenance

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    runs, protocol, seconds = [], [], {}
    for name in args.models:
        base = {**DEFAULTS[name]}
        limit = ISO_STABILITY_LIMIT / (8 * base["lr"])
        start = time.process_time()

        def run(method, value):
            spec = RunSpec(**{**base, "iso_strength": value})
            acc = pd.concat([continual_run(spec, method, s, monitor=False)[0] for s in LAMBDA_SEEDS], ignore_index=True)
            print(f"{name} {method} lambda {value:g}: score {_score(acc):.3f}", flush=True)
            runs.append(acc.assign(model=name, iso_strength=value if method == "adamo" else 0.0))
            return _score(acc)

        adam = run("adam", 0.0)
        tried, scores, extensions = sorted(LAMBDA_GRID), {}, 0
        while True:
            scores.update({v: run("adamo", v) for v in tried if v not in scores})
            done, nxt = settle_or_extend(scores, tried, 0.0, limit, extensions, "the stability limit 8 lr lambda <= 2")
            if done:
                break
            tried, extensions = sorted(tried + [nxt]), extensions + 1
        pick, _, why = done
        seconds[name] = round(time.process_time() - start, 1)
        protocol.append({"model": name, "method": "adam", "iso_strength": 0.0, "score": adam, "chosen": False, "why": ""})
        protocol += [{"model": name, "method": "adamo", "iso_strength": v, "score": scores[v], "chosen": v == pick,
                      "why": why if v == pick else ""} for v in tried]
    write_csv_gz(args.out / "lambda-search.csv.gz", pd.concat(runs, ignore_index=True), float_format=FLOAT_FORMAT)
    table = pd.DataFrame(protocol)
    text = table.to_csv(index=False, float_format=FLOAT_FORMAT).encode()
    atomic_write(args.out / "lambda-protocol.csv", lambda h: h.write(text))
    _update_manifest(args.out, "lambda-search", {
        "file": "lambda-search.csv.gz",
        "protocol_file": "lambda-protocol.csv",
        "command": "python tools/precompute_your_model.py --tune-lambda" + (f" --models {' '.join(args.models)}" if len(args.models) == 1 else ""),
        "source": "AdamO's iso_strength per model: grid " + ", ".join(f"{v:g}" for v in LAMBDA_GRID)
                  + " extended at an edge (precompute_streams.settle_or_extend), bounded by 8 lr lambda <= 2",
        "configs": {n: {**DEFAULTS[n], "iso_strength": None} for n in args.models},
        "seeds": list(LAMBDA_SEEDS),
        "metric": "train_acc",
        "score": "mean over the seeds of the mean end-of-task train_acc over the last fifth of the tasks",
        "float_format": FLOAT_FORMAT,
        "provenance": provenance(threads=1),
        "cpu_seconds": seconds,
    })
    print(table.to_string(index=False))
    return 0


def _write(args, name, spec, accs, layers, seconds, n_seeds) -> None:
    import pandas as pd

    from isoplast_lite.files import write_csv_gz
    from isoplast_lite.results import provenance

    write_csv_gz(args.out / f"{name}.csv.gz", pd.concat(accs, ignore_index=True), float_format=FLOAT_FORMAT)
    write_csv_gz(args.out / f"{name}-layers.csv.gz", pd.concat(layers, ignore_index=True), float_format=FLOAT_FORMAT)
    command = "python tools/precompute_your_model.py" + (f" --models {name}" if len(args.models) == 1 else "")
    if n_seeds != 5:
        command += f" --seeds {n_seeds}"
    if args.set:
        command += " --set " + " ".join(args.set)
    _update_manifest(args.out, name, {
        "file": f"{name}.csv.gz",
        "layers_file": f"{name}-layers.csv.gz",
        "command": command,
        "source": SOURCES[name],
        "config": dataclasses.asdict(spec),
        "methods": list(args.methods),
        "seeds": n_seeds,
        "metric": "train_acc",
        "float_format": FLOAT_FORMAT,
        "provenance": provenance(threads=1),
        "cpu_seconds": seconds,
    })


def _update_manifest(out, key, entry) -> None:
    """Set ``entry`` under ``key`` in ``out/manifest.json`` (read now: another model's run may have
    written it), then refresh every file's SHA-256 (checked on load)."""
    from isoplast_lite.files import atomic_write
    from isoplast_lite.results import write_folder_checksums

    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[key] = entry
    text = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    atomic_write(manifest_path, lambda h: h.write(text))
    write_folder_checksums(manifest_path.parent)


if __name__ == "__main__":
    raise SystemExit(main())
