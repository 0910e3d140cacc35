"""Tests of the eNTK, its summary and the layer Jacobians against brute-force oracles."""

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
    for method in ["jacobian", "ntk_vp", "layerwise"]:
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
    for method in ["jacobian", "ntk_vp", "layerwise"]:
        torch.testing.assert_close(empirical_ntk(model, x1, method=method), expected_11, msg=method)
        torch.testing.assert_close(empirical_ntk(model, x1, x2, method=method, chunk_size=2), expected_12, msg=method)
        # the model is left as it was: same Parameter objects (torch's functional_call alone
        # would replace the tied one by a plain tensor), no hooks left behind
        assert all(a is b for a, b in zip(model.parameters(), before)) and len(list(model.parameters())) == 5
        assert not any(m._forward_hooks for m in model.modules())
