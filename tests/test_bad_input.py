"""Property-based test: random bad arguments to every public function and constructor.

For each (callable, argument) pair, hypothesis draws invalid values; the call must raise a
ValueError or TypeError (nothing else, and not succeed) whose message names the argument.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from isoplast_lite import (
    AdamO,
    GroupSort,
    OrthogonalLinear,
    aei_mlp,
    dead_fraction,
    dormant_fraction,
    effective_rank,
    empirical_ntk,
    isometry_grad,
    isometry_penalty,
    layer_jacobian_svdvals,
    ntk_summary,
    relu_mlp,
    srank,
    stable_rank,
)
from isoplast_lite.diagnostics import (
    active_jacobian_svdvals,
    firing_share,
    layer_isometry,
    revived,
    weight_singular_values,
)
from isoplast_lite.isometry import isometry_grad_terms, newton_schulz, partial_isometry_measures
from isoplast_lite.nn import group_sort, orthogonal_

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is faster

# ------------------------------------------------------------------ strategies of bad values

junk = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.just(object()),
    st.just(torch.tensor(1.0)),
)
nonfinite = st.sampled_from([math.nan, math.inf, -math.inf])
negative = st.one_of(st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False), st.integers(max_value=-1))
bad_nonnegative = st.one_of(negative, nonfinite, junk.filter(lambda v: v is not None), st.booleans())
bad_nonnegative_or_none = st.one_of(negative, nonfinite, st.text(max_size=3), st.booleans())
bad_positive_int = st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), junk, st.booleans())
bad_nonnegative_int = st.one_of(st.integers(max_value=-1), st.floats(allow_nan=True), junk, st.booleans())
bad_optional_positive_int = st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.text(max_size=3), st.booleans())
bad_bool = st.one_of(st.integers(), st.floats(), junk)
bad_beta = st.one_of(
    st.floats(min_value=1.0, allow_nan=False), st.floats(max_value=-1e-9, allow_nan=False), nonfinite, junk, st.booleans()
)
bad_betas = st.one_of(
    st.tuples(bad_beta, st.just(0.999)),
    st.tuples(st.just(0.9), bad_beta),
    st.just((0.9,)),
    st.just((0.9, 0.99, 0.999)),
    st.floats(),
    st.text(max_size=2),
    st.none(),
)
bad_unit = st.one_of(st.floats(min_value=1.0 + 1e-9, allow_nan=False), negative, nonfinite, junk, st.booleans())
bad_delta = st.one_of(st.floats(min_value=1.0, allow_nan=False), negative, nonfinite, junk, st.booleans())


def bad_string(choices):
    return st.one_of(st.text(max_size=8).filter(lambda s: s not in choices), st.integers(), st.none())


@st.composite
def bad_matrix(draw):
    """Not a floating tensor with >= 2 dimensions and >= 1 element."""
    kind = draw(st.sampled_from(["junk", "vector", "scalar", "int", "empty"]))
    if kind == "junk":
        return draw(junk.filter(lambda v: not isinstance(v, torch.Tensor)))
    if kind == "vector":
        return torch.ones(draw(st.integers(1, 5)))
    if kind == "scalar":
        return torch.tensor(draw(st.floats(-2, 2)))
    if kind == "int":
        return torch.ones(draw(st.integers(1, 3)), draw(st.integers(1, 3)), dtype=torch.long)
    return torch.ones(0, draw(st.integers(1, 3)))


@st.composite
def bad_input(draw, features=4):
    """Not a valid (N, features) float batch for a model with 4 input features."""
    kind = draw(st.sampled_from(["matrix", "features"]))
    if kind == "matrix":
        return draw(bad_matrix())
    if draw(st.booleans()):
        return torch.ones(draw(st.integers(1, 3)), features, dtype=torch.float64)  # model is float32
    other = draw(st.integers(1, 9).filter(lambda f: f != features))
    return torch.ones(draw(st.integers(1, 3)), other)


bad_model = st.one_of(junk, st.just(torch.nn.ReLU()), st.just(torch.ones(2, 2)))
bad_sequential = st.one_of(junk, st.just(torch.nn.Linear(4, 2)), st.just(torch.nn.Sequential(torch.nn.Linear(4, 2))))
bad_shares = st.one_of(
    junk.filter(lambda v: not isinstance(v, torch.Tensor)),
    st.sampled_from([[], [torch.tensor([0.5]), "a"]]),
    st.floats(min_value=1.0 + 1e-6, max_value=1e6).map(lambda v: torch.tensor([0.5, v])),
    st.floats(min_value=-1e6, max_value=-1e-6).map(lambda v: torch.tensor([v])),
    st.sampled_from([torch.ones(2, dtype=torch.long), torch.ones(0), torch.tensor([math.nan])]),
)
bad_generator = st.one_of(st.integers(), st.text(max_size=3), st.just(torch.ones(1)))
bad_dtype = st.one_of(st.just(torch.int64), st.just(torch.bool), st.text(max_size=3), st.integers())
bad_ntk = st.one_of(
    bad_matrix(),
    st.just(torch.ones(3, 4)),
    st.just(torch.ones(2, 3, 2, 2)),
    st.just(torch.ones(2, 2, 2, 3)),
    st.just(torch.ones(2, 2, 2)),
)


# ------------------------------------------------------------------ the cases


def _model():
    return relu_mlp(4, 6, 2, 3, generator=torch.Generator().manual_seed(0))


X = torch.ones(3, 4)
P = torch.nn.Parameter(torch.ones(3, 3))

CASES = {
    "GroupSort.group_size": ("group_size", bad_positive_int, lambda v: GroupSort(v)),
    "GroupSort.forward.group_size": (
        "group_size",
        st.integers(3, 7),
        lambda v: GroupSort(v)(torch.ones(2, v * 2 + 1)),
    ),
    "group_sort.x": ("x", junk.filter(lambda v: not isinstance(v, torch.Tensor)), lambda v: group_sort(v)),
    "OrthogonalLinear.in_features": ("in_features", bad_positive_int, lambda v: OrthogonalLinear(v, 3)),
    "OrthogonalLinear.out_features": ("out_features", bad_positive_int, lambda v: OrthogonalLinear(3, v)),
    "OrthogonalLinear.bias": ("bias", bad_bool, lambda v: OrthogonalLinear(3, 3, bias=v)),
    "OrthogonalLinear.generator": ("generator", bad_generator, lambda v: OrthogonalLinear(3, 3, generator=v)),
    "OrthogonalLinear.dtype": ("dtype", bad_dtype, lambda v: OrthogonalLinear(3, 3, dtype=v)),
    "orthogonal_.tensor": ("tensor", bad_matrix(), lambda v: orthogonal_(v)),
    "orthogonal_.gain": ("gain", st.one_of(nonfinite, junk), lambda v: orthogonal_(torch.empty(2, 2), v)),
    "relu_mlp.in_dim": ("in_dim", bad_positive_int, lambda v: relu_mlp(v, 4, 1, 2)),
    "relu_mlp.width": ("width", bad_positive_int, lambda v: relu_mlp(3, v, 1, 2)),
    "relu_mlp.depth": ("depth", bad_positive_int, lambda v: relu_mlp(3, 4, v, 2)),
    "relu_mlp.out_dim": ("out_dim", bad_positive_int, lambda v: relu_mlp(3, 4, 1, v)),
    "relu_mlp.init": ("init", bad_string(("orthogonal", "kaiming", "default")), lambda v: relu_mlp(3, 4, 1, 2, init=v)),
    "relu_mlp.layernorm": ("layernorm", bad_bool, lambda v: relu_mlp(3, 4, 1, 2, layernorm=v)),
    "relu_mlp.generator": ("generator", bad_generator, lambda v: relu_mlp(3, 4, 1, 2, generator=v)),
    "relu_mlp.dtype": ("dtype", bad_dtype, lambda v: relu_mlp(3, 4, 1, 2, dtype=v)),
    "aei_mlp.in_dim": ("in_dim", bad_positive_int, lambda v: aei_mlp(v, 4, 1, 2)),
    "aei_mlp.width": ("width", bad_positive_int, lambda v: aei_mlp(3, v, 1, 2)),
    "aei_mlp.depth": ("depth", bad_positive_int, lambda v: aei_mlp(3, 4, v, 2)),
    "aei_mlp.out_dim": ("out_dim", bad_positive_int, lambda v: aei_mlp(3, 4, 1, v)),
    "aei_mlp.head": ("head", bad_string(("free", "orthogonal")), lambda v: aei_mlp(3, 4, 1, 2, head=v)),
    "aei_mlp.group_size": (
        "group_size",
        st.one_of(bad_positive_int, st.integers(5, 11), st.just(3)),  # or does not divide width 4
        lambda v: aei_mlp(3, 4, 1, 2, group_size=v),
    ),
    "aei_mlp.generator": ("generator", bad_generator, lambda v: aei_mlp(3, 4, 1, 2, generator=v)),
    "isometry_penalty.W": ("W", bad_matrix(), lambda v: isometry_penalty(v)),
    "isometry_grad.W": ("W", bad_matrix(), lambda v: isometry_grad(v)),
    "newton_schulz.W": ("W", bad_matrix(), lambda v: newton_schulz(v)),
    "newton_schulz.steps": ("steps", bad_nonnegative_int, lambda v: newton_schulz(torch.eye(2), steps=v)),
    "newton_schulz.eps": ("eps", st.one_of(negative, nonfinite, junk), lambda v: newton_schulz(torch.eye(2), eps=v)),
    "partial_isometry_measures.W0": (
        "W0",
        st.one_of(bad_matrix().filter(lambda v: v is not None), st.just(torch.ones(2, 3))),
        lambda v: partial_isometry_measures(torch.eye(3), v),
    ),
    "AdamO.lr": ("lr", bad_nonnegative, lambda v: AdamO([P], lr=v)),
    "AdamO.betas": ("betas", bad_betas, lambda v: AdamO([P], betas=v)),
    "AdamO.eps": ("eps", bad_nonnegative, lambda v: AdamO([P], eps=v)),
    "AdamO.weight_decay": ("weight_decay", bad_nonnegative, lambda v: AdamO([P], weight_decay=v)),
    "AdamO.iso_strength": ("iso_strength", bad_nonnegative, lambda v: AdamO([P], iso_strength=v)),
    "AdamO.iso_lr": ("iso_lr", bad_nonnegative_or_none, lambda v: AdamO([P], iso_lr=v)),
    "AdamO.iso_every": ("iso_every", bad_positive_int, lambda v: AdamO([P], iso_every=v)),
    "AdamO.group.iso_every": ("iso_every", bad_positive_int, lambda v: AdamO([{"params": [P], "iso_every": v}])),
    "AdamO.seed_dims": ("seed_dims", st.one_of(bad_nonnegative_int, st.integers(3, 9)), lambda v: AdamO([P], seed_dims=v)),
    "AdamO.group.lr": ("lr", bad_nonnegative, lambda v: AdamO([{"params": [P], "lr": v}])),
    "AdamO.group.iso_strength": ("iso_strength", bad_nonnegative, lambda v: AdamO([{"params": [P], "iso_strength": v}])),
    "AdamO.fused": ("fused", st.one_of(st.integers(), st.floats(), junk.filter(lambda v: v is not None)), lambda v: AdamO([P], fused=v)),
    "AdamO.params": ("params", st.just(torch.ones(2, 2, requires_grad=True)), lambda v: AdamO(v)),
    "empirical_ntk.model": ("model", bad_model.filter(lambda m: not isinstance(m, torch.nn.Module)), lambda v: empirical_ntk(v, X)),
    "empirical_ntk.x1": ("x1", bad_input(), lambda v: empirical_ntk(_model(), v)),
    "empirical_ntk.x2": ("x2", st.one_of(bad_matrix().filter(lambda v: v is not None), st.integers(1, 9).filter(lambda f: f != 4).map(lambda f: torch.ones(2, f)), st.just(torch.ones(2, 4, dtype=torch.float64))), lambda v: empirical_ntk(_model(), X, v)),
    "empirical_ntk.method": ("method", bad_string(("auto", "jacobian", "ntk_vp", "layerwise")), lambda v: empirical_ntk(_model(), X, method=v)),
    "empirical_ntk.chunk_size": ("chunk_size", bad_optional_positive_int, lambda v: empirical_ntk(_model(), X, chunk_size=v)),
    "ntk_summary.ntk": ("ntk", bad_ntk, lambda v: ntk_summary(v)),
    "ntk_summary.n_directions": ("n_directions", bad_positive_int, lambda v: ntk_summary(torch.eye(2), n_directions=v)),
    "ntk_summary.generator": ("generator", bad_generator, lambda v: ntk_summary(torch.eye(2), generator=v)),
    "layer_jacobian_svdvals.model": ("model", bad_sequential.filter(lambda m: not isinstance(m, torch.nn.Sequential)), lambda v: layer_jacobian_svdvals(v, X)),
    "layer_jacobian_svdvals.x": ("x", bad_input(), lambda v: layer_jacobian_svdvals(_model(), v)),
    "active_jacobian_svdvals.model": ("model", bad_sequential.filter(lambda m: not isinstance(m, torch.nn.Sequential)), lambda v: active_jacobian_svdvals(v, X)),
    "active_jacobian_svdvals.x": ("x", bad_input(), lambda v: active_jacobian_svdvals(_model(), v)),
    "layer_isometry.model": ("model", bad_sequential.filter(lambda m: not isinstance(m, torch.nn.Sequential)), lambda v: layer_isometry(v, X)),
    "layer_isometry.x": ("x", bad_input(), lambda v: layer_isometry(_model(), v)),
    "weight_singular_values.model": ("model", bad_sequential.filter(lambda m: not isinstance(m, torch.nn.Sequential)), lambda v: weight_singular_values(v)),
    "firing_share.model": ("model", bad_sequential, lambda v: firing_share(v, X)),
    "firing_share.x": ("x", bad_input(), lambda v: firing_share(_model(), v)),
    "revived.before": ("before", bad_shares, lambda v: revived(v, torch.tensor([0.5]))),
    "revived.after": ("after", st.one_of(bad_shares, st.just(torch.tensor([0.0, 0.5]))), lambda v: revived(torch.tensor([0.5]), v)),
    "revived.threshold": ("threshold", st.one_of(bad_unit, st.just(0.0)), lambda v: revived(torch.tensor([0.0]), torch.tensor([0.5]), v)),
    "isometry_grad_terms.W": ("W", bad_matrix(), lambda v: isometry_grad_terms(v)),
    "dormant_fraction.model": ("model", bad_sequential, lambda v: dormant_fraction(v, X)),
    "dormant_fraction.x": ("x", bad_input(), lambda v: dormant_fraction(_model(), v)),
    "dormant_fraction.tau": ("tau", bad_unit, lambda v: dormant_fraction(_model(), X, tau=v)),
    "dormant_fraction.per_layer": ("per_layer", bad_bool, lambda v: dormant_fraction(_model(), X, per_layer=v)),
    "dead_fraction.model": ("model", bad_sequential, lambda v: dead_fraction(v, X)),
    "dead_fraction.x": ("x", bad_input(), lambda v: dead_fraction(_model(), v)),
    "dead_fraction.per_layer": ("per_layer", bad_bool, lambda v: dead_fraction(_model(), X, per_layer=v)),
    "effective_rank.features": ("features", bad_matrix(), lambda v: effective_rank(v)),
    "srank.features": ("features", bad_matrix(), lambda v: srank(v)),
    "srank.delta": ("delta", bad_delta, lambda v: srank(torch.eye(2), delta=v)),
    "stable_rank.W": ("W", bad_matrix(), lambda v: stable_rank(v)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_bad_arguments_raise_clear_errors(case, data):
    name, strategy, call = CASES[case]
    value = data.draw(strategy, label=name)
    with pytest.raises((ValueError, TypeError)) as info:
        call(value)
    assert name in str(info.value), f"{case}: message {str(info.value)!r} does not name {name!r}"
