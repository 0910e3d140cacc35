"""Metrics on hand-computed small cases: dead/dormant fractions and the three ranks."""

import math

import pytest
import torch

from isoplast_lite import dead_fraction, dormant_fraction, effective_rank, relu_mlp, srank, stable_rank
from isoplast_lite.diagnostics import hidden_features

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is faster


def _hand_model():
    """2 -> 4 -> 3 -> 1 ReLU net with hand-set weights (zero biases).

    On inputs with positive coordinates x = (a, b):
      layer 0 units: a, b, 0.01 * a (tiny), 0 (dead: -a - b < 0)
      layer 1 units: relu(h0 + h1) = a + b, 0 (dead: -(a + b)), relu(h2) = 0.01 a
    """
    model = relu_mlp(2, 4, 2, 1, generator=torch.Generator().manual_seed(0))
    model[1][0] = torch.nn.Linear(4, 3)
    with torch.no_grad():
        model[0][0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.01, 0.0], [-1.0, -1.0]]))
        model[0][0].bias.zero_()
        model[1][0].weight.copy_(torch.tensor([[1.0, 1.0, 0.0, 0.0], [-1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))
        model[1][0].bias.zero_()
        model[2] = torch.nn.Linear(3, 1)
    return model


X = torch.tensor([[1.0, 1.0], [2.0, 1.0], [1.0, 3.0]])  # positive probe inputs


def test_hidden_features_are_the_hand_computed_values():
    f0, f1 = hidden_features(_hand_model(), X)
    a, b = X[:, 0], X[:, 1]
    torch.testing.assert_close(f0, torch.stack([a, b, 0.01 * a, torch.zeros(3)], 1))
    torch.testing.assert_close(f1, torch.stack([a + b, torch.zeros(3), 0.01 * a], 1))


def test_dead_fraction_by_hand():
    model = _hand_model()
    assert dead_fraction(model, X) == pytest.approx(2 / 7)  # one dead unit per layer, 7 units
    assert dead_fraction(model, X, per_layer=True) == pytest.approx([1 / 4, 1 / 3])


def test_dormant_fraction_by_hand():
    model = _hand_model()
    # layer 0: E|h| = (4/3, 5/3, 0.04/3, 0); mean = (4 + 5 + 0.04) / 12 ; scores 0.04/3 / mean ~ 0.0177 < 0.025
    # layer 1: E|h| = (3, 0, 0.04/3); mean = (9 + 0.04) / 9 ; score of unit 2 = 0.04/3 * 9 / 9.04 ~ 0.0133
    assert dormant_fraction(model, X, tau=0.025) == pytest.approx(4 / 7)
    assert dormant_fraction(model, X, tau=0.025, per_layer=True) == pytest.approx([2 / 4, 2 / 3])
    assert dormant_fraction(model, X, tau=0.0) == pytest.approx(2 / 7)  # only the dead ones
    assert dormant_fraction(model, X, tau=0.015, per_layer=True) == pytest.approx([1 / 4, 2 / 3])


def test_silent_layer_counts_as_dormant():
    model = _hand_model()
    with torch.no_grad():
        model[0][0].weight.fill_(-1.0)
    assert dormant_fraction(model, X, per_layer=True) == [1.0, 1.0]
    assert dead_fraction(model, X) == 1.0


def test_effective_rank_cases():
    assert effective_rank(torch.eye(5)).item() == pytest.approx(5.0)
    assert effective_rank(3.0 * torch.eye(4, 6)).item() == pytest.approx(4.0)  # scale-free
    assert effective_rank(torch.ones(4, 3)).item() == pytest.approx(1.0)  # rank one
    s = torch.tensor([3.0, 1.0])
    p = s / s.sum()
    expected = math.exp(-(p * p.log()).sum().item())
    assert effective_rank(torch.diag(s)).item() == pytest.approx(expected)
    assert effective_rank(torch.zeros(3, 3)).item() == 0.0
    stack = torch.stack([torch.eye(3), torch.diag(torch.tensor([1.0, 0.0, 0.0]))])
    torch.testing.assert_close(effective_rank(stack), torch.tensor([3.0, 1.0]))


def test_srank_cases():
    # singular values 10, 5, 0.1: 0.99 * 15.1 = 14.949 <= 15 -> k = 2
    assert srank(torch.diag(torch.tensor([10.0, 5.0, 0.1])), delta=0.01).item() == 2
    # singular values 10, 5, 0.2: 0.99 * 15.2 = 15.048 > 15 -> k = 3
    assert srank(torch.diag(torch.tensor([10.0, 5.0, 0.2])), delta=0.01).item() == 3
    assert srank(torch.diag(torch.tensor([10.0, 5.0, 0.1])), delta=0.5).item() == 1  # 7.55 <= 10
    assert srank(torch.eye(7)).item() == 7
    assert srank(torch.zeros(2, 2)).item() == 0
    assert srank(torch.eye(4)).dtype == torch.long


def test_stable_rank_cases():
    assert stable_rank(torch.diag(torch.tensor([2.0, 1.0, 1.0]))).item() == pytest.approx(1.5)
    assert stable_rank(torch.eye(5)).item() == pytest.approx(5.0)
    assert stable_rank(torch.ones(3, 4)).item() == pytest.approx(1.0)
    assert stable_rank(torch.zeros(2, 3)).item() == 0.0
    W = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    assert stable_rank(W).item() == pytest.approx((W.norm() ** 2 / torch.linalg.matrix_norm(W, 2) ** 2).item(), rel=1e-5)


def test_spearman_ci_matches_scipy_and_resamples_whole_seeds():
    import numpy as np
    import pandas as pd
    from scipy import stats as sps

    from isoplast_lite.stats import spearman_ci

    rng = np.random.default_rng(1)
    base = pd.DataFrame({"seed": range(12), "a": rng.normal(size=12)})
    base["b"] = base.a + rng.normal(size=12)
    lo, rho, hi = spearman_ci(base, "a", "b", n_boot=400)
    assert rho == pytest.approx(sps.spearmanr(base.a, base.b).statistic) and lo < rho < hi
    # ten copies of every row of a seed add no information: the interval resamples seeds, so it
    # stays as wide (a row bootstrap would shrink it by about sqrt(10))
    copies = pd.concat([base] * 10, ignore_index=True)
    lo10, rho10, hi10 = spearman_ci(copies, "a", "b", n_boot=400)
    assert rho10 == pytest.approx(rho, abs=0.05)
    assert (hi10 - lo10) > 0.6 * (hi - lo)
    with pytest.raises(ValueError, match="no column"):
        spearman_ci(base, "a", "nope")
