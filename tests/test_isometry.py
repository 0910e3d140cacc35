"""Tests of isoplast_lite.isometry against autograd and SVD oracles."""

import pytest
import torch

from isoplast_lite import isometry_grad, isometry_penalty
from isoplast_lite.isometry import (
    isometry_grad_matrix,
    isometry_penalty_matrix,
    isometry_grad_terms,
    newton_schulz,
    partial_isometry_measures,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is faster

SHAPES = {"tall": (7, 4), "wide": (3, 8), "square": (5, 5), "conv": (6, 2, 3, 3), "conv1d": (4, 3, 5)}


def _svd_penalty(W):
    """Oracle: sum over singular values of (sigma^2 - 1)^2, conv kernels as (out, -1)."""
    return (torch.linalg.svdvals(W.reshape(W.shape[0], -1)).square() - 1).square().sum()


@pytest.mark.parametrize("kind", SHAPES)
def test_penalty_equals_singular_value_formula(gen, kind):
    W = torch.randn(SHAPES[kind], generator=gen, dtype=torch.float64)
    torch.testing.assert_close(isometry_penalty(W), _svd_penalty(W))


@pytest.mark.parametrize("kind", SHAPES)
def test_grad_equals_autograd_of_penalty_and_of_svd_formula(gen, kind):
    W = (0.6 * torch.randn(SHAPES[kind], generator=gen, dtype=torch.float64)).requires_grad_()
    (auto_penalty,) = torch.autograd.grad(isometry_penalty(W), W)
    (auto_svd,) = torch.autograd.grad(_svd_penalty(W), W)
    analytic = isometry_grad(W.detach())
    assert analytic.shape == W.shape
    torch.testing.assert_close(analytic, auto_penalty)
    torch.testing.assert_close(analytic, auto_svd)


@pytest.mark.parametrize("shape", [(6, 6), (8, 3), (3, 8)])
def test_penalty_and_grad_vanish_at_semi_orthogonal_matrices(gen, shape):
    Q = torch.linalg.qr(torch.randn(max(shape), min(shape), generator=gen, dtype=torch.float64)).Q
    W = Q if shape[0] >= shape[1] else Q.T
    assert isometry_penalty(W).item() < 1e-20
    assert isometry_grad(W).abs().max().item() < 1e-12


def test_batched_private_helpers_equal_per_matrix_loop(gen):
    for shape in [(7, 4), (3, 8)]:
        stack = torch.randn(3, 2, *shape, generator=gen, dtype=torch.float64)  # (S1, S2, out, in)
        grads = isometry_grad_matrix(stack)
        penalties = isometry_penalty_matrix(stack)
        assert grads.shape == stack.shape and penalties.shape == (3, 2)
        for i in range(3):
            for j in range(2):
                torch.testing.assert_close(grads[i, j], isometry_grad(stack[i, j]))
                torch.testing.assert_close(penalties[i, j], isometry_penalty(stack[i, j]))


@pytest.mark.parametrize("shape", [(6, 6), (9, 4), (4, 9), (2, 5, 3)])
def test_newton_schulz_converges_to_polar_factor(gen, shape):
    W = torch.randn(shape, generator=gen, dtype=torch.float64)
    W = W + 0.5 * torch.eye(shape[-2], shape[-1], dtype=torch.float64)  # keep it well conditioned
    U, _, Vh = torch.linalg.svd(W, full_matrices=False)
    polar = U @ Vh
    assert (newton_schulz(W, steps=2) - polar).abs().max() > 1e-3  # not there after 2 steps
    torch.testing.assert_close(newton_schulz(W, steps=60), polar, atol=1e-10, rtol=0)


def test_newton_schulz_fixes_orthogonal_matrices_and_is_differentiable(gen):
    Q = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64)).Q
    torch.testing.assert_close(newton_schulz(Q, steps=5, normalize=False), Q)
    W = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    newton_schulz(W, steps=10).sum().backward()
    assert torch.isfinite(W.grad).all()


def test_newton_schulz_singular_value_map(gen):
    """One unnormalized step maps each singular value s to 1.5 s - 0.5 s^3."""
    W = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 0.4
    s = torch.linalg.svdvals(W)
    expected = (1.5 * s - 0.5 * s**3).abs().sort(descending=True).values  # the map is not monotone
    torch.testing.assert_close(torch.linalg.svdvals(newton_schulz(W, steps=1, normalize=False)), expected)


def test_partial_isometry_measures_relations(gen):
    W = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    W0 = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    m = partial_isometry_measures(W, W0)
    s = torch.linalg.svdvals(W)
    assert m["sum_sq"] == pytest.approx(W.square().sum().item())
    assert m["sigma_max"] == pytest.approx(s.max().item())
    assert m["sigma_min"] == pytest.approx(s.min().item())
    k = 4
    assert m["iso_penalty"] == pytest.approx(k * ((m["mean_sq"] - 1) ** 2 + m["std_sq"] ** 2))
    assert m["iso_penalty"] == pytest.approx(isometry_penalty(W).item())
    assert m["dist_init_sq"] == pytest.approx((W - W0).square().sum().item())
    with pytest.raises(ValueError, match="W0"):
        partial_isometry_measures(W, W0[:3])


@pytest.mark.parametrize("shape", [(7, 4), (3, 8)], ids=["tall", "wide"])
def test_tall_and_wide_gradient_formulas_are_one_function(gen, shape):
    """Autograd of both Gram forms of the penalty gives one gradient, 4 (W W^T W - W), for a tall and
    a wide W; the penalties differ by |d_out - d_in|; the row terms, computed by a loop, sum to it."""
    d_out, d_in = shape
    W = (0.7 * torch.randn(shape, generator=gen, dtype=torch.float64)).requires_grad_()
    columns_form = (W.T @ W - torch.eye(d_in, dtype=W.dtype)).square().sum()  # ||W^T W - I||^2
    rows_form = (W @ W.T - torch.eye(d_out, dtype=W.dtype)).square().sum()  # ||W W^T - I||^2
    (g_columns,) = torch.autograd.grad(columns_form, W)
    (g_rows,) = torch.autograd.grad(rows_form, W)
    W = W.detach()
    torch.testing.assert_close(g_columns, g_rows)
    torch.testing.assert_close(isometry_grad(W), g_columns)
    torch.testing.assert_close(isometry_grad(W), 4 * (W @ W.T @ W - W))
    assert (rows_form - columns_form).item() == pytest.approx(d_out - d_in)
    assert isometry_penalty(W).item() == pytest.approx(min(columns_form.item(), rows_form.item()))
    renormalize, decorrelate = isometry_grad_terms(W)
    for i in range(d_out):
        w = W[i]
        torch.testing.assert_close(renormalize[i], 4 * (w @ w - 1) * w)
        others = sum((w @ W[j]) * W[j] for j in range(d_out) if j != i)
        torch.testing.assert_close(decorrelate[i], 4 * others)
    torch.testing.assert_close(renormalize + decorrelate, g_columns)


def test_grad_terms_cancel_row_by_row_at_a_semi_orthogonal_tall_matrix(gen):
    Q = torch.linalg.qr(torch.randn(9, 3, generator=gen, dtype=torch.float64)).Q  # (9, 3), Q^T Q = I
    renormalize, decorrelate = isometry_grad_terms(Q)
    assert renormalize.abs().max() > 0.1  # rows are not unit vectors: mean |w_i|^2 = 3 / 9
    assert Q.square().sum(1).mean().item() == pytest.approx(3 / 9)
    torch.testing.assert_close(renormalize, -decorrelate, atol=1e-12, rtol=0)
    conv = torch.randn(4, 2, 3, generator=gen, dtype=torch.float64)
    r, d = isometry_grad_terms(conv)
    assert r.shape == d.shape == conv.shape
    torch.testing.assert_close(r + d, isometry_grad(conv))
    with pytest.raises(ValueError, match="W"):
        isometry_grad_terms(torch.full((2, 2), float("nan")))


@pytest.mark.parametrize("shape", [(3, 7, 4), (3, 4, 7), (2, 5, 5)])
def test_the_kernel_is_the_textbook_formula_bit_for_bit(gen, shape):
    """gram_deviation / isometry_direction against the formulas the methods wrote before (one kernel
    since issue 25): Parseval's ``W W^T - s I`` (rows, with gradients), adamo-target's
    ``(W W^T - T) W`` / ``W (W^T W - T)`` and AdamO's ``W (W^T W - I)`` / ``(W W^T - I) W``."""
    from isoplast_lite.isometry import gram_deviation, isometry_direction

    W = torch.randn(*shape, generator=gen).requires_grad_(True)
    V = W.detach().clone().requires_grad_(True)
    eye = torch.eye(shape[1])
    mine = gram_deviation(W, 1.7, tall=False)[0].square().sum()
    textbook = (V @ V.mT - 1.7 * eye).square().sum()
    assert torch.equal(mine, textbook)
    mine.backward(), textbook.backward()
    assert torch.equal(W.grad, V.grad)
    X = W.detach()
    k = min(shape[1], shape[2])
    T = torch.diag(torch.logspace(-0.3, 0.3, k) ** 2)
    rows = shape[1] <= shape[2]
    expected = (X @ X.mT - T) @ X if rows else X @ (X.mT @ X - T)
    assert torch.equal(isometry_direction(X, T, tall=not rows), expected)
    tall = shape[1] >= shape[2]
    expected = X @ (X.mT @ X - torch.eye(k)) if tall else (X @ X.mT - torch.eye(k)) @ X
    assert torch.equal(isometry_direction(X), expected)


def test_isometry_half_life_matches_the_iterated_step_inside_its_regime():
    """ln 2 / (16 s lambda) against the exact scalar map of the decoupled step on one singular
    value, sigma <- sigma - 4 s lambda (sigma^3 - sigma), iterated in float64 from near isometry;
    the regime names follow c = 8 s lambda (chapter 5's stability limit)."""
    import numpy as np

    from isoplast_lite.isometry import isometry_half_life, isometry_step_regime

    for s_lam in (1e-4, 1e-3, 5e-3):
        sigma, steps = 1.0 + 1e-4, 0
        r0 = (sigma**2 - 1) ** 2
        while (sigma**2 - 1) ** 2 > r0 / 2:
            sigma -= 4 * s_lam * (sigma**3 - sigma)
            steps += 1
        assert abs(steps - isometry_half_life(s_lam)) <= 0.02 * steps + 1, (s_lam, steps)
        assert isometry_step_regime(s_lam) == "half-life"
    assert np.allclose(isometry_half_life(np.array([1e-3, 1.0]), 1e-3), np.log(2) / (16 * np.array([1e-6, 1e-3])))
    assert [isometry_step_regime(1.0, lam) for lam in (0.05, 0.2, 0.25, 1.0)] == ["monotone", "oscillating", "unstable", "unstable"]
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            isometry_half_life(bad, 1e-3)
