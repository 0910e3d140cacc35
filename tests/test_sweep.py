"""Sweeps on an existing engine (isoplast_lite.sweep; submitit's LocalExecutor, 2 workers).

The distributed sweep runs every configuration as a separate job process, so its numbers equal
the serial sweep's only under the same process settings: both run in subprocesses with
``OMP_NUM_THREADS=1`` (the jobs also get ``torch.set_num_threads(1)``). A job that dies and
resumes from its checkpoint equals an uninterrupted run to float32 rounding (as in
tests/test_cache.py); finished configurations are compared byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from isoplast_lite.__main__ import main
from isoplast_lite.run import Config, cache_key
from isoplast_lite.sweep import SLURM_OPTIONS, cached_result, run_sweep

pytest.importorskip("submitit")

ROOT = Path(__file__).resolve().parents[1]
GRID = ["--benchmark", "random-label-digits", "--method", "adam", "adamo", "l2", "--set", "iso_strength=0.1"]
TINY = ["--seeds", "1", "--tasks", "3", "--steps-per-task", "20", "--batch-size", "8", "--width", "16", "--depth", "2", "--n-train", "32", "--no-progress"]
# long enough per job (a few seconds) for a kill to land while a configuration trains
SLOW = ["--seeds", "1", "--tasks", "8", "--steps-per-task", "600", "--batch-size", "16", "--width", "32", "--depth", "2", "--n-train", "64", "--no-progress"]


def _configs(sizes):
    args = dict(zip(sizes[0:-1:2], sizes[1::2]))
    common = dict(seeds=int(args["--seeds"]), n_tasks=int(args["--tasks"]), steps_per_task=int(args["--steps-per-task"]),
                  batch_size=int(args["--batch-size"]), width=int(args["--width"]), depth=int(args["--depth"]),
                  n_train=int(args["--n-train"]))  # fmt: skip
    return [Config("random-label-digits", m, settings={"iso_strength": 0.1} if m == "adamo" else None, **common) for m in ("adam", "adamo", "l2")]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}


def _sweep(out: Path, cache: Path, sizes, *extra, **popen):
    argv = [sys.executable, "-m", "isoplast_lite", "sweep", *GRID, *sizes, "--cache-dir", str(cache), "--out", str(out), *extra]
    if popen:
        return subprocess.Popen(argv, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    return subprocess.run(argv, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)


def _finished(cache: Path):
    """{config folder: (inode, mtime_ns, sha256)} of every finished entry."""
    out = {}
    for f in cache.glob("*/result.csv"):
        st = f.stat()
        out[f.parent.name] = (st.st_ino, st.st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
    return out


def _workers(session: int):
    """PIDs of the job processes (submitit tasks) in the process session ``session``, newest first."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        sid = int(stat.rsplit(")", 1)[1].split()[3])  # fields after the name: state ppid pgrp session
        if sid == session and "submitit.core._submit" in cmd:
            pids.append((int(stat.rsplit(")", 1)[1].split()[19]), int(d.name)))  # (start time, pid)
    return [pid for _, pid in sorted(pids, reverse=True)]  # the newest first


def _wait_for(condition, timeout=300.0, what="", proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def serial_slow(tmp_path_factory):
    """The serial sweep of the SLOW grid, in a subprocess with one thread: (csv bytes, cache)."""
    d = tmp_path_factory.mktemp("serial")
    proc = _sweep(d / "serial.csv", d / "cache", SLOW)
    assert proc.returncode == 0, proc.stderr
    return (d / "serial.csv").read_bytes(), d / "cache"


def test_distributed_sweep_file_equals_the_serial_one(tmp_path):
    serial = _sweep(tmp_path / "serial.csv", tmp_path / "c-serial", TINY)
    assert serial.returncode == 0, serial.stderr
    dist = _sweep(tmp_path / "dist.csv", tmp_path / "c-dist", TINY, "--executor", "local", "--workers", "2")
    assert dist.returncode == 0, dist.stderr
    assert (tmp_path / "dist.csv").read_bytes() == (tmp_path / "serial.csv").read_bytes()
    df = pd.read_csv(tmp_path / "dist.csv")
    assert df.method.tolist() == ["adam"] * 3 + ["adamo"] * 3 + ["l2"] * 3  # the serial order, one tidy file
    # each configuration ran as its own job process (one log folder each), into the same cache
    assert len([p for p in (tmp_path / "c-dist" / "jobs").iterdir() if p.name.isdigit()]) == 3
    assert {k: v[2] for k, v in _finished(tmp_path / "c-dist").items()} == {k: v[2] for k, v in _finished(tmp_path / "c-serial").items()}
    # a second distributed sweep submits nothing: every configuration is served by the cache
    before = _finished(tmp_path / "c-dist")
    again = _sweep(tmp_path / "again.csv", tmp_path / "c-dist", TINY, "--executor", "local", "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert len([p for p in (tmp_path / "c-dist" / "jobs").iterdir() if p.name.isdigit()]) == 3
    assert _finished(tmp_path / "c-dist") == before
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "serial.csv").read_bytes()


def _assert_equals_serial(out: Path, serial: bytes, exact_keys):
    got, ref = pd.read_csv(out), pd.read_csv(pd.io.common.BytesIO(serial))
    pd.testing.assert_frame_equal(got, ref, check_exact=False, rtol=1e-5, atol=1e-8)  # a resumed job: float32 rounding
    for key in exact_keys:  # the configurations that had finished: byte for byte
        cfg = next(c for c in _configs(SLOW) if cache_key(c) == key)
        rows_got = got[(got.method == cfg.method)].to_csv(index=False)
        rows_ref = ref[(ref.method == cfg.method)].to_csv(index=False)
        assert rows_got == rows_ref, cfg.method


def test_killing_a_worker_loses_no_finished_configuration(tmp_path, serial_slow):
    serial, _ = serial_slow
    cache, out = tmp_path / "cache", tmp_path / "dist.csv"
    proc = _sweep(out, cache, SLOW, "--executor", "local", "--workers", "2", start_new_session=True)
    try:
        # two configurations finished; the third, the only one left, part-way (a checkpoint)
        def state():
            done = _finished(cache)
            partial = [d for d in cache.glob("*/*.ckpt") if d.parent.name not in done]
            workers = _workers(proc.pid)
            return (done, workers) if len(done) == 2 and partial and workers else None

        done, victim = _wait_for(state, what="a finished configuration and a worker training another")
        os.kill(victim[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "died" in stderr and "submitting it again" in stderr, stderr
    after = _finished(cache)
    assert len(after) == 3
    for key, ident in done.items():  # never recomputed: the same file, never rewritten
        assert after[key] == ident, key
    _assert_equals_serial(out, serial, exact_keys=done)


def test_a_killed_sweep_is_completed_from_the_cache_by_a_rerun(tmp_path, serial_slow):
    serial, _ = serial_slow
    cache, out = tmp_path / "cache", tmp_path / "dist.csv"
    proc = _sweep(out, cache, SLOW, "--executor", "local", "--workers", "2", start_new_session=True)
    try:
        done = _wait_for(lambda: _finished(cache), what="a finished configuration")
    finally:  # the sweep and all its workers die at once
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = _finished(cache)
    assert 1 <= len(done) < 3
    jobs_before = {p.name for p in (cache / "jobs").iterdir() if p.name.isdigit()}
    rerun = _sweep(out, cache, SLOW, "--executor", "local", "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr
    after = _finished(cache)
    assert len(after) == 3 and all(after[k] == v for k, v in done.items())
    new_jobs = {p.name for p in (cache / "jobs").iterdir() if p.name.isdigit()} - jobs_before
    assert len(new_jobs) == 3 - len(done), "the re-run submitted a configuration that had finished"
    _assert_equals_serial(out, serial, exact_keys=done)


def test_cached_result_never_trains(tmp_path):
    cfg = _configs(TINY)[0]
    assert cached_result(cfg, tmp_path) is None and not list(tmp_path.iterdir())
    df = run_sweep([cfg, cfg], cache_dir=tmp_path, progress=False)  # serial, in this process
    pd.testing.assert_frame_equal(cached_result(cfg, tmp_path), df.iloc[: len(df) // 2].reset_index(drop=True))


def test_run_sweep_rejects_bad_arguments(tmp_path):
    cfg = _configs(TINY)[:1]
    with pytest.raises(ValueError, match="executor.*serial.*'ray'"):
        run_sweep(cfg, executor="ray")
    with pytest.raises(ValueError, match="cache_dir=False.*'local'"):
        run_sweep(cfg, executor="local", cache_dir=False)
    with pytest.raises(ValueError, match="workers"):
        run_sweep(cfg, executor="local", cache_dir=tmp_path, workers=0)
    with pytest.raises(TypeError, match=r"configs\[0\]"):
        run_sweep(["adam"])
    with pytest.raises(ValueError, match="slurm key.*'queue'"):
        run_sweep(cfg, executor="slurm", cache_dir=tmp_path, slurm={"queue": "gpu"})


def test_cli_rejects_what_a_distributed_sweep_cannot_do(tmp_path, capsys):
    base = ["sweep", *GRID, *TINY, "--out", str(tmp_path / "x.csv")]
    for extra, needle in ((["--no-cache", "--executor", "local"], "--no-cache with --executor local"),
                          (["--executor", "slurm", "--cache-dir", str(tmp_path)], "sbatch"),
                          (["--executor", "ray"], "--executor")):  # fmt: skip
        if "slurm" in extra and any((Path(p) / "sbatch").exists() for p in os.environ.get("PATH", "").split(os.pathsep)):
            continue  # pragma: no cover - a SLURM login node
        with pytest.raises(SystemExit) as info:
            main(base + extra)
        err = capsys.readouterr().err
        assert info.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.csv").exists()


def test_slurm_jobs_ask_for_what_the_flags_say(tmp_path, monkeypatch):
    from isoplast_lite.sweep import _make_executor

    # submitit's SLURM executor only looks for `srun` on PATH when it is made; nothing is submitted
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    ex = _make_executor("slurm", tmp_path, 16, {"partition": "gpu", "gpus_per_job": 1, "cpus_per_job": 4, "time_min": 720}, None)
    text = ex._executor._make_submission_file_text("python -m job", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=4", "#SBATCH --time=720"):
        assert line in text, text
    assert ex._executor.parameters.get("array_parallelism", ex._executor.parameters.get("slurm_array_parallelism", 16)) == 16
    assert set(SLURM_OPTIONS) == {"partition", "account", "gpus_per_job", "cpus_per_job", "time_min", "mem_gb"}


def test_help_shows_the_cluster_form(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "--executor slurm --slurm-partition gpu" in text and "--device cuda" in text and "--executor local" in text


# --- sweeps that finish, and a local executor that behaves (issues 27 and 21) ---------------------

FAILING_MODULE = '''
from isoplast_lite.methods import Adam, register_method


@register_method
class Fragile(Adam):
    """Adam whose after_step hook raises on the second task."""

    name = "fragile"

    def after_step(self, stack, opt, ctx):
        if ctx.task == 1:
            raise KeyError("boom in the hook")
'''


def test_a_failing_configuration_is_recorded_and_the_others_finish(tmp_path):
    (tmp_path / "fragile_method.py").write_text(FAILING_MODULE)
    out = tmp_path / "s.csv"
    argv = [sys.executable, "-m", "isoplast_lite", "sweep", "--import", "fragile_method", "--benchmark", "random-label-digits",
            "--method", "adam", "fragile", "l2", *TINY, "--cache-dir", str(tmp_path / "c"), "--out", str(out)]  # fmt: skip
    proc = subprocess.run(argv, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("failed:")]
    assert len(failed) == 1 and "'fragile'" in failed[0] and "hook after_step" in failed[0] and "KeyError" in failed[0], proc.stderr
    assert "2 of 3 configurations finished, 1 failed" in proc.stdout
    df = pd.read_csv(out)
    assert sorted(df.method.unique()) == ["adam", "l2"] and len(df) == 2 * 3  # every good row, the later one included


def test_run_sweep_records_failures_in_every_executor(tmp_path):
    from isoplast_lite import methods

    cfgs = _configs(TINY)
    calls = []

    class Broken(methods.Adam):
        name = "broken-in-test"

        def setup(self, stack, cfg):
            raise ZeroDivisionError("setup went wrong")

    methods.register_method(Broken, replace=True)
    try:
        bad = Config("random-label-digits", "broken-in-test", **{k: getattr(cfgs[0], k) for k in ("seeds", "n_tasks", "steps_per_task", "batch_size", "width", "depth", "n_train")})
        failures = []
        with pytest.warns(RuntimeWarning, match="configuration failed"):
            df = run_sweep([cfgs[0], bad, cfgs[2]], cache_dir=tmp_path, progress=False, failures=failures, on_result=lambda i, c, d: calls.append(i))
        assert calls == [0, 2] and sorted(df.method.unique()) == ["adam", "l2"]
        assert len(failures) == 1 and failures[0].index == 1 and "hook setup" in failures[0].error and "ZeroDivisionError" in failures[0].error
        from isoplast_lite.sweep import SweepError

        with pytest.warns(RuntimeWarning), pytest.raises(SweepError, match="1 of 2 configurations failed"):
            run_sweep([bad, cfgs[0]], cache_dir=tmp_path, progress=False)
    finally:
        methods.METHODS.pop("broken-in-test", None)


def _session_processes(session: int):
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            after = stat.rsplit(")", 1)[1].split()
            if int(after[3]) == session and after[0] != "Z":
                pids.append(int(d.name))
    return pids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_terminated_local_sweep_leaves_no_process(tmp_path, sig):
    cache, out = tmp_path / "cache", tmp_path / "dist.csv"
    proc = _sweep(out, cache, SLOW, "--executor", "local", "--workers", "2", start_new_session=True)
    try:
        _wait_for(lambda: len(_workers(proc.pid)) == 2, what="two workers training")
        os.kill(proc.pid, sig)  # the sweep alone, not its process group
        proc.communicate(timeout=120)
        _wait_for(lambda: not _session_processes(proc.pid), timeout=30, what="every worker and controller to end")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode != 0


def test_a_killed_worker_is_reported_as_killed(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "dist.csv"
    proc = _sweep(out, cache, SLOW, "--executor", "local", "--workers", "2", "--max-retries", "0", start_new_session=True)
    try:
        # a worker that is training (it has written a checkpoint): its job has started
        victim = _wait_for(lambda: list(cache.glob("*/*.ckpt")) and len(_workers(proc.pid)) == 2 and _workers(proc.pid), what="a worker training")
        os.kill(victim[-1], signal.SIGTERM)  # the oldest worker
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, stderr
    assert "killed by SIGTERM" in stderr, stderr
    assert "2 of 3 configurations finished, 1 failed" in stdout


def test_serial_and_local_sweeps_give_identical_rows_with_default_threads(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    base = [sys.executable, "-m", "isoplast_lite", "sweep", *GRID, *TINY]
    for name, extra in (("serial", []), ("local", ["--executor", "local", "--workers", "2"])):
        proc = subprocess.run([*base, "--cache-dir", str(tmp_path / name), "--out", str(tmp_path / f"{name}.csv"), *extra],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "local.csv").read_bytes() == (tmp_path / "serial.csv").read_bytes()  # every column


def test_chapter_8_gpu_commands_parse_and_expand_to_valid_configurations():
    """The full-scale commands chapter 8 prints: every one parses, every --set applies, and each
    configuration it would submit passes the runner's checks (nothing runs: no GPU here)."""
    import re
    import shlex
    from pathlib import Path

    from isoplast_lite.__main__ import build_parser, config_from_args, settings_grids
    from isoplast_lite.run import check_config

    text = (Path(__file__).resolve().parents[1] / "notebooks" / "08-reproducing-benchmarks.md").read_text()
    commands = [c.replace("\\\n", " ") for c in re.findall(r"^python -m isoplast_lite (?:sweep|run) .*?(?<!\\)$", text, re.M | re.S)]
    sweeps = [c for c in commands if " sweep " in c]
    assert len(sweeps) >= 2, commands
    for command in sweeps:
        # the device is checked where the command runs (a GPU node); here everything else is
        args = build_parser().parse_args([a if a != "cuda" else "cpu" for a in shlex.split(command)[3:]])
        grids = settings_grids(args)
        assert "fresh" in grids, "a plasticity measure needs the fresh reference beside the methods"
        assert grids["adamo"] and all(s["iso_strength"] == 1e-3 for s in grids["adamo"])
        assert {s.get("iso_scaling") for s in grids["adamo"]} == {"lr", "schedule"}
        for benchmark in args.benchmark:
            for method, settings_list in grids.items():
                for settings in settings_list:
                    for lr in args.lr:
                        check_config(config_from_args(args, benchmark, method, settings, lr), max_hours=1e6)  # a CPU-time estimate says nothing of a GPU
