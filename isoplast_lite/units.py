r"""Diagnostics of units and ranks: hidden features, dormant / dead / firing units, revival,
cloned units, and the rank measures (:func:`effective_rank`, :func:`srank`, :func:`stable_rank`).

Part of :mod:`isoplast_lite.diagnostics` (which re-exports every public name here); see its
docstring for the conventions shared by all diagnostics. The rank measures are pure functions of tensors and use the singular values
of the matrix as given (no centering). ``dormant_mask``, ``unit_fractions``, ``scale_safe`` and
``effective_rank_from_svals`` are the unchecked kernels that the runner's measurement
(:mod:`isoplast_lite.measure`), ReDo (:mod:`isoplast_lite.methods`) and the eNTK summary
(:mod:`isoplast_lite.entk`) share with the checked functions here.

References:
    Sokar et al. (2023), "The dormant neuron phenomenon in deep reinforcement learning", ICML.
    Roy & Vetterli (2007), "The effective rank: a measure of effective dimensionality".
    Kumar et al. (2021), "Implicit under-parameterization inhibits data-efficient deep RL", ICLR.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Union

import torch
from torch import nn

from ._validation import (
    check_block_model,
    check_bool,
    check_model_and_probe,
    check_probability,
    check_real,
    check_tensor,
)
from .jacobians import block_kind

__all__ = [
    "hidden_features",
    "dormant_units",
    "dead_units",
    "dormant_fraction",
    "dead_fraction",
    "firing_share",
    "revived",
    "REVIVAL_THRESHOLD",
    "effective_rank",
    "srank",
    "stable_rank",
    "clone_pairs",
    "clones",
    "clone_counts",
    "CLONE_TOLERANCE",
    "EXACT_CLONE_ULPS",
    "exact_clone_tolerance",
    "clone_distance",
    "count_clone_pairs",
    "dormant_mask",
    "unit_fractions",
    "scale_safe",
    "effective_rank_from_svals",
]


def hidden_features(model: nn.Sequential, x: torch.Tensor) -> List[torch.Tensor]:
    """The features of a model: the outputs of its hidden blocks (all blocks but the head).

    Args:
        model: an ``nn.Sequential`` of at least two blocks (hidden blocks, then a head).
        x: inputs ``(N, *in)``.

    Returns:
        A list with one tensor ``(N, d_l)`` per hidden block (flattened after the batch
        dimension), computed without autograd.

    Raises:
        ValueError: a block's features are not finite (an overflow), so every unit measure built
            on them (:func:`dormant_fraction`, :func:`dead_fraction`, ...) rejects them as
            :func:`effective_rank` does.

    Example:
        >>> from isoplast_lite import relu_mlp
        >>> feats = hidden_features(relu_mlp(3, 8, 2, 2), torch.randn(5, 3))
        >>> [tuple(f.shape) for f in feats]
        [(5, 8), (5, 8)]
    """
    check_model_and_probe(model, x, min_blocks=2)
    feats = []
    with torch.no_grad():
        h = x
        for i, block in enumerate(model[:-1]):
            h = block(h)
            if not bool(torch.isfinite(h).all()):  # finite weights and inputs can still overflow
                raise ValueError(f"model: hidden block {i} gives non-finite features on x (an overflow: its weights or inputs are too large "
                                 f"for {h.dtype}); allowed: a model whose features are finite")  # fmt: skip
            feats.append(h.reshape(h.shape[0], -1))
    return feats


def dormant_mask(h: torch.Tensor, tau: float) -> torch.Tensor:
    r"""Unchecked kernel of :func:`dormant_units` for a feature matrix ``h`` ``(N, d)``: which units
    have a score :math:`\mathbb{E}|h_i| / (\frac1d \sum_k \mathbb{E}|h_k|) \le \tau` (all of them
    when the layer is silent). For callers that have checked ``h`` already (the runner, ReDo).

    Example:
        >>> dormant_mask(torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.01, 0.0]]), 0.1)
        tensor([False,  True, False])
    """
    activity = h.abs().mean(dim=0)  # (d,), E_x |h_i(x)|
    mean_activity = activity.mean()
    if mean_activity == 0:
        return torch.ones_like(activity, dtype=torch.bool)  # every score is 0 / 0: all dormant
    return activity / mean_activity <= tau


def _unit_matrix(name: str, features: torch.Tensor) -> torch.Tensor:
    check_tensor(name, features, min_ndim=2, finite=True, full_precision=True)
    return features.detach().reshape(-1, features.shape[-1])  # (rows, d): every axis but the last is a sample axis


def dormant_units(features: torch.Tensor, tau: float = 0.025) -> torch.Tensor:
    r"""Which units of a feature matrix are :math:`\tau`-dormant (ReDo's score, as :func:`dormant_fraction`).

    The score of unit :math:`i` is :math:`\mathbb{E}|h_i| / (\frac1d \sum_k \mathbb{E}|h_k|)`,
    the mean over every axis but the last (examples, and tokens or positions); a unit is dormant
    if its score is :math:`\le \tau`, and every unit of a silent layer is. This is the kernel
    of :func:`dormant_fraction`, for features of any model (a convolution's channels: pass
    ``h.movedim(1, -1)``).

    Args:
        features: ``(..., d)`` activations, the units on the last axis.
        tau: threshold in [0, 1].

    Returns:
        A bool tensor ``(d,)``.

    Example:
        >>> dormant_units(torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.01, 0.0]]), tau=0.1)
        tensor([False,  True, False])
    """
    tau = check_probability("tau", tau)
    return dormant_mask(_unit_matrix("features", features), tau)


def dead_units(features: torch.Tensor) -> torch.Tensor:
    r"""Which units of a feature matrix are dead: exactly 0 at every sample (as :func:`dead_fraction`).

    Args:
        features: ``(..., d)`` activations, the units on the last axis (every other axis is a
            sample axis).

    Returns:
        A bool tensor ``(d,)``.

    Example:
        >>> dead_units(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        tensor([False,  True])
    """
    return (_unit_matrix("features", features) == 0).all(dim=0)


def dormant_fraction(
    model: nn.Sequential, x: torch.Tensor, tau: float = 0.025, *, per_layer: bool = False
) -> Union[float, List[float]]:
    r"""Fraction of :math:`\tau`-dormant hidden units (ReDo's score, Sokar et al. 2023).

    For hidden block :math:`l` with features :math:`h_i(x)` (post-activation) on the probe
    set ``x``, the score of unit :math:`i` is

    .. math:: s_i = \frac{\mathbb{E}_x |h_i(x)|}{\frac{1}{d_l}\sum_k \mathbb{E}_x |h_k(x)|},

    normalized within its layer; the unit is dormant if :math:`s_i \le \tau`. If a whole layer
    is silent (denominator 0) every unit of it counts as dormant.

    Args:
        model: an ``nn.Sequential`` of hidden blocks followed by a head.
        x: probe inputs ``(N, *in)``.
        tau: threshold in [0, 1] (0.025 shows the phenomenon; ReDo uses 0.1 in benchmarks).
        per_layer: return one fraction per hidden block instead of the overall fraction.

    Returns:
        The number of dormant units over the number of hidden units of all hidden blocks, a
        float in [0, 1]; or, with ``per_layer=True``, a list with one such fraction per block.

    Example:
        >>> from isoplast_lite import relu_mlp
        >>> model = relu_mlp(2, 4, 1, 1)
        >>> with torch.no_grad():
        ...     _ = model[0][0].weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1], [-1, -1]]))
        ...     _ = model[0][0].bias.zero_()
        >>> dormant_fraction(model, torch.rand(10, 2))  # unit 3 never fires
        0.25

    References:
        Sokar, Agarwal, Castro & Evci (2023), "The dormant neuron phenomenon in deep
        reinforcement learning", ICML.
    """
    check_block_model(model, min_blocks=2)
    tau = check_probability("tau", tau)
    check_bool("per_layer", per_layer)
    masks = [dormant_mask(h, tau) for h in hidden_features(model, x)]
    return unit_fractions(masks, per_layer)


def dead_fraction(model: nn.Sequential, x: torch.Tensor, *, per_layer: bool = False) -> Union[float, List[float]]:
    r"""Fraction of dead hidden units: units with :math:`h_i(x) = 0` for every probe input.

    A dead ReLU unit receives no task gradient on the probe set. Exact zeros are counted (ReLU
    outputs are exactly 0 when inactive); the units are those of all hidden blocks.

    Args:
        model: an ``nn.Sequential`` of hidden blocks followed by a head.
        x: probe inputs ``(N, *in)``.
        per_layer: return one fraction per hidden block instead of the overall fraction.

    Returns:
        The number of dead units over the number of hidden units of all hidden blocks (float in
        [0, 1]); or, with ``per_layer=True``, a list with one fraction per hidden block.

    Example:
        >>> from isoplast_lite import relu_mlp
        >>> model = relu_mlp(2, 4, 1, 1)
        >>> with torch.no_grad():
        ...     _ = model[0][0].weight.copy_(torch.tensor([[1.0, 0], [0, 1], [-1, 0], [-1, -1]]))
        ...     _ = model[0][0].bias.zero_()
        >>> dead_fraction(model, torch.rand(10, 2))  # inputs are positive: units 2, 3 are dead
        0.5
    """
    check_block_model(model, min_blocks=2)
    check_bool("per_layer", per_layer)
    masks = [dead_units(h) for h in hidden_features(model, x)]
    return unit_fractions(masks, per_layer)


def unit_fractions(masks: List[torch.Tensor], per_layer: bool) -> Union[float, List[float]]:
    """The share of ``True`` units over all the bool ``masks`` (one per layer), or per layer: the
    kernel of :func:`dormant_fraction` and :func:`dead_fraction`, shared with the runner.

    Example:
        >>> unit_fractions([torch.tensor([True, False]), torch.tensor([True, True, False, False])], False)
        0.5
        >>> unit_fractions([torch.tensor([True, False]), torch.tensor([True, True, True, False])], True)
        [0.5, 0.75]
    """
    if per_layer:
        return [float(m.float().mean()) for m in masks]
    return float(sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks))


# ----------------------------------------------------------------------------------------------
# Firing share and revival of hidden units
# ----------------------------------------------------------------------------------------------

#: Default of :func:`revived`: a dead unit counts as revived when it fires on at least 5% of the probe inputs.
REVIVAL_THRESHOLD = 0.05


def firing_share(model: nn.Sequential, x: torch.Tensor) -> List[torch.Tensor]:
    r"""Each hidden unit's firing share: the fraction of probe inputs on which its pre-activation is positive.

    For hidden block :math:`l` (all blocks but the head) with pre-activation :math:`z_{l,i}(x)`,
    the input of the block's activation (its last module; for ``(Linear, LayerNorm, ReLU)`` the
    LayerNorm output),

    .. math:: \text{share}_{l,i} = \frac{1}{N} \sum_{n=1}^N \mathbf 1\big[z_{l,i}(x_n) > 0\big].

    For a ReLU unit this is the share of inputs on which it fires (output and derivative
    nonzero); share 0 is a dead unit (:func:`dead_fraction` counts them). For a GroupSort block
    it is only the share of positive pre-activations (GroupSort units pass a gradient whatever
    the sign, so none is dead).

    Args:
        model: an ``nn.Sequential`` of hidden blocks, each an ``nn.Sequential`` ending in its
            activation, followed by a head.
        x: probe inputs ``(N, *in)``.

    Returns:
        A list with one float64 tensor ``(d_l,)`` of shares in [0, 1] per hidden block.

    Example:
        >>> from isoplast_lite import relu_mlp
        >>> model = relu_mlp(2, 3, 1, 1)
        >>> with torch.no_grad():
        ...     _ = model[0][0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        ...     _ = model[0][0].bias.zero_()
        >>> firing_share(model, torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [2.0, 1.0]]))
        [tensor([0.7500, 0.5000, 0.2500], dtype=torch.float64)]
    """
    check_model_and_probe(model, x, min_blocks=2)
    for index, block in enumerate(model[:-1]):
        if not isinstance(block, nn.Sequential) or len(block) < 2:
            raise ValueError(
                f"model's hidden block {index} must be an nn.Sequential ending in its activation "
                f"(e.g. (Linear, ReLU)), got {type(block).__name__}"
            )
    shares = []
    with torch.no_grad():
        h = x.detach()
        for block in model[:-1]:
            z = block[:-1](h)  # pre-activation
            shares.append((z.reshape(z.shape[0], -1) > 0).double().mean(0))
            h = block[-1](z)
    return shares


def _check_shares(name: str, value) -> List[torch.Tensor]:
    tensors = list(value) if isinstance(value, (list, tuple)) else [value]
    if not tensors:
        raise ValueError(f"{name} must be a tensor of firing shares or a non-empty list of them, got an empty list")
    for k, t in enumerate(tensors):
        label = name if not isinstance(value, (list, tuple)) else f"{name}[{k}]"
        check_tensor(label, t, finite=True)
        if bool(((t < 0) | (t > 1)).any()):
            raise ValueError(f"{label} must hold firing shares in [0, 1], got values in [{float(t.min())}, {float(t.max())}]")
    return tensors


def revived(
    before: Union[torch.Tensor, List[torch.Tensor]],
    after: Union[torch.Tensor, List[torch.Tensor]],
    threshold: float = REVIVAL_THRESHOLD,
) -> Union[torch.Tensor, List[torch.Tensor]]:
    r"""Which units were dead and now fire on a meaningful share of the inputs.

    Unit :math:`i` is *revived* iff :math:`\text{share}_i^{before} = 0` (dead: it fired on no
    probe input) and :math:`\text{share}_i^{after} \ge` ``threshold``, with the shares of
    :func:`firing_share` on the same probe. The default threshold is
    ``REVIVAL_THRESHOLD = 0.05``: a revived unit fires on at least 5% of the inputs, so it
    receives a task gradient from about one example in twenty, not from a stray input or two
    (our choice; ``PAPER.md`` asks that "revived" require a meaningful share and that the share
    be stated). A dead unit that fires on a smaller share is not counted.

    Args:
        before: firing shares before, a tensor ``(d,)`` or a list of such tensors (one per
            layer, as returned by :func:`firing_share`).
        after: firing shares after, with the same structure and shapes as ``before``.
        threshold: the minimal share after, in (0, 1].

    Returns:
        A bool tensor of the shape of ``before`` (or a list of them, one per layer).

    Example:
        >>> before = torch.tensor([0.0, 0.0, 0.0, 0.4])
        >>> after = torch.tensor([0.0, 0.02, 0.3, 0.5])
        >>> revived(before, after)  # unit 1 fires on 2% only; unit 3 was never dead
        tensor([False, False,  True, False])
        >>> revived(before, after, threshold=0.01)
        tensor([False,  True,  True, False])
    """
    single = not isinstance(before, (list, tuple))
    b_list, a_list = _check_shares("before", before), _check_shares("after", after)
    if single != (not isinstance(after, (list, tuple))) or len(b_list) != len(a_list):
        raise ValueError(
            f"after must have the structure of before (a tensor, or a list of {len(b_list)} tensors), "
            f"got {type(after).__name__} of {len(a_list)}"
        )
    for k, (b, a) in enumerate(zip(b_list, a_list)):
        if a.shape != b.shape:
            raise ValueError(f"after must have the shapes of before, got {tuple(a.shape)} against {tuple(b.shape)} (layer {k})")
    threshold = check_probability("threshold", threshold)
    if threshold == 0.0:
        raise ValueError("threshold must lie in (0, 1], got 0.0 (every dead unit would count as revived)")
    result = [(b == 0) & (a >= threshold) for b, a in zip(b_list, a_list)]
    return result[0] if single else result


# ----------------------------------------------------------------------------------------------
# Ranks (pure functions of tensors)
# ----------------------------------------------------------------------------------------------


def scale_safe(s: torch.Tensor) -> torch.Tensor:
    """Singular values ``(..., k)``, divided by the largest if their sum overflows.

    For the scale-invariant measures only (the ranks here, the eNTK summary); below the overflow
    the values are returned as they are (so results are bitwise unchanged for ordinary inputs).

    Example:
        >>> scale_safe(torch.tensor([3e38, 3e38])).tolist(), scale_safe(torch.tensor([2.0, 1.0])).tolist()
        ([1.0, 1.0], [2.0, 1.0])
    """
    if bool(torch.isfinite(s.sum(dim=-1)).all()):
        return s
    top = s.amax(dim=-1, keepdim=True)
    return s / torch.where(top > 0, top, torch.ones_like(top))


def effective_rank_from_svals(s: torch.Tensor) -> torch.Tensor:
    r"""Unchecked kernel of :func:`effective_rank` from non-negative values ``s`` ``(..., k)``
    (singular values, or the eNTK's absolute eigenvalues): :math:`\exp H(p)`, :math:`p = s / \sum s`;
    0 where they sum to 0. Pass them through :func:`scale_safe` first if their sum may overflow.

    Example:
        >>> effective_rank_from_svals(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
        tensor([2., 0.])
    """
    total = s.sum(dim=-1, keepdim=True)  # (..., 1)
    p = s / torch.where(total > 0, total, torch.ones_like(total))  # (..., k)
    entropy = -torch.xlogy(p, p).sum(dim=-1)  # 0 log 0 = 0
    return torch.where(total.squeeze(-1) > 0, entropy.exp(), torch.zeros_like(entropy))


def effective_rank(features: torch.Tensor) -> torch.Tensor:
    r"""Roy & Vetterli's effective rank :math:`\exp H(p)`, :math:`p_i = \sigma_i / \sum_j \sigma_j`.

    :math:`H(p) = -\sum_i p_i \log p_i` (with :math:`0 \log 0 = 0`) over the singular values
    :math:`\sigma_i` of the matrix as given (no centering). It equals ``n`` for a matrix whose
    ``n`` nonzero singular values are equal, and lies in ``[1, min(m, n)]`` otherwise; the zero
    matrix gets 0 by convention.

    Args:
        features: a matrix ``(m, n)`` (e.g. ``(N, d)`` features) or a stack ``(..., m, n)``.

    Returns:
        A tensor of shape ``(...)`` (0-dim for a single matrix).

    Example:
        >>> effective_rank(torch.eye(4))
        tensor(4.)
        >>> round(float(effective_rank(torch.diag(torch.tensor([1.0, 1.0, 0.0])))), 4)
        2.0

    References:
        Roy & Vetterli (2007), "The effective rank: a measure of effective dimensionality",
        EUSIPCO.
    """
    check_tensor("features", features, min_ndim=2, finite=True, full_precision=True)
    with torch.no_grad():
        return effective_rank_from_svals(scale_safe(torch.linalg.svdvals(features)))


def srank(features: torch.Tensor, delta: float = 0.01) -> torch.Tensor:
    r"""Kumar et al.'s :math:`\mathrm{srank}_\delta`: the smallest ``k`` whose top singular values hold ``1 - delta`` of the sum.

    .. math:: \mathrm{srank}_\delta = \min\Big\{k : \sum_{i \le k} \sigma_i \ge (1 - \delta) \sum_i \sigma_i\Big\}

    over the singular values :math:`\sigma_1 \ge \sigma_2 \ge \dots` of the matrix as given (no
    centering); the zero matrix gets 0 by convention.

    Args:
        features: a matrix ``(m, n)`` or a stack ``(..., m, n)``.
        delta: threshold in [0, 1).

    Returns:
        An integer (``torch.long``) tensor of shape ``(...)``.

    Example:
        >>> srank(torch.diag(torch.tensor([10.0, 5.0, 0.1])), delta=0.01)
        tensor(2)
        >>> srank(torch.eye(5), delta=0.01)
        tensor(5)

    References:
        Kumar, Agarwal, Ghosh & Levine (2021), "Implicit under-parameterization inhibits
        data-efficient deep reinforcement learning", ICLR.
    """
    check_tensor("features", features, min_ndim=2, finite=True, full_precision=True)
    delta = check_real("delta", delta)
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must lie in [0, 1), got {delta}")
    with torch.no_grad():
        s = scale_safe(torch.linalg.svdvals(features))  # (..., k), descending
        cumulative = s.cumsum(dim=-1)
        total = cumulative[..., -1:]  # (..., 1)
        k = (cumulative < (1.0 - delta) * total).sum(dim=-1) + 1
        return torch.where(total.squeeze(-1) > 0, k, torch.zeros_like(k))


def stable_rank(W: torch.Tensor) -> torch.Tensor:
    r"""Stable rank :math:`\lVert W\rVert_F^2 / \lVert W\rVert_2^2 = \sum_i \sigma_i^2 / \sigma_1^2`.

    A continuous proxy for the rank, between 1 and :math:`\operatorname{rank} W`; the zero
    matrix gets 0 by convention.

    Args:
        W: a matrix ``(m, n)`` or a stack ``(..., m, n)``.

    Returns:
        A tensor of shape ``(...)``.

    Example:
        >>> stable_rank(torch.diag(torch.tensor([2.0, 1.0, 1.0])))  # (4 + 1 + 1) / 4
        tensor(1.5000)

    References:
        Rudelson & Vershynin (2007), "Sampling from large matrices: an approach through
        geometric functional analysis", J. ACM.
    """
    check_tensor("W", W, min_ndim=2, finite=True, full_precision=True)
    with torch.no_grad():
        s = torch.linalg.svdvals(W)  # (..., k), descending
        top = s[..., :1]
        ratio = (s / torch.where(top > 0, top, torch.ones_like(top))).square().sum(dim=-1)  # scale-safe: sigma_i / sigma_1 <= 1
        return torch.where(top.squeeze(-1) > 0, ratio, torch.zeros_like(ratio))


# ----------------------------------------------------------------------------------------------
# Cloned units (a trap of gradient trajectories besides dead units)
# ----------------------------------------------------------------------------------------------

#: Default of :func:`clone_pairs` / :func:`clones`: two units are clones when their incoming
#: weights and their activations on the probe differ by at most 0.1% (relative, see there).
CLONE_TOLERANCE = 1e-3


#: An *exact* clone (:func:`clone_counts`) is one whose two relative distances are within round-off
#: of the weights' dtype: at most ``EXACT_CLONE_ULPS`` times its machine epsilon (ours: copied
#: rows trained by Adam or AdamO drift apart by a few epsilon, ``tools/clone_experiment.py``).
EXACT_CLONE_ULPS = 64


def exact_clone_tolerance(dtype: torch.dtype) -> float:
    """The relative tolerance of an exact clone in ``dtype``: ``EXACT_CLONE_ULPS * eps``.

    Example:
        >>> f"{exact_clone_tolerance(torch.float32):.1e}", f"{exact_clone_tolerance(torch.float64):.1e}"
        ('7.6e-06', '1.4e-14')
    """
    return EXACT_CLONE_ULPS * torch.finfo(dtype).eps


def _relative_distances(a: torch.Tensor) -> torch.Tensor:
    """``D[..., i, j] = ||a_i - a_j|| / max(||a_i||, ||a_j||)`` for the rows of ``a`` ``(..., m, d)`` (0 when both are 0)."""
    a = a.double()
    norms = a.norm(dim=-1)  # (..., m)
    batch = a.shape[:-2]
    flat = a.reshape(-1, *a.shape[-2:])  # (B, m, d)
    dist = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist").reshape(*batch, a.shape[-2], a.shape[-2])  # exact differences
    scale = torch.maximum(norms.unsqueeze(-1), norms.unsqueeze(-2))
    return torch.where(scale > 0, dist / torch.where(scale > 0, scale, torch.ones_like(scale)), torch.zeros_like(dist))


def clone_distance(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    r"""The clone distance of every pair of units: the larger of their two relative distances.

    ``D[..., i, j]`` is the larger of the relative distances of :func:`clone_pairs` (incoming
    weights, activations on the probe), so units ``i != j`` are clones at tolerance ``tol``
    exactly when ``D[..., i, j] <= tol``; one matrix answers every tolerance. The unchecked
    kernel of :func:`clone_pairs`, :func:`clone_counts` and the runner's seed-batched
    measurement (:mod:`isoplast_lite.measure`), batched over leading dimensions. Float64.

    Args:
        weights: incoming weights ``(..., m, d)``, one row per unit.
        activations: activations on the probe ``(..., N, m)``.

    Returns:
        ``(..., m, m)`` float64, symmetric, zero on the diagonal.

    Example:
        >>> W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0005]])
        >>> h = torch.relu(torch.tensor([[1.0, 2.0], [3.0, -1.0]]) @ W.T)
        >>> D = clone_distance(W, h)
        >>> f"{D[0, 2]:.1e}", bool(D[0, 1] > 0.5)
        ('5.0e-04', True)
    """
    return torch.maximum(_relative_distances(weights), _relative_distances(activations.mT))


def count_clone_pairs(distance: torch.Tensor, tol: float) -> torch.Tensor:
    """The number of clone pairs ``i < j`` at tolerance ``tol`` of each :func:`clone_distance` matrix
    ``(..., m, m)``: ``(...)`` float64 (an unchecked kernel)."""
    return torch.triu(distance <= tol, diagonal=1).sum((-2, -1)).double()


def clone_pairs(weights: torch.Tensor, activations: torch.Tensor, *, tol: float = CLONE_TOLERANCE) -> torch.Tensor:
    r"""Pairs of units that are clones: their incoming weights and their activations coincide.

    Units :math:`i \ne j` of a layer with incoming weights :math:`w_i` (a row of :math:`W`,
    with its bias appended by the caller if it has one) and activations :math:`h_i \in
    \mathbb{R}^N` on a probe of :math:`N` inputs are clones when both relative distances are at
    most ``tol``:

    .. math:: \frac{\lVert w_i - w_j\rVert}{\max(\lVert w_i\rVert, \lVert w_j\rVert)} \le
              \text{tol} \quad\text{and}\quad
              \frac{\lVert h_i - h_j\rVert}{\max(\lVert h_i\rVert, \lVert h_j\rVert)} \le \text{tol}

    (a distance between two zero vectors is 0). Clones compute the same function on the probe
    and receive gradients that differ only through their outgoing weights: a manifold of
    parameter space that gradient descent does not leave (Barriers for Learning in an Evolving
    World, 2025; ``PAPER.md``, "A second trap: cloned units"). The definition and the default
    tolerance are ours; the weights decide (two dead units with different weights share zero
    activations but are not clones). Computed in float64.

    Args:
        weights: incoming weights ``(m, d)``, one row per unit.
        activations: the units' activations on the probe ``(N, m)``.
        tol: the relative tolerance, ``>= 0``.

    Returns:
        A long tensor ``(P, 2)`` of the pairs ``(i, j)``, ``i < j``, in lexicographic order.

    Shape:
        ``weights``: ``(m, d)``; ``activations``: ``(N, m)``; result ``(P, 2)``.

    Example:
        >>> W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0005]])
        >>> h = torch.relu(torch.tensor([[1.0, 2.0], [3.0, -1.0]]) @ W.T)
        >>> clone_pairs(W, h).tolist()
        [[0, 2]]
    """
    check_tensor("weights", weights, ndim=2, finite=True, full_precision=True)
    check_tensor("activations", activations, ndim=2, finite=True, full_precision=True)
    tol = check_real("tol", tol)
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if activations.shape[1] != weights.shape[0]:
        raise ValueError(f"activations must have one column per unit (row of weights): weights {tuple(weights.shape)}, "
                         f"activations {tuple(activations.shape)}")  # fmt: skip
    return torch.triu(clone_distance(weights, activations) <= tol, diagonal=1).nonzero()


def clones(model: nn.Sequential, x: torch.Tensor, *, tol: float = CLONE_TOLERANCE) -> List[torch.Tensor]:
    r"""The cloned pairs of each hidden block of a block model (:func:`clone_pairs`).

    For hidden block :math:`l`, the incoming weights of unit :math:`i` are row :math:`i` of
    :math:`W_l` with the bias :math:`b_{l,i}` appended, and its activations are the block's
    outputs (:func:`hidden_features`) on the probe ``x``. The runner's count is
    ``[len(p) for p in clones(model, x)]``.

    Args:
        model: an ``nn.Sequential`` of hidden blocks then a head, each hidden block with a
            linear module whose outputs are the block's units.
        x: probe inputs ``(N, *in)``.
        tol: the relative tolerance of :func:`clone_pairs`.

    Returns:
        One long tensor ``(P_l, 2)`` per hidden block.

    Example:
        >>> from isoplast_lite import relu_mlp
        >>> model = relu_mlp(4, 6, 1, 2, generator=torch.Generator().manual_seed(0))
        >>> with torch.no_grad():
        ...     _ = model[0][0].weight[5].copy_(model[0][0].weight[1])  # unit 5 a copy of unit 1
        >>> [p.tolist() for p in clones(model, torch.randn(32, 4))]
        [[[1, 5]]]
    """
    feats = hidden_features(model, x)
    result = []
    for block, h in zip(model[:-1], feats):
        W = _unit_weights(block, h.shape[1])
        if W is None:
            raise ValueError(f"clones needs hidden blocks whose linear module's outputs are the block's units; block {block!r} has none")
        result.append(clone_pairs(W, h, tol=tol))
    return result


def _unit_weights(block: nn.Module, n_units: int) -> Optional[torch.Tensor]:
    """The incoming weights of the ``n_units`` units of a hidden block, the bias appended: ``(n_units, d + 1)``,
    or ``None`` when the block has no linear module with one output per unit."""
    linear = block_kind(block)[1]
    W = None if linear is None else linear.weight.detach()  # (d_out, d_in), computed once if parametrized
    if W is None or W.shape[0] != n_units:
        return None
    W = W.reshape(W.shape[0], -1)
    if getattr(linear, "bias", None) is not None:
        W = torch.cat([W, linear.bias.detach().reshape(-1, 1).to(W.dtype)], dim=1)
    return W


def clone_counts(model: nn.Sequential, x: torch.Tensor, *, tol: float = CLONE_TOLERANCE) -> List[Dict[str, float]]:
    r"""The number of cloned pairs of each block, near and exact: the runner's clone columns.

    For each hidden block, the pairs of :func:`clones` at two tolerances: ``clone_pairs`` at
    ``tol`` (near clones, :data:`CLONE_TOLERANCE` by default) and ``exact_clone_pairs`` at
    :func:`exact_clone_tolerance` of the weights' dtype (clones to round-off; every exact clone
    is a near one), with the tolerances used (``clone_tol``, ``exact_clone_tol``). The head's
    outputs are not hidden units, and a block without a linear module with one output per unit
    has no incoming weights to compare: their four values are NaN (not measured). The runner logs
    these per layer (:data:`isoplast_lite.run.LAYER_MEASURES`) on its probe; its seed-batched
    measurement computes the same counts with :func:`clone_distance` on the stacked weights.

    Args:
        model: an ``nn.Sequential`` of hidden blocks then a head.
        x: probe inputs ``(N, *in)``.
        tol: the relative tolerance of near clones, ``>= 0``.

    Returns:
        One dict per block (the head last) with float ``clone_pairs``, ``exact_clone_pairs``,
        ``clone_tol`` and ``exact_clone_tol``.

    Example:
        >>> from isoplast_lite import relu_mlp
        >>> model = relu_mlp(4, 6, 1, 2, generator=torch.Generator().manual_seed(0))
        >>> with torch.no_grad():
        ...     _ = model[0][0].weight[5].copy_(model[0][0].weight[1])
        ...     model[0][0].bias[5] = model[0][0].bias[1]
        ...     _ = model[0][0].weight[4].copy_(model[0][0].weight[2] * (1 + 1e-4))  # a near copy
        ...     model[0][0].bias[4] = model[0][0].bias[2] * (1 + 1e-4)
        >>> [(r["clone_pairs"], r["exact_clone_pairs"]) for r in clone_counts(model, torch.randn(32, 4))]
        [(2.0, 1.0), (nan, nan)]
    """
    check_model_and_probe(model, x)
    tol = check_real("tol", tol)
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    nan = dict.fromkeys(("clone_pairs", "exact_clone_pairs", "clone_tol", "exact_clone_tol"), math.nan)
    result = []
    for block, h in zip(model[:-1], hidden_features(model, x)):
        W = _unit_weights(block, h.shape[1])
        if W is None:
            result.append(dict(nan))
            continue
        exact = exact_clone_tolerance(W.dtype)
        distance = clone_distance(W, h)
        result.append({"clone_pairs": float(count_clone_pairs(distance, tol)), "exact_clone_pairs": float(count_clone_pairs(distance, exact)),
                       "clone_tol": float(tol), "exact_clone_tol": exact})  # fmt: skip
    return result + [dict(nan)]
