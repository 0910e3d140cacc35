"""Tests of isoplast_lite.nn: GroupSort, OrthogonalLinear, relu_mlp, aei_mlp."""

import copy
import itertools

import pytest
import torch
from torch import nn
from torch.func import functional_call

from isoplast_lite import GroupSort, OrthogonalLinear, aei_mlp, layer_jacobian_svdvals, relu_mlp
from isoplast_lite.isometry import chebyshev_cubic, newton_schulz
from isoplast_lite.nn import group_sort, orthogonal_, retract_, retract_after_step
from isoplast_lite.tasks import load_source, make_stream

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is faster


# ---------------------------------------------------------------------------- GroupSort


@pytest.mark.parametrize("group_size", [1, 2, 3, 6])
def test_group_sort_matches_python_sort_of_each_group(gen, group_size):
    x = torch.randn(5, 12, generator=gen)
    out = GroupSort(group_size)(x)
    for row_in, row_out in zip(x.tolist(), out.tolist()):
        expected = list(
            itertools.chain.from_iterable(
                sorted(row_in[i : i + group_size], reverse=True) for i in range(0, 12, group_size)
            )
        )
        assert row_out == expected


def test_maxmin_is_max_then_min():
    out = GroupSort(2)(torch.tensor([[1.0, 2.0, -3.0, -4.0]]))
    assert out.tolist() == [[2.0, 1.0, -3.0, -4.0]]


def test_group_sort_is_norm_preserving_with_permutation_jacobian(gen):
    x = torch.randn(7, 8, generator=gen, dtype=torch.float64)
    out = group_sort(x, 4)
    torch.testing.assert_close(out.norm(dim=1), x.norm(dim=1))
    jac = torch.autograd.functional.jacobian(lambda v: group_sort(v, 4), x[0])
    # a permutation matrix: entries 0/1, one 1 per row and column
    assert set(jac.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(jac.sum(0), torch.ones(8, dtype=torch.float64))
    torch.testing.assert_close(jac.sum(1), torch.ones(8, dtype=torch.float64))


def test_group_sort_rejects_non_divisible_feature_count():
    with pytest.raises(ValueError, match="group_size"):
        GroupSort(3)(torch.randn(2, 8))


# ---------------------------------------------------------------------------- OrthogonalLinear


def _orthogonality_error(w):
    w = w.detach()
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    return (gram - torch.eye(gram.shape[0], dtype=w.dtype)).abs().max().item()


@pytest.mark.parametrize("method", ["cayley", "newton-schulz"])
@pytest.mark.parametrize("shape", [(6, 6), (9, 4), (3, 7)])
def test_orthogonal_linear_stays_orthogonal_during_training(gen, shape, method):
    """Cayley: exact with no help; Newton-Schulz: with the retraction hook after every step."""
    d_out, d_in = shape
    layer = OrthogonalLinear(d_in, d_out, method=method, generator=gen, dtype=torch.float64)
    assert _orthogonality_error(layer.weight) < 1e-12
    x = torch.randn(32, d_in, generator=gen, dtype=torch.float64)
    target = torch.randn(32, d_out, generator=gen, dtype=torch.float64)
    before = layer.weight.detach().clone()
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    if method == "newton-schulz":
        retract_after_step(opt, layer, steps=2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.mse_loss(layer(x), target).backward()
        opt.step()
    assert (layer.weight.detach() - before).abs().max() > 1e-2  # it did train
    # exact to float64 rounding; two Newton-Schulz steps leave ~(1.5 * (1.5 d^2)^2) for a drift d ~ 1e-2
    assert _orthogonality_error(layer.weight) < (1e-10 if method == "cayley" else 1e-5)
    torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias)


# Documented bound (OrthogonalLinear's docstring): with one Newton-Schulz retraction after each
# Adam step at lr 1e-3, after 1000 steps every hidden weight has max |sigma - 1| <= 1e-3 and
# ||W^T W - I||_F <= 1e-3 (measured: ~5e-5 and ~1.5e-4 at width 64, float32).
BOUND = 1e-3


@pytest.fixture(scope="module")
def trained_aei():
    """aei_mlp(64, 64, 3, 10) after 1000 Adam steps (lr 1e-3, batch 32) on random-label Digits."""
    torch.set_num_threads(1)
    task = make_stream("random-label-digits", seed=0, n_tasks=1, n_train=256, source=load_source("digits")).task(0)
    model = aei_mlp(64, 64, 3, 10, generator=torch.Generator().manual_seed(0))
    start = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for idx in task.batch_indices(1000, 32):
        opt.zero_grad()
        nn.functional.cross_entropy(model(task.x_train[idx]), task.y_train[idx]).backward()
        opt.step()
        retract_(model)
    return model, start, opt, task


def test_orthogonality_error_after_1000_steps_below_documented_bound(trained_aei):
    model, start, opt, task = trained_aei
    for block, block0 in zip(model[:-1], start[:-1]):
        w = block[0].weight.detach()
        assert (w - block0[0].weight.detach()).abs().max() > 0.05  # the weights did move
        sv = torch.linalg.svdvals(w)
        assert (sv - 1).abs().max() < BOUND
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        assert torch.linalg.matrix_norm(gram - torch.eye(gram.shape[0])) < BOUND
    # the bound is not vacuous: one more Adam step without a retraction breaks it
    drifted = copy.deepcopy(model)
    opt2 = torch.optim.Adam(drifted.parameters(), lr=1e-3)
    opt2.load_state_dict(opt.state_dict())
    nn.functional.cross_entropy(drifted(task.x_train[:32]), task.y_train[:32]).backward()
    opt2.step()
    assert max(float((torch.linalg.svdvals(b[0].weight.detach()) - 1).abs().max()) for b in drifted[:-1]) > BOUND


def test_trained_aei_net_hidden_jacobians_stay_isometric(trained_aei):
    model, _, _, task = trained_aei
    sv = layer_jacobian_svdvals(model, task.x_train[:32])
    for l in range(len(model) - 1):  # every hidden block: P W with P a permutation
        assert (sv[l] - 1).abs().max() < 1e-3, l


@pytest.mark.parametrize("shape", [(16, 16), (24, 9), (9, 24)])
def test_retraction_is_the_polar_factor_to_first_order(gen, shape):
    """Against torch.linalg.svd: one step maps sigma -> 1.5 sigma - 0.5 sigma^3 on the singular
    values, so its distance to the polar factor U V^T is O(|W - U V^T|^2)."""
    Q = orthogonal_(torch.empty(*shape, dtype=torch.float64), generator=gen)
    for eps in (1e-2, 1e-3, 1e-4):
        W = Q + eps * torch.randn(*shape, generator=gen, dtype=torch.float64)
        U, sigma, Vh = torch.linalg.svd(W, full_matrices=False)
        polar = U @ Vh
        R = newton_schulz(W, steps=1, normalize=False)
        torch.testing.assert_close(R, U @ torch.diag(1.5 * sigma - 0.5 * sigma**3) @ Vh, atol=1e-13, rtol=0)
        first = torch.linalg.matrix_norm(W - polar)  # O(eps)
        assert torch.linalg.matrix_norm(R - polar) <= 2 * first**2
        layer = OrthogonalLinear(shape[1], shape[0], generator=gen, dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(W)
        torch.testing.assert_close(layer.retract_().weight.detach(), R, atol=1e-14, rtol=0)


@pytest.mark.parametrize("coefficients", ["bjorck", "chebyshev"])
def test_seed_batched_newton_schulz_equals_per_seed(gen, coefficients):
    W = torch.randn(4, 12, 7, generator=gen) * 0.1 + orthogonal_(torch.empty(4, 12, 7), generator=gen)
    kw = dict(steps=2, normalize=False, coefficients=coefficients, interval=(0.7, 1.3) if coefficients == "chebyshev" else None)
    batched = newton_schulz(W, **kw)
    for k in range(4):
        torch.testing.assert_close(batched[k], newton_schulz(W[k], **kw), atol=1e-6, rtol=0)


def test_chebyshev_cubic_equioscillates_and_beats_bjorck():
    for lo, hi in [(0.1, 1.0), (0.5, 1.0), (0.9, 1.1), (0.99, 1.02)]:
        c1, c3, err = chebyshev_cubic(lo, hi)
        p = lambda s: c1 * s + c3 * s**3  # noqa: E731
        e = ((lo**2 + lo * hi + hi**2) / 3) ** 0.5
        assert 1 - p(lo) == pytest.approx(err) and p(e) - 1 == pytest.approx(err) and 1 - p(hi) == pytest.approx(err)
        grid = torch.linspace(lo, hi, 2001, dtype=torch.float64)
        cheb = float((p(grid) - 1).abs().max())
        bjorck = float((1.5 * grid - 0.5 * grid**3 - 1).abs().max())
        assert cheb == pytest.approx(err, rel=1e-6) and cheb < bjorck
    assert chebyshev_cubic(1.0, 1.0) == (1.5, -0.5, 0.0)


def test_cayley_and_newton_schulz_nets_start_from_the_same_weights():
    nets = {m: aei_mlp(5, 8, 2, 3, head="orthogonal", orthogonal=m, generator=torch.Generator().manual_seed(2)) for m in ("cayley", "newton-schulz")}
    for a, b in zip(nets["cayley"], nets["newton-schulz"]):
        la, lb = (a[0], b[0]) if isinstance(a, nn.Sequential) else (a, b)
        torch.testing.assert_close(la.weight.detach(), lb.weight.detach(), atol=1e-6, rtol=0)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(nets["cayley"](x), nets["newton-schulz"](x), atol=1e-5, rtol=0)


def test_retract_touches_only_newton_schulz_layers(gen):
    model = nn.Sequential(OrthogonalLinear(4, 4, method="cayley", generator=gen), nn.Linear(4, 4), OrthogonalLinear(4, 4, generator=gen))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    retract_(model)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"2.weight"}


def test_orthogonal_options_reject_bad_values():
    with pytest.raises(ValueError, match="method"):
        OrthogonalLinear(3, 3, method="qr")
    with pytest.raises(ValueError, match="orthogonal"):
        aei_mlp(3, 4, 1, 2, orthogonal="exp")
    with pytest.raises(ValueError, match="coefficients"):
        retract_(aei_mlp(3, 4, 1, 2), coefficients="quintic")
    with pytest.raises(ValueError, match="interval"):
        retract_(aei_mlp(3, 4, 1, 2), coefficients="chebyshev")
    with pytest.raises(ValueError, match="steps"):
        OrthogonalLinear(3, 3).retract_(steps=0)
    with pytest.raises(TypeError, match="optimizer"):
        retract_after_step("adam", aei_mlp(3, 4, 1, 2))


def test_orthogonal_linear_bias_flag_and_zero_bias(gen):
    assert OrthogonalLinear(3, 4, bias=False, generator=gen).bias is None
    assert torch.equal(OrthogonalLinear(3, 4, generator=gen).bias, torch.zeros(4))


def test_generator_makes_init_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = aei_mlp(5, 8, 2, 3, generator=torch.Generator().manual_seed(1))
    b = relu_mlp(5, 8, 2, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    a2 = aei_mlp(5, 8, 2, 3, generator=torch.Generator().manual_seed(1))
    b2 = relu_mlp(5, 8, 2, 3, generator=torch.Generator().manual_seed(1))
    for m, m2 in [(a, a2), (b, b2)]:
        for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items()):
            assert k == k2 and torch.equal(v, v2)


def test_orthogonal_init_helper(gen):
    w = orthogonal_(torch.empty(4, 2, 3), 1.0, generator=gen)
    m = w.reshape(4, 6)
    torch.testing.assert_close(m @ m.T, torch.eye(4), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------- builders


@pytest.mark.parametrize("layernorm", [False, True])
def test_relu_mlp_structure(gen, layernorm):
    model = relu_mlp(5, 16, 3, 2, layernorm=layernorm, generator=gen)
    assert isinstance(model, nn.Sequential) and len(model) == 4
    for block in model[:-1]:
        kinds = [type(layer) for layer in block]
        assert kinds == ([nn.Linear, nn.LayerNorm, nn.ReLU] if layernorm else [nn.Linear, nn.ReLU])
    assert type(model[-1]) is nn.Linear
    assert (model[0][0].in_features, model[0][0].out_features) == (5, 16)
    assert (model[-1].in_features, model[-1].out_features) == (16, 2)
    assert model(torch.randn(4, 5, generator=gen)).shape == (4, 2)


def test_relu_mlp_orthogonal_init_has_unit_singular_values(gen):
    model = relu_mlp(5, 16, 2, 3, generator=gen)
    for layer in [model[0][0], model[1][0], model[2]]:
        sv = torch.linalg.svdvals(layer.weight.detach())
        torch.testing.assert_close(sv, torch.ones_like(sv), atol=1e-5, rtol=0)
        assert torch.equal(layer.bias.detach(), torch.zeros_like(layer.bias))


def test_relu_mlp_default_init_equals_torch_linear_default():
    torch.manual_seed(3)
    reference = nn.Linear(5, 7)
    model = relu_mlp(5, 7, 1, 2, init="default", generator=torch.Generator().manual_seed(3))
    assert torch.equal(model[0][0].weight, reference.weight)
    assert torch.equal(model[0][0].bias, reference.bias)


def test_relu_mlp_kaiming_init_has_he_variance():
    model = relu_mlp(400, 400, 1, 2, init="kaiming", generator=torch.Generator().manual_seed(0))
    var = model[0][0].weight.detach().var().item()
    assert abs(var - 2.0 / 400) < 0.05 * 2.0 / 400


@pytest.mark.parametrize("head", ["free", "orthogonal"])
def test_aei_mlp_structure(gen, head):
    model = aei_mlp(5, 8, 3, 2, head=head, group_size=4, generator=gen)
    assert len(model) == 4
    for block in model[:-1]:
        assert isinstance(block[0], OrthogonalLinear) and isinstance(block[1], GroupSort)
        assert block[1].group_size == 4
    assert isinstance(model[-1], OrthogonalLinear) == (head == "orthogonal")
    assert isinstance(model[-1], nn.Linear) == (head == "free")
    assert _orthogonality_error(model[0][0].weight) < 1e-5  # semi-orthogonal 8 x 5


def test_aei_mlp_rejects_width_not_divisible_by_group_size():
    with pytest.raises(ValueError, match="group_size"):
        aei_mlp(4, 6, 2, 2, group_size=4)


@pytest.mark.parametrize("build", [relu_mlp, aei_mlp])
def test_models_deepcopy_state_dict_and_functional_call(gen, build):
    model = build(5, 8, 2, 3, generator=gen)
    x = torch.randn(4, 5, generator=gen)
    expected = model(x)
    torch.testing.assert_close(copy.deepcopy(model)(x), expected)
    other = build(5, 8, 2, 3, generator=torch.Generator().manual_seed(99))
    assert not torch.allclose(other(x), expected)
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other(x), expected)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    torch.testing.assert_close(functional_call(model, (params, buffers), (x,)), expected)


def test_public_api_matches_developing_md():
    import isoplast_lite

    expected = {
        "GroupSort", "OrthogonalLinear", "relu_mlp", "aei_mlp", "isometry_penalty", "isometry_grad", "AdamO",
        "empirical_ntk", "ntk_summary", "layer_jacobian_svdvals", "dormant_fraction", "dead_fraction",
        "effective_rank", "srank", "stable_rank", "PlasticityMonitor", "__version__",
    }
    assert set(isoplast_lite.__all__) == expected
    assert all(hasattr(isoplast_lite, name) for name in expected)
    assert isoplast_lite.__version__ == "0.1.0"


def test_orthogonal_linear_stays_orthogonal_in_a_plain_adam_loop():
    """No retract_ call anywhere: the layer retracts lazily before each forward after a step.

    Oracle: the same loop with an explicit retract_ after every step (bit for bit), and an
    nn.Linear with the same initial weight, which drifts far off the orthogonal set."""
    g = torch.Generator().manual_seed(0)
    layers = [OrthogonalLinear(12, 12, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    plain = torch.nn.Linear(12, 12)
    plain.load_state_dict(layers[0].state_dict())
    x, y = torch.randn(32, 12, generator=g), torch.randn(32, 12, generator=g)
    for i, mod in enumerate([*layers, plain]):
        opt = torch.optim.Adam(mod.parameters(), lr=1e-2)
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.mse_loss(mod(x), y).backward()
            opt.step()
            if i == 1:
                retract_(mod)  # the explicit retraction: the next forward finds nothing to do
        mod(x)
    gap = [float(torch.linalg.matrix_norm(m.weight.detach().T @ m.weight.detach() - torch.eye(12))) for m in (*layers, plain)]
    assert gap[0] < 0.05 and gap[2] > 1.0, gap
    assert torch.equal(layers[0].weight, layers[1].weight)


def test_lazy_retraction_leaves_copies_loaded_states_and_functional_weights_alone(gen):
    layer = OrthogonalLinear(6, 4, generator=gen)
    with torch.no_grad():
        layer.weight.mul_(1.1)  # an in-place change: retracted at the next forward
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    twin = copy.deepcopy(layer)
    loaded = OrthogonalLinear(6, 4)
    loaded.load_state_dict(state)
    x = torch.randn(3, 6, generator=gen)
    out = torch.func.functional_call(layer, {k: v.clone() for k, v in state.items()}, (x,))
    torch.testing.assert_close(out, x @ state["weight"].T + state["bias"])  # the caller's weights, as given
    assert torch.equal(layer.weight, state["weight"])  # untouched by the functional call
    for m in (twin, loaded):  # a copy and a loaded state are taken as they are
        m(x)
        assert torch.equal(m.weight, state["weight"])
    layer(x)
    w = layer.weight.detach()
    assert not torch.equal(w, state["weight"])
    torch.testing.assert_close(w, newton_schulz(state["weight"], steps=1, normalize=False), rtol=0, atol=1e-6)
    before = w.clone()
    layer(x)  # no change since: nothing to do
    assert torch.equal(layer.weight, before)
