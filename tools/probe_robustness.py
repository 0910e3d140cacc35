"""Hostile probes of issue 27 ("trust nothing on disk"), run against one checkout of the library.

Usage::

    python tools/probe_robustness.py [--root CHECKOUT] [--cpu-limit CPU_SECONDS] [--stall SECONDS] [--only NAME ...]

Each probe runs in a fresh subprocess (its own session, with every process it starts) with
``PYTHONPATH=CHECKOUT`` (so the same interpreter and packages can probe an older checkout, e.g.
``git worktree add /tmp/probe-base main``) and a private cache, and is classified as one of:

``clear``       the damage was refused or recovered from, with a one-line message (or none needed)
``traceback``   a Python traceback reached the user
``silent``      a wrong result was accepted or served without a word (or code was executed)
``hang``        no answer: the probe's processes used up ``--cpu-limit`` CPU seconds, or made no
                progress (no CPU time, no output) for ``--stall`` seconds
``loss``        rows or files that existed were lost
``unclear``     refused, but the message does not say what or where (e.g. a full disk without its path)

A hang is judged by the work done, not by the clock: the CPU seconds of the probe's process tree
are the same on an idle machine and at load 15, where wall time is not (interpreter start-up
alone once passed 40 s). Every probe's CPU seconds are in the note column.

The table (markdown) goes to stdout. The probes mirror tests in tests/test_cache.py,
tests/test_shipped_results.py, tests/test_sweep.py, tests/test_cli.py, tests/test_faults.py and
tests/test_plots.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("clear", "traceback", "silent", "hang", "loss", "unclear")

# what every probe starts with: its folder, the sizes, and the scaffolding probes share
PRELUDE = """
import os, subprocess, sys, time
from pathlib import Path

D = Path(os.environ["PROBE_DIR"])
TINY = dict(seeds=2, n_tasks=3, steps_per_task=10, batch_size=8, width=16, depth=2, n_train=32, probe_size=4)
CLI_TINY = "--seeds 1 --tasks 2 --steps-per-task 5 --batch-size 8 --width 8 --depth 2 --n-train 16 --no-progress".split()
# long enough to be under way when a signal or a second writer comes
CLI_LONG = "--seeds 1 --tasks 2 --steps-per-task 3000 --batch-size 8 --width 8 --depth 1 --n-train 16 --no-progress".split()


def cli(*args):
    \"\"\"``python -m isoplast_lite *args`` run to its end in the probe's folder (-S: the probed
    checkout comes from PYTHONPATH, never from an editable install).\"\"\"
    return subprocess.run([sys.executable, "-S", "-m", "isoplast_lite", *args], cwd=D, capture_output=True, text=True)


def start(*args):
    \"\"\"The same command started, its stdout and stderr piped.\"\"\"
    return subprocess.Popen([sys.executable, "-S", "-m", "isoplast_lite", *args], cwd=D, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_line(proc, needle):
    \"\"\"Read ``proc``'s stdout until a line holds ``needle`` (False: it ended first).\"\"\"
    for line in proc.stdout:
        if needle in line:
            return True
    return False


def cli_verdict(p, ok):
    \"\"\"traceback if one reached the user, else clear if ``ok(p)``, else silent.\"\"\"
    return "traceback" if "Traceback" in p.stderr else ("clear" if ok(p) else "silent")


def rows(cfg, **kwargs):
    \"\"\"The rows ``run(cfg, progress=False, **kwargs)`` returns (a checkout before ``RunResult``
    returned the frame itself).\"\"\"
    from isoplast_lite.run import run

    result = run(cfg, progress=False, **kwargs)
    return getattr(result, "rows", result)


def interrupted(cfg):
    \"\"\"``cfg`` run into a private cache and interrupted after its first task: (cache, checkpoint).\"\"\"
    from isoplast_lite.run import cache_key, run

    cache = D / "c"
    try:
        run(cfg, cache_dir=cache, progress=False, callback=lambda t, r: (_ for _ in ()).throw(KeyboardInterrupt))
    except KeyboardInterrupt:
        pass
    return cache, next((cache / cache_key(cfg)).glob("*.ckpt"))


def shipped_copy():
    \"\"\"A private copy of the shipped results, which the loader then reads (ISOPLAST_RESULTS).\"\"\"
    import shutil
    from isoplast_lite import results

    base = D / "data"
    shutil.copytree(results._DATA, base)
    os.environ["ISOPLAST_RESULTS"] = str(base)
    return base


def loaded(load, name):
    \"\"\"silent if ``load()`` accepts the damaged file, clear if it refuses in one line naming ``name``.\"\"\"
    try:
        load()
    except ValueError as err:
        return "clear" if name in str(err) and "\\n" not in str(err) else "unclear"
    return "silent"
"""

# every probe prints its verdict (clear / silent / loss / ...) as its last line; a traceback or a
# hang is classified from the outside
PROBES = {
    "planted checkpoint runs code": """
        import hashlib, warnings, torch
        from isoplast_lite.run import Config, run
        cfg = Config("permuted-digits", "adamo", **TINY)
        cache, ckpt = interrupted(cfg)
        marker = D / "ran"
        class P:
            def __reduce__(self):
                return (os.mkdir, (str(marker),))
        state = torch.load(ckpt, weights_only=False)
        state["rows"] = P()
        torch.save(state, ckpt)
        side = ckpt.with_name(ckpt.name + ".sha256")
        side.write_text(hashlib.sha256(ckpt.read_bytes()).hexdigest() + "  " + ckpt.name + "\\n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                run(cfg, cache_dir=cache, progress=False)
            except Exception:
                pass
        print("silent" if marker.exists() else "clear")
    """,
    "tampered checkpoint resumed": """
        import warnings, torch
        from isoplast_lite.run import Config, run
        cfg = Config("permuted-digits", "adamo", **TINY)
        cache, ckpt = interrupted(cfg)
        state = torch.load(ckpt, weights_only=False)
        state["stack"] = {k: v * 3 if torch.is_tensor(v) and v.is_floating_point() else v for k, v in state["stack"].items()}
        torch.save(state, ckpt)
        trained = []
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            run(cfg, cache_dir=cache, progress=False, callback=lambda t, r: trained.append(t))
        print("clear" if trained == [0, 1, 2] else "silent")
    """,
    "result without sidecar served": """
        import warnings, pandas as pd
        from isoplast_lite.run import Config, run, cache_key
        cfg = Config("permuted-digits", "adam", **TINY)
        cache = D / "c"
        run(cfg, cache_dir=cache, progress=False)
        folder = cache / cache_key(cfg)
        for f in folder.glob("*.sha256"):
            f.unlink()
        for f in folder.glob("*.csv"):
            if f.name.startswith("seeds") or f.name == "result.csv":
                df = pd.read_csv(f)
                if "train_acc" in df:
                    df["train_acc"] = 0.5
                f.write_text(df.to_csv(index=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = rows(cfg, cache_dir=cache)
        print("silent" if (again.train_acc == 0.5).all() else "clear")
    """,
    "re-registered method shares the key": """
        from isoplast_lite import methods
        from isoplast_lite.run import Config, cache_key
        cfg = Config("permuted-digits", "adam", **TINY)
        before = cache_key(cfg)
        orig = methods.method_class("adam")
        class Other(orig):
            def setup(self, stack, cfg):
                pass
        Other.name, Other.version = orig.name, orig.version
        methods.register_method(Other, replace=True)
        print("silent" if cache_key(cfg) == before else "clear")
    """,
    "shipped: changed number": """
        import pandas as pd
        from isoplast_lite import results
        f = shipped_copy() / "book" / "permuted-digits.csv.gz"
        df = pd.read_csv(f); df.loc[3, "train_acc"] = 0.5; df.to_csv(f, index=False, compression="gzip")
        print(loaded(lambda: results.load("permuted-digits"), "permuted-digits"))
    """,
    "shipped: manifest points at /etc/hostname": """
        import json
        from isoplast_lite import results
        m = shipped_copy() / "book" / "manifest.json"
        e = json.loads(m.read_text()); e["permuted-digits"]["file"] = "/etc/hostname"; m.write_text(json.dumps(e))
        try:
            results.load("permuted-digits")
            print("silent")
        except (ValueError, KeyError, FileNotFoundError) as err:
            print("clear" if "hostname" in str(err) else "silent")
    """,
    "shipped: truncated gzip": """
        from isoplast_lite import results
        f = shipped_copy() / "book" / "permuted-digits.csv.gz"
        f.write_bytes(f.read_bytes()[:2000])
        print(loaded(lambda: results.load("permuted-digits"), "permuted-digits"))
    """,
    "shipped: duplicated rows": """
        import pandas as pd
        from isoplast_lite import results
        f = shipped_copy() / "book" / "permuted-digits.csv.gz"
        df = pd.read_csv(f); pd.concat([df, df.iloc[:10]]).to_csv(f, index=False, compression="gzip")
        if hasattr(results, "write_checksums"):
            results.write_checksums(["book"])  # even with a refreshed checksum
        print(loaded(lambda: results.load("permuted-digits"), "permuted-digits"))
    """,
    "shipped: edited search.csv": """
        from isoplast_lite import results
        f = shipped_copy() / "streams" / "search.csv"
        f.write_text(f.read_text().replace("0.", "0.9", 1))
        if hasattr(results, "load_file"):
            print(loaded(lambda: results.load_file("streams/search.csv"), "search.csv"))
        else:  # before: the chapter read it with pandas, unchecked
            import pandas as pd
            print(loaded(lambda: pd.read_csv(results.results_dir("streams") / "search.csv"), "search.csv"))
    """,
    "serial sweep: a hook raises": """
        (D / "frag.py").write_text("from isoplast_lite.methods import Adam, register_method\\n@register_method\\nclass F(Adam):\\n"
                                   "    name='fragile'\\n    def after_step(self, s, o, c):\\n        raise KeyError('x')\\n")
        p = cli("sweep", "--import", "frag", "--benchmark", "random-label-digits", "--method", "fragile", "adam", *CLI_TINY,
                "--cache-dir", str(D / "c"), "--out", str(D / "o.csv"))
        if "Traceback" in p.stderr:
            print("traceback")
        elif not (D / "o.csv").exists() or "adam" not in (D / "o.csv").read_text():
            print("loss")
        else:
            print("clear" if p.returncode == 1 else "silent")
    """,
    "--import module calls sys.exit(0)": """
        (D / "quit.py").write_text("import sys\\nsys.exit(0)\\n")
        p = cli("run", "--import", "quit", "--benchmark", "random-label-digits", "--method", "adam", *CLI_TINY, "--no-cache")
        print(cli_verdict(p, lambda p: p.returncode != 0))
    """,
    "l2 strength=1e37 (infinite objective)": """
        from isoplast_lite.run import Config
        cfg = Config("random-label-digits", "l2", settings={"strength": 1e37}, seeds=1, n_tasks=1, steps_per_task=5, batch_size=8,
                     width=64, depth=2, n_train=16, probe_size=4)
        print("clear" if rows(cfg, cache_dir=False).diverged.all() else "silent")
    """,
    "dormant_fraction of an overflowed unit": """
        import torch
        from isoplast_lite import dormant_fraction, relu_mlp
        m = relu_mlp(4, 8, 2, 3, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            m[0][0].weight[0].fill_(3e38)
        try:
            dormant_fraction(m, torch.rand(16, 4) + 0.1)
            print("silent")
        except ValueError:
            print("clear")
    """,
    "plot: diverged=maybe, negative accuracy": """
        import pandas as pd
        df = pd.DataFrame({"benchmark": "random-label-digits", "method": "adam", "settings": "{}", "lr": 1e-3, "seed": 0,
                           "task": [0, 1], "train_acc": [-0.5, 0.3], "test_acc": float("nan"), "diverged": "maybe"})
        df.to_csv(D / "r.csv", index=False)
        print(cli_verdict(cli("plot", str(D / "r.csv"), "-o", str(D / "f.png")), lambda p: p.returncode != 0))
    """,
    # the CLI's default budget (20 tasks x 800 steps): a single step at batch 10**7 is a legitimate
    # 20-second job (measured: 23 CPU s, 5 GB), 16 000 of them are not; no wall-clock limit here:
    # a run that is not refused uses up the probe's CPU limit (a hang)
    "--batch-size 10000000 (small net)": """
        p = cli("run", "--benchmark", "random-label-digits", "--method", "adam", "--seeds", "1", "--width", "8", "--depth", "1",
                "--batch-size", "10000000", "--no-cache", "--no-progress")
        print(cli_verdict(p, lambda p: p.returncode != 0))
    """,
    "--depth 10000 (small net)": """
        p = cli("run", "--benchmark", "random-label-digits", "--method", "adam", "--width", "8", "--depth", "10000", "--no-cache",
                "--no-progress")
        print(cli_verdict(p, lambda p: p.returncode != 0))
    """,
    "disk full while writing --out": """
        import builtins, contextlib, errno, io
        from isoplast_lite import files as _files
        from isoplast_lite.__main__ import main
        real = builtins.open
        class Full(io.RawIOBase):
            def writable(self):
                return True
            def write(self, b):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        def fake(f, mode="r", *a, **k):
            return Full() if "w" in mode and str(f).startswith(str(D)) else real(f, mode, *a, **k)
        _files.open = fake
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main(["run", "--benchmark", "random-label-digits", "--method", "adam", *CLI_TINY, "--no-cache", "--out", str(D / "r.csv")])
                code = 0
            except SystemExit as e:
                code = e.code
            except OSError:
                code = "traceback"
        text = err.getvalue()
        if code == "traceback" or "Traceback" in text:
            print("traceback")
        else:
            print("clear" if code not in (0, None) and str(D / "r.csv") in text else ("silent" if code in (0, None) else "unclear"))
    """,
    "SIGTERM to a sweep": """
        import signal, pandas as pd
        common = ["--benchmark", "random-label-digits", *CLI_LONG, "--cache-dir", str(D / "c")]
        assert cli("run", "--method", "adam", *common).returncode == 0  # the first configuration cached: finished at once
        p = start("sweep", "--method", "adam", "l2", *common, "--out", str(D / "o.csv"))
        wait_for_line(p, "[1/2]")  # now training the second
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate()
        kept = (D / "o.csv").exists() and "adam" in set(pd.read_csv(D / "o.csv").method)
        if "Traceback" in err:
            print("traceback")
        elif not kept:
            print("loss")
        else:
            print("clear" if p.returncode == 143 and err.count("\\n") == 1 else "unclear")
    """,
    "newton_schulz(W, steps=10**9)": """
        import torch
        from isoplast_lite.isometry import newton_schulz
        try:
            newton_schulz(torch.randn(4, 4), steps=10**9)
            print("silent")
        except ValueError:
            print("clear")
    """,
    "--out other.csv (not a results CSV)": """
        (D / "other.csv").write_text("a,b\\n1,2\\n")
        cli("run", "--benchmark", "random-label-digits", "--method", "adam", *CLI_TINY, "--no-cache", "--out", str(D / "other.csv"))
        print("loss" if (D / "other.csv").read_text() != "a,b\\n1,2\\n" else "clear")
    """,
    "repeated --set of one name": """
        p = cli("run", "--benchmark", "random-label-digits", "--method", "adamo", "--set", "iso_strength=0.1", "--set", "iso_strength=0.2",
                *CLI_TINY, "--no-cache")
        print(cli_verdict(p, lambda p: p.returncode != 0))
    """,
    # the second sweep starts once the first is under way (its first configuration is training),
    # not after a fixed number of seconds, so the two overlap at any load
    "two sweeps on one --out": """
        import pandas as pd
        out = ["--benchmark", "random-label-digits", "--out", str(D / "o.csv")]
        a = start("sweep", *out, "--method", "adam", "l2", *CLI_LONG, "--cache-dir", str(D / "a"))
        while not any((D / "a").glob("*/config.json")):
            assert a.poll() is None, a.communicate()
            time.sleep(0.05)
        b = cli("sweep", *out, "--method", "adamw", *CLI_TINY, "--cache-dir", str(D / "b"))
        overlapped = a.poll() is None
        a.communicate()
        methods = set(pd.read_csv(D / "o.csv").method) if (D / "o.csv").exists() else set()
        if not overlapped:
            print("unclear")  # the first ended before the second ran: nothing was probed
        elif a.returncode == 0 and b.returncode == 0:
            print("loss" if methods != {"adam", "l2", "adamw"} else "clear")  # both wrote: were the first one's rows kept?
        else:
            print(cli_verdict(b, lambda p: p.returncode != 0 and "another sweep" in p.stderr))
    """,
}



def _tree_cpu_seconds(session: int) -> float:
    """CPU seconds (user + system) of the live processes of ``session`` and of the children they
    have reaped (Linux ``/proc``)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(fields[3]) == session:  # fields after the name: state ppid pgrp session ... utime stime cutime cstime
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _watch(proc: subprocess.Popen, outputs, cpu_limit: float, stall: float, poll: float = 0.5):
    """Wait for ``proc`` (the leader of its own session) while it makes progress: (CPU seconds used,
    why it was stopped or ``None``). Progress is CPU time or output; the session is killed when its
    CPU seconds pass ``cpu_limit`` or when neither has moved for ``stall`` seconds."""
    import signal

    cpu, size, moved = 0.0, 0, time.monotonic()
    while proc.poll() is None:
        time.sleep(poll)
        now_cpu, now_size = _tree_cpu_seconds(proc.pid), sum(os.path.getsize(f) for f in outputs)
        if now_cpu > cpu + 0.01 or now_size != size:
            moved = time.monotonic()
        cpu, size = max(cpu, now_cpu), now_size
        why = (f"{cpu:.0f} CPU s used, the limit" if cpu > cpu_limit else
               f"no CPU time and no output for {stall:g} s" if time.monotonic() - moved > stall else None)  # fmt: skip
        if why:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return cpu, why
    # the leader has ended: its reaped children are in its own (now gone) counts; what it left
    # running is stopped with it
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return cpu, None


def run_probe(name: str, code: str, root: Path, cpu_limit: float, stall: float) -> tuple:
    """One probe in a fresh interpreter and folder: (outcome, note)."""
    import resource
    import site

    path = os.pathsep.join([str(root), *site.getsitepackages()])
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": path, "PROBE_DIR": tmp, "ISOPLAST_CACHE": str(Path(tmp) / "cache"),
               "ISOPLAST_PROGRESS": "0", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}  # fmt: skip
        # one thread: small tensors, and no OpenMP spin-waiting, which burns CPU seconds in
        # proportion to the machine's load and would make the CPU limit depend on it
        env.pop("ISOPLAST_RESULTS", None)
        out, err = Path(tmp) / ".stdout", Path(tmp) / ".stderr"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        # -S: no site processing, so an editable install of another checkout cannot shadow ``root``;
        # the packages come from this interpreter's site-packages, after ``root``
        with open(out, "w") as o, open(err, "w") as e:
            proc = subprocess.Popen([sys.executable, "-S", "-c", PRELUDE + textwrap.dedent(code)], env=env, cwd=tmp, stdout=o,
                                    stderr=e, text=True, start_new_session=True)  # fmt: skip
        seen, stopped = _watch(proc, (out, err), cpu_limit, stall)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = max(seen, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))
        if stopped:
            return "hang", stopped
        lines, stderr = out.read_text().strip().splitlines(), err.read_text()
        note = f"{cpu:.0f} CPU s"
        if "Traceback" in stderr and (not lines or lines[-1] not in OUTCOMES):
            return "traceback", f"{note}; {stderr.strip().splitlines()[-1][:120]}"
        return (lines[-1] if lines and lines[-1] in OUTCOMES else "traceback"), note


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout to probe (default: this one)")
    p.add_argument("--cpu-limit", type=float, default=300.0, help="CPU seconds a probe may use (default: 300)")
    p.add_argument("--stall", type=float, default=120.0, help="seconds without CPU time or output that make a hang (default: 120)")
    p.add_argument("--only", nargs="+", default=None, choices=sorted(PROBES), metavar="NAME")
    args = p.parse_args(argv)
    counts = dict.fromkeys(OUTCOMES, 0)
    print(f"| probe ({args.root}) | outcome | note |\n|---|---|---|")
    for name, code in PROBES.items():
        if args.only and name not in args.only:
            continue
        outcome, note = run_probe(name, code, args.root.resolve(), args.cpu_limit, args.stall)
        counts[outcome] = counts.get(outcome, 0) + 1
        print(f"| {name} | {outcome} | {note} |", flush=True)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
