"""The command line: help, name validation, run (cached), sweep, plot."""

import subprocess
import sys

import pandas as pd

from isoplast_lite.results import expand_settings
import pytest

from isoplast_lite import run as run_mod
from isoplast_lite.__main__ import main
from isoplast_lite.methods import METHODS
from isoplast_lite.tasks import BENCHMARKS

TINY = ["--seeds", "2", "--tasks", "2", "--steps-per-task", "5", "--batch-size", "8", "--width", "8", "--depth", "2", "--n-train", "16", "--no-progress"]


def test_help_lists_every_benchmark_and_method(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in (*BENCHMARKS, *METHODS):
        assert name in text, name
    assert "cuda" in text  # the full-scale GPU configs are documented


@pytest.mark.parametrize(
    "argv,valid",
    [
        (["run", "--benchmark", "random-label-cifar", "--method", "adam"], "random-label-digits"),
        (["run", "--benchmark", "random-label-digits", "--method", "sgd"], "aei-adamo"),
        (["sweep", "--benchmark", "permuted-digits", "--method", "adam", "nope", "--out", "x.csv"], "shrink-perturb"),
    ],
)
def test_wrong_names_exit_2_listing_valid_ones(argv, valid, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert valid in capsys.readouterr().err


def test_iso_strength_for_a_method_without_it_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--benchmark", "random-label-digits", "--method", "adam", "--set", "iso_strength=0.1", *TINY])
    assert exit_info.value.code == 2 and "--set iso_strength=0.1: method 'adam', setting 'iso_strength': unknown setting" in capsys.readouterr().err


def test_run_writes_csv_and_second_call_is_cached(tmp_path, monkeypatch):
    out = tmp_path / "r.csv"
    argv = ["run", "--benchmark", "random-label-digits", "--method", "adamo", "--set", "iso_strength=0.05", *TINY, "--cache-dir", str(tmp_path / "c"), "--out", str(out)]
    assert main(argv) == 0
    df = pd.read_csv(out)
    assert len(df) == 4 and set(df.method) == {"adamo"} and set(expand_settings(df).iso_strength) == {0.05}

    def boom(*a, **k):
        raise AssertionError("not cached")

    monkeypatch.setattr(run_mod, "train_seed_batch", boom)
    out.unlink()
    assert main(argv) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), df)


def test_sweep_writes_one_tidy_csv(tmp_path):
    out = tmp_path / "s.csv"
    argv = ["sweep", "--benchmark", "random-label-digits", "--method", "adam", "adamo", "--set", "iso_strength=0.01,0.1", *TINY, "--no-cache", "--out", str(out)]
    assert main(argv) == 0
    df = pd.read_csv(out)
    wide = expand_settings(df).fillna({"iso_strength": 0.0})
    runs = sorted({(m, float(i)) for m, i in zip(wide.method, wide.iso_strength)})
    assert runs == [("adam", 0.0), ("adamo", 0.01), ("adamo", 0.1)]  # the lambda grid applies to the methods that have it
    assert len(df) == 3 * 2 * 2


def test_plot_writes_a_png(tmp_path):
    csv = tmp_path / "r.csv"
    assert main(["run", "--benchmark", "permuted-digits", "--method", "adam", *TINY, "--no-cache", "--out", str(csv)]) == 0
    png = tmp_path / "fig.png"
    assert main(["plot", str(csv), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "isoplast_lite", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "sweep" in proc.stdout


# --- no quiet overwrite, no silent success (issue 27) --------------------------------------------

def test_a_repeated_set_is_an_error(tmp_path, capsys):
    for argv in (["run", "--benchmark", "random-label-digits", "--method", "adamo", "--set", "iso_strength=0.1", "--set", "iso_strength=0.2", *TINY],
                 ["sweep", "--benchmark", "random-label-digits", "--method", "adamo", "--set", "iso_strength=0.1,0.2",
                  "--set", "iso_strength=0.3", *TINY, "--out", str(tmp_path / "s.csv")]):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "iso_strength is already set" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_out_replaces_only_a_results_csv_unless_forced(tmp_path, capsys, command):
    base = [command, "--benchmark", "random-label-digits", "--method", "adam", *TINY, "--cache-dir", str(tmp_path / "c")]
    for name, text in (("other.csv", "a,b\n1,2\n"), ("x.py", "print('hello')\n")):
        target = tmp_path / name
        target.write_text(text)
        with pytest.raises(SystemExit) as info:
            main([*base, "--out", str(target)])
        assert info.value.code == 2 and "not a results CSV" in capsys.readouterr().err
        assert target.read_text() == text  # untouched
    results = tmp_path / "results.csv"
    assert main([*base, "--out", str(results)]) == 0
    assert main([*base, "--out", str(results)]) == 0  # a results CSV of this tool: replaced
    assert main([*base, "--out", str(tmp_path / "other.csv"), "--force"]) == 0
    assert pd.read_csv(tmp_path / "other.csv").method.tolist()[0] == "adam"


def test_a_second_writer_on_one_out_is_refused(tmp_path, capsys):
    import fcntl

    out = tmp_path / "s.csv"
    with open(tmp_path / ".s.csv.lock", "a+") as held:  # what a running sweep holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 12345")
        held.flush()
        with pytest.raises(SystemExit) as info:
            main(["sweep", "--benchmark", "random-label-digits", "--method", "adam", *TINY, "--cache-dir", str(tmp_path / "c"), "--out", str(out)])
    assert info.value.code == 2
    assert "another sweep is writing it (pid 12345)" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("body, needle", [("import sys\nsys.exit(0)\n", "sys.exit(0)"), ("raise KeyboardInterrupt\n", "interrupted")])
def test_an_import_that_exits_or_is_interrupted_is_an_error(tmp_path, body, needle):
    (tmp_path / "quits.py").write_text(body)
    proc = subprocess.run([sys.executable, "-m", "isoplast_lite", "run", "--import", "quits", "--benchmark", "random-label-digits",
                           "--method", "adam", *TINY, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_an_infinite_penalty_counts_as_divergence():
    from isoplast_lite.run import Config, run

    cfg = Config("random-label-digits", "l2", settings={"strength": 1e37}, seeds=2, n_tasks=2, steps_per_task=5, batch_size=8,
                 width=64, depth=2, n_train=16, probe_size=4)  # fmt: skip
    # the 64 x 64 orthogonal hidden weight alone has ||W||^2 = 64: 1e37 * 64 > float32's 3.4e38
    df = run(cfg, cache_dir=False, progress=False).rows
    assert df.diverged.all()  # the objective is infinite from the first step
    finite = run(cfg.replace(settings={"strength": 1e-4}), cache_dir=False, progress=False).rows
    assert not finite.diverged.any()


def test_a_run_longer_than_the_time_bound_is_refused_before_work():
    from isoplast_lite.run import MAX_SECONDS, Config, ConfigError, check_config, estimate_seconds

    cfg = Config("random-label-digits", "adam", seeds=1, n_tasks=1_000_000, steps_per_task=100_000, width=256, depth=3)
    # at least the FLOPs alone: 6 operations per parameter, example and step at 2e11 per thread
    params = 64 * 256 + 2 * 256 * 256 + 256 * 10
    assert estimate_seconds(cfg, threads=1) >= 1_000_000 * 100_000 * 32 * params * 6 / 2e11 > MAX_SECONDS
    with pytest.raises(ConfigError, match="more than the limit of 1 hours"):
        check_config(cfg)
    check_config(cfg.replace(n_tasks=2, steps_per_task=10))  # an ordinary size passes


def test_run_flags_are_generated_from_the_config_fields():
    """Every Config field with a flag is a run and sweep option with the field's default and help;
    the parsed values land in the field (a changed value of each, one at a time, included)."""
    import dataclasses

    from isoplast_lite.__main__ import build_parser, config_from_args
    from isoplast_lite.config import Config, cli_fields

    fields = cli_fields()
    assert [f.name for f in fields] == ["seeds", "n_tasks", "steps_per_task", "batch_size", "width", "depth", "n_train", "init", "device", "dtype", "threads"]
    parser = build_parser()
    base = ["run", "--benchmark", "permuted-digits", "--method", "adam"]
    args = parser.parse_args(base)
    assert config_from_args(args, "permuted-digits", "adam", {}, 1e-3) == Config("permuted-digits", "adam")  # the defaults agree
    changed = {"seeds": "3", "n_tasks": "7", "steps_per_task": "9", "batch_size": "5", "width": "12", "depth": "2", "n_train": "40",
               "init": "kaiming", "device": "cpu:0", "dtype": "float64", "threads": "2"}  # fmt: skip
    for f in fields:
        for command in ("run", "sweep"):
            argv = base if command == "run" else ["sweep", "--benchmark", "permuted-digits", "--method", "adam", "--out", "x.csv"]
            args = parser.parse_args(argv + [f.metadata["flag"], changed[f.name]])
            cfg = config_from_args(args, "permuted-digits", "adam", {}, 1e-3)
            want = type(f.default)(changed[f.name])
            assert getattr(cfg, f.name) == want, (command, f.name)
            assert dataclasses.replace(cfg, **{f.name: f.default}) == Config("permuted-digits", "adam")  # no other field moved
    help_text = " ".join(parser._subparsers._group_actions[0].choices["run"].format_help().split())
    for f in fields:
        assert f"{f.metadata['help']} (default {f.default})" in help_text, f.name
