"""Cloned units (issue 23): clone_pairs / clones against a brute-force loop, and the null
directions that layer_isometry now counts, against autograd Jacobians."""

import math

import pytest
import torch
from torch.func import jacrev

from isoplast_lite import relu_mlp
from isoplast_lite.diagnostics import CLONE_TOLERANCE, clone_pairs, clones, hidden_features, layer_isometry


def _brute_force_pairs(W, h, tol):
    def rel(a, b):
        scale = max(float(a.norm()), float(b.norm()))
        return 0.0 if scale == 0 else float((a - b).norm()) / scale

    W, h = W.double(), h.double()
    return [[i, j] for i in range(W.shape[0]) for j in range(i + 1, W.shape[0])
            if rel(W[i], W[j]) <= tol and rel(h[:, i], h[:, j]) <= tol]  # fmt: skip


def test_clone_pairs_equal_a_brute_force_loop_on_planted_near_copies():
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        m, d, n = 12, 5, 30
        W = torch.randn(m, d, generator=g)
        # plant exact copies, near copies on either side of the tolerance, and two dead units
        W[3] = W[1]
        W[7] = W[1] * (1 + 0.5 * CLONE_TOLERANCE)
        W[9] = W[2] + 3 * CLONE_TOLERANCE * W[2].norm() * torch.randn(d, generator=g) / math.sqrt(d)
        W[10], W[11] = -10 - torch.rand(d, generator=g), -10 - torch.rand(d, generator=g)
        x = torch.rand(n, d, generator=g)  # positive inputs: units 10, 11 are dead
        h = torch.relu(x @ W.T)
        got = clone_pairs(W, h).tolist()
        assert got == _brute_force_pairs(W, h, CLONE_TOLERANCE)
        assert [1, 3] in got and [1, 7] in got and [3, 7] in got and [10, 11] not in got  # dead units are not clones
        assert clone_pairs(W, h, tol=0.0).tolist() == _brute_force_pairs(W, h, 0.0) == [[1, 3]]


def test_clones_of_a_model_are_its_copied_units_with_bias():
    g = torch.Generator().manual_seed(1)
    model = relu_mlp(6, 10, 2, 3, generator=g).double()
    with torch.no_grad():
        model[1][0].weight[8].copy_(model[1][0].weight[2])
        model[1][0].bias[8] = model[1][0].bias[2]
        model[0][0].weight[4].copy_(model[0][0].weight[0])
        model[0][0].bias[4] = model[0][0].bias[0] + 1.0  # same weights, another bias: not a clone
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    got = [p.tolist() for p in clones(model, x)]
    assert got == [[], [[2, 8]]]
    feats = hidden_features(model, x)
    for block, h, pairs in zip(model[:-1], feats, got):
        full = torch.cat([block[0].weight, block[0].bias[:, None]], 1).detach()
        assert pairs == _brute_force_pairs(full, h, CLONE_TOLERANCE)


def test_clone_pairs_rejects_bad_input():
    with pytest.raises(ValueError, match=r"one column per unit"):
        clone_pairs(torch.ones(3, 2), torch.ones(5, 4))
    with pytest.raises(ValueError, match="tol must be >= 0"):
        clone_pairs(torch.ones(3, 2), torch.ones(5, 3), tol=-1.0)
    with pytest.raises(TypeError, match="weights"):
        clone_pairs([[1.0]], torch.ones(1, 1))


def test_null_share_counts_the_zero_singular_values_of_the_autograd_jacobian():
    g = torch.Generator().manual_seed(2)
    model = relu_mlp(5, 7, 2, 3, generator=g).double()
    with torch.no_grad():
        model[0][0].weight[:3] = -model[0][0].weight[:3].abs()  # units that fire rarely on positive inputs
        model[0][0].bias[:3] = -0.5
        model[1][0].weight[6] = 0.0  # a zero row: a numerically zero singular value of W
    x = torch.rand(25, 5, generator=g, dtype=torch.float64)
    rows = layer_isometry(model, x)
    h = x
    for block, row in zip(model, rows):
        zero, total = 0, 0
        for xi in h:
            s = torch.linalg.svdvals(jacrev(block)(xi))
            tol = s[0] * max(s.shape[0], *jacrev(block)(xi).shape) * torch.finfo(s.dtype).eps if s[0] > 0 else 0.0
            zero += int((s <= tol).sum())
            total += s.numel()
        assert row["null_share"] == pytest.approx(zero / total, abs=1e-12)
        W = block[0].weight if isinstance(block, torch.nn.Sequential) else block.weight
        sw = torch.linalg.svdvals(W.detach())
        assert row["weight_null_share"] == pytest.approx(float((sw <= sw[0] * max(W.shape) * torch.finfo(sw.dtype).eps).double().mean()))
        h = block(h).detach()
    assert rows[0]["null_share"] > 0 and rows[1]["weight_null_share"] == pytest.approx(1 / 7)


# ------------------------------------------------------------------ the clone experiment's parts

from tools_loader import load_tool  # noqa: E402

clone_tool = load_tool("clone_experiment")


def test_cloning_units_keeps_the_function_and_plants_exactly_the_clone_pairs():
    g = torch.Generator().manual_seed(3)
    model = relu_mlp(6, 10, 2, 3, generator=g).double()
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    wide = clone_tool.clone_units(model, 0, [1, 4], generator=g)
    wide = clone_tool.clone_units(wide, 1, [0, 7, 9], generator=g)
    torch.testing.assert_close(wide(x), model(x), rtol=1e-12, atol=1e-12)
    assert [p.tolist() for p in clones(wide, x)] == [[[1, 10], [4, 11]], [[0, 10], [7, 11], [9, 12]]]
    near = clone_tool.clone_units(model, 0, [1], noise=1e-4, generator=g)
    w = near[0][0].weight.detach()
    rel = float((w[1] - w[10]).norm() / w[1].norm())
    assert 0 < rel < CLONE_TOLERANCE and [p.tolist() for p in clones(near, x)][0] == [[1, 10]]


def test_isometry_step_on_a_row_difference_is_the_stated_linear_map_and_its_terms_add_up():
    g = torch.Generator().manual_seed(4)
    W = torch.randn(9, 5, generator=g, dtype=torch.float64) / 3
    W[7] = W[2] + 1e-3 * torch.randn(5, generator=g, dtype=torch.float64)
    s = 1e-3
    from isoplast_lite import isometry_grad

    after = W - s * isometry_grad(W)
    delta0, delta1 = W[2] - W[7], after[2] - after[7]
    # one step is exactly (I - 4 s (G - I)) delta: the frozen prediction at k = 1
    (pred,) = clone_tool.frozen_prediction(W, [(2, 7)], s, [1]).values()
    assert pred[1] == pytest.approx(float(delta1.norm() / delta0.norm()), rel=1e-12)
    # the two terms' rates sum to the rate of the whole gradient, which the step realizes to first order
    ((renorm, decor),) = clone_tool.growth_rates(W, [(2, 7)])
    G = W.T @ W
    exact = float(delta0 @ (torch.eye(5, dtype=W.dtype) - G) @ delta0 / (delta0 @ delta0)) * 4
    assert renorm + decor == pytest.approx(exact, rel=1e-9)
    assert float(delta1.norm() / delta0.norm()) - 1 == pytest.approx(s * exact, rel=1e-2)


def test_the_shipped_clone_experiment_is_complete_and_consistent_with_its_definition():
    from isoplast_lite import results

    df = results.load_clones()
    entry = results.manifest("clones")["clone-experiment"]
    cfg = entry["settings"]
    assert sorted(df.optimizer.unique()) == sorted(cfg["optimizers"]) and sorted(df.condition.unique()) == ["exact", "near"]
    assert sorted(df.step.unique()) == cfg["steps_measured"] and df.seed.nunique() == cfg["seeds"] >= 2
    sizes = df.groupby(["seed", "condition", "optimizer", "step", "layer"]).size()
    assert (sizes == cfg["units_cloned_per_layer"]).all()
    # a planted pair is a clone exactly when both distances are within the tolerance (the definition, re-applied)
    assert (df.is_clone == ((df.w_dist <= CLONE_TOLERANCE) & (df.h_dist <= CLONE_TOLERANCE))).all()
    start = df[df.step == 0]
    assert start.is_clone.all() and (start[start.condition == "exact"].w_dist == 0).all()
    assert entry["max_logit_change_exact_clone"] < 1e-5  # float32: cloning did not change the function


def _plant(stack, seed, layer, pairs, noise):
    """Unit j of hidden ``layer`` of stacked seed ``seed`` becomes a copy of unit i (row and bias),
    moved by a relative ``noise`` in a random direction (not along the row: a scaled copy would be
    a rank drop like an exact one)."""
    g = torch.Generator().manual_seed(100 * seed + layer)
    with torch.no_grad():
        W, b = stack.params[f"{layer}.0.weight"], stack.params[f"{layer}.0.bias"]
        for i, j in pairs:
            full = torch.cat([W[seed, i], b[seed, i : i + 1]])
            step = torch.randn(full.shape, generator=g, dtype=full.dtype)
            full = full + noise * full.norm() * step / step.norm()
            W[seed, j], b[seed, j] = full[:-1], full[-1]


@pytest.mark.parametrize("layernorm", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_runner_clone_columns_count_planted_clones_on_both_paths_as_a_brute_force_loop(layernorm, dtype):
    """The runner's per-layer clone counts and null shares, seed-batched and per seed, against
    planted copies, a brute-force loop over pairs and the weights' own singular values."""
    from isoplast_lite.engine import StackedModel
    from isoplast_lite.measure import measure, measure_seed, stacked_blocks
    from isoplast_lite.units import EXACT_CLONE_ULPS, exact_clone_tolerance

    width, depth, probe = 12, 2, 16
    stack = StackedModel.build(lambda g: relu_mlp(6, width, depth, 3, layernorm=layernorm, generator=g), [0, 1, 2], dtype=dtype)
    assert stacked_blocks(stack) is not None
    planted = {0: ([(0, 1)], [(2, 3)]), 1: ([(0, 1), (4, 5)], []), 2: ([], [(2, 3), (6, 7)])}  # seed: (exact, near)
    for seed, (exact, near) in planted.items():
        for layer in range(depth):
            _plant(stack, seed, layer, exact, 0.0)
            _plant(stack, seed, layer, near, 1e-4)
    x = torch.randn(3, 40, 6, generator=torch.Generator().manual_seed(3), dtype=dtype)
    batched = measure(stack, x, [0, 1, 2], probe)
    exact_tol = exact_clone_tolerance(dtype)
    assert exact_tol == EXACT_CLONE_ULPS * torch.finfo(dtype).eps
    for seed, (exact, near) in planted.items():
        reference = measure_seed(stack, seed, x[seed], x[seed, :probe])[1]
        model = stack.model_for_seed(seed)
        feats = hidden_features(model, x[seed, :probe])
        for layer, (got, ref) in enumerate(zip(batched[seed][1], reference)):
            if layer == depth:  # the head: not hidden units, not measured
                assert all(math.isnan(r[c]) for r in (got, ref) for c in ("clone_pairs", "exact_clone_pairs", "clone_tol", "exact_clone_tol"))
                continue
            lin = model[layer][0]
            full = torch.cat([lin.weight, lin.bias[:, None]], 1).detach()
            assert got["clone_pairs"] == ref["clone_pairs"] == len(_brute_force_pairs(full, feats[layer], CLONE_TOLERANCE)) == len(exact) + len(near)
            assert got["exact_clone_pairs"] == ref["exact_clone_pairs"] == len(_brute_force_pairs(full, feats[layer], exact_tol)) == len(exact)
            assert got["clone_tol"] == ref["clone_tol"] == CLONE_TOLERANCE and got["exact_clone_tol"] == ref["exact_clone_tol"] == exact_tol
            # an exact copy of a row drops the rank of a square W by one (numerically zero singular
            # value), not that of the tall first layer (12 x 6): the weight null share
            d_out, d_in = lin.weight.shape
            k = min(d_out, d_in)
            null = (k - min(d_out - len(exact), d_in)) / k
            sw = torch.linalg.svdvals(lin.weight.detach().double())
            assert float((sw < 1e-6 * sw[0]).double().mean()) == pytest.approx(null)  # near copies: sigma ~ 1e-5
            assert null > 0 or layer == 0 or not exact
            for r in (got, ref):
                assert r["weight_null_share"] == pytest.approx(null)
                assert r["null_share"] == pytest.approx(1.0 - r["directions_share"], abs=1e-12)
            assert got["null_share"] == pytest.approx(ref["null_share"], abs=1e-12)
