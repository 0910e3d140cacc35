"""Precompute chapter 9's runs ("Your model"): a small CNN and a small transformer on streams that
lose plasticity, with Adam, AdamO and a fresh network per task, monitored.

Writes ``isoplast_lite/data/yourmodel/{cnn,transformer}.csv.gz`` (one row per method x seed x
task: end-of-task training accuracy), ``{cnn,transformer}-layers.csv.gz`` (the
PlasticityMonitor's rows: one per record and layer) and ``manifest.json`` (this command, the
configuration, the provenance, the CPU seconds). Every run uses one thread.

Usage:
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
DEFAULTS = {
    "cnn": dict(model="cnn", n_tasks=10, steps_per_task=400, batch_size=32, n_train=256, lr=1e-3, iso_strength=0.01, every=100, probe=128),
    "transformer": dict(model="transformer", n_tasks=10, steps_per_task=400, batch_size=32, n_train=256, lr=1e-3, iso_strength=0.01,
                        every=100, probe=128),
}
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
    args = parser.parse_args(argv)

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


def _write(args, name, spec, accs, layers, seconds, n_seeds) -> None:
    import pandas as pd

    from isoplast_lite.files import atomic_write, write_csv_gz
    from isoplast_lite.results import provenance, write_folder_checksums

    write_csv_gz(args.out / f"{name}.csv.gz", pd.concat(accs, ignore_index=True), float_format=FLOAT_FORMAT)
    write_csv_gz(args.out / f"{name}-layers.csv.gz", pd.concat(layers, ignore_index=True), float_format=FLOAT_FORMAT)
    command = "python tools/precompute_your_model.py" + (f" --models {name}" if len(args.models) == 1 else "")
    if n_seeds != 5:
        command += f" --seeds {n_seeds}"
    if args.set:
        command += " --set " + " ".join(args.set)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}  # read now: another model's run may have written it
    manifest[name] = {
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
    }
    text = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    atomic_write(manifest_path, lambda h: h.write(text))
    write_folder_checksums(manifest_path.parent)  # every file's SHA-256, checked on load


if __name__ == "__main__":
    raise SystemExit(main())
