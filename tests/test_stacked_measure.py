"""The runner's seed-batched measurement against its per-seed reference, column by column.

The reference is the per-seed path the runner takes for nets the batched closed forms do not
cover (``measure.measure_seed``: a standalone copy of each seed's model measured with the public
diagnostics, ``layer_isometry``, ``empirical_ntk(method="layerwise")`` and ``ntk_summary``);
forcing it is forcing ``stacked_blocks`` to return ``None``. Training does not depend on the
measurement, so both runs see the same weights and every logged number must agree to rounding
(float64).
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import isoplast_lite.measure as measure_module
from isoplast_lite import methods
from isoplast_lite.measure import stacked_blocks
from isoplast_lite.engine import StackedModel
from isoplast_lite.methods import make_method
from isoplast_lite.run import LAYER_MEASURES, METRIC_COLUMNS, Config, run

SMALL = dict(seeds=3, n_tasks=2, steps_per_task=25, batch_size=8, width=12, depth=2, n_train=48, probe_size=5, dtype="float64")

#: (method, settings, whether the batched path covers it, block kinds of its hidden layers)
NETS = [
    ("adam", None, True, "relu"),
    ("layernorm", None, True, "layernorm"),
    ("aei-adam", {"orthogonal": "newton-schulz"}, True, "groupsort"),
    ("aei-adam", {"orthogonal": "cayley"}, False, "groupsort"),
    ("parseval", None, False, "other"),
]


def _both_paths(cfg, monkeypatch):
    """The three tables of ``run(cfg)`` by the batched path, then by the per-seed reference."""
    fast = run(cfg, cache_dir=False, progress=False, layers=True, spectra=True)
    with monkeypatch.context() as m:
        m.setattr(measure_module, "stacked_blocks", lambda stack: None)  # measure() then takes the per-seed path
        reference = run(cfg, cache_dir=False, progress=False, layers=True, spectra=True)
    return (fast.rows, fast.layers, fast.spectra), (reference.rows, reference.layers, reference.spectra)


def _assert_tables_close(fast, reference):
    (rows, layers, spectra), (ref_rows, ref_layers, ref_spectra) = fast, reference
    for got, want in ((rows, ref_rows), (layers, ref_layers), (spectra, ref_spectra)):
        assert tuple(got.columns) == tuple(want.columns) and len(got) == len(want)
        assert got.dtypes.equals(want.dtypes)
    keys = [c for c in rows.columns if c not in METRIC_COLUMNS]
    pd.testing.assert_frame_equal(rows[keys], ref_rows[keys], check_exact=True)
    for col in METRIC_COLUMNS:  # the inverse condition numbers: ratios of the smallest sigma / eigenvalue
        rtol = 1e-7 if col in ("jac_sv_ratio", "ntk_cond") else 1e-9
        np.testing.assert_allclose(rows[col].to_numpy(float), ref_rows[col].to_numpy(float), rtol=rtol, atol=1e-12, equal_nan=True, err_msg=col)
    ids = [c for c in layers.columns if c not in LAYER_MEASURES]
    pd.testing.assert_frame_equal(layers[ids], ref_layers[ids], check_exact=True)
    for col in LAYER_MEASURES:
        np.testing.assert_allclose(layers[col].to_numpy(float), ref_layers[col].to_numpy(float), rtol=1e-8, atol=1e-11, equal_nan=True, err_msg=col)
    pd.testing.assert_frame_equal(spectra.drop(columns="eigenvalue"), ref_spectra.drop(columns="eigenvalue"), check_exact=True)
    for (_, got), (_, want) in zip(spectra.groupby(["seed", "task"]), ref_spectra.groupby(["seed", "task"])):
        scale = np.nanmax(np.abs(want.eigenvalue.to_numpy())) if want.eigenvalue.notna().any() else 1.0
        np.testing.assert_allclose(got.eigenvalue, want.eigenvalue, rtol=1e-9, atol=1e-12 * scale, equal_nan=True)


@pytest.mark.parametrize("method, settings, batched, kind", NETS, ids=[f"{m}-{k}" + ("" if b else "-per-seed") for m, _, b, k in NETS])
def test_batched_measurement_equals_the_per_seed_one_for_every_block(method, settings, batched, kind, monkeypatch):
    cfg = Config("permuted-digits", method, settings=settings, lr=3e-2, **SMALL)
    m = make_method(method, cfg.settings)
    stack = StackedModel.build(lambda g: m.build_model(64, 10, cfg, g), cfg.seed_list, dtype=torch.float64)
    assert (stacked_blocks(stack) is not None) == batched  # which path the runner takes for this net
    fast, reference = _both_paths(cfg, monkeypatch)
    _assert_tables_close(fast, reference)
    rows, layers, _ = fast
    assert set(layers[layers.kind == "hidden"].block) == {kind}
    assert not rows.diverged.any() and rows[list(METRIC_COLUMNS)].drop(columns="test_acc").notna().all().all()
    if kind in ("relu", "layernorm"):  # the unit counts are compared where they are not all zero
        assert (rows["dormant_0.1"] > 0).any() and (layers[layers.kind == "hidden"].active_share < 1).all()


def test_batched_measurement_sees_dead_units_and_a_kaiming_net_like_the_per_seed_one(monkeypatch):
    cfg = Config("random-label-digits", "adam", lr=0.3, init="kaiming", **{**SMALL, "n_tasks": 3})
    fast, reference = _both_paths(cfg, monkeypatch)
    _assert_tables_close(fast, reference)
    assert (fast[0]["dead"] > 0).any()  # lr 0.3 kills units: the fractions are compared on real counts


def test_a_diverged_seed_gets_nan_rows_and_leaves_the_others_measured_as_before(monkeypatch):
    def poison(self, stack, opt, ctx):  # seed 1's weights become NaN in task 1
        if ctx.task == 1 and ctx.step == 2:
            with torch.no_grad():
                stack.params["0.0.weight"][1, 0, 0] = math.nan

    monkeypatch.setattr(methods.Adam, "after_step", poison)
    cfg = Config("permuted-digits", "adam", lr=3e-2, **SMALL)
    fast, reference = _both_paths(cfg, monkeypatch)
    _assert_tables_close(fast, reference)
    rows, layers, spectra = fast
    assert rows.diverged.tolist() == [False, False, False, True, False, False]  # (seed, task), seed 1 from task 1 on
    assert rows[rows.diverged][list(METRIC_COLUMNS)].isna().all().all()
    assert layers[(layers.seed == 1) & (layers.task == 1)][list(LAYER_MEASURES)].isna().all().all()
    assert spectra[(spectra.seed == 1) & (spectra.task == 1)].eigenvalue.isna().all()
    assert spectra[spectra.seed != 1].eigenvalue.notna().all()
