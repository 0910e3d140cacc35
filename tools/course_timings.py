"""Measure how long each chapter takes in full mode (cold and warm cache), for the course guide.

``--measure`` runs every chapter twice through :func:`warm_cache.run_chapter` (the reader
notebook, full mode, every code cell, a fresh kernel): first with an empty ``ISOPLAST_CACHE``
(cold: every runner experiment trains), then again with the cache the first run filled (warm:
what a student sees after ``tools/warm_cache.py``). It also times the lab-4 take-home (the
chapter-8 random-label configuration of Adam and AdamO with twice as many tasks, from an empty
cache, and then the shipped 10-task length from the same cache, which the runner does *not* serve
from the longer entry, since the task count is part of the cache key) and writes everything,
with the machine it ran on, to ``book/course-timings.json``.

``--render`` rewrites the tables of ``book/course-guide.md`` between the markers
``<!-- timings:NAME -->`` ... ``<!-- /timings:NAME -->`` from that JSON, and the header cell of
every reader notebook (its launch badges and run time, ``reader_notebooks.header_cell``) in
place, without executing anything; ``--check`` exits 1
when the guide does not match it (``tests/test_course_guide.py`` runs the check). The guide's
numbers are never typed by hand.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python tools/course_timings.py --measure   # ~30-60 min
    .venv/bin/python tools/course_timings.py --render
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import reader_notebooks  # noqa: E402
import warm_cache  # noqa: E402

JSON = ROOT / "book" / "course-timings.json"
GUIDE = ROOT / "book" / "course-guide.md"
CHAPTERS = {1: "Loss of plasticity in one minute", 2: "The eNTK-Jacobian link", 3: "AEI GroupSort networks",
            4: "The isometry regularizer", 5: "AdamO step by step", 6: "Prior methods",
            7: "Does isometry cause plasticity?", 8: "Reproducing the benchmarks", 9: "Your model"}  # fmt: skip
#: the take-home of lab 4: the shipped random-label Digits budget of chapter 8, Adam and AdamO
#: (AdamO at its default lambda = 0.1); ``--tasks N`` is added.
TAKE_HOME = ["--benchmark", "random-label-digits", "--method", "adam", "adamo", "--seeds", "8", "--steps-per-task", "400",
             "--width", "64", "--depth", "3", "--n-train", "256", "--batch-size", "32", "--lr", "1e-3", "--no-progress"]  # fmt: skip


def _machine() -> dict:
    import torch

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version(),
            "commit": commit, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}  # fmt: skip


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def _take_home(cache: Path, tasks: int) -> float:
    env = {**os.environ, "ISOPLAST_CACHE": str(cache)}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "isoplast_lite", "sweep", *TAKE_HOME, "--tasks", str(tasks),
                        "--out", str(Path(tmp) / "out.csv")], env=env, check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def measure(chapters, out: Path = JSON, take_home: bool = True) -> dict:
    data = json.loads(out.read_text()) if out.exists() else {}
    data["machine"] = _machine()
    rows = data.setdefault("chapters", {})
    for n in chapters:
        with tempfile.TemporaryDirectory(prefix="isoplast-cold-") as cache:
            load0 = _load()
            cold = warm_cache.run_chapter(n, Path(cache))
            filled = warm_cache.cache_entries(Path(cache))
            warm = warm_cache.run_chapter(n, Path(cache))
            # the warm run must be served from the cache: no entry added, none rewritten
            trained_again = sum(1 for k, v in warm_cache.cache_entries(Path(cache)).items() if filled.get(k) != v)
            rows[str(n)] = {"title": CHAPTERS[n], "cold_s": round(cold, 1), "warm_s": round(warm, 1),
                            "cache_entries": len(filled), "entries_written_by_warm_run": trained_again,
                            "commit": data["machine"]["commit"], "load_before": load0,
                            "load_after": _load(), "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
        print(n, rows[str(n)], flush=True)
        out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    if take_home:
        with tempfile.TemporaryDirectory(prefix="isoplast-take-home-") as cache:
            long = _take_home(Path(cache), 20)
            short = _take_home(Path(cache), 10)
        data["take_home"] = {"command": "python -m isoplast_lite sweep " + " ".join(TAKE_HOME) + " --tasks N --out FILE",
                             "tasks_20_cold_s": round(long, 1), "tasks_10_after_20_s": round(short, 1),
                             "load_after": _load()}  # fmt: skip
        print(data["take_home"], flush=True)
        out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


_minutes = reader_notebooks.minutes  # one way to write a duration, in the guide and the notebooks


def tables(data: dict) -> dict:
    """The guide's generated blocks, by marker name."""
    rows = data["chapters"]
    lines = ["| chapter | full mode, cold cache | full mode, warm cache | runner experiments cached |", "|---|---|---|---|"]
    for n in sorted(rows, key=int):
        r = rows[n]
        lines.append(f"| {n}. {r['title']} | {_minutes(r['cold_s'])} | {_minutes(r['warm_s'])} | {r['cache_entries']} |")
    total_cold = sum(r["cold_s"] for r in rows.values())
    total_warm = sum(r["warm_s"] for r in rows.values())
    lines.append(f"| all chapters | {_minutes(total_cold)} | {_minutes(total_warm)} | |")
    out = {"chapters": "\n".join(lines)}
    m = data["machine"]
    loads = [r[k] for r in rows.values() for k in ("load_before", "load_after")]
    out["machine"] = (f"{m['cores']} cores ({m['cpu_capability']} kernels), torch {m['torch']}, one thread per chapter, "
                      f"load average {min(loads):g}-{max(loads):g} during the measurements (other jobs shared the "
                      f"machine), measured {min(r['measured'] for r in rows.values())[:10]} at commit {m['commit']}")  # fmt: skip
    labs = ["| lab | chapters | exercises | cold | warm |", "|---|---|---|---|---|"]
    for lab, chs in warm_cache.LABS.items():
        have = [str(c) for c in chs if str(c) in rows]
        if len(have) != len(chs):
            continue
        ex = sum(_exercises(c) for c in chs)
        labs.append(f"| {lab} | {', '.join(have)} | {ex} | {_minutes(sum(rows[c]['cold_s'] for c in have))} | "
                    f"{_minutes(sum(rows[c]['warm_s'] for c in have))} |")  # fmt: skip
    out["labs"] = "\n".join(labs)
    if "take_home" in data:
        t = data["take_home"]
        out["take-home"] = (f"measured on the same machine: {_minutes(t['tasks_20_cold_s'])} for 20 tasks from an empty "
                            f"cache; the 10-task run afterwards, with the 20-task entry in the cache, took "
                            f"{_minutes(t['tasks_10_after_20_s'])} (it trains again: a different task count is a "
                            f"different cache entry)")  # fmt: skip
    return out


def _exercises(chapter: int) -> int:
    return warm_cache.chapter_source(chapter).read_text(encoding="utf-8").count("{exercise}")


def render(text: str, blocks: dict) -> str:
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- timings:{re.escape(name)} -->)(.*?)(<!-- /timings:{re.escape(name)} -->)", re.S)
        sep = "\n" if "\n" in body or body.startswith("|") else ""
        text, n = pattern.subn(lambda m: f"{m.group(1)}{sep}{body}{sep}{m.group(3)}", text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--measure", action="store_true")
    p.add_argument("--chapters", type=int, nargs="+", default=list(CHAPTERS))
    p.add_argument("--no-take-home", action="store_true")
    p.add_argument("--render", action="store_true")
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    if args.measure:
        measure(args.chapters, take_home=not args.no_take_home)
    data = json.loads(JSON.read_text())
    text = GUIDE.read_text(encoding="utf-8")
    new = render(text, tables(data))
    if args.check:
        if new != text:
            print(f"{GUIDE} does not match {JSON}: run tools/course_timings.py --render", file=sys.stderr)
            return 1
        return 0
    if args.render or args.measure:
        GUIDE.write_text(new, encoding="utf-8")
        # the reader notebooks open with the same run times (their header cell): rewritten in
        # place, nothing executed
        for n in sorted(data["chapters"], key=int):
            md = warm_cache.chapter_source(int(n))
            if md.with_suffix(".ipynb").is_file() and reader_notebooks.refresh_header(md.with_suffix(".ipynb"), md):
                print(f"header updated: {md.with_suffix('.ipynb').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
