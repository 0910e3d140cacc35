"""The mathematical statements of the chapters' prose, each checked against an independent computation.

One test per statement (the chapter and the sentence are named in each docstring). Float64 and
seeded throughout: these are exact statements, so the tolerances are round-off, not noise.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import jacrev

import isoplast_lite as ip
from isoplast_lite.diagnostics import layer_isometry

DT = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _orthogonal(rows, cols, seed=0):
    """A matrix with orthonormal columns (rows >= cols) or orthonormal rows (rows < cols), by QR."""
    a = torch.randn(max(rows, cols), min(rows, cols), generator=_gen(seed), dtype=DT)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    return q if rows >= cols else q.T


def _spectral_map(sigma, c):
    """Chapter 4's proposition: one step W - c grad R_iso(W) sends sigma to sigma (1 - 4 c (sigma^2 - 1))."""
    return sigma * (1 - 4 * c * (sigma**2 - 1))


# --- chapter 2: the diagonal blocks B_l(x) B_l(x)^T of the layered eNTK -------------------------


def _backward_blocks(net, x):
    """B_l(x) B_l(x)^T for every block l (hidden blocks, then the head), by autograd on the part above z_l."""
    blocks, h, out = list(net), x, []
    for l, block in enumerate(blocks):
        linear = block[0] if isinstance(block, torch.nn.Sequential) else block
        rest = list(block)[1:] if isinstance(block, torch.nn.Sequential) else []
        above = torch.nn.Sequential(*rest, *blocks[l + 1:])
        z = linear(h).detach()
        B = jacrev(above)(z)  # (O, d_l)
        out.append(B @ B.T)
        h = block(h).detach()
    return out


def test_ch2_diagonal_blocks_equal_the_heads_gram_for_hidden_layers_of_an_orthogonal_groupsort_net():
    """Ch. 2: with orthogonal weights and activation Jacobians, B_l B_l^T = W_L W_L^T for every hidden
    layer; the head's own block is I (B_L = I), not W_L W_L^T."""
    torch.manual_seed(0)
    net = ip.aei_mlp(16, 16, 3, 5, head="free", orthogonal="cayley", generator=_gen(1), dtype=DT)
    with torch.no_grad():  # a free head drifts in training: make it non-orthogonal
        list(net)[-1].weight.mul_(torch.linspace(0.5, 2.0, 5, dtype=DT)[:, None])
    x = torch.randn(16, generator=_gen(2), dtype=DT)
    W_L = list(net)[-1].weight.detach()
    gram = W_L @ W_L.T
    blocks = _backward_blocks(net, x)
    for l, block in enumerate(blocks[:-1]):
        torch.testing.assert_close(block, gram, rtol=1e-10, atol=1e-10, msg=f"hidden layer {l}")
    torch.testing.assert_close(blocks[-1], torch.eye(5, dtype=DT), rtol=0, atol=1e-12)
    assert (blocks[-1] - gram).abs().max() > 0.1  # the head's term is not W_L W_L^T


def test_ch2_with_relu_the_diagonal_blocks_are_not_the_heads_gram():
    """Ch. 2: ReLU's activation Jacobians are 0/1 diagonals, not orthogonal: B_l B_l^T = W_L M M^T W_L^T
    differs from W_L W_L^T even with orthogonal weights (M a contraction)."""
    net = ip.relu_mlp(16, 16, 3, 5, generator=_gen(1)).double()
    x = torch.randn(16, generator=_gen(2), dtype=DT)
    W_L = list(net)[-1].weight.detach()
    gram = W_L @ W_L.T
    blocks = _backward_blocks(net, x)
    for block in blocks[:-1]:
        assert (block - gram).abs().max() > 1e-3
        # W_L M M^T W_L^T <= W_L W_L^T in the Loewner order: M is a contraction
        assert torch.linalg.eigvalsh(gram - block).min() > -1e-10


# --- chapter 3: almost everywhere, with a semi-orthogonal first layer -----------------------------


@pytest.mark.parametrize("degenerate", [False, True])
def test_ch3_groupsort_jacobian_has_orthonormal_columns_off_a_null_set(degenerate):
    """Ch. 3: with a tall first layer of orthonormal columns the Jacobian of a GroupSort net has
    orthonormal columns at almost every input, also when two units of a group have equal rows and
    biases (then they tie on the whole input space, and GroupSort is still locally a permutation)."""
    d_in, d = 6, 12
    W1 = _orthogonal(d, d_in, seed=3)
    b1 = torch.randn(d, generator=_gen(4), dtype=DT)
    if degenerate:  # units 0 and 1 (one group of size 2): equal rows and biases, columns stay orthonormal
        rest = _orthogonal(d - 1, d_in, seed=5)
        W1 = torch.cat([rest[:1] / math.sqrt(2), rest[:1] / math.sqrt(2), rest[1:]])
        b1[1] = b1[0]
    torch.testing.assert_close(W1.T @ W1, torch.eye(d_in, dtype=DT))
    W2, b2 = _orthogonal(d, d, seed=6), torch.randn(d, generator=_gen(7), dtype=DT)
    sort = ip.GroupSort(2)

    def f(x):
        return sort(W2 @ sort(W1 @ x + b1) + b2)

    xs = torch.randn(50, d_in, generator=_gen(8), dtype=DT)
    for x in xs:
        J = jacrev(f)(x)
        torch.testing.assert_close(J.T @ J, torch.eye(d_in, dtype=DT), rtol=1e-10, atol=1e-10)
    if degenerate:  # the tie holds at every input
        z = xs @ W1.T + b1
        assert torch.equal(z[:, 0], z[:, 1])


# --- chapter 4: the step-size condition of the isometry step ----------------------------------------


def test_ch4_step_keeps_sigma_positive_exactly_below_the_exact_bound():
    """Ch. 4: for sigma_max > 1 the factor 1 - 4 c (sigma_max^2 - 1) stays positive exactly when
    c < 1 / (4 (sigma_max^2 - 1)); c < 1 / (4 sigma_max^2) is sufficient, not necessary."""
    W = _orthogonal(8, 8, seed=9) @ torch.diag(torch.linspace(0.5, 2.0, 8, dtype=DT)) @ _orthogonal(8, 8, seed=10)
    U, S, Vh = torch.linalg.svd(W)
    s_max = float(S[0])
    exact, sufficient = 1 / (4 * (s_max**2 - 1)), 1 / (4 * s_max**2)
    assert sufficient < exact
    for c in (0.5 * sufficient, 0.5 * (sufficient + exact), 0.999 * exact, 1.001 * exact, 2 * exact):
        W_new = W - c * ip.isometry_grad(W)
        # the component of the step's result along the top singular pair is the mapped sigma (signed)
        mapped = float(U[:, 0] @ W_new @ Vh[0])
        assert mapped == pytest.approx(_spectral_map(s_max, c), rel=1e-9, abs=1e-12)
        assert (mapped > 0) == (c < exact), c
    # between the two bounds the step is still sign-preserving: the simpler bound is not necessary
    c = 0.5 * (sufficient + exact)
    assert c > sufficient and _spectral_map(s_max, c) > 0


# --- chapter 5: the stability limit 8 s lambda < 2 -------------------------------------------------


def test_ch5_linear_factor_near_one_is_one_minus_8_s_lambda():
    """Ch. 5: near sigma = 1 one step multiplies sigma - 1 by 1 - 8 s lambda (derivative of the map at 1)."""
    for step in (1e-6, 1e-3, 0.05, 0.2, 0.3):
        h = 1e-6
        slope = (_spectral_map(1 + h, step) - _spectral_map(1 - h, step)) / (2 * h)
        assert slope == pytest.approx(1 - 8 * step, abs=1e-8)


@pytest.mark.parametrize("c", [0.1, 0.9, 1.5, 1.95, 2.05, 2.5, 4.0])
def test_ch5_isometry_step_converges_exactly_below_8_s_lambda_2(c):
    """Ch. 5: iterating W <- W - s lambda grad R_iso(W) from singular values near 1 converges to an
    isometry iff 8 s lambda < 2; beyond, sigma = 1 repels (oscillation or divergence, no half-life)."""
    W = _orthogonal(12, 12, seed=11) * (1 + 0.05 * torch.linspace(-1, 1, 12, dtype=DT))
    step = c / 8
    for _ in range(2000):
        W = W - step * ip.isometry_grad(W)
        if not torch.isfinite(W).all() or W.abs().max() > 1e6:
            break
    finite = bool(torch.isfinite(W).all() and W.abs().max() <= 1e6)
    dev = float((torch.linalg.svdvals(W) - 1).abs().max()) if finite else math.inf
    assert (dev < 1e-9) == (c < 2), (c, dev)


def test_ch5_half_life_formula_matches_the_iterated_map_inside_its_regime():
    """Ch. 5: R_iso halves after about ln 2 / (16 s lambda) steps while 8 s lambda << 1."""
    for step in (1e-4, 1e-3):
        sigma = torch.tensor([0.99, 1.01], dtype=DT)
        r0, t = float(((sigma**2 - 1) ** 2).sum()), 0
        while float(((sigma**2 - 1) ** 2).sum()) > r0 / 2:
            sigma = _spectral_map(sigma, step)
            t += 1
        assert t == pytest.approx(math.log(2) / (16 * step), rel=0.02)


# --- chapter 7: the spread of c W for orthogonal W --------------------------------------------------


def _one_layer_spread(in_dim, width, c, seed=0):
    net = ip.relu_mlp(in_dim, width, 1, 10, generator=_gen(seed))
    with torch.no_grad():
        net[0][0].weight.mul_(c)
    x = torch.randn(16, in_dim, generator=_gen(seed + 1))
    return layer_isometry(net, x)[0]


def test_ch7_scaled_square_orthogonal_layer_has_spread_zero():
    """Ch. 7: c Q with Q square orthogonal (rows orthonormal): scale log c and spread 0, whatever units are active."""
    m = _one_layer_spread(32, 32, 2.0)
    assert m["scale"] == pytest.approx(math.log(2.0), abs=1e-4)
    assert abs(m["spread"]) < 1e-4


def test_ch7_scaled_tall_orthogonal_layer_has_positive_spread():
    """Ch. 7: a tall W with orthonormal columns (more units than inputs): the active rows are not
    orthonormal, so c W has a positive spread and its singular values fall below c."""
    m = _one_layer_spread(20, 64, 2.0)
    assert m["spread"] > 0.05
    assert m["scale"] < math.log(2.0) - 0.01
    # independently: a random half of the rows of a 64 x 20 matrix with orthonormal columns
    Q = _orthogonal(64, 20, seed=12)
    rows = torch.randperm(64, generator=_gen(13))[:32]
    sv = torch.linalg.svdvals(Q[rows])
    assert float(sv.max()) <= 1 + 1e-12 and float(sv.min()) < 0.9
