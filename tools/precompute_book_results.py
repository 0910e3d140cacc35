"""Regenerate the precomputed result files of chapters 6 and 8 (``isoplast_lite/data/book/*.csv.gz``).

Every file is one ``python -m isoplast_lite sweep ...`` command (the runner's CLI) at the
"book scale" budget below, written as gzip-compressed CSV (the runner's tidy columns, full
precision). The runs go through the runner's disk cache (``$ISOPLAST_CACHE`` or
``~/.cache/isoplast``), so an interrupted precomputation resumes where it stopped and re-running
a finished one costs nothing. Usage (from the repository root)::

    .venv/bin/python tools/precompute_book_results.py                 # everything (see below)
    .venv/bin/python tools/precompute_book_results.py --only random-label-digits lambda-sweep
    .venv/bin/python tools/precompute_book_results.py --list          # print the sweep commands
    nohup nice -n 10 .venv/bin/python tools/precompute_book_results.py > precompute.log 2>&1 &

Book scale (why): the paper states lr 1e-3 for Adam and AdamO, lambda 1e-3 and 8 seeds
(PAPER.md); its widths, depths and horizons are unknown to us, and at lr 1e-3 R_iso's half-life
under PyTorch's reading of AdamO is about 43 000 steps (chapter 5), a GPU-scale horizon (chapter 7
measures that reading at the stated values; tools/precompute_paper_setting.py). PAPER.md's CPU
probes (ours) show the phenomenon on random-label Digits within 20 tasks x 800
steps at width 256 / 512 images. We measured (2 seeds each, random-label Digits, 256 images,
20 x 400 steps) that narrower nets show it sooner and more strongly: at width 128 Adam falls
from 100% to ~72% train accuracy by task 15 (dead units 4% -> 43%), at width 64 from 97% to
~78% by task 7 and ~36-40% from task 13 on (dead 3% -> 42%), while AdamO at lambda 0.1 stays at
95-98% with 3-6% dead units; after 10 tasks x 400 steps the two are already far apart
(Adam ~69% with 16% dead units, AdamO ~97% with 3%). Width 64 and 10 tasks x 400 steps is
therefore the book scale of the random-label streams. The permuted and label-shuffled streams
get 6 tasks x 100 steps: at CPU scale they show the effect only in the dead units even over
40 tasks x 400 steps (PAPER.md), so they are shipped for completeness. The whole
precomputation had to fit in under an hour of a 2-core CPU shared with three other jobs
(run as three `nice` processes, about 35 minutes of wall time).

Torch runs single-threaded here (small models run faster that way and leave other cores free).
The files are package data (``isoplast_lite.results``), so a chapter opened alone in Colab finds
them. ``manifest.json`` records beside each command its provenance (torch version, CPU capability,
thread count, library version, date: ``isoplast_lite.results.provenance``); a file that is not
regenerated keeps the provenance it had.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from isoplast_lite.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "isoplast_lite" / "data" / "book"

# adam and adamo first: the lambda sweep (run in parallel) reuses them from the cache
ALL_METHODS = ["adam", "adamo", "adamw", "l2", "l2-init", "shrink-perturb", "redo", "spectral", "layernorm",
               "coupled-iso", "aei-adam", "aei-adamo"]  # fmt: skip
#: 10 tasks x 400 steps, width 64, depth 3, 256 images, batch 32, lr 1e-3, 8 seeds.
BUDGET_RANDOM_LABEL = ["--seeds", "8", "--tasks", "10", "--steps-per-task", "400", "--width", "64",
                       "--depth", "3", "--n-train", "256", "--batch-size", "32", "--lr", "1e-3"]  # fmt: skip
#: 6 tasks x 100 steps, width 64, depth 3, 512 images, batch 32, lr 1e-3, 8 seeds.
BUDGET_SHIFT = ["--seeds", "8", "--tasks", "6", "--steps-per-task", "100", "--width", "64",
                "--depth", "3", "--n-train", "512", "--batch-size", "32", "--lr", "1e-3"]  # fmt: skip
LAMBDAS = ["1", "0.01", "0.1"]  # 0.1 last: shared with the random-label-digits sweep

#: the AEI rows were made with the exact Cayley parametrization (the default is Newton-Schulz now)
CAYLEY = ["--set", "orthogonal=cayley"]
#: the ReDo rows were made resetting only Adam's moments of recycled entries (the default now
#: also restarts their step count: ``reset_step``)
MOMENTS_ONLY_REDO = ["--set", "redo.reset_step=false"]

#: name -> the arguments of ``python -m isoplast_lite sweep`` (without --out).
SWEEPS = {
    "random-label-digits": ["--benchmark", "random-label-digits", "--method", *ALL_METHODS, *CAYLEY, *MOMENTS_ONLY_REDO, *BUDGET_RANDOM_LABEL],
    "lambda-sweep": ["--benchmark", "random-label-digits", "--method", "adamo", "adam",
                     "--set", "iso_strength=" + ",".join(LAMBDAS), *BUDGET_RANDOM_LABEL],  # fmt: skip
    "random-label-mnist1d": ["--benchmark", "random-label-mnist1d", "--method", *ALL_METHODS, *CAYLEY, *MOMENTS_ONLY_REDO, *BUDGET_RANDOM_LABEL],
    "permuted-digits": ["--benchmark", "permuted-digits", "--method", *ALL_METHODS, *CAYLEY, *MOMENTS_ONLY_REDO, *BUDGET_SHIFT],
    "label-shuffle-digits": ["--benchmark", "label-shuffle-digits", "--method", *ALL_METHODS, *CAYLEY, *MOMENTS_ONLY_REDO, *BUDGET_SHIFT],
    "permuted-mnist1d": ["--benchmark", "permuted-mnist1d", "--method", *ALL_METHODS, *CAYLEY, *MOMENTS_ONLY_REDO, *BUDGET_SHIFT],
    "label-shuffle-mnist1d": ["--benchmark", "label-shuffle-mnist1d", "--method", *ALL_METHODS, *CAYLEY, *MOMENTS_ONLY_REDO, *BUDGET_SHIFT],
}


def command(name: str) -> list:
    """The full CLI command (as a list) that regenerates ``isoplast_lite/data/book/{name}.csv.gz``."""
    return ["python", "-m", "isoplast_lite", "sweep", *SWEEPS[name], "--no-progress", "--out", f"{name}.csv"]


def regenerate(name: str, out_dir: Path = OUT) -> Path:
    """Run sweep ``name`` through the runner (cached) and write ``out_dir/{name}.csv.gz``."""
    import torch

    from isoplast_lite.__main__ import main as cli

    torch.set_num_threads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / f"{name}.csv"
        code = cli(["sweep", *SWEEPS[name], "--no-progress", "--out", str(csv)])
        if code != 0:
            raise RuntimeError(f"sweep {name} failed with exit code {code}")
        target = out_dir / f"{name}.csv.gz"

        def write(handle):
            with open(csv, "rb") as src, gzip.GzipFile(fileobj=handle, mode="wb", mtime=0, filename="") as dst:  # mtime=0: reproducible bytes
                shutil.copyfileobj(src, dst)

        atomic_write(target, write)
    from isoplast_lite.results import provenance

    write_manifest(out_dir, made={name: provenance(threads=1)})
    return target


def write_manifest(out_dir: Path = OUT, made: "dict | None" = None) -> Path:
    """Write ``manifest.json``: command and provenance of every sweep whose file exists (atomic).

    ``made`` maps the names regenerated now to their provenance; the others keep the provenance
    recorded before (the manifest is a function of the files present plus that record).
    """
    path = out_dir / "manifest.json"
    before = json.loads(path.read_text()) if path.is_file() else {}
    made = made or {}
    manifest = {}
    for name in SWEEPS:
        if not (out_dir / f"{name}.csv.gz").exists():
            continue
        entry = {"file": f"{name}.csv.gz", "command": " ".join(command(name))}
        if name in made:
            entry["provenance"] = made[name]
            if "aei-adam" in SWEEPS[name]:  # the command's --set orthogonal=..., else the runner's default
                entry["aei_orthogonal"] = "cayley" if "orthogonal=cayley" in entry["command"] else "newton-schulz"
        else:  # not regenerated: keep what was recorded with the file
            entry.update({k: v for k, v in before.get(name, {}).items() if k in ("provenance", "aei_orthogonal")})
        manifest[name] = entry
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(path)
    from isoplast_lite.results import write_folder_checksums

    write_folder_checksums(out_dir)  # each file's SHA-256, checked on load
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(SWEEPS), help="regenerate only these files")
    parser.add_argument("--list", action="store_true", help="print the sweep commands and exit")
    args = parser.parse_args(argv)
    names = args.only or list(SWEEPS)
    if args.list:
        for name in names:
            print(" ".join(command(name)))
        return 0
    for name in names:
        start = time.perf_counter()
        path = regenerate(name)
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1e3:.0f} kB in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
