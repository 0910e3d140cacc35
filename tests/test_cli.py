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

    monkeypatch.setattr(run_mod, "_train_seed_batch", boom)
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
