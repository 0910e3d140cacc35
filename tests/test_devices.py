"""``--device cuda`` and ``--device mps``: exercised where the device exists, skipped with the
reason elsewhere; a machine without the device gets a one-line error (exit status 2), never a
traceback."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

from isoplast_lite.run import Config, run

TINY = ["--seeds", "2", "--tasks", "2", "--steps-per-task", "5", "--batch-size", "8", "--width", "8", "--depth", "2", "--n-train", "16", "--no-progress"]
HAS = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
WHY = {"cuda": "no CUDA GPU on this machine (torch.cuda.is_available() is False)",
       "mps": "no Apple MPS device on this machine (torch.backends.mps.is_available() is False)"}  # fmt: skip


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "isoplast_lite", *argv], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_a_run_on_the_device_matches_the_cpu(device):
    if not HAS[device]:
        pytest.skip(WHY[device])
    cfg = dict(benchmark="random-label-digits", method="adamo", seeds=2, n_tasks=2, steps_per_task=5, width=8, depth=2, n_train=16, probe_size=4)
    on_device = run(Config(**cfg, device=device), cache_dir=False, progress=False).rows
    on_cpu = run(Config(**cfg), cache_dir=False, progress=False).rows
    assert len(on_device) == 4 and not on_device.diverged.any()
    # other kernels, same experiment: initial weights and data are drawn on the CPU
    assert abs(on_device.train_acc.mean() - on_cpu.train_acc.mean()) < 0.25
    assert all(math.isfinite(v) for v in on_device.loss)


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_the_cli_runs_on_the_device(device, tmp_path):
    if not HAS[device]:
        pytest.skip(WHY[device])
    out = tmp_path / "r.csv"
    proc = _cli("run", "--benchmark", "random-label-digits", "--method", "adam", *TINY, "--no-cache", "--device", device, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(out)) == 4


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_missing_device_is_a_one_line_error(device, command, tmp_path):
    if HAS[device.split(":")[0]]:
        pytest.skip(f"{device} exists here: the missing-device error cannot be shown")
    argv = [command, "--benchmark", "random-label-digits", "--method", "adam", *TINY, "--device", device, "--cache-dir", str(tmp_path / "c")]
    proc = _cli(*argv, "--out", str(tmp_path / "x.csv"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"python -m isoplast_lite {command}: error: --device '{device}'"), lines[0]
    assert "allowed: cpu" in lines[0]
    assert proc.stdout == "" and not (tmp_path / "x.csv").exists() and not (tmp_path / "c").exists()
