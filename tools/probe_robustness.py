"""Hostile probes of issue 27 ("trust nothing on disk"), run against one checkout of the library.

Usage::

    python tools/probe_robustness.py [--root CHECKOUT] [--timeout SECONDS] [--only NAME ...]

Each probe runs in a fresh subprocess with ``PYTHONPATH=CHECKOUT`` (so the same interpreter and
packages can probe an older checkout, e.g. ``git worktree add /tmp/probe-base main``) and a
private cache, and is classified as one of:

``clear``       the damage was refused or recovered from, with a one-line message (or none needed)
``traceback``   a Python traceback reached the user
``silent``      a wrong result was accepted or served without a word (or code was executed)
``hang``        no answer within the timeout
``loss``        rows or files that existed were lost
``unclear``     refused, but the message does not say what or where (e.g. a full disk without its path)

The table (markdown) goes to stdout. The probes mirror tests in tests/test_cache.py,
tests/test_shipped_results.py, tests/test_sweep.py, tests/test_cli.py and tests/test_plots.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY = "dict(seeds=2, n_tasks=3, steps_per_task=10, batch_size=8, width=16, depth=2, n_train=32, probe_size=4)"
CLI_TINY = "--seeds 1 --tasks 2 --steps-per-task 5 --batch-size 8 --width 8 --depth 2 --n-train 16 --no-progress"

# every probe prints its verdict (clear / silent / loss) as its last line; a traceback or a
# timeout is classified from the outside
PROBES = {
    "planted checkpoint runs code": f"""
        import os, warnings, torch
        from pathlib import Path
        from isoplast_lite.run import Config, run, cache_key
        cfg = Config("permuted-digits", "adamo", **{TINY})
        cache = Path(os.environ["PROBE_DIR"]) / "c"
        try:
            run(cfg, cache_dir=cache, progress=False, callback=lambda t, r: (_ for _ in ()).throw(KeyboardInterrupt))
        except KeyboardInterrupt:
            pass
        ckpt = next((cache / cache_key(cfg)).glob("*.ckpt"))
        marker = Path(os.environ["PROBE_DIR"]) / "ran"
        class P:
            def __reduce__(self):
                return (os.mkdir, (str(marker),))
        state = torch.load(ckpt, weights_only=False)
        state["rows"] = P()
        torch.save(state, ckpt)
        side = ckpt.with_name(ckpt.name + ".sha256")
        import hashlib
        side.write_text(hashlib.sha256(ckpt.read_bytes()).hexdigest() + "  " + ckpt.name + "\\n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                run(cfg, cache_dir=cache, progress=False)
            except Exception:
                pass
        print("silent" if marker.exists() else "clear")
    """,
    "tampered checkpoint resumed": f"""
        import os, warnings, torch
        from pathlib import Path
        from isoplast_lite.run import Config, run, cache_key
        cfg = Config("permuted-digits", "adamo", **{TINY})
        cache = Path(os.environ["PROBE_DIR"]) / "c"
        try:
            run(cfg, cache_dir=cache, progress=False, callback=lambda t, r: (_ for _ in ()).throw(KeyboardInterrupt))
        except KeyboardInterrupt:
            pass
        ckpt = next((cache / cache_key(cfg)).glob("*.ckpt"))
        state = torch.load(ckpt, weights_only=False)
        state["stack"] = {{k: v * 3 if torch.is_tensor(v) and v.is_floating_point() else v for k, v in state["stack"].items()}}
        torch.save(state, ckpt)
        trained = []
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            run(cfg, cache_dir=cache, progress=False, callback=lambda t, r: trained.append(t))
        print("clear" if trained == [0, 1, 2] else "silent")
    """,
    "result without sidecar served": f"""
        import os, warnings
        from pathlib import Path
        from isoplast_lite.run import Config, run, cache_key
        cfg = Config("permuted-digits", "adam", **{TINY})
        cache = Path(os.environ["PROBE_DIR"]) / "c"
        good = run(cfg, cache_dir=cache, progress=False).rows
        folder = cache / cache_key(cfg)
        for f in folder.glob("*.sha256"):
            f.unlink()
        for f in folder.glob("*.csv"):
            if f.name.startswith("seeds") or f.name == "result.csv":
                import pandas as pd
                df = pd.read_csv(f)
                if "train_acc" in df:
                    df["train_acc"] = 0.5
                f.write_text(df.to_csv(index=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = run(cfg, cache_dir=cache, progress=False).rows
        print("silent" if (again.train_acc == 0.5).all() else "clear")
    """,
    "re-registered method shares the key": f"""
        from isoplast_lite import methods
        from isoplast_lite.run import Config, cache_key
        cfg = Config("permuted-digits", "adam", **{TINY})
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
        import os, shutil, pandas as pd
        from pathlib import Path
        from isoplast_lite import results
        base = Path(os.environ["PROBE_DIR"]) / "data"
        for g in results.GROUPS:
            shutil.copytree(results._DATA / g, base / g)
        os.environ["ISOPLAST_RESULTS"] = str(base)
        f = base / "book" / "permuted-digits.csv.gz"
        df = pd.read_csv(f); df.loc[3, "train_acc"] = 0.5; df.to_csv(f, index=False, compression="gzip")
        try:
            results.load("permuted-digits")
            print("silent")
        except ValueError as err:
            print("clear" if "\\n" not in str(err) and "permuted-digits" in str(err) else "traceback")
    """,
    "shipped: manifest points at /etc/hostname": """
        import os, shutil, json
        from pathlib import Path
        from isoplast_lite import results
        base = Path(os.environ["PROBE_DIR"]) / "data"
        for g in results.GROUPS:
            shutil.copytree(results._DATA / g, base / g)
        os.environ["ISOPLAST_RESULTS"] = str(base)
        m = base / "book" / "manifest.json"
        e = json.loads(m.read_text()); e["permuted-digits"]["file"] = "/etc/hostname"; m.write_text(json.dumps(e))
        try:
            df = results.load("permuted-digits")
            print("silent")
        except (ValueError, KeyError, FileNotFoundError) as err:
            print("clear" if "hostname" in str(err) else "silent")
    """,
    "shipped: truncated gzip": """
        import os, shutil
        from pathlib import Path
        from isoplast_lite import results
        base = Path(os.environ["PROBE_DIR"]) / "data"
        for g in results.GROUPS:
            shutil.copytree(results._DATA / g, base / g)
        os.environ["ISOPLAST_RESULTS"] = str(base)
        f = base / "book" / "permuted-digits.csv.gz"
        f.write_bytes(f.read_bytes()[:2000])
        try:
            results.load("permuted-digits")
            print("silent")
        except ValueError as err:
            print("clear" if "permuted-digits" in str(err) else "traceback")
    """,
    "shipped: duplicated rows": """
        import os, shutil, pandas as pd, hashlib, json
        from pathlib import Path
        from isoplast_lite import results
        base = Path(os.environ["PROBE_DIR"]) / "data"
        for g in results.GROUPS:
            shutil.copytree(results._DATA / g, base / g)
        os.environ["ISOPLAST_RESULTS"] = str(base)
        f = base / "book" / "permuted-digits.csv.gz"
        df = pd.read_csv(f); pd.concat([df, df.iloc[:10]]).to_csv(f, index=False, compression="gzip")
        if hasattr(results, "write_checksums"):
            results.write_checksums(["book"])  # even with a refreshed checksum
        try:
            results.load("permuted-digits")
            print("silent")
        except ValueError as err:
            print("clear" if "permuted-digits" in str(err) else "traceback")
    """,
    "serial sweep: a hook raises": f"""
        import os, subprocess, sys
        from pathlib import Path
        d = Path(os.environ["PROBE_DIR"])
        (d / "frag.py").write_text("from isoplast_lite.methods import Adam, register_method\\n@register_method\\nclass F(Adam):\\n    name='fragile'\\n    def after_step(self, s, o, c):\\n        raise KeyError('x')\\n")
        p = subprocess.run([sys.executable, "-m", "isoplast_lite", "sweep", "--import", "frag", "--benchmark", "random-label-digits",
                            "--method", "fragile", "adam", *"{CLI_TINY}".split(), "--cache-dir", str(d / "c"), "--out", str(d / "o.csv")],
                           cwd=d, capture_output=True, text=True)
        if "Traceback" in p.stderr:
            print("traceback")
        elif not (d / "o.csv").exists() or "adam" not in (d / "o.csv").read_text():
            print("loss")
        else:
            print("clear" if p.returncode == 1 else "silent")
    """,
    "--import module calls sys.exit(0)": f"""
        import os, subprocess, sys
        from pathlib import Path
        d = Path(os.environ["PROBE_DIR"])
        (d / "quit.py").write_text("import sys\\nsys.exit(0)\\n")
        p = subprocess.run([sys.executable, "-m", "isoplast_lite", "run", "--import", "quit", "--benchmark", "random-label-digits",
                            "--method", "adam", *"{CLI_TINY}".split(), "--no-cache"], cwd=d, capture_output=True, text=True)
        print("silent" if p.returncode == 0 else ("traceback" if "Traceback" in p.stderr else "clear"))
    """,
    "l2 strength=1e37 (infinite objective)": """
        from isoplast_lite.run import Config, run
        cfg = Config("random-label-digits", "l2", settings={"strength": 1e37}, seeds=1, n_tasks=1, steps_per_task=5, batch_size=8,
                     width=64, depth=2, n_train=16, probe_size=4)
        print("clear" if run(cfg, cache_dir=False, progress=False).rows.diverged.all() else "silent")
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
        import os, subprocess, sys, pandas as pd
        from pathlib import Path
        d = Path(os.environ["PROBE_DIR"])
        df = pd.DataFrame({"benchmark": "random-label-digits", "method": "adam", "settings": "{}", "lr": 1e-3, "seed": 0,
                           "task": [0, 1], "train_acc": [-0.5, 0.3], "test_acc": float("nan"), "diverged": "maybe"})
        df.to_csv(d / "r.csv", index=False)
        p = subprocess.run([sys.executable, "-m", "isoplast_lite", "plot", str(d / "r.csv"), "-o", str(d / "f.png")],
                           capture_output=True, text=True)
        print("traceback" if "Traceback" in p.stderr else ("silent" if p.returncode == 0 else "clear"))
    """,
    # the CLI's default budget (20 tasks x 800 steps): a single step at batch 10**7 is a legitimate
    # 20-second job (measured: 23 CPU s, 5 GB), 16 000 of them are not
    "--batch-size 10000000 (small net)": """
        import subprocess, sys
        try:
          p = subprocess.run([sys.executable, "-m", "isoplast_lite", "run", "--benchmark", "random-label-digits", "--method", "adam",
                            "--seeds", "1", "--width", "8", "--depth", "1",
                            "--batch-size", "10000000", "--no-cache", "--no-progress"], capture_output=True, text=True, timeout=150)
          print("traceback" if "Traceback" in p.stderr else ("clear" if p.returncode != 0 else "silent"))
        except subprocess.TimeoutExpired:
          print("hang")
    """,
    "--depth 10000 (small net)": """
        import subprocess, sys
        try:
          p = subprocess.run([sys.executable, "-m", "isoplast_lite", "run", "--benchmark", "random-label-digits", "--method", "adam",
                            "--width", "8", "--depth", "10000", "--no-cache", "--no-progress"], capture_output=True, text=True, timeout=150)
          print("traceback" if "Traceback" in p.stderr else ("clear" if p.returncode != 0 else "silent"))
        except subprocess.TimeoutExpired:
          print("hang")
    """,
    "disk full while writing --out": f"""
        import builtins, contextlib, errno, io, os
        from pathlib import Path
        from isoplast_lite import files as _files
        from isoplast_lite.__main__ import main
        d = Path(os.environ["PROBE_DIR"])
        real = builtins.open
        class Full(io.RawIOBase):
            def writable(self):
                return True
            def write(self, b):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        def fake(f, mode="r", *a, **k):
            return Full() if "w" in mode and str(f).startswith(str(d)) else real(f, mode, *a, **k)
        _files.open = fake
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main(["run", "--benchmark", "random-label-digits", "--method", "adam", *"{CLI_TINY}".split(), "--no-cache",
                      "--out", str(d / "r.csv")])
                code = 0
            except SystemExit as e:
                code = e.code
            except OSError:
                code = "traceback"
        text = err.getvalue()
        if code == "traceback" or "Traceback" in text:
            print("traceback")
        else:
            print("clear" if code not in (0, None) and str(d / "r.csv") in text else ("silent" if code in (0, None) else "unclear"))
    """,
    "SIGTERM to a sweep": f"""
        import os, signal, subprocess, sys, pandas as pd
        from pathlib import Path
        d = Path(os.environ["PROBE_DIR"])
        sizes = "--seeds 1 --tasks 2 --steps-per-task 3000 --batch-size 8 --width 8 --depth 1 --n-train 16 --no-progress".split()
        common = ["--benchmark", "random-label-digits", *sizes, "--cache-dir", str(d / "c")]
        subprocess.run([sys.executable, "-m", "isoplast_lite", "run", "--method", "adam", *common], check=True, capture_output=True)
        p = subprocess.Popen([sys.executable, "-m", "isoplast_lite", "sweep", "--method", "adam", "l2", *common, "--out", str(d / "o.csv")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in p.stdout:
            if "[1/2]" in line:
                break
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate()
        kept = (d / "o.csv").exists() and "adam" in set(pd.read_csv(d / "o.csv").method)
        if "Traceback" in err:
            print("traceback")
        elif not kept:
            print("loss")
        else:
            print("clear" if p.returncode == 143 and err.count("\\n") == 1 else "unclear")
    """,
    "shipped: edited search.csv": """
        import os, shutil
        from pathlib import Path
        from isoplast_lite import results
        base = Path(os.environ["PROBE_DIR"]) / "data"
        shutil.copytree(results._DATA, base)
        os.environ["ISOPLAST_RESULTS"] = str(base)
        f = base / "streams" / "search.csv"
        f.write_text(f.read_text().replace("0.", "0.9", 1))
        try:
            if hasattr(results, "load_file"):
                results.load_file("streams/search.csv")
            else:  # before: the chapter read it with pandas, unchecked
                import pandas as pd
                pd.read_csv(results.results_dir("streams") / "search.csv")
            print("silent")
        except ValueError as err:
            print("clear" if "search.csv" in str(err) and "\\n" not in str(err) else "traceback")
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
    "--out other.csv (not a results CSV)": f"""
        import os, subprocess, sys
        from pathlib import Path
        d = Path(os.environ["PROBE_DIR"])
        (d / "other.csv").write_text("a,b\\n1,2\\n")
        p = subprocess.run([sys.executable, "-m", "isoplast_lite", "run", "--benchmark", "random-label-digits", "--method", "adam",
                            *"{CLI_TINY}".split(), "--no-cache", "--out", str(d / "other.csv")], capture_output=True, text=True)
        print("loss" if (d / "other.csv").read_text() != "a,b\\n1,2\\n" else "clear")
    """,
    "repeated --set of one name": f"""
        import subprocess, sys
        p = subprocess.run([sys.executable, "-m", "isoplast_lite", "run", "--benchmark", "random-label-digits", "--method", "adamo",
                            "--set", "iso_strength=0.1", "--set", "iso_strength=0.2", *"{CLI_TINY}".split(), "--no-cache"],
                           capture_output=True, text=True)
        print("silent" if p.returncode == 0 else ("traceback" if "Traceback" in p.stderr else "clear"))
    """,
    "two sweeps on one --out": f"""
        import os, subprocess, sys, time, pandas as pd
        from pathlib import Path
        d = Path(os.environ["PROBE_DIR"])
        common = ["sweep", "--benchmark", "random-label-digits", "--seeds", "1", "--tasks", "2", "--steps-per-task", "200",
                  "--batch-size", "8", "--width", "8", "--depth", "2", "--n-train", "16", "--no-progress", "--out", str(d / "o.csv")]
        a = subprocess.Popen([sys.executable, "-m", "isoplast_lite", *common, "--method", "adam", "l2", "--cache-dir", str(d / "a")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        b = subprocess.run([sys.executable, "-m", "isoplast_lite", *common, "--method", "adamw", "--cache-dir", str(d / "b")],
                           capture_output=True, text=True)
        a.communicate()
        methods = set(pd.read_csv(d / "o.csv").method) if (d / "o.csv").exists() else set()
        both_ok = a.returncode == 0 and b.returncode == 0
        print("loss" if both_ok and methods != {{"adam", "l2", "adamw"}} else "clear")
    """,
}


def run_probe(name: str, code: str, root: Path, timeout: float) -> tuple:
    import site

    # -S: no site processing, so an editable install of another checkout cannot shadow ``root``;
    # the packages come from this interpreter's site-packages, after ``root``
    code = code.replace("[sys.executable, ", '[sys.executable, "-S", ')
    path = os.pathsep.join([str(root), *site.getsitepackages()])
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": path, "PROBE_DIR": tmp, "ISOPLAST_CACHE": str(Path(tmp) / "cache"),
               "ISOPLAST_PROGRESS": "0", "PYTHONWARNINGS": "ignore"}  # fmt: skip
        env.pop("ISOPLAST_RESULTS", None)
        try:
            p = subprocess.run([sys.executable, "-S", "-c", textwrap.dedent(code)], env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "hang", f"no answer in {timeout:g} s"
        lines = p.stdout.strip().splitlines()
        if "Traceback" in p.stderr and (not lines or lines[-1] not in ("clear", "silent", "loss", "traceback", "unclear")):
            return "traceback", p.stderr.strip().splitlines()[-1][:120]
        return (lines[-1] if lines else "traceback"), ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout to probe (default: this one)")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--only", nargs="+", default=None)
    args = p.parse_args(argv)
    counts = dict.fromkeys(("clear", "traceback", "silent", "hang", "loss", "unclear"), 0)
    print(f"| probe ({args.root}) | outcome | note |\n|---|---|---|")
    for name, code in PROBES.items():
        if args.only and name not in args.only:
            continue
        outcome, note = run_probe(name, code, args.root.resolve(), args.timeout)
        counts[outcome] = counts.get(outcome, 0) + 1
        print(f"| {name} | {outcome} | {note} |", flush=True)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
