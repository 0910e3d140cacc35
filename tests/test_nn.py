"""Tests of isoplast_lite.nn: GroupSort, OrthogonalLinear, relu_mlp, aei_mlp."""

import copy
import itertools

import pytest
import torch
from torch import nn
from torch.func import functional_call

from isoplast_lite import GroupSort, OrthogonalLinear, aei_mlp, relu_mlp
from isoplast_lite.nn import group_sort, orthogonal_

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


@pytest.mark.parametrize("shape", [(6, 6), (9, 4), (3, 7)])
def test_orthogonal_linear_stays_orthogonal_during_training(gen, shape):
    d_out, d_in = shape
    layer = OrthogonalLinear(d_in, d_out, generator=gen, dtype=torch.float64)
    assert _orthogonality_error(layer.weight) < 1e-12
    x = torch.randn(32, d_in, generator=gen, dtype=torch.float64)
    target = torch.randn(32, d_out, generator=gen, dtype=torch.float64)
    before = layer.weight.detach().clone()
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.mse_loss(layer(x), target).backward()
        opt.step()
    assert (layer.weight.detach() - before).abs().max() > 1e-2  # it did train
    assert _orthogonality_error(layer.weight) < 1e-10
    torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias)


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
        "effective_rank", "srank", "stable_rank", "__version__",
    }
    assert set(isoplast_lite.__all__) == expected
    assert all(hasattr(isoplast_lite, name) for name in expected)
    assert isoplast_lite.__version__ == "0.1.0"
