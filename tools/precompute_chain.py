"""Precompute the runs of the chapter "Does isometry cause plasticity?" (isoplast_lite/data/chain).

    .venv/bin/python tools/precompute_chain.py [--benchmarks random-label-digits ...]

Book scale (width 64, depth 3, 8 seeds, 10 tasks x 400 steps, 256 images, batch 32, lr 1e-3,
the scale of chapters 6 and 8), every configuration run with the per-layer table
(``run(cfg, layers=True).layers``), through the runner's cache (``$ISOPLAST_CACHE``), so an
interrupted precomputation resumes where it stopped and a finished configuration is never
trained again. Every run trains under its configuration's thread count (``Config.threads``,
1), whatever ``OMP_NUM_THREADS`` says; one process per benchmark can run at once (each updates
only its own entry of the manifest). Writes, per benchmark, ``{benchmark}.csv.gz`` (the runner's rows) and
``{benchmark}-layers.csv.gz`` (the per-layer table), and ``manifest.json`` (the configurations,
this command, the provenance and the wall time of each configuration).

The configurations (``CONFIGS``):

* every compared method at its default settings (the correlation study), the AEI nets with the
  Newton-Schulz retraction (the library's default), plus ``parseval`` and the ``fresh``
  reference (a new network at every task: what no loss of plasticity would reach);
* the interventions (``adamo-target``, ours): the isometry step towards ``I`` (control),
  ``c I`` with c = 2 and c = 0.5 (conditioned but not isometric) and a spread of singular
  values from 1/c to c with c = 2 and 4 (isometric scale, ill-conditioned).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "isoplast_lite" / "data" / "chain"
BUDGET = dict(seeds=8, n_tasks=10, steps_per_task=400, width=64, depth=3, n_train=256, batch_size=32, lr=1e-3)
BENCHMARKS = ("random-label-digits", "random-label-mnist1d")
METHODS = ("adam", "adamo", "adamw", "l2", "l2-init", "shrink-perturb", "redo", "spectral", "layernorm", "coupled-iso",
           "parseval", "aei-adam", "aei-adamo", "fresh")  # fmt: skip
INTERVENTIONS = (
    {"target": "identity"},
    {"target": "scaled", "c": 2.0},
    {"target": "scaled", "c": 0.5},
    {"target": "spread", "c": 2.0},
    {"target": "spread", "c": 4.0},
)
#: (method, settings) of every configuration, in the order they run
CONFIGS = [(m, {"reset_step": False} if m == "redo" else {}) for m in METHODS] + [("adamo-target", s) for s in INTERVENTIONS]


def configs(benchmark: str):
    from isoplast_lite.run import Config

    return [Config(benchmark, method, settings=settings, **BUDGET) for method, settings in CONFIGS]


def _commit() -> str:
    """The short hash of the checked-out commit (with ``+dirty`` if the library or tools have edits)."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "isoplast_lite/*.py", "tools")
    return git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), choices=BENCHMARKS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    import pandas as pd

    from isoplast_lite.files import atomic_write, write_csv_gz
    from isoplast_lite.results import provenance
    from isoplast_lite.run import check_config, run

    for bench in args.benchmarks:  # check every configuration before any work
        for cfg in configs(bench):
            check_config(cfg)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for bench in args.benchmarks:
        rows, layers, seconds = [], [], {}
        for cfg in configs(bench):
            name = f"{cfg.method} {json.dumps(cfg.method_settings, sort_keys=True)}"
            start = time.perf_counter()
            result = run(cfg, progress=False, layers=True)
            df, lay = result.rows, result.layers
            took = round(time.perf_counter() - start, 1)
            earlier = manifest.get(bench, {}).get("seconds_per_config", {}).get(name)
            seconds[name] = earlier if took < 1.0 and earlier else took  # a cache hit keeps the time it took to train
            print(f"{bench} {name}: {took} s", flush=True)
            rows.append(df)
            layers.append(lay)
        args.out.mkdir(parents=True, exist_ok=True)
        write_csv_gz(args.out / f"{bench}.csv.gz", pd.concat(rows, ignore_index=True))
        write_csv_gz(args.out / f"{bench}-layers.csv.gz", pd.concat(layers, ignore_index=True))
        manifest[bench] = {
            "file": f"{bench}.csv.gz",
            "layers_file": f"{bench}-layers.csv.gz",
            "command": f"python tools/precompute_chain.py --benchmarks {bench}",
            "budget": BUDGET,
            "configs": [{"method": m, "settings": s} for m, s in CONFIGS],
            "provenance": provenance(threads=configs(bench)[0].threads) | {"commit": _commit()},
            "seconds_per_config": seconds,
            "seconds_total": round(sum(seconds.values()), 1),
        }
        manifest = {**(json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}), bench: manifest[bench]}
        text = json.dumps(manifest, indent=2) + "\n"  # re-read: another benchmark's process may have written its entry
        atomic_write(manifest_path, lambda h: h.write(text.encode()))
        from isoplast_lite.results import write_folder_checksums

        write_folder_checksums(args.out)  # each file's SHA-256, checked on load
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
