"""The eNTK at the precision it claims (issue 22, item 3).

The kernel and its eigenvalues are formed in float64 from the weights as stored; an eigenvalue
at or below ``diagnostics.ntk_resolution`` (M eps lambda_max) counts as zero, the numerical rank
counts the others, and a condition number beyond the resolution is ``inf`` with
``ntk_resolved=False``. Checked against kernels whose spectrum is known by construction, against
a probe whose kernel is exactly singular (a repeated input), across thread counts and across
the runner's two measurement paths.
"""

import math

import numpy as np
import pytest
import torch

import isoplast_lite.measure as measure_module
from isoplast_lite import empirical_ntk, ntk_summary, relu_mlp
from isoplast_lite.diagnostics import ntk_resolution
from isoplast_lite.run import Config, run

EPS64 = 2.0**-52


def _kernel_with_spectrum(eigenvalues, seed=0):
    """Q diag(eigenvalues) Q^T in float64 with a random orthogonal Q."""
    m = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(m, m, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


@pytest.mark.parametrize("small, resolved", [(1e-6, True), (1e-9, True), (1e-16, False), (0.0, False)])
def test_condition_number_is_a_number_only_above_the_resolution(small, resolved):
    m = 12
    eigenvalues = [1.0] * (m - 1) + [small]
    s = ntk_summary(_kernel_with_spectrum(eigenvalues), generator=torch.Generator().manual_seed(0))
    tau = m * EPS64 * 1.0
    assert s["resolution"] == pytest.approx(tau, rel=1e-12)
    assert s["resolved"] is resolved and s["rank"] == (m if resolved else m - 1)
    if resolved:  # the eigenvalue itself is accurate to ~tau: its condition number to tau / small
        assert s["condition_number"] == pytest.approx(1.0 / small, rel=10 * tau / small)
        assert s["progress_kantorovich"] > 0
    else:
        assert math.isinf(s["condition_number"]) and s["progress_kantorovich"] == 0.0


def test_resolution_rule_is_scale_free_and_follows_the_dtype():
    assert ntk_resolution(3.0, 10) == pytest.approx(30 * EPS64)
    assert ntk_resolution(1.0, 10, torch.float32) == pytest.approx(10 * 2.0**-23)
    t = ntk_resolution(torch.tensor([1.0, 4.0], dtype=torch.float64), 5)
    torch.testing.assert_close(t, torch.tensor([5 * EPS64, 20 * EPS64], dtype=torch.float64))
    with pytest.raises(ValueError, match="size"):
        ntk_resolution(1.0, 0)
    with pytest.raises(TypeError, match="dtype"):
        ntk_resolution(1.0, 3, torch.int64)


def test_a_repeated_probe_input_gives_a_singular_kernel_reported_beyond_resolution():
    """Two equal probe inputs make the kernel exactly singular (rank (P - 1) O): the float64
    summary says so (rank, inf), where the eigenvalues of the float32 kernel give a finite
    round-off 'condition number'."""
    model = relu_mlp(6, 16, 2, 3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    x[4] = x[0]
    k64 = empirical_ntk(model, x, dtype=torch.float64)
    assert k64.dtype == torch.float64
    s = ntk_summary(k64, generator=torch.Generator().manual_seed(0))
    assert s["rank"] == 4 * 3 and s["resolved"] is False and math.isinf(s["condition_number"])
    # the float64 kernel of float32 weights equals the float32 kernel to float32 rounding
    k32 = empirical_ntk(model, x)
    torch.testing.assert_close(k32.double(), k64, rtol=1e-5, atol=1e-5 * float(k64.abs().max()))
    # without the repeated input the kernel is resolved and the rank is full
    full = ntk_summary(empirical_ntk(model, x[:4], dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    assert full["resolved"] and full["rank"] == 12 and math.isfinite(full["condition_number"])


def test_empirical_ntk_dtype_leaves_the_model_alone_and_checks_its_argument():
    model = relu_mlp(3, 8, 2, 2, generator=torch.Generator().manual_seed(0))
    before = [p.clone() for p in model.parameters()]
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    for method in ("jacobian", "ntk_vp", "layerwise"):
        k = empirical_ntk(model, x, method=method, dtype=torch.float64)
        assert k.dtype == torch.float64
    assert all(p.dtype == torch.float32 and torch.equal(p, b) for p, b in zip(model.parameters(), before))
    with pytest.raises(TypeError, match="dtype must be None, torch.float32 or torch.float64, got torch.int32"):
        empirical_ntk(model, x, dtype=torch.int32)


SMALL = dict(seeds=2, n_tasks=2, steps_per_task=30, batch_size=8, width=16, depth=2, n_train=48, probe_size=6)
NTK_COLUMNS = ("ntk_cond", "ntk_rank", "ntk_resolved", "ntk_erank", "ntk_progress_mean", "ntk_progress_worst")


def test_float32_runs_log_float64_ntk_columns_equal_on_both_measurement_paths(monkeypatch):
    """A float32 run: the seed-batched path and the per-seed path (public diagnostics) form the
    float64 kernel from the same float32 weights; their ntk_* columns agree to 1e-9 relative
    (ntk_cond to cond * M * eps64, the resolution of its smallest eigenvalue)."""
    cfg = Config("random-label-digits", "adam", **SMALL)
    fast = run(cfg, cache_dir=False, progress=False).rows
    with monkeypatch.context() as m:
        m.setattr(measure_module, "stacked_blocks", lambda stack: None)
        ref = run(cfg, cache_dir=False, progress=False).rows
    assert fast.ntk_resolved.dtype == float and (fast.ntk_resolved == 1.0).all()
    assert (fast.ntk_rank == 60).all()  # 6 probe inputs x 10 classes, all resolved
    for col in NTK_COLUMNS:
        a, b = fast[col].to_numpy(float), ref[col].to_numpy(float)
        rtol = max(1e-9, float(np.max(fast.ntk_cond)) * 60 * EPS64 * 10) if col == "ntk_cond" else 1e-9
        np.testing.assert_allclose(a, b, rtol=rtol, err_msg=col)


def test_ntk_columns_do_not_depend_on_the_thread_count_given_the_weights():
    """The measurement of fixed weights under 1 and 2 threads: the same ntk_* to 1e-9 relative
    (float32 *training* does differ across thread counts: the runner pins them, see run.py)."""
    from isoplast_lite.measure import measure_stacked, stacked_blocks, stacked_forward
    from isoplast_lite.engine import StackedModel

    stack = StackedModel.build(lambda g: relu_mlp(64, 32, 3, 10, generator=g), [0, 1, 2])
    blocks = stacked_blocks(stack)
    x = torch.randn(3, 40, 64, generator=torch.Generator().manual_seed(0))
    params = {n: p.detach() for n, p in stack.params.items()}
    threads = torch.get_num_threads()
    got = {}
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            got[t] = measure_stacked(blocks, params, stacked_forward(blocks, params, x), 16)[0]
    finally:
        torch.set_num_threads(threads)
    for col in NTK_COLUMNS:
        np.testing.assert_allclose(got[1][col].double().numpy(), got[2][col].double().numpy(), rtol=1e-9, err_msg=col)


def test_shipped_float32_condition_numbers_beyond_float32_resolution_read_as_inf():
    """Files made before issue 22 formed the eNTK in float32: results.load marks a kappa at or
    above 1 / (M eps32) ntk_resolved=False (beyond resolution), the others True; numbers as written."""
    import pandas as pd

    from isoplast_lite import results

    name = "permuted-digits"  # the old protocol's streams (chapter 8), made before issue 22
    raw = pd.read_csv(results.results_dir("streams") / results.manifest("streams")[name]["file"])
    assert "ntk_resolved" not in raw.columns
    df = results.load(name, "streams")
    probe = int((results.manifest("streams")[name].get("config") or {}).get("probe_size", 16))  # 16: the runner's default
    limit = 1.0 / (probe * 10 * 2.0**-23)  # probe inputs x 10 classes
    measured = raw.ntk_cond.notna().to_numpy()
    beyond = measured & (raw.ntk_cond.to_numpy() >= limit)
    assert beyond.any() and (~beyond & measured).any()
    assert (df.ntk_resolved.to_numpy()[beyond] == 0.0).all()
    keep = measured & ~beyond
    np.testing.assert_array_equal(df.ntk_cond.to_numpy()[measured], raw.ntk_cond.to_numpy()[measured])
    assert (df.ntk_resolved.to_numpy()[keep] == 1.0).all() and df.ntk_resolved[~measured].isna().all()


@pytest.mark.parametrize("name", ["random-label-digits", "random-label-mnist1d"])
def test_the_chain_group_was_made_with_the_float64_kernel(name):
    """data/chain was re-made after issue 22 (float64 eNTK): its files carry ntk_rank and
    ntk_resolved as the runner writes them, a kappa is inf exactly where it is beyond resolution
    and a resolved one is finite, ntk_rank counts the eigenvalues above the resolution (the full
    160 = 16 probe inputs x 10 classes when resolved, fewer when not); the loader returns them as
    written (no float32 reading)."""
    import pandas as pd

    from isoplast_lite import results

    raw = pd.read_csv(results.results_dir("chain") / results.manifest("chain")[name]["file"])
    assert {"ntk_rank", "ntk_resolved"} <= set(raw.columns) and raw.ntk_resolved.notna().all()
    resolved = raw.ntk_resolved == 1.0
    assert set(raw.ntk_resolved.unique()) <= {0.0, 1.0} and resolved.any()
    assert np.isfinite(raw.ntk_cond[resolved]).all() and np.isinf(raw.ntk_cond[~resolved]).all()
    assert (raw.ntk_rank[resolved] == 160).all() and (raw.ntk_rank[~resolved] < 160).all()
    df = results.load(name, "chain")
    np.testing.assert_array_equal(df.ntk_resolved.to_numpy(), raw.ntk_resolved.to_numpy())
