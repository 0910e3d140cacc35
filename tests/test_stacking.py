"""Hyperparameters stacked beside seeds (isoplast_lite.stacking): each member's rows equal its
configuration's own run (float64: to rounding; float32: within measured tolerances), the
grouping says what stacks and why not, entries land under the keys of unstacked runs, a killed
group resumes, and the sweep stacks (and falls back) as documented."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from isoplast_lite import stacking
from isoplast_lite.cache import cache_key
from isoplast_lite.methods import BUILTIN_METHODS, method_info
from isoplast_lite.optim import AdamO, EntryStepAdam, MemberAdam
from isoplast_lite.run import Config, run
from isoplast_lite.sweep import run_sweep

SMALL = dict(seeds=2, n_tasks=2, steps_per_task=6, width=8, depth=2, n_train=32, probe_size=4, batch_size=8)

#: per method with member settings: the values of each stackable setting the test stacks (two
#: values each; the first is also the base value of the other configurations)
VALUES = {
    "adamw": {"weight_decay": (0.1, 3.0)},
    "l2": {"strength": (1e-3, 1e-1)},
    "l2-init": {"strength": (1e-2, 1.0)},
    "shrink-perturb": {"shrink": (0.4, 0.9), "perturb": (0.1, 0.3)},
    "shrink-perturb-step": {"shrink": (1e-3, 1e-2), "noise": (1e-3, 1e-2)},
    "redo": {"tau": (0.0, 0.5)},
    "spectral": {"strength": (1e-2, 1e-1)},
    "coupled-iso": {"iso_strength": (1e-2, 1e-1)},
    "adamo": {"iso_strength": (0.1, 1.0)},
    "aei-adamo": {"iso_strength": (0.1, 1.0)},
    "parseval": {"strength": (1e-3, 1e-1), "target_scale": (1.0, 2.0)},
    "adamo-target": {"iso_strength": (0.1, 1.0)},
}
LRS = (1e-2, 3e-2)


def group_configs(method: str, dtype: str = "float64", base: dict = None, **fields):
    """The base configuration, one per other value of each member setting, one with another lr."""
    base = dict(base or {})
    settings = {name: values[0] for name, values in VALUES.get(method, {}).items()} | base
    cfg = Config("random-label-digits", method, settings=settings, lr=LRS[0], dtype=dtype, **(SMALL | fields))
    cfgs = [cfg]
    for name, values in VALUES.get(method, {}).items():
        cfgs.append(cfg.replace(settings={name: values[1]}))
    cfgs.append(cfg.replace(lr=LRS[1]))
    return cfgs


#: ratios of a largest to a smallest value: their relative error is the condition number times
#: the round-off, so they are compared as reciprocals (an absolute error of about the round-off)
RATIOS = ("ntk_cond", "jac_sv_ratio")


def assert_tables_close(stacked, alone, rtol, what):
    """Every numeric column of two tables agrees to ``rtol`` relative to the column's scale (NaN
    and inf where the other has them; ratios as reciprocals); the config columns are equal."""
    assert list(stacked.columns) == list(alone.columns), what
    assert len(stacked) == len(alone), what
    errors = {}
    for col in stacked.columns:
        a, b = stacked[col].to_numpy(), alone[col].to_numpy()
        if a.dtype.kind not in "fc":
            assert (a == b).all(), (what, col)
            continue
        a, b = a.astype(float), b.astype(float)
        if col in RATIOS:
            a, b = 1 / a, 1 / b
        assert (np.isnan(a) == np.isnan(b)).all() and (np.isinf(a) == np.isinf(b)).all(), (what, col)
        ok = np.isfinite(a) & np.isfinite(b)
        scale = max(float(np.abs(b[ok]).max()) if ok.any() else 0.0, 1e-300)
        errors[col] = float(np.abs(a[ok] - b[ok]).max()) / scale if ok.any() else 0.0
    assert max(errors.values(), default=0.0) <= rtol, (what, {c: e for c, e in errors.items() if e > rtol})


def alone(cfg):
    result = run(cfg, cache_dir=False, progress=False, layers=True, spectra=True)
    return result.rows, result.layers, result.spectra


STACKED_METHODS = [m for m in BUILTIN_METHODS if method_info(m).member_settings]


def test_every_builtin_method_declares_its_member_settings():
    """Every built-in method reads at least the learning rate per member; a stackable setting it
    does not read per member is named here (it falls back to separate runs)."""
    assert set(STACKED_METHODS) == set(BUILTIN_METHODS)
    unread = {m: sorted(set(method_info(m).stackable) - set(method_info(m).member_settings)) for m in BUILTIN_METHODS}
    assert {m: v for m, v in unread.items() if v} == {"adamo-target": ["c"], "target-spectrum": ["scale", "spread"]}
    assert set(VALUES) == {m for m in BUILTIN_METHODS if set(method_info(m).member_settings) - {"lr"}}


@pytest.mark.parametrize("method", STACKED_METHODS)
def test_stacked_members_equal_their_own_runs_in_float64(method):
    """G configurations (each member setting's second value, a second lr) x 2 seeds in one model:
    every table of every configuration equals its own run to float64 rounding (1e-10 relative to
    each column's scale; measured differences are about 1e-14)."""
    cfgs = group_configs(method)
    groups = stacking.plan(cfgs)
    assert [g.indices for g in groups] == [tuple(range(len(cfgs)))]
    for cfg, tables in zip(cfgs, stacking.run_group(cfgs, cache_dir=False, progress=False)):
        for name, a, b in zip(("rows", "layers", "spectra"), tables, alone(cfg)):
            assert_tables_close(a, b, 1e-10, (method, cfg.lr, cfg.method_settings, name))


def test_adamo_schedule_reading_stacks_too():
    cfgs = group_configs("adamo", base={"iso_scaling": "schedule", "iso_strength": 1e-3})
    cfgs[1] = cfgs[0].replace(settings={"iso_strength": 1e-2})
    for cfg, tables in zip(cfgs, stacking.run_group(cfgs, cache_dir=False, progress=False)):
        assert_tables_close(tables[0], alone(cfg)[0], 1e-10, cfg.method_settings)


@pytest.mark.parametrize("method", ["adam", "adamo", "l2", "adamw"])
def test_stacked_members_agree_with_their_own_runs_in_float32(method):
    """float32: batch shapes change the order of BLAS reductions, so members agree with their
    own runs to float32 rounding grown by training, not bit for bit. Measured on these runs: at
    most 3.4e-7 relative to each column's scale (natively and with ATEN_CPU_CAPABILITY=default,
    one thread); asserted 1e-4. Accuracies may differ by one example whose logits nearly tie."""
    cfgs = group_configs(method, dtype="float32")
    for cfg, tables in zip(cfgs, stacking.run_group(cfgs, cache_dir=False, progress=False)):
        ref = run(cfg, cache_dir=False, progress=False).rows
        cols = ["loss", "loss_online", "weight_norm", "jac_sv_mean", "feature_erank"]
        err = (tables[0][cols] - ref[cols]).abs().to_numpy().max() / ref[cols].abs().to_numpy().max()
        assert err < 1e-4, (method, cfg.lr, cfg.method_settings, err)
        assert (tables[0].train_acc - ref.train_acc).abs().max() <= 1 / cfg.n_train + 1e-12


def test_divergence_is_detected_per_member():
    """One configuration whose weights blow up diverges in the group exactly as alone, and the
    other configuration's members train on, equal to their own run."""
    ok = Config("random-label-digits", "shrink-perturb-step", settings={"noise": 1e-3}, dtype="float64", **SMALL)
    bad = ok.replace(settings={"noise": 1e200})  # weights ~1e200: the logits overflow, the loss is not finite
    got = stacking.run_group([ok, bad], cache_dir=False, progress=False)
    assert not got[0][0].diverged.any() and got[1][0].diverged.all()
    for cfg, tables in zip((ok, bad), got):
        assert_tables_close(tables[0], alone(cfg)[0], 1e-10, cfg.method_settings)


def test_a_non_finite_penalty_is_attributed_or_refused():
    """A penalty that overflows while every gradient stays finite (Adam normalizes them) cannot be
    attributed to a configuration: the group refuses (and the sweep runs them one by one, each
    recording its own divergence, as alone)."""
    ok = Config("random-label-digits", "l2", settings={"strength": 1e-3}, dtype="float64", **SMALL)
    bad = ok.replace(settings={"strength": 1e308})  # sum 1e308 * theta^2 overflows; its gradient does not
    with pytest.raises(FloatingPointError, match="cannot be attributed"):
        stacking.run_group([ok, bad], cache_dir=False, progress=False)
    with pytest.warns(RuntimeWarning, match="one by one"):
        df = run_sweep([ok, bad], cache_dir=False, progress=False)
    assert not df[df.settings == '{"strength":0.001}'].diverged.any() and df[df.settings != '{"strength":0.001}'].diverged.all()


def test_plan_says_what_stacks_and_why_not():
    base = Config("random-label-digits", "adamo", **SMALL)
    cfgs = [
        base,
        base.replace(lr=3e-3),  # stacks with the first (lr)
        base.replace(settings={"iso_strength": 1.0}),  # stacks (a member setting)
        base.replace(settings={"iso_scaling": "schedule"}),  # not a member setting: alone, with the reason
        base.replace(width=16),  # another architecture: its own group, nothing to stack with
        Config("random-label-digits", "target-spectrum", settings={"scale": 2.0}, **SMALL),
        Config("random-label-digits", "target-spectrum", settings={"scale": 1.0}, **SMALL),
        base.replace(method="adam", lr=1e-2),
        base.replace(method="adam", lr=2e-2),
    ]
    groups = stacking.plan(cfgs)
    assert [g.indices for g in groups] == [(0, 1, 2), (3,), (4,), (5,), (6,), (7, 8)]
    reasons = {g.indices: g.reason for g in groups}
    assert "['iso_scaling'] differ" in reasons[(3,)]
    assert reasons[(4,)] == ""
    assert "['scale'] differ" in reasons[(5,)] and "['lr']" in reasons[(5,)]
    assert [g.indices for g in stacking.plan(cfgs, stack=False)] == [(i,) for i in range(len(cfgs))]
    # chunked: at most 4 members (2 configurations of 2 seeds) per model
    assert [g.indices for g in stacking.plan(cfgs[:3], max_members_per_model=4)] == [(0, 1), (2,)]
    assert stacking.plan(cfgs[:3], max_members_per_model=4)[1].reason == ""
    with pytest.raises(ValueError, match="differ only in lr"):
        stacking.run_group([cfgs[0], cfgs[3]], cache_dir=False)


def test_max_members_follows_the_memory_estimate():
    cfg = Config("random-label-digits", "adam", **SMALL)
    assert stacking.max_members(cfg) == stacking.DEFAULT_MAX_MEMBERS  # tiny nets: the cap
    huge = Config("random-label-cifar10", "adam", width=20000, depth=3, seeds=1, n_train=512)
    assert 1 <= stacking.max_members(huge) < stacking.DEFAULT_MAX_MEMBERS


def test_group_entries_are_the_entries_of_unstacked_runs(tmp_path):
    """After a stacked group, each configuration's plain run(cfg) is a cache hit whose three
    tables are the group's; the entry folder is named by the unstacked key."""
    cfgs = group_configs("l2")
    out = stacking.run_group(cfgs, cache_dir=tmp_path, progress=False)
    for cfg, tables in zip(cfgs, out):
        assert (tmp_path / cache_key(cfg) / "result.csv").exists()
        calls = []
        result = run(cfg, cache_dir=tmp_path, progress=False, layers=True, spectra=True, callback=lambda t, df: calls.append(t))
        again = (result.rows, result.layers, result.spectra)
        assert calls == []  # served from the cache, not trained
        for a, b in zip(tables, again):
            pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert not (tmp_path / "stacked").exists() or not any((tmp_path / "stacked").iterdir())


def test_killed_group_resumes_from_its_checkpoint(tmp_path):
    """A group stopped after its first task resumes at the second and ends with the rows of an
    uninterrupted group (float64: to rounding); no entry exists before the group finished."""
    cfgs = group_configs("adamo")

    class Stop(Exception):
        pass

    def stop(task, rows):
        if task == 0:
            raise Stop

    with pytest.raises(Stop):
        stacking.run_group(cfgs, cache_dir=tmp_path, progress=False, callback=stop)
    assert not any((tmp_path / cache_key(c) / "result.csv").exists() for c in cfgs)
    assert list((tmp_path / "stacked").glob("*/group.ckpt"))
    seen = []
    resumed = stacking.run_group(cfgs, cache_dir=tmp_path, progress=False, callback=lambda t, df: seen.append(t))
    assert seen == [1]
    for cfg, tables in zip(cfgs, resumed):
        assert_tables_close(tables[0], alone(cfg)[0], 1e-10, cfg.method_settings)


def test_sweep_stacks_groups_and_falls_back(tmp_path):
    """run_sweep stacks what plan() groups (one training for the group: the callback-free check
    is the number of stacked checkpoints folders made and the cache entries), returns rows equal
    to unstacked sweeps, and runs a group whose stacked training fails one by one."""
    cfgs = group_configs("adamo") + [Config("random-label-digits", "target-spectrum", settings={"scale": s}, dtype="float64", **SMALL)
                                     for s in (1.0, 2.0)]  # fmt: skip
    stacked = run_sweep(cfgs, cache_dir=tmp_path / "a", progress=False)
    plain = run_sweep(cfgs, cache_dir=tmp_path / "b", progress=False, stack=False)
    assert_tables_close(stacked, plain, 1e-10, "sweep")
    assert all((tmp_path / "a" / cache_key(c) / "result.csv").exists() for c in cfgs)


def test_local_sweep_runs_a_stacked_group_as_one_job(tmp_path):
    """executor="local": a group is one submitit job (one job folder), and its rows equal a
    serial unstacked sweep's (float64: to rounding)."""
    cfgs = group_configs("l2")
    groups: list = []
    got = run_sweep(cfgs, executor="local", cache_dir=tmp_path / "a", progress=False, poll_seconds=0.2, groups=groups)
    assert [g.indices for g in groups] == [tuple(range(len(cfgs)))]
    assert len([p for p in (tmp_path / "a" / "jobs").iterdir() if p.name.isdigit()]) == 1
    ref = run_sweep(cfgs, cache_dir=False, progress=False, stack=False)
    assert_tables_close(got, ref, 1e-10, "local sweep")


def test_sweep_falls_back_when_a_stacked_group_fails(tmp_path, monkeypatch):
    cfgs = group_configs("l2")

    def broken(*args, **kwargs):
        raise RuntimeError("stacked training broke")

    monkeypatch.setattr(stacking, "run_group", broken)
    with pytest.warns(RuntimeWarning, match="stacked training broke.*one by one"):
        df = run_sweep(cfgs, cache_dir=False, progress=False)
    for cfg in cfgs:
        mine = df[(df.lr == cfg.lr) & (df.settings == df.settings[df.lr == cfg.lr].iloc[0])]
        assert len(mine) > 0
    assert len(df) == sum(c.seeds * c.n_tasks for c in cfgs)


def test_member_optimizers_check_their_values():
    w = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="lr must hold finite numbers >= 0"):
        MemberAdam([w], lr=torch.tensor([1e-3, -1.0]))
    with pytest.raises(ValueError, match="member 1: .*cannot converge"):
        AdamO([{"params": [torch.zeros(2, 3, 3, requires_grad=True)], "seed_dims": 1}], lr=1e-3, iso_strength=0.1,
              members={"iso_strength": torch.tensor([0.1, 1e4], dtype=torch.float64)})  # fmt: skip
    with pytest.raises(ValueError, match="3 members"):
        AdamO([{"params": [torch.zeros(2, 3, 3, requires_grad=True)], "seed_dims": 1}],
              members={"lr": torch.tensor([1e-3, 1e-3, 1e-2], dtype=torch.float64)})  # fmt: skip
    opt = EntryStepAdam([w], lr=torch.tensor([1e-3, 1e-2]))
    w.sum().backward()
    opt.step()
    assert torch.allclose(w[:, 0], torch.tensor([-1e-3, -1e-2]))


def test_a_method_refuses_values_it_does_not_read_per_member():
    from isoplast_lite.methods import make_method

    m = make_method("adamo-target")
    with pytest.raises(ValueError, match="'c' differs between stacked members"):
        m.stack_members({"lr": [1e-3, 1e-3], "c": [2.0, 3.0]})
    m.stack_members({"lr": [1e-3, 1e-3], "c": [2.0, 2.0]})  # equal values: a plain number
    assert m.member_values("c") == 2.0 and m.member_lr(Config("random-label-digits", "adamo-target")) == 1e-3


def test_stacked_linear_gradients_are_the_products_in_the_weights_layout(monkeypatch):
    """engine.stacked_linear: its value and its three gradients equal autograd's through
    ``baddbmm`` (float64, to rounding), the weight's gradient contiguous in the weight's layout
    (the copy it saves); a double backward and ``torch.func.vmap`` go through it."""
    from isoplast_lite import engine
    from isoplast_lite.engine import stacked_linear

    monkeypatch.setattr(engine, "STACKED_LINEAR_MIN_NUMEL", 1)  # the custom backward at this small size too
    g = torch.Generator().manual_seed(3)
    h, w, b = (torch.randn(*shape, generator=g, dtype=torch.float64) for shape in ((4, 6, 5), (4, 3, 5), (4, 3)))
    up = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    ours, ref = [[t.clone().requires_grad_(True) for t in (h, w, b)] for _ in range(2)]
    out = stacked_linear(*ours)
    expected = torch.baddbmm(ref[2].unsqueeze(1), ref[0], ref[1].transpose(1, 2))
    torch.testing.assert_close(out, expected, rtol=1e-13, atol=1e-13)
    grads = torch.autograd.grad((out * up).sum(), ours, create_graph=True)
    for mine, theirs in zip(grads, torch.autograd.grad((expected * up).sum(), ref, create_graph=True)):
        torch.testing.assert_close(mine, theirs, rtol=1e-13, atol=1e-13)
    assert grads[1].is_contiguous() and grads[1].shape == w.shape
    # double backward: d/dh of sum(dL/dw^2) against the same through baddbmm
    second = torch.autograd.grad(grads[1].square().sum(), ours[0])[0]
    ref_grads = torch.autograd.grad((torch.baddbmm(ref[2].unsqueeze(1), ref[0], ref[1].transpose(1, 2)) * up).sum(), ref, create_graph=True)
    torch.testing.assert_close(second, torch.autograd.grad(ref_grads[1].square().sum(), ref[0])[0], rtol=1e-12, atol=1e-12)
    # vmap over a leading dimension: each slice is the function of that slice
    hw = torch.stack([h, 2 * h]).requires_grad_(True)
    mapped = torch.func.vmap(lambda x: stacked_linear(x, ours[1], ours[2]))(hw)
    torch.testing.assert_close(mapped[1], stacked_linear(2 * h, w, b), rtol=1e-13, atol=1e-13)
    # without a gradient to record: the plain product
    with torch.no_grad():
        torch.testing.assert_close(stacked_linear(*ours), expected.detach(), rtol=1e-13, atol=1e-13)
    # below the threshold: autograd's baddbmm, the same values and gradients
    monkeypatch.setattr(engine, "STACKED_LINEAR_MIN_NUMEL", w.numel() + 1)
    small = [t.clone().requires_grad_(True) for t in (h, w, b)]
    for mine, theirs in zip(torch.autograd.grad((stacked_linear(*small) * up).sum(), small), grads):
        torch.testing.assert_close(mine, theirs.detach(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("method", ["adam", "adamo", "adamw"])
def test_the_custom_linear_backward_trains_members_as_their_own_runs(method, monkeypatch):
    """The runner with engine.stacked_linear's custom backward on at every size (a stacked group)
    against each configuration's own run with autograd's ``baddbmm`` (this small net's default):
    every table equal to float64 rounding, so the kernel changes nothing but the layout."""
    from isoplast_lite import engine

    cfgs = group_configs(method)
    own = [alone(cfg) for cfg in cfgs]
    monkeypatch.setattr(engine, "STACKED_LINEAR_MIN_NUMEL", 1)
    for cfg, tables, ref in zip(cfgs, stacking.run_group(cfgs, cache_dir=False, progress=False), own):
        for name, a, b in zip(("rows", "layers", "spectra"), tables, ref):
            assert_tables_close(a, b, 1e-10, (method, cfg.lr, cfg.method_settings, name))
