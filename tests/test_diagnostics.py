"""Tests of the eNTK, its summary and the layer Jacobians against brute-force oracles."""

import math

import pytest
import torch
from torch import nn

from isoplast_lite import aei_mlp, empirical_ntk, layer_jacobian_svdvals, ntk_summary, relu_mlp

# torch loads its forward-AD decompositions through torch.jit.script the first time jvp runs.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),  # small tensors: one thread is faster
]


def _brute_force_ntk(model, x1, x2):
    """Oracle: per-example, per-output autograd gradients, then J1 J2^T."""
    params = [p for p in model.parameters() if p.requires_grad]

    def jacobian(x):  # (N, O, P)
        rows = []
        for n in range(x.shape[0]):
            out = model(x[n : n + 1]).reshape(-1)
            per_output = []
            for a in range(out.shape[0]):
                grads = torch.autograd.grad(out[a], params, retain_graph=True)
                per_output.append(torch.cat([g.reshape(-1) for g in grads]))
            rows.append(torch.stack(per_output))
        return torch.stack(rows)

    j1, j2 = jacobian(x1), jacobian(x2)
    return torch.einsum("naf,mbf->nmab", j1, j2)


MODELS = {
    "relu": lambda g: relu_mlp(4, 8, 2, 3, generator=g, dtype=torch.float64),
    "relu_layernorm": lambda g: relu_mlp(4, 8, 2, 3, layernorm=True, init="kaiming", generator=g, dtype=torch.float64),
    "aei": lambda g: aei_mlp(4, 8, 2, 3, generator=g, dtype=torch.float64),
    "aei_cayley": lambda g: aei_mlp(4, 8, 2, 3, orthogonal="cayley", generator=g, dtype=torch.float64),
}


@pytest.mark.parametrize("kind", MODELS)
def test_empirical_ntk_equals_brute_force(gen, kind):
    model = MODELS[kind](gen)
    x1 = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    x2 = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    expected_11 = _brute_force_ntk(model, x1, x1)
    expected_12 = _brute_force_ntk(model, x1, x2)
    for method in ["auto", "jacobian", "ntk_vp", "layerwise"]:
        for chunk_size in [None, 2]:
            k11 = empirical_ntk(model, x1, method=method, chunk_size=chunk_size)
            k12 = empirical_ntk(model, x1, x2, method=method, chunk_size=chunk_size)
            assert k11.shape == (5, 5, 3, 3) and k12.shape == (5, 3, 3, 3)
            assert not k11.requires_grad
            torch.testing.assert_close(k11, expected_11, msg=f"{method} chunk={chunk_size}")
            torch.testing.assert_close(k12, expected_12, msg=f"{method} chunk={chunk_size}")


def test_empirical_ntk_is_symmetric_psd(gen):
    model = MODELS["relu"](gen)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    theta = empirical_ntk(model, x).permute(0, 2, 1, 3).reshape(18, 18)
    torch.testing.assert_close(theta, theta.T)
    assert torch.linalg.eigvalsh(theta).min() > -1e-10


def test_empirical_ntk_rejects_x2_with_other_feature_size(gen):
    model = MODELS["relu"](gen)
    with pytest.raises(ValueError, match="x2"):
        empirical_ntk(model, torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64))


def _parseval_model(gen):
    """Parseval's net (Chung et al.): relu_mlp with a DiagonalScale after each hidden linear layer."""
    from isoplast_lite.methods import make_method
    from isoplast_lite.run import Config

    cfg = Config("random-label-digits", "parseval", width=8, depth=2, dtype="float64")
    model = make_method("parseval", cfg.settings).build_model(4, 3, cfg, gen).double()
    with torch.no_grad():  # non-trivial diagonal scales and shifts
        for block in model[:-1]:
            block[1].weight.add_(0.3 * torch.randn(8, generator=gen, dtype=torch.float64))
            block[1].bias.add_(0.3 * torch.randn(8, generator=gen, dtype=torch.float64))
    return model


DEFAULT_CASES = {**MODELS, "aei_groupsort4": lambda g: aei_mlp(4, 8, 2, 3, group_size=4, generator=g, dtype=torch.float64),
                 "parseval_diagonal": _parseval_model}  # fmt: skip


@pytest.mark.parametrize("kind", DEFAULT_CASES)
def test_empirical_ntk_default_is_layerwise_where_it_applies_and_equals_jacobian(gen, kind, monkeypatch):
    """The default ("auto") picks the layered form on these models and gives the Jacobian
    contraction's kernel to float64 rounding, for x2 = x1 and x2 != x1, chunked or not."""
    from isoplast_lite import entk

    model = DEFAULT_CASES[kind](gen)
    x1 = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    x2 = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    chosen = []
    real = entk._ntk_layerwise
    monkeypatch.setattr(entk, "_ntk_layerwise", lambda *a: chosen.append(a[1]) or real(*a))
    for chunk_size in [None, 4]:
        for second in [None, x2]:
            chosen.clear()
            expected = empirical_ntk(model, x1, second, method="jacobian", chunk_size=chunk_size)
            assert chosen == []
            got = empirical_ntk(model, x1, second, chunk_size=chunk_size)
            torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-10)
            has_generic = kind == "aei_cayley" or kind == "relu_layernorm" or kind == "parseval_diagonal"
            layered = chunk_size is None or not has_generic  # chunked: only when every weight is layered
            assert len(chosen) == int(layered), (kind, chunk_size)
            if chosen:
                plan = chosen[0]
                n_linear = 1 if kind == "aei_cayley" else 3  # Cayley hidden weights are parametrized: the head only
                assert len(plan.structured) == n_linear
                assert bool(plan.generic) == has_generic


def test_empirical_ntk_default_falls_back_to_jacobian_without_linear_layers(gen, monkeypatch):
    from isoplast_lite import entk

    class Quadratic(nn.Module):  # no linear layer at all
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.randn(4, 2, generator=gen, dtype=torch.float64))

        def forward(self, x):
            return (x @ self.a) ** 2

    model = Quadratic()
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    monkeypatch.setattr(entk, "_ntk_layerwise", lambda *a: pytest.fail("layerwise chosen"))
    torch.testing.assert_close(empirical_ntk(model, x), _brute_force_ntk(model, x, x))


def test_layerwise_handles_weights_tied_across_modules_and_linear_subclasses(gen):
    """A weight used by two modules, and an nn.Linear subclass that computes something else, are
    not in closed form: their per-example Jacobians are used (the oracle is the brute-force loop)."""

    class ScaledLinear(nn.Linear):
        def forward(self, x):
            return 2.0 * super().forward(x)

    a, b = nn.Linear(4, 4).double(), nn.Linear(4, 4).double()
    b.weight = a.weight  # tied
    model = nn.Sequential(a, nn.Tanh(), b, nn.Tanh(), ScaledLinear(4, 2).double())
    x1 = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    x2 = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    for method in ["auto", "layerwise"]:
        torch.testing.assert_close(empirical_ntk(model, x1, method=method), _brute_force_ntk(model, x1, x1), msg=method)
        torch.testing.assert_close(empirical_ntk(model, x1, x2, method=method), _brute_force_ntk(model, x1, x2), msg=method)


# ---------------------------------------------------------------------------- layer Jacobians


def test_aei_network_is_isometric_everywhere_and_relu_is_not(gen):
    x = torch.randn(16, 12, generator=gen)
    aei = aei_mlp(12, 12, 4, 12, head="orthogonal", generator=gen)
    sv = layer_jacobian_svdvals(aei, x)
    assert list(sv) == [0, 1, 2, 3, 4, "end_to_end"]
    for key, values in sv.items():
        assert values.shape == (16, 12)
        torch.testing.assert_close(values, torch.ones_like(values), atol=1e-4, rtol=0, msg=str(key))

    relu = relu_mlp(12, 12, 4, 12, generator=gen)  # orthogonal init too, but ReLU masks units
    sv = layer_jacobian_svdvals(relu, x)
    assert max((sv[l] - 1).abs().max().item() for l in range(4)) > 0.5
    assert (sv["end_to_end"] - 1).abs().max().item() > 0.5


def test_aei_free_head_rectangular_hidden_blocks_are_isometric(gen):
    model = aei_mlp(5, 16, 3, 2, group_size=4, generator=gen)
    with torch.no_grad():
        model[-1].weight.mul_(3.0)  # an unconstrained head
    sv = layer_jacobian_svdvals(model, torch.randn(8, 5, generator=gen))
    for block in range(3):
        torch.testing.assert_close(sv[block], torch.ones_like(sv[block]), atol=1e-4, rtol=0)
    assert sv[0].shape == (8, 5) and sv[1].shape == (8, 16) and sv[3].shape == (8, 2)
    torch.testing.assert_close(sv[3], torch.full_like(sv[3], 3.0), atol=1e-4, rtol=0)


def test_layer_jacobian_svdvals_equals_autograd_jacobian(gen):
    model = relu_mlp(4, 6, 2, 3, layernorm=True, init="kaiming", generator=gen, dtype=torch.float64)
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    sv = layer_jacobian_svdvals(model, x)
    h = x
    for l, block in enumerate(model):
        for n in range(3):
            jac = torch.autograd.functional.jacobian(lambda v: block(v[None])[0], h[n])
            torch.testing.assert_close(sv[l][n], torch.linalg.svdvals(jac))
        h = block(h).detach()
    for n in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x[n])
        torch.testing.assert_close(sv["end_to_end"][n], torch.linalg.svdvals(jac))


# ---------------------------------------------------------------------------- ntk_summary


def test_ntk_summary_identity():
    s = ntk_summary(torch.eye(6, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    assert s["condition_number"] == pytest.approx(1.0)
    assert s["progress_mean"] == pytest.approx(1.0)
    assert s["progress_kantorovich"] == pytest.approx(1.0)
    assert s["effective_rank"] == pytest.approx(6.0)
    assert s["trace"] == pytest.approx(6.0)
    torch.testing.assert_close(s["eigenvalues"], torch.ones(6, dtype=torch.float64))


@pytest.mark.parametrize("k", [2.0, 10.0, 100.0])
def test_ntk_summary_kantorovich_bound(k):
    theta = torch.diag(torch.tensor([1.0, k], dtype=torch.float64))
    s = ntk_summary(theta, n_directions=2000, generator=torch.Generator().manual_seed(0))
    assert s["condition_number"] == pytest.approx(k)
    assert s["progress_kantorovich"] == pytest.approx(4 * k / (1 + k) ** 2)
    assert s["progress_kantorovich"] < s["progress_mean"] < 1.0
    # the bound is attained at u = (sqrt(k), 1) (Kantorovich equality case)
    u = torch.tensor([k**0.5, 1.0], dtype=torch.float64)
    rho = (u @ theta @ u) ** 2 / (u @ u * (theta @ u) @ (theta @ u))
    assert rho.item() == pytest.approx(s["progress_kantorovich"])


def test_ntk_summary_progress_equals_line_search_oracle():
    """Independent oracle: best decrease of |u - eta Theta u|^2 over a fine grid of step sizes."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    theta = a @ a.T + 0.1 * torch.eye(5, dtype=torch.float64)
    s = ntk_summary(theta, n_directions=4, generator=torch.Generator().manual_seed(7))
    u = torch.randn(4, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)  # same draws
    etas = torch.linspace(0, 2.0 / torch.linalg.eigvalsh(theta)[0].item(), 200001, dtype=torch.float64)
    fractions = []
    for ui in u:
        tu = theta @ ui
        losses = (ui[None] - etas[:, None] * tu[None]).square().sum(1)
        fractions.append(1 - losses.min().item() / ui.square().sum().item())
    assert s["progress_mean"] == pytest.approx(sum(fractions) / 4, abs=1e-6)


def test_ntk_summary_four_dim_layout_and_singular_kernel(gen):
    model = relu_mlp(3, 8, 1, 2, generator=gen, dtype=torch.float64)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    K = empirical_ntk(model, x)
    s4 = ntk_summary(K, generator=torch.Generator().manual_seed(0))
    s2 = ntk_summary(K.permute(0, 2, 1, 3).reshape(8, 8), generator=torch.Generator().manual_seed(0))
    for key in ["condition_number", "effective_rank", "progress_mean", "trace"]:
        assert s4[key] == pytest.approx(s2[key])
    torch.testing.assert_close(s4["eigenvalues"], torch.linalg.eigvalsh(K.permute(0, 2, 1, 3).reshape(8, 8)).flip(0))
    singular = ntk_summary(torch.diag(torch.tensor([1.0, 0.0])), generator=torch.Generator().manual_seed(0))
    assert singular["condition_number"] == float("inf") and singular["progress_kantorovich"] == 0.0
    assert 0.0 <= singular["progress_mean"] <= 1.0


def test_empirical_ntk_handles_shared_frozen_and_biasless_layers(gen):
    """The structured path must fall back or adapt where the outer-product form does not apply."""
    shared = nn.Linear(4, 4).double()
    frozen = nn.Linear(4, 4).double()
    frozen.weight.requires_grad_(False)
    model = nn.Sequential(shared, nn.Tanh(), shared, nn.ReLU(), frozen, nn.Tanh(), nn.Linear(4, 2, bias=False).double())
    x1 = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    x2 = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    before = list(model.parameters())
    expected_11, expected_12 = _brute_force_ntk(model, x1, x1), _brute_force_ntk(model, x1, x2)
    for method in ["auto", "jacobian", "ntk_vp", "layerwise"]:
        torch.testing.assert_close(empirical_ntk(model, x1, method=method), expected_11, msg=method)
        torch.testing.assert_close(empirical_ntk(model, x1, x2, method=method, chunk_size=2), expected_12, msg=method)
        # the model is left as it was: same Parameter objects (torch's functional_call alone
        # would replace the tied one by a plain tensor), no hooks left behind
        assert all(a is b for a, b in zip(model.parameters(), before)) and len(list(model.parameters())) == 5
        assert not any(m._forward_hooks for m in model.modules())


# ---------------------------------------------------------------------------- per-layer isometry

from isoplast_lite.diagnostics import (  # noqa: E402
    REVIVAL_THRESHOLD,
    active_jacobian_svdvals,
    firing_share,
    hidden_features,
    layer_isometry,
    revived,
    weight_singular_values,
)


def _orthogonal(n, gen, dtype=torch.float64):
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=dtype))
    return q * torch.sign(torch.diagonal(r))


def _with_singular_values(s, d_out, d_in, gen):
    """A (d_out, d_in) matrix U diag(s) V^T with the given singular values."""
    u, v = _orthogonal(d_out, gen)[:, : len(s)], _orthogonal(d_in, gen)[:, : len(s)]
    return u @ torch.diag(s) @ v.T


@pytest.mark.parametrize("orthogonal", ["newton-schulz", "cayley"])
def test_aei_net_has_scale_and_spread_zero_in_every_hidden_layer(gen, orthogonal):
    model = aei_mlp(12, 16, 3, 5, orthogonal=orthogonal, generator=gen)  # float32, rectangular first layer
    x = torch.randn(16, 12, generator=gen)
    rows = layer_isometry(model, x)
    assert [(r["layer"], r["kind"], r["block"]) for r in rows] == [
        (0, "hidden", "groupsort"), (1, "hidden", "groupsort"), (2, "hidden", "groupsort"), (3, "head", "linear")]
    for r in rows[:3]:
        assert abs(r["scale"]) < 1e-5 and r["spread"] < 1e-5, r
        assert abs(r["weight_scale"]) < 1e-5 and r["weight_spread"] < 1e-5
        assert r["directions_share"] == 1.0 and r["inputs_share"] == 1.0 and r["n_null"] == 0
    assert [r["n_directions"] for r in rows] == [16 * 12, 16 * 16, 16 * 16, 16 * 5]


@pytest.mark.parametrize("c", [0.5, 1.0, 3.0])
def test_relu_layer_with_scaled_orthogonal_weight_has_spread_zero_and_scale_log_c(gen, c):
    model = relu_mlp(8, 10, 2, 3, init="kaiming", generator=gen, dtype=torch.float64)
    with torch.no_grad():
        model[1][0].weight.copy_(c * _orthogonal(10, gen))  # any subset of rows of c Q has every sigma = c
        model[1][0].bias.copy_(0.1 * torch.randn(10, generator=gen, dtype=torch.float64))
    x = torch.randn(20, 8, generator=gen, dtype=torch.float64)
    row = layer_isometry(model, x)[1]
    assert row["block"] == "relu"
    assert row["scale"] == pytest.approx(math.log(c), abs=1e-12)
    assert row["spread"] == pytest.approx(0.0, abs=1e-12)
    # independent count: one direction per (input, active unit), since |A(x)| <= d_in = 10
    h0 = hidden_features(model, x)[0]
    pre = h0 @ model[1][0].weight.T + model[1][0].bias
    assert row["n_directions"] == int((pre > 0).sum())
    assert row["active_share"] == pytest.approx(float((pre > 0).double().mean()))
    assert row["weight_sigma_min"] == pytest.approx(c) and row["weight_sigma_max"] == pytest.approx(c)


def test_layers_with_known_singular_values(gen):
    """A head, a GroupSort block and an all-active ReLU block whose weights have known spectra."""
    from isoplast_lite import GroupSort

    s_head = torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64)
    s_mid = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.5, 0.1], dtype=torch.float64)
    s_first = torch.tensor([3.0, 2.0, 1.0, 0.2], dtype=torch.float64)
    first = nn.Linear(4, 6).double()
    mid = nn.Linear(6, 6).double()
    head = nn.Linear(6, 3).double()
    with torch.no_grad():
        first.weight.copy_(_with_singular_values(s_first, 6, 4, gen))
        first.bias.fill_(100.0)  # every unit active on every probe input: J = W
        mid.weight.copy_(_with_singular_values(s_mid, 6, 6, gen))
        head.weight.copy_(_with_singular_values(s_head, 3, 6, gen))
    model = nn.Sequential(nn.Sequential(first, nn.ReLU()), nn.Sequential(mid, GroupSort(2)), head)
    x = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    rows = layer_isometry(model, x)
    sv = active_jacobian_svdvals(model, x)
    for row, s in zip(rows, (s_first, s_mid, s_head)):
        logs = s.log()
        assert row["scale"] == pytest.approx(float(logs.mean()), abs=1e-12)
        assert row["spread"] == pytest.approx(float(logs.std(correction=0)), abs=1e-12)
        assert row["weight_scale"] == pytest.approx(row["scale"], abs=1e-12)
        assert row["weight_sigma_min"] == pytest.approx(float(s.min()))
        assert row["weight_sigma_max"] == pytest.approx(float(s.max()))
        assert row["jac_sigma_min"] == pytest.approx(float(s.min())) and row["jac_sigma_max"] == pytest.approx(float(s.max()))
        assert row["n_directions"] == 7 * len(s)
        torch.testing.assert_close(sv[row["layer"]], s.expand(7, -1))
    for l, s in zip(range(3), (s_first, s_mid, s_head)):
        torch.testing.assert_close(weight_singular_values(model)[l], s)
    # spread is scale-free, scale moves by log c
    with torch.no_grad():
        head.weight.mul_(5.0)
    scaled = layer_isometry(model, x)[2]
    assert scaled["spread"] == pytest.approx(rows[2]["spread"], abs=1e-12)
    assert scaled["scale"] == pytest.approx(rows[2]["scale"] + math.log(5.0), abs=1e-12)


def _nonzero_svdvals_by_jacrev(block, h, rtol=1e-9):
    """Oracle: torch.func.jacrev per input, SVD, singular values above rtol * sigma_max."""
    out = []
    for hn in h:
        jac = torch.func.jacrev(lambda v: block(v[None])[0])(hn).detach()  # (d_out, d_in)
        s = torch.linalg.svdvals(jac)
        out.append(s[s > rtol * s[0]])
    return out


@pytest.mark.parametrize("layernorm,init", [(False, "default"), (True, "default"), (True, "orthogonal")])
def test_active_jacobian_svdvals_equal_jacrev_then_svd(gen, layernorm, init):
    """With init="orthogonal" (zero biases) a LayerNorm block is invariant to its input's scale:
    one more direction is exactly null, and both computations must drop it."""
    model = relu_mlp(5, 9, 3, 4, init=init, layernorm=layernorm, generator=gen, dtype=torch.float64)
    if layernorm:
        for block in model[:-1]:
            block[1].eps = 0.0  # the exact Jacobian then has its 2 LayerNorm null directions exactly
            with torch.no_grad():
                block[1].weight.copy_(1 + 0.3 * torch.randn(9, generator=gen, dtype=torch.float64))
    x = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    fast = active_jacobian_svdvals(model, x)
    rows = layer_isometry(model, x)
    h = x
    for l, block in enumerate(model):
        oracle = _nonzero_svdvals_by_jacrev(block, h)
        for n in range(12):
            got = fast[l][n][~torch.isnan(fast[l][n])]
            torch.testing.assert_close(got, oracle[n], rtol=1e-7, atol=1e-10)
        pooled = torch.cat(oracle).log()
        assert rows[l]["n_directions"] == pooled.numel()
        assert rows[l]["scale"] == pytest.approx(float(pooled.mean()), abs=1e-9)
        assert rows[l]["spread"] == pytest.approx(float(pooled.std(correction=0)), abs=1e-9)
        h = block(h).detach()
    assert rows[0]["block"] == ("layernorm" if layernorm else "relu") and rows[-1]["block"] == "linear"


def test_dead_layer_gives_nan_scale_and_no_directions(gen):
    model = relu_mlp(3, 4, 2, 2, generator=gen)
    with torch.no_grad():
        model[1][0].bias.fill_(-1e3)  # block 1 never fires
    row = layer_isometry(model, torch.randn(6, 3, generator=gen))[1]
    assert row["n_directions"] == 0 and row["inputs_share"] == 0.0 and row["active_share"] == 0.0
    assert math.isnan(row["scale"]) and math.isnan(row["spread"])


def test_layer_isometry_rejects_bad_input(gen):
    model = relu_mlp(3, 4, 2, 2, generator=gen)
    with pytest.raises(TypeError, match="model"):
        layer_isometry(model[0][0], torch.randn(2, 3))
    with pytest.raises(ValueError, match="x"):
        layer_isometry(model, torch.full((2, 3), math.nan))
    with pytest.raises(ValueError, match="x"):
        layer_isometry(model, torch.randn(2, 5))
    with pytest.raises(TypeError, match="x"):
        active_jacobian_svdvals(model, torch.randn(2, 3, dtype=torch.float64))


# ---------------------------------------------------------------------------- firing share, revival


@pytest.mark.parametrize("layernorm", [False, True])
def test_firing_share_equals_share_of_positive_hidden_features(gen, layernorm):
    model = relu_mlp(5, 8, 3, 2, init="default", layernorm=layernorm, generator=gen, dtype=torch.float64)
    x = torch.randn(30, 5, generator=gen, dtype=torch.float64)
    shares = firing_share(model, x)
    feats = hidden_features(model, x)  # post-ReLU: positive iff the pre-activation is
    assert len(shares) == 3
    for s, f in zip(shares, feats):
        torch.testing.assert_close(s, (f > 0).double().mean(0))
        assert s.dtype == torch.float64


def test_revived_on_a_hand_made_unit():
    """One input feature x = 0..19; unit i fires iff x > t_i, so its share is known exactly."""
    from isoplast_lite import relu_mlp

    model = relu_mlp(1, 4, 1, 1)
    x = torch.arange(20.0)[:, None]
    with torch.no_grad():
        model[0][0].weight.fill_(1.0)
        model[0][0].bias.copy_(torch.tensor([-100.0, -100.0, -100.0, -10.0]))  # units 0-2 dead, 3 alive
    before = firing_share(model, x)
    with torch.no_grad():
        model[0][0].bias.copy_(torch.tensor([-18.0, -19.0, -9.0, -10.0]))  # after: shares 1/20, 0, 10/20, 9/20
    after = firing_share(model, x)
    torch.testing.assert_close(before[0], torch.tensor([0.0, 0.0, 0.0, 0.45], dtype=torch.float64))
    torch.testing.assert_close(after[0], torch.tensor([0.05, 0.0, 0.5, 0.45], dtype=torch.float64))
    assert REVIVAL_THRESHOLD == 0.05
    assert revived(before, after)[0].tolist() == [True, False, True, False]
    assert revived(before, after, threshold=0.1)[0].tolist() == [False, False, True, False]
    assert revived(before[0], after[0]).tolist() == [True, False, True, False]


def test_revived_rejects_bad_input():
    a = torch.tensor([0.0, 0.5])
    with pytest.raises(ValueError, match="threshold"):
        revived(a, a, threshold=0.0)
    with pytest.raises(ValueError, match="threshold"):
        revived(a, a, threshold=1.5)
    with pytest.raises(ValueError, match="after"):
        revived(a, torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="after"):
        revived([a, a], [a])
    with pytest.raises(ValueError, match="before"):
        revived(torch.tensor([-0.1, 0.5]), a)


# ---------------------------------------------------------------------------- expected progress depends on the spectrum's shape


def test_mean_progress_depends_on_the_spectrum_shape_not_only_on_the_condition_number():
    """Same kappa = 100, same Kantorovich worst case; the mean over random directions differs.

    Oracle for many eigenvalues: u^T Theta u / |u|^2 -> mean(lambda) and |Theta u|^2 / |u|^2 ->
    mean(lambda^2), so rho -> mean(lambda)^2 / mean(lambda^2) (law of large numbers; it needs
    many eigenvalues in each group: a single large one keeps its chi-square fluctuation).
    """
    m = 400
    spectra = {
        "one in eight large": torch.cat([torch.full((m // 8,), 100.0), torch.ones(m - m // 8)]),
        "half and half": torch.cat([torch.full((m // 2,), 100.0), torch.ones(m // 2)]),
        "seven in eight large": torch.cat([torch.full((7 * m // 8,), 100.0), torch.ones(m - 7 * m // 8)]),
    }
    means = {}
    for name, lam in spectra.items():
        s = ntk_summary(torch.diag(lam.double()), n_directions=512, generator=torch.Generator().manual_seed(0))
        assert s["condition_number"] == pytest.approx(100.0)
        assert s["progress_kantorovich"] == pytest.approx(400 / 101**2)
        limit = float(lam.mean() ** 2 / lam.square().mean())
        assert s["progress_mean"] == pytest.approx(limit, abs=0.03), name
        means[name] = s["progress_mean"]
    assert max(means.values()) - min(means.values()) > 0.5


def test_rank_deficient_active_rows_and_other_blocks(gen):
    """Duplicated active rows give a numerically zero direction (counted in n_null, not logged as
    -inf); a block of another kind (Linear, Tanh) falls back to jacrev with a numerical rank."""
    first = nn.Linear(4, 4).double()
    with torch.no_grad():
        first.weight.copy_(torch.randn(4, 4, generator=gen, dtype=torch.float64))
        first.weight[1] = first.weight[0]  # units 0 and 1 identical
        first.bias.fill_(5.0)  # all active on the small inputs below: W_A = W, rank 3
    second = nn.Linear(4, 3).double()
    with torch.no_grad():
        second.weight.copy_(0.1 * torch.randn(3, 4, generator=gen, dtype=torch.float64))
        second.bias.fill_(-1.0)  # tanh away from saturation
    model = nn.Sequential(nn.Sequential(first, nn.ReLU()), nn.Sequential(second, nn.Tanh()), nn.Linear(3, 2).double())
    x = 0.1 * torch.randn(5, 4, generator=gen, dtype=torch.float64)
    rows = layer_isometry(model, x)
    assert rows[0]["n_null"] == 5 and rows[0]["n_directions"] == 15
    expected = torch.linalg.svdvals(first.weight.detach())[:3].log()
    assert rows[0]["scale"] == pytest.approx(float(expected.mean()), abs=1e-10)
    assert rows[1]["block"] == "other" and rows[1]["n_null"] == 0
    h = model[0](x).detach()
    oracle = torch.cat(_nonzero_svdvals_by_jacrev(model[1], h)).log()
    assert rows[1]["n_directions"] == oracle.numel() == 15
    assert rows[1]["spread"] == pytest.approx(float(oracle.std(correction=0)), abs=1e-10)


def test_layernorm_eps_does_not_leave_a_spurious_radial_direction(gen):
    """LayerNorm's eps makes the radial direction's singular value eps / (var + eps) times the
    others instead of 0; the measure drops it, so it agrees with the eps = 0 Jacobian (jacrev)."""
    import copy

    model = relu_mlp(6, 10, 2, 3, layernorm=True, generator=gen, dtype=torch.float64)  # zero biases
    x = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    rows = layer_isometry(model, x)
    exact = copy.deepcopy(model)
    for block in exact[:-1]:
        block[1].eps = 0.0
    h = x
    for l, block in enumerate(exact[:-1]):
        oracle = torch.cat(_nonzero_svdvals_by_jacrev(block, h)).log()
        assert rows[l]["n_directions"] == oracle.numel()
        assert rows[l]["scale"] == pytest.approx(float(oracle.mean()), abs=1e-4)
        assert rows[l]["spread"] == pytest.approx(float(oracle.std(correction=0)), abs=1e-4)
        h = block(h).detach()
    # (Linear, LayerNorm) with eps, by jacrev: the radial singular value is tiny but not 0
    raw = torch.linalg.svdvals(torch.func.vmap(torch.func.jacrev(lambda v: model[0][:2](v[None])[0]))(x).detach())
    assert (raw[:, -1] < 1e-3 * raw[:, 0]).all() and (raw[:, -1] > 1e-9 * raw[:, 0]).all()
    assert (raw[:, -2] > 1e-2 * raw[:, 0]).all()


@pytest.mark.parametrize("build", ["relu", "relu-layernorm", "aei", "aei-cayley"])
def test_closed_form_block_jacobians_give_the_jacrev_singular_values(build):
    """The runner's layer-Jacobian singular values: closed-form blocks == vmap(jacrev) per block."""
    from isoplast_lite import aei_mlp
    from isoplast_lite.diagnostics import layer_jacobian_svdvals
    from isoplast_lite.jacobians import _plain_block_jacobians

    g = torch.Generator().manual_seed(0)
    model = {"relu": lambda: relu_mlp(5, 8, 2, 3, generator=g),
             "relu-layernorm": lambda: relu_mlp(5, 8, 2, 3, layernorm=True, generator=g),
             "aei": lambda: aei_mlp(5, 8, 2, 3, generator=g),
             "aei-cayley": lambda: aei_mlp(5, 8, 2, 3, orthogonal="cayley", generator=g)}[build]().double()  # fmt: skip
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    fast = layer_jacobian_svdvals(model, x, end_to_end=False)
    h = x
    for i, block in enumerate(model):
        ref = torch.func.vmap(torch.func.jacrev(lambda hi: block(hi.unsqueeze(0)).squeeze(0)))(h)  # (N, d_out, d_in)
        closed = _plain_block_jacobians(block, h)
        if build != "relu-layernorm" or i == len(model) - 1:
            assert closed is not None and torch.equal(closed, ref), i  # the same entries, bit for bit
        else:
            assert closed is None  # LayerNorm blocks take vmap(jacrev)
        torch.testing.assert_close(fast[i], torch.linalg.svdvals(ref), rtol=1e-12, atol=1e-14)  # LAPACK on another memory layout
        h = block(h).detach()


def test_unit_measures_reject_overflowed_features_as_effective_rank_does():
    """One overflowed unit (finite weights, finite inputs, inf features) is an error for every unit measure."""
    import torch

    from isoplast_lite import dead_fraction, dormant_fraction, effective_rank, relu_mlp
    from isoplast_lite.diagnostics import hidden_features

    model = relu_mlp(4, 8, 2, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model[0][0].weight[0].fill_(3e38)  # finite float32; unit 0's pre-activation overflows on positive inputs
    x = torch.rand(16, 4, generator=torch.Generator().manual_seed(1)) + 0.1
    pre = x @ model[0][0].weight.T
    assert torch.isinf(pre[:, 0]).all() and torch.isfinite(model[0][0].weight).all()  # the premise, computed directly
    for measure in (lambda: dormant_fraction(model, x), lambda: dead_fraction(model, x), lambda: hidden_features(model, x)):
        with pytest.raises(ValueError, match="hidden block 0 gives non-finite features"):
            measure()
    with pytest.raises(ValueError):
        effective_rank(torch.relu(pre))  # the same features, rejected by effective_rank
