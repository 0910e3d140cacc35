"""The target-spectrum intervention (issue 23): it sets every hidden weight's singular values to its
target after every step, the spread lies in a fixed rotation (not the unit axes), and the
manipulation check reports target against achieved and catches an arm that misses."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from isoplast_lite.interventions import layer_sizes, manipulation_check, project_spectrum, target_log_spectrum
from isoplast_lite.methods import BUILTIN_METHODS, make_method
from isoplast_lite.run import Config, run

TINY = dict(n_tasks=2, steps_per_task=5, batch_size=8, width=12, depth=2, n_train=32, probe_size=6)


def test_target_spectrum_is_builtin():
    assert "target-spectrum" in BUILTIN_METHODS


@pytest.mark.parametrize("shape", [(7, 4), (4, 7), (5, 5)])
def test_project_spectrum_sets_the_singular_values_and_is_the_nearest_for_equal_targets(shape):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, *shape, generator=g, dtype=torch.float64)
    k = min(shape)
    sigma = target_log_spectrum(k, 0.3, 0.7).exp().expand(3, k)
    R = torch.linalg.qr(torch.randn(3, k, k, generator=g, dtype=torch.float64))[0]
    out = project_spectrum(W, sigma, R)
    torch.testing.assert_close(torch.linalg.svdvals(out), sigma, rtol=1e-12, atol=1e-12)
    # the stretched directions are R's columns, on the short side
    side = out @ out.mT if shape[0] <= shape[1] else out.mT @ out  # (k, k) = R diag(sigma^2) R^T
    torch.testing.assert_close(side @ R, R * sigma.square().unsqueeze(-2), rtol=1e-10, atol=1e-10)
    # equal targets: sigma times the polar factor, the nearest matrix with that spectrum (vs Newton-Schulz to convergence)
    ones = torch.ones(3, k, dtype=torch.float64)
    from isoplast_lite.isometry import newton_schulz

    torch.testing.assert_close(project_spectrum(W, ones, R), newton_schulz(W, steps=60), rtol=1e-8, atol=1e-8)


def _weights_after(cfg):
    """Run cfg and return the method's hidden weights at the end, by capturing after_step."""
    captured = {}
    from isoplast_lite import interventions

    original = interventions.TargetSpectrum.after_step

    def spy(self, stack, opt, ctx):
        original(self, stack, opt, ctx)
        captured["W"] = {n: stack.params[n].detach().clone() for n in stack.hidden_weight_names()}
        captured["rot"] = {n: r.clone() for n, r in self.rotations.items()}

    interventions.TargetSpectrum.after_step = spy
    try:
        run(cfg, cache_dir=False, progress=False)
    finally:
        interventions.TargetSpectrum.after_step = original
    return captured


@pytest.mark.parametrize("settings", [{}, {"scale": 0.5}, {"spread": 0.8}, {"scale": 2.0, "spread": 0.5}, {"spread": 0.8, "layernorm": True}])
def test_every_arm_holds_its_target_spectrum_after_training(settings):
    cfg = Config("permuted-digits", "target-spectrum", settings=settings, dtype="float64", **TINY)
    got = _weights_after(cfg)
    method = make_method("target-spectrum", settings)
    for n, W in got["W"].items():
        k = min(W.shape[1:])
        target = method.target_log_spectrum(k).exp()
        torch.testing.assert_close(torch.linalg.svdvals(W), target.expand(W.shape[0], k), rtol=1e-10, atol=1e-10)
        if settings.get("spread", 0) > 0:
            # the spread is not per unit: the row norms of a wide/square layer are far less spread than sigma
            rows = W.norm(dim=2).log()
            assert float(rows.std()) < 0.5 * settings["spread"]


def test_rotations_are_per_seed_and_fixed_by_the_seed():
    cfg = Config("permuted-digits", "target-spectrum", settings={"spread": 0.5}, dtype="float64", **TINY)
    two = _weights_after(cfg)["rot"]
    one = _weights_after(cfg.replace(seeds=1))["rot"]
    for n in two:
        assert not torch.allclose(two[n][0], two[n][1])
        torch.testing.assert_close(two[n][:1], one[n], rtol=0, atol=0)


def test_manipulation_check_reports_target_and_achieved_and_marks_a_missed_target():
    cfgs = [Config("permuted-digits", "target-spectrum", settings={"scale": 0.5}, **TINY),
            Config("permuted-digits", "adamo-target", settings={"target": "scaled", "c": 0.5, "iso_strength": 0.1}, **TINY),
            Config("permuted-digits", "adam", **TINY)]  # fmt: skip
    outs = [run(c, cache_dir=False, progress=False, layers=True) for c in cfgs]
    rows = pd.concat([o.rows for o in outs], ignore_index=True)
    layers = pd.concat([o.layers for o in outs], ignore_index=True)
    check = manipulation_check(layers, rows, sizes=layer_sizes(64, TINY["width"], TINY["depth"])).set_index("method")
    hit, pulled, adam = check.loc["target-spectrum"], check.loc["adamo-target"], check.loc["adam"]
    assert hit.log_scale_target == pytest.approx(math.log(0.5)) and hit.spread_target == pytest.approx(0.0, abs=1e-12)
    assert hit.on_target and hit.weight_scale_max_miss < 1e-4 and hit.weight_spread_max_miss < 1e-4
    # a pull of lr * lambda = 1e-4 per step for 10 steps barely moves sigma from 1: far off target
    assert pulled.log_scale_target == pytest.approx(math.log(0.5)) and not pulled.on_target
    assert pulled.weight_scale_max_miss > 0.5
    assert adam.on_target is None and math.isnan(adam.log_scale_target)
    # the achieved columns are the per-layer table's hidden rows at the last task, averaged
    last = layers[(layers.method == "target-spectrum") & (layers.kind == "hidden") & (layers.task == 1)]
    assert hit.jac_scale == pytest.approx(last.scale.mean()) and hit.null_share == pytest.approx(last.null_share.mean())
    assert hit.null_share == pytest.approx(1 - last.directions_share.mean())  # the column's definition
    assert hit.clone_pairs == pytest.approx(last.groupby("seed").clone_pairs.sum().mean())
    # a table written before the runner's null share and clone columns: the share from its definition, no clone columns
    old = manipulation_check(layers.drop(columns=["null_share", "clone_pairs", "exact_clone_pairs"]), rows,
                             sizes=layer_sizes(64, TINY["width"], TINY["depth"])).set_index("method")  # fmt: skip
    assert old.loc["target-spectrum"].null_share == pytest.approx(hit.null_share) and "clone_pairs" not in old.columns
    r = rows[(rows.method == "target-spectrum") & (rows.task == 1)]
    assert hit.ntk_cond_log10 == pytest.approx(np.log10(r.ntk_cond).mean())


def test_manipulation_check_rejects_bad_input():
    with pytest.raises(ValueError, match="lacks the columns"):
        manipulation_check(pd.DataFrame({"method": []}), sizes={0: 4})
    layers = pd.DataFrame({"method": ["adam"], "settings": ["{}"], "seed": [0], "task": [0], "layer": [3], "kind": ["hidden"],
                           "scale": [0.0], "spread": [0.0], "directions_share": [1.0], "weight_scale": [0.0], "weight_spread": [0.0]})  # fmt: skip
    with pytest.raises(ValueError, match=r"missing layers \[3\]"):
        manipulation_check(layers, sizes={0: 4})
    with pytest.raises(ValueError, match="tol must be > 0"):
        manipulation_check(layers, sizes={3: 4}, tol=0)


class _Stop(Exception):
    pass


def test_the_cpu_ledger_of_a_killed_and_resumed_arm_counts_every_process(tmp_path):
    """tools/intervention_runs.py: an arm interrupted after two of four tasks has unknown seconds
    (not its remainder, not 0); resumed from its checkpoint by another process, its seconds are
    the sum of both processes' tasks, each task counted once."""
    import time

    from tools_loader import load_tool

    tool = load_tool("intervention_runs")
    cfg = Config("permuted-digits", "adam", **{**TINY, "n_tasks": 4, "steps_per_task": 40})
    path = tmp_path / "cpu-arm.json"
    first = tool.CpuLedger(path)

    def stop_after_task_1(task, rows):
        first.task_done(task, rows)
        if task == 1:
            raise _Stop  # as a kill right after task 1's checkpoint

    start = time.process_time()
    with pytest.raises(_Stop):
        run(cfg, cache_dir=tmp_path / "cache", progress=False, callback=stop_after_task_1)
    first_spent = time.process_time() - start
    assert sorted(tool.CpuLedger(path).tasks) == ["0:0", "0:1"] and tool.CpuLedger(path).seconds(cfg) is None
    done_first = dict(tool.CpuLedger(path).tasks)

    second = tool.CpuLedger(path)  # the next process resumes at task 2
    start = time.process_time()
    run(cfg, cache_dir=tmp_path / "cache", progress=False, callback=second.task_done)
    second.finish()
    second_spent = time.process_time() - start
    final = tool.CpuLedger(path)
    assert sorted(final.tasks) == ["0:0", "0:1", "0:2", "0:3"]
    assert {k: final.tasks[k] for k in done_first} == done_first  # the first process's tasks kept as they were
    total = final.seconds(cfg)
    # the first process's two tasks are in the total: it exceeds what the resuming process spent alone
    assert total >= round(sum(done_first.values()) + 0.5 * second_spent, 1) and sum(done_first.values()) > 0
    assert total <= first_spent + second_spent + 0.1
    # a cached arm is not trained again: its ledger (and seconds) unchanged
    third = tool.CpuLedger(path)
    run(cfg, cache_dir=tmp_path / "cache", progress=False, callback=third.task_done)
    third.finish()
    assert tool.CpuLedger(path).seconds(cfg) == total


def test_the_full_horizon_is_chapter_8s_and_never_written_into_the_shipped_folder(tmp_path):
    """tools/intervention_runs.py --full-horizon: every arm runs chapter 8's whole horizon (the
    reduced run, the first HORIZON tasks); its ledgers are apart from the reduced run's; it
    refuses the shipped folder before any work."""
    from isoplast_lite import results
    from tools_loader import load_tool

    tool = load_tool("intervention_runs")
    stream = "permuted-digits"
    whole = results.manifest("streams")[stream]["config"]["n_tasks"]
    assert tool.HORIZON[stream] < whole  # the check below could fail
    assert {c.n_tasks for c in tool.arm_configs(stream, 2).values()} == {tool.HORIZON[stream]}
    assert {c.n_tasks for c in tool.arm_configs(stream, 2, full_horizon=True).values()} == {whole}
    assert tool.ledger_path(tmp_path, stream, 2, "adam") != tool.ledger_path(tmp_path, stream, 2, "adam", full_horizon=True)
    with pytest.raises(SystemExit):
        tool.main(["--streams", stream, "--full-horizon", "--work", str(tmp_path)])
    assert not list(tmp_path.iterdir())  # refused before any run
