"""Issue 16: robust under bad input and faults.

One section per item of the issue's probe list (each test fails on the code before the fix):
1. results lost (--out checked only after training); 2. files destroyed (non-regular files
replaced, symlinks broken); 3. plausible numbers from non-finite input; 4. one diverging
config kills a sweep; 5. raw tracebacks for ordinary CLI input; 6. AdamO traps; 7. leftovers
and silent repairs. Then property-based tests: random bad arguments at every CLI command, random
non-finite tensors at every diagnostic.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isoplast_lite import (
    AdamO,
    GroupSort,
    OrthogonalLinear,
    dead_fraction,
    dormant_fraction,
    effective_rank,
    empirical_ntk,
    isometry_grad,
    isometry_penalty,
    layer_jacobian_svdvals,
    ntk_summary,
    relu_mlp,
    srank,
    stable_rank,
)
from isoplast_lite import files, methods, tasks
from isoplast_lite import run as run_mod
from isoplast_lite.__main__ import main
from isoplast_lite.diagnostics import dead_units, dormant_units, hidden_features, matrix_isometry
from isoplast_lite.isometry import partial_isometry_measures
from isoplast_lite.results import expand_settings
from isoplast_lite.run import LIMITS, RESULT_COLUMNS, Config, ConfigError, cache_key, check_config, run

from _cli import cli

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--seeds", "2", "--tasks", "2", "--steps-per-task", "5", "--batch-size", "8", "--width", "8", "--depth", "2",
        "--n-train", "16", "--no-progress"]  # fmt: skip
RUN = ["run", "--benchmark", "random-label-digits", "--method", "adam", *TINY]
CFG = Config("permuted-digits", "adam", seeds=2, n_tasks=2, steps_per_task=5, batch_size=8, width=8, depth=2, n_train=16, probe_size=4)


def _assert_one_line_error(status, err, *needles):
    assert status == 2, (status, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "error:" in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture
def no_training(monkeypatch):
    """Any training is a test failure: bad input must be refused before the work starts."""

    def boom(*args, **kwargs):
        raise AssertionError("training started although an input was bad")

    monkeypatch.setattr(run_mod, "train_seed_batch", boom)


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(proc.stdout)


# ------------------------------------------------------------------ 1. results lost


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_1_out_is_checked_before_training(tmp_path, no_training, command):
    (tmp_path / "file").write_text("x")
    bad = [str(tmp_path), str(tmp_path / "file" / "res.csv")]  # an existing folder, a path under a file
    if os.path.isdir("/proc/self"):
        bad.append("/proc/res.csv")  # a folder nobody (not even root) can create files in
    argv = [command, "--benchmark", "random-label-digits", "--method", "adam", *TINY, "--no-cache"]
    for out in bad:
        status, _, err = cli([*argv, "--out", out])
        _assert_one_line_error(status, err, "--out", repr(out))


# ------------------------------------------------------------------ 2. files destroyed


def test_2_out_never_replaces_a_non_regular_file(tmp_path, no_training):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    status, _, err = cli([*RUN, "--no-cache", "--out", str(fifo)])
    _assert_one_line_error(status, err, "--out", "FIFO", "never replaced")
    assert fifo.is_fifo()
    with pytest.raises(ValueError, match="never replaced"):
        files.atomic_write(fifo, lambda h: h.write(b"x"))
    assert fifo.is_fifo()


def test_2_out_writes_through_a_symlink(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text(",".join(RESULT_COLUMNS) + "\n")  # old results of this tool (anything else needs --force)
    os.chmod(real, 0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(real.name)
    assert cli([*RUN, "--no-cache", "--out", str(link)])[0] == 0
    assert link.is_symlink() and os.readlink(link) == real.name
    df = pd.read_csv(real)
    assert tuple(df.columns) == RESULT_COLUMNS and len(df) == 4
    assert (real.stat().st_mode & 0o777) == 0o640  # the replaced file keeps its permissions


# ------------------------------------------------------------------ 3. plausible numbers from non-finite input


def _model():
    return relu_mlp(4, 6, 2, 3, generator=torch.Generator().manual_seed(0))


def _with(value, shape=(5, 4), index=(1, 2)):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    x[index] = value
    return x


X = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
# name -> (argument named in the error, call on a tensor holding one non-finite entry)
TENSOR_DIAGNOSTICS = {
    "layer_jacobian_svdvals": ("x", lambda t: layer_jacobian_svdvals(_model(), t)),
    "dormant_fraction": ("x", lambda t: dormant_fraction(_model(), t)),
    "dead_fraction": ("x", lambda t: dead_fraction(_model(), t)),
    "hidden_features": ("x", lambda t: hidden_features(_model(), t)),
    "empirical_ntk.x1": ("x1", lambda t: empirical_ntk(_model(), t)),
    "empirical_ntk.x2": ("x2", lambda t: empirical_ntk(_model(), X, t)),
    "ntk_summary": ("ntk", lambda t: ntk_summary(t @ t.T)),
    "effective_rank": ("features", effective_rank),
    "srank": ("features", srank),
    "stable_rank": ("W", stable_rank),
    "dormant_units": ("features", dormant_units),
    "dead_units": ("features", dead_units),
    "matrix_isometry": ("W", matrix_isometry),
    "isometry_penalty": ("W", isometry_penalty),
    "isometry_grad": ("W", isometry_grad),
    "partial_isometry_measures": ("W", partial_isometry_measures),
}
MODEL_DIAGNOSTICS = {
    "layer_jacobian_svdvals": lambda m: layer_jacobian_svdvals(m, X),
    "dormant_fraction": lambda m: dormant_fraction(m, X),
    "dead_fraction": lambda m: dead_fraction(m, X),
    "empirical_ntk": lambda m: empirical_ntk(m, X),
}


@pytest.mark.parametrize("name", sorted(TENSOR_DIAGNOSTICS))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_3_diagnostics_reject_a_non_finite_tensor(name, value):
    arg, call = TENSOR_DIAGNOSTICS[name]
    with pytest.raises(ValueError, match=rf"^{arg} must contain only finite values"):
        call(_with(value))


@pytest.mark.parametrize("name", sorted(MODEL_DIAGNOSTICS))
def test_3_diagnostics_reject_a_model_with_non_finite_weights(name):
    model = _model()
    with torch.no_grad():
        model[1][0].weight[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"model must have finite parameters.*1\.0\.weight"):
        MODEL_DIAGNOSTICS[name](model)


@pytest.mark.parametrize("scale", [1e-30, 1e20, 1e30])
def test_3_scale_invariant_measures_are_scale_safe(scale):
    W = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    for measure in (stable_rank, effective_rank):
        assert float(measure(W * scale)) == pytest.approx(float(measure(W)), rel=1e-4), measure.__name__
    assert int(srank(W * scale)) == int(srank(W))
    K = W @ W.T + 0.1 * torch.eye(6)
    a = ntk_summary(K, generator=torch.Generator().manual_seed(0))
    b = ntk_summary(K * scale, generator=torch.Generator().manual_seed(0))
    for key in ("condition_number", "effective_rank", "progress_mean", "progress_kantorovich"):
        assert b[key] == pytest.approx(a[key], rel=1e-3), key


def test_3_modules_let_nan_through_visibly():
    """GroupSort and OrthogonalLinear do not check in forward (documented): NaN stays NaN."""
    x = torch.tensor([[1.0, math.nan, 3.0, -math.inf]])
    y = GroupSort(2)(x)
    assert int(torch.isnan(y).sum()) == 1 and int(torch.isinf(y).sum()) == 1
    layer = OrthogonalLinear(4, 4, generator=torch.Generator().manual_seed(0))
    assert not torch.isfinite(layer(x)).any()


# ------------------------------------------------------------------ 4. divergence is a result


def test_4_a_diverging_config_is_recorded_cached_and_not_redone(tmp_path, monkeypatch):
    # (AdamO now refuses an isometry step that cannot converge, so the exploding step is AdamW's decay)
    cfg = Config("random-label-digits", "adamw", settings={"weight_decay": 1000.0}, lr=0.01, seeds=2, n_tasks=3, steps_per_task=20,
                 batch_size=8, width=16, depth=2, n_train=32, probe_size=4)  # fmt: skip
    df = run(cfg, cache_dir=tmp_path, progress=False).rows
    assert tuple(df.columns) == RESULT_COLUMNS and len(df) == 6
    assert df.diverged.all()  # lr * weight_decay = 10: each step multiplies every weight by -9: non-finite within 60 steps
    assert df[list(run_mod.METRIC_COLUMNS)].isna().all().all()  # never a plausible number
    monkeypatch.setattr(run_mod, "train_seed_batch", lambda *a, **k: (_ for _ in ()).throw(AssertionError("redone")))
    result = run(cfg, cache_dir=tmp_path, progress=False, spectra=True)
    again, spectra = result.rows, result.spectra
    pd.testing.assert_frame_equal(again, df)
    assert len(spectra) == 6 * 4 * 10 and spectra.eigenvalue.isna().all()  # a diverged seed's eigenvalues are NaN too


def test_4_one_seed_diverging_leaves_the_others_untouched(monkeypatch):
    reference = run(CFG, cache_dir=False, progress=False).rows

    def poison(self, stack, opt, ctx):  # seed 1's weights become NaN in task 1
        if ctx.task == 1 and ctx.step == 2:
            with torch.no_grad():
                stack.params["0.0.weight"][1, 0, 0] = math.nan

    monkeypatch.setattr(methods.Adam, "after_step", poison)
    df = run(CFG, cache_dir=False, progress=False).rows
    assert df.diverged.tolist() == [False, False, False, True]  # (seed, task) = (0,0), (0,1), (1,0), (1,1)
    pd.testing.assert_frame_equal(df.iloc[:3], reference.iloc[:3], check_exact=True)
    assert df.iloc[3][list(run_mod.METRIC_COLUMNS)].isna().all()


def test_4_sweep_goes_on_after_a_diverging_config(tmp_path):
    out = tmp_path / "sweep.csv"
    # AdamO refuses an isometry step that cannot converge (8 lr lambda > 2), so the diverging config is AdamW's
    argv = ["sweep", "--benchmark", "random-label-digits", "--method", "adamw", "--set", "weight_decay=0.1,1e6,0.01",
            "--lr", "0.01", *TINY, "--no-cache", "--out", str(out)]  # fmt: skip
    status, stdout, _ = cli(argv)
    assert status == 0 and "diverged" in stdout
    df = expand_settings(pd.read_csv(out))
    assert sorted(df.weight_decay.unique()) == [0.01, 0.1, 1e6]  # the third value ran
    assert df.groupby("weight_decay").diverged.any().to_dict() == {0.01: False, 0.1: False, 1e6: True}
    for _, rows in df.groupby(["weight_decay", "seed"]):  # diverged from a task on, for good
        flags = rows.sort_values("task").diverged.tolist()
        assert flags == sorted(flags)
    png = tmp_path / "sweep.png"
    assert cli(["plot", str(out), "-o", str(png)])[0] == 0 and png.stat().st_size > 0


def test_4_absurd_learning_rate_is_refused_before_training(no_training):
    status, _, err = cli([*RUN, "--no-cache", "--lr", "1e300"])
    _assert_one_line_error(status, err, "--lr", "1e300", "(0, 10]")


# ------------------------------------------------------------------ 5. one line, exit 2, for ordinary bad input


def _bad_files(folder: Path):
    (folder / "empty.csv").write_bytes(b"")
    (folder / "header.csv").write_text(",".join(RESULT_COLUMNS) + "\n")
    (folder / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (folder / "schema.csv").write_text("a,b\n1,2\n")
    (folder / "file").write_text("x")
    good = folder / "good.csv"
    pd.DataFrame([dict(zip(RESULT_COLUMNS, ("random-label-digits", "adam", 0.0, 1e-3, 0, 0) + (0.5,) * 14 + (False,)))]).to_csv(good, index=False)
    return good


def _probes(folder: Path):
    good = str(_bad_files(folder))
    f = str(folder)
    return [
        ([*RUN, "--device", "cuda"], ["--device", "'cuda'"]),
        ([*RUN, "--n-train", "1438"], ["--n-train", "1438", "1437"]),
        (["run", "--benchmark", "random-label-digits", "--method", "aei-adam", *TINY, "--width", "3"], ["--width 3", "even"]),
        ([*RUN, "--cache-dir", f + "/file"], ["--cache-dir", "--no-cache"]),
        ([*RUN, "--steps-per-task", str(10**12)], ["--steps-per-task", str(10**12), str(LIMITS["steps_per_task"])]),
        ([*RUN, "--depth", str(10**12)], ["--depth", str(10**12), str(LIMITS["depth"])]),
        ([*RUN, "--width", "1000000", "--depth", "10000"], ["--width 1000000", "--depth 10000", "GB"]),
        (["plot", f + "/missing.csv", "-o", f + "/x.png"], ["no such file"]),
        (["plot", f + "/nodir/r.csv", "-o", f + "/x.png"], ["no such file"]),
        (["plot", f + "/empty.csv", "-o", f + "/x.png"], ["empty"]),
        (["plot", f + "/header.csv", "-o", f + "/x.png"], ["no rows"]),
        (["plot", f + "/binary.csv", "-o", f + "/x.png"], ["binary"]),
        (["plot", f + "/schema.csv", "-o", f + "/x.png"], ["missing the columns"]),
        (["plot", f, "-o", f + "/x.png"], ["folder"]),
        (["plot", good, "-o", f + "/x.png", "--measures", "nope"], ["--measures", "'nope'", "dead"]),
        (["plot", good, "-o", f + "/x.xyz"], ["-o/--output", ".xyz", "png"]),
        (["plot", good, "-o", f + "/x"], ["-o/--output", "no extension"]),
        (["plot", good, "-o", f + "/file/x.png"], ["-o/--output", "not a folder"]),
    ]


def test_5_ordinary_bad_input_is_one_line_and_exit_2(tmp_path, no_training):
    for argv, needles in _probes(tmp_path):
        if "cuda" in argv and torch.cuda.is_available():  # pragma: no cover - GPU machines
            continue
        status, out, err = cli(argv)
        _assert_one_line_error(status, err, *needles)
        assert out == ""
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.xyz").exists()


def test_5_debug_shows_the_traceback(no_training):
    with pytest.raises(Exception, match="--n-train 1438") as info:  # raised, not reported: Python prints the traceback
        main([*RUN, "--n-train", "1438", "--debug"])
    assert isinstance(info.value.__cause__, ConfigError) and info.value.__cause__.fields == {"n_train": 1438}


def test_5_a_real_process_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "ISOPLAST_CACHE": str(tmp_path / "c"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "isoplast_lite", *RUN, "--n-train", "100000"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "--n-train 100000" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "c").exists()  # nothing was written


def test_5_library_check_config_names_the_fields():
    with pytest.raises(ConfigError, match="n_train=1438.*1437") as info:
        check_config(Config("random-label-digits", "adam", n_train=1438))
    assert info.value.fields == {"n_train": 1438}
    with pytest.raises(ConfigError, match="width=3"):
        check_config(Config("permuted-digits", "aei-adamo", width=3))
    with pytest.raises(ConfigError, match="device='nonsense'"):
        check_config(Config("permuted-digits", "adam", device="nonsense"))
    with pytest.raises(ValueError, match="depth must be an int with 1 <= depth <= 10000"):
        Config("permuted-digits", "adam", depth=10**12)
    check_config(Config("permuted-digits", "adam", n_train=None))  # the whole split is allowed


def test_5_source_sizes_match_the_loaders():
    for name in tasks.OFFLINE_SOURCES:
        src = tasks.load_source(name)
        assert tasks.SOURCE_SIZES[name] == (src.x_train.shape[0], src.in_dim, src.n_classes)


# ------------------------------------------------------------------ 6. AdamO traps


def test_6_adamo_refuses_an_adam_state_dict():
    p = torch.nn.Parameter(torch.randn(3, 3))
    adam = torch.optim.Adam([p])
    p.grad = torch.ones(3, 3)
    adam.step()
    opt = AdamO([p])
    with pytest.raises(ValueError, match=r"not an AdamO state dict.*iso_strength.*amsgrad"):
        opt.load_state_dict(adam.state_dict())
    own = AdamO([p])
    own.step()
    opt.load_state_dict(own.state_dict())  # its own kind loads


def test_6_adamo_rejects_a_misspelt_group_key():
    p = torch.nn.Parameter(torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"unknown key 'iso_strenght' \(did you mean 'iso_strength'\?\)"):
        AdamO([{"params": [p], "iso_strenght": 0.1}])


@pytest.mark.parametrize("key,value", [("lr", -1.0), ("iso_strength", math.nan), ("betas", (0.9, 1.5)), ("iso_every", 0)])
def test_6_adamo_rechecks_hyperparameters_at_each_step(key, value):
    p = torch.nn.Parameter(torch.randn(3, 3))
    opt = AdamO([p])
    opt.param_groups[0][key] = value
    p.grad = torch.ones(3, 3)
    before = p.detach().clone()
    with pytest.raises(ValueError, match=rf"param_groups\[0\]: {key.split('_')[0]}"):
        opt.step()
    assert torch.equal(p.detach(), before)  # refused before anything moved


@pytest.mark.parametrize("shape,seed_dims", [((0, 3), 0), ((3, 0), 0), ((2, 0, 3), 1), ((0, 3, 2, 2), 0)])
def test_6_adamo_steps_empty_parameters(shape, seed_dims):
    p = torch.nn.Parameter(torch.zeros(shape))
    opt = AdamO([p], iso_strength=0.1, seed_dims=seed_dims)
    p.grad = torch.zeros(shape)
    opt.step()
    assert p.shape == shape


def test_6_adamo_non_finite_gradients_propagate_as_documented():
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(4, 3, generator=g)
    grad = torch.randn(4, 3, generator=g)
    grad[1, 2] = math.nan
    a, b, c = (torch.nn.Parameter(w0.clone()) for _ in range(3))
    opts = [AdamO([a], iso_strength=0.0), torch.optim.Adam([b]), AdamO([c], iso_strength=0.1)]
    for step in range(2):
        for p, opt in zip((a, b, c), opts):
            p.grad = grad.clone()
            opt.step()
        if step == 0:  # like Adam: exactly the entry with the NaN gradient becomes NaN
            assert torch.equal(torch.isnan(a), torch.isnan(grad)) and torch.equal(torch.isnan(c), torch.isnan(grad))
    assert torch.allclose(a, b, equal_nan=True)  # iso_strength=0 is Adam, NaN included
    assert torch.isnan(c).all()  # the isometry step's matrix products spread it to the whole matrix


# ------------------------------------------------------------------ 7. leftovers and silent repairs


def test_7_temp_files_of_interrupted_writes_are_cleaned_at_the_next_start(tmp_path):
    folder = tmp_path / cache_key(CFG)
    folder.mkdir()
    dead = _dead_pid()
    stale = [folder / f".result.csv~{files._HOST}~{dead}~0badc0de.tmp", folder / ".seeds-0-1.ckpt.k2j4h5g6.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale[1], (old, old))  # an earlier version's name: removed once older than a day
    live = folder / f".seeds-0-1.csv~{files._HOST}~{os.getpid()}~00c0ffee.tmp"  # a write under way
    live.write_bytes(b"in progress")
    run(CFG, cache_dir=tmp_path, progress=False)
    assert not any(p.exists() for p in stale)
    assert live.exists()
    # the command line cleans the leftovers of its --out file too
    out = tmp_path / "r.csv"
    leftover = tmp_path / f".r.csv~{files._HOST}~{dead}~12345678.tmp"
    leftover.write_bytes(b"partial")
    assert cli([*RUN, "--cache-dir", str(tmp_path), "--out", str(out)])[0] == 0
    assert not leftover.exists() and out.exists()


def test_7_an_edited_cache_entry_is_detected_and_recomputed(tmp_path):
    good = run(CFG, cache_dir=tmp_path, progress=False).rows
    folder = tmp_path / cache_key(CFG)
    assert (folder / "result.csv.sha256").read_text().split()[0] == hashlib.sha256((folder / "result.csv").read_bytes()).hexdigest()
    edited = good.copy()
    edited.loc[0, "train_acc"] = 0.123  # a plausible value, same schema
    edited.to_csv(folder / "result.csv", index=False)
    for part in folder.glob("seeds-*.csv"):
        edited.to_csv(part, index=False)
    with pytest.warns(RuntimeWarning, match="does not match its checksum"):
        again = run(CFG, cache_dir=tmp_path, progress=False).rows
    pd.testing.assert_frame_equal(again, good, check_exact=False, rtol=1e-6, atol=1e-9)


def test_7_legacy_cache_entries_without_checksum_or_diverged_column_are_served(tmp_path, monkeypatch):
    good = run(CFG, cache_dir=tmp_path, progress=False).rows
    folder = tmp_path / cache_key(CFG)
    good.drop(columns="diverged").to_csv(folder / "result.csv", index=False)  # as an earlier version wrote it
    (folder / "result.csv.sha256").unlink()
    monkeypatch.setattr(run_mod, "train_seed_batch", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    pd.testing.assert_frame_equal(run(CFG, cache_dir=tmp_path, progress=False).rows, good)


def test_7_a_download_failing_sha256_is_kept_aside_with_a_warning(tmp_path, monkeypatch):
    blob = b"the real file"
    server = tmp_path / "server"
    server.mkdir()
    (server / "a.bin").write_bytes(blob)
    folder = tmp_path / "data"
    folder.mkdir()
    partial = folder / "a.bin"
    partial.write_bytes(blob[:5])  # an interrupted download of an earlier version
    sha = hashlib.sha256(blob).hexdigest()
    with pytest.warns(RuntimeWarning, match=r"failed its SHA-256 check.*kept aside as .*a\.bin\.failed-sha256"):
        with pytest.raises(RuntimeError, match=r"failed its SHA-256 check \(kept aside as .*\) and download=False"):
            tasks._fetch("x", "a.bin", sha, (server.as_uri() + "/",), folder, download=False)
    assert (folder / "a.bin.failed-sha256").read_bytes() == blob[:5]
    assert tasks._fetch("x", "a.bin", sha, (server.as_uri() + "/",), folder, download=True).read_bytes() == blob


def test_7_half_precision_models_get_a_clear_error_early():
    model = relu_mlp(4, 6, 2, 3).half()
    with pytest.raises(TypeError, match=r"model has torch.float16 parameters.*float\(\)"):
        layer_jacobian_svdvals(model, X.half())
    with pytest.raises(TypeError, match="features must be float32 or float64"):
        effective_rank(torch.ones(3, 3, dtype=torch.bfloat16))
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match="dtype must be None, torch.float32 or torch.float64"):
            relu_mlp(4, 6, 2, 3, dtype=dtype)
        with pytest.raises(TypeError, match="dtype must be None, torch.float32 or torch.float64"):
            OrthogonalLinear(4, 4, dtype=dtype)


# ------------------------------------------------------------------ property-based: random bad CLI arguments

_SCRATCH = Path(tempfile.mkdtemp(prefix="isoplast-bad-cli-"))
_GOOD_CSV = str(_bad_files(_SCRATCH))
_FIFO = _SCRATCH / "fifo"
if not _FIFO.exists():
    os.mkfifo(_FIFO)

_SIZE_FLAGS = {"--seeds": "seeds", "--tasks": "n_tasks", "--steps-per-task": "steps_per_task", "--batch-size": "batch_size",
               "--width": "width", "--depth": "depth", "--n-train": "n_train", "--seed-batch": "seeds"}  # fmt: skip
_not_a_number = st.text(min_size=1, max_size=6).filter(lambda s: not _parses_as_float(s))


def _parses_as_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _bad_size(field):
    return st.one_of(st.integers(max_value=0), st.integers(min_value=LIMITS[field] + 1), _not_a_number).map(str)


_bad_lr = st.one_of(st.floats(max_value=0.0), st.floats(min_value=10.0, exclude_min=True), st.sampled_from(["nan", "inf", "-inf"]), _not_a_number)
_bad_iso = st.one_of(st.floats(max_value=-1e-300), st.sampled_from(["nan", "inf", "-inf"]), _not_a_number)
_bad_device = st.one_of(st.sampled_from(["cuda", "cuda:0", "cuda:7", "mps", "meta", "xpu", "gpu", "cpu:x", "", "cuda:-1"]),
                        st.text(max_size=8).filter(lambda s: not s.startswith("cpu")))  # fmt: skip
_bad_out = st.sampled_from([str(_SCRATCH), str(_SCRATCH / "file" / "r.csv"), str(_FIFO), "", "/proc/r.csv" if os.path.isdir("/proc/self") else str(_FIFO)])
_bad_name = st.text(max_size=12)


@st.composite
def _bad_run_or_sweep(draw):
    command = draw(st.sampled_from(["run", "sweep"]))
    flags = {"--benchmark": "random-label-digits", "--method": "adam", "--lr": "0.001", "--out": str(_SCRATCH / "ok.csv"),
             "--device": "cpu", "--dtype": "float32", "--init": "orthogonal", "--cache-dir": str(_SCRATCH / "cache")}  # fmt: skip
    flags.update({f: {"--n-train": "16", "--width": "8"}.get(f, "2") for f in _SIZE_FLAGS})
    which = draw(st.sampled_from(sorted([*_SIZE_FLAGS, "--lr", "--set", "--device", "--benchmark", "--method", "--dtype",
                                         "--init", "--out", "--cache-dir", "--n-train-big", "--aei-width", "--unknown"])))  # fmt: skip
    extra = []
    if which in _SIZE_FLAGS:
        flags[which] = draw(_bad_size(_SIZE_FLAGS[which]))
    elif which == "--lr":
        flags[which] = str(draw(_bad_lr))
    elif which == "--set":
        flags["--method"] = "adamo"
        flags[which] = "iso_strength=" + str(draw(_bad_iso))
    elif which == "--device":
        flags[which] = draw(_bad_device)
    elif which in ("--benchmark", "--method", "--dtype", "--init"):
        valid = {"--benchmark": tasks.BENCHMARKS, "--method": tuple(methods.METHODS), "--dtype": ("float32", "float64"),
                 "--init": ("orthogonal", "kaiming", "default")}[which]  # fmt: skip
        flags[which] = draw(_bad_name.filter(lambda s: s not in valid))
    elif which == "--out":
        flags[which] = draw(_bad_out)
    elif which == "--cache-dir":
        flags[which] = draw(st.sampled_from([str(_SCRATCH / "file"), str(_SCRATCH / "file" / "c"), ""]))
    elif which == "--n-train-big":
        flags["--n-train"] = str(draw(st.integers(1438, LIMITS["n_train"])))
    elif which == "--aei-width":
        flags["--method"] = "aei-adam"
        flags["--width"] = str(draw(st.integers(1, 999).filter(lambda w: w % 2)))
    else:
        extra = [draw(st.sampled_from(["--bogus", "--lr-rate", "-x", "--iso"]))]
    argv = [command]
    for flag, value in flags.items():
        argv += [flag, value]
    if command == "run" and which == "--out" and flags["--out"] == "":
        argv += ["--no-cache"]
    return argv + extra + ["--no-progress"], which


@st.composite
def _bad_plot(draw):
    which = draw(st.sampled_from(["csv-bytes", "csv-path", "output", "measures"]))
    csv, output, extra = _GOOD_CSV, str(_SCRATCH / "fig.png"), []
    if which == "csv-bytes":
        data = draw(st.binary(max_size=64))
        path = _SCRATCH / f"random-{hashlib.sha256(data).hexdigest()[:12]}.csv"
        path.write_bytes(data)
        csv = str(path)
    elif which == "csv-path":
        csv = draw(st.sampled_from([str(_SCRATCH), str(_SCRATCH / "none.csv"), str(_SCRATCH / "file" / "x.csv"), str(_FIFO),
                                    str(_SCRATCH / "schema.csv"), str(_SCRATCH / "header.csv"), ""]))  # fmt: skip
    elif which == "output":
        output = draw(st.one_of(st.sampled_from([str(_SCRATCH), str(_SCRATCH / "file" / "f.png"), str(_FIFO) + ".png", ""]),
                                st.text(max_size=6).map(lambda e: str(_SCRATCH / f"fig.{e}")).filter(lambda p: Path(p).suffix.lstrip(".").lower() not in ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp", "svgz", "pgf", "raw", "rgba", "avif", "gif"))))  # fmt: skip
        if output == str(_FIFO) + ".png":
            os.path.exists(output) or os.mkfifo(output)
    else:
        numeric = set(RESULT_COLUMNS) - {"benchmark", "method", "seed", "task", "diverged"}
        extra = ["--measures", draw(_bad_name.filter(lambda s: s not in numeric and not s.startswith("-")))]
    return ["plot", csv, "-o", output, *extra], which


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_bad_run_or_sweep())
def test_random_bad_run_and_sweep_arguments_exit_2_with_one_line(no_training, case):
    argv, which = case
    status, out, err = cli(argv)
    _assert_one_line_error(status, err)
    assert out == ""


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_bad_plot())
def test_random_bad_plot_arguments_exit_2_with_one_line(case):
    argv, which = case
    status, out, err = cli(argv)
    _assert_one_line_error(status, err)
    assert not (_SCRATCH / "fig.png").exists()


# ------------------------------------------------------------------ property-based: random non-finite tensors


@st.composite
def _non_finite_matrix(draw):
    rows, cols = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    values = draw(st.lists(st.floats(-1e3, 1e3), min_size=rows * cols, max_size=rows * cols))
    x = torch.tensor(values, dtype=dtype).view(rows, cols)
    for _ in range(draw(st.integers(1, 3))):
        x[draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return x


_MATRIX_DIAGNOSTICS = {k: v for k, v in TENSOR_DIAGNOSTICS.items() if k not in ("ntk_summary",)}


@settings(max_examples=40, deadline=None, derandomize=True)
@given(x=_non_finite_matrix(), name=st.sampled_from(sorted(_MATRIX_DIAGNOSTICS)))
def test_random_non_finite_tensors_are_rejected_by_every_diagnostic(x, name):
    arg, call = _MATRIX_DIAGNOSTICS[name]
    if arg in ("x", "x1", "x2"):  # a batch of model inputs: 4 features, the model's dtype
        x = torch.cat([x, x], dim=1)[:, :4].float()
        if torch.isfinite(x).all():
            x[0, 0] = math.nan
    with pytest.raises(ValueError, match=rf"^{arg} must contain only finite values"):
        call(x)
    square = torch.cat([x, x], dim=1)[:, : x.shape[0]]
    if not torch.isfinite(square).all():
        with pytest.raises(ValueError, match="^ntk must contain only finite values"):
            ntk_summary(square)
