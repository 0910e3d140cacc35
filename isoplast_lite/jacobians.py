r"""Diagnostics of Jacobians and isometry: the layer Jacobians' singular values (raw, and over
the directions the active units span), the weights' singular values, and the per-layer scale and
spread of :math:`\log\sigma` (:func:`layer_isometry`, :func:`matrix_isometry`).

Part of :mod:`isoplast_lite.diagnostics` (which re-exports every public name here); see its
docstring for the conventions shared by all diagnostics. ``block_kind`` is the kernel that names
a block's structure (``linear``, ``relu``, ``groupsort``, ``layernorm`` or ``other``), shared
with the runner's measurement (:mod:`isoplast_lite.measure`) and :func:`~isoplast_lite.units.clones`.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Union

import torch
from torch import nn
from torch.func import jacrev, vmap

from ._validation import (
    check_block_model,
    check_bool,
    check_finite_parameters,
    check_model_and_probe,
    check_tensor,
)

__all__ = [
    "layer_jacobian_svdvals",
    "active_jacobian_svdvals",
    "weight_singular_values",
    "matrix_isometry",
    "layer_isometry",
    "block_kind",
]


# ----------------------------------------------------------------------------------------------
# Layer Jacobians and hidden features
# ----------------------------------------------------------------------------------------------


def layer_jacobian_svdvals(model: nn.Sequential, x: torch.Tensor, *, end_to_end: bool = True) -> Dict[Union[int, str], torch.Tensor]:
    r"""Singular values of every block's input-output Jacobian and of the end-to-end Jacobian.

    For a model ``nn.Sequential(block_0, ..., block_L)`` (hidden blocks then the head, as built
    by :func:`~isoplast_lite.nn.relu_mlp` / :func:`~isoplast_lite.nn.aei_mlp`) and each example
    :math:`x^{(n)}`, with :math:`h_{-1} = x^{(n)}` and :math:`h_l = \text{block}_l(h_{l-1})`:

    - ``result[l]`` holds the singular values of
      :math:`\partial h_l / \partial h_{l-1}` (the block's output w.r.t. its input, activation
      and LayerNorm included), a ``(d_l, d_{l-1})`` matrix;
    - ``result["end_to_end"]`` holds those of :math:`\partial f(x) / \partial x`.

    Dynamical isometry means all of them are close to 1. These are the raw singular values: an
    inactive ReLU unit contributes a singular value 0. To measure isometry per layer over the
    directions the active units span, with scale and spread separated, use
    :func:`active_jacobian_svdvals` and :func:`layer_isometry`. Computed with
    ``vmap(jacrev(block))`` per block, so it also works on models with parametrized
    (orthogonal) layers; no autograd graph is kept. Inputs and outputs with several feature
    dimensions are flattened.

    Args:
        model: an ``nn.Sequential`` of blocks.
        x: inputs ``(N, *in)``.
        end_to_end: also the end-to-end Jacobian's (``False``: the blocks' only, as the runner's
            ``jac_sv_*`` columns).

    Returns:
        A dict mapping each block index ``l = 0 .. len(model) - 1`` (ints, in order) and then
        (with ``end_to_end``) the key ``"end_to_end"`` to a tensor ``(N, k)`` of singular values in descending order,
        ``k = min(d_l, d_{l-1})`` (resp. ``min(O, prod(in))``).

    Example:
        >>> from isoplast_lite import aei_mlp
        >>> model = aei_mlp(4, 4, 2, 4, head="orthogonal", generator=torch.Generator().manual_seed(0))
        >>> sv = layer_jacobian_svdvals(model, torch.randn(3, 4))
        >>> list(sv), tuple(sv[0].shape)
        ([0, 1, 2, 'end_to_end'], (3, 4))
        >>> torch.allclose(sv["end_to_end"], torch.ones(3, 4), atol=1e-5)
        True
    """
    check_model_and_probe(model, x)
    check_bool("end_to_end", end_to_end)
    return _layer_jacobian_svdvals(model, x, end_to_end=end_to_end)


def _layer_jacobian_svdvals(model: nn.Sequential, x: torch.Tensor, *, end_to_end: bool) -> Dict[Union[int, str], torch.Tensor]:
    """Unchecked :func:`layer_jacobian_svdvals`; ``end_to_end=False`` skips that key (the runner)."""

    def block_jacobians(fn, h):  # (N, d_out, d_in)
        jac = vmap(jacrev(lambda hi: fn(hi.unsqueeze(0)).reshape(-1)))(h)
        return jac.reshape(h.shape[0], jac.shape[1], -1)

    result: Dict[Union[int, str], torch.Tensor] = {}
    h = x.detach()
    with torch.no_grad():
        for index, block in enumerate(model):
            jac = _plain_block_jacobians(block, h)
            result[index] = torch.linalg.svdvals(block_jacobians(block, h) if jac is None else jac)  # (N, k)
            h = block(h)
        if end_to_end:
            result["end_to_end"] = torch.linalg.svdvals(block_jacobians(model, x.detach()))
    return result


def _plain_block_jacobians(block: nn.Module, h: torch.Tensor) -> Optional[torch.Tensor]:
    """Per-example Jacobians ``(N, d_out, d_in)`` of a block ``linear`` or ``(linear, ReLU |
    GroupSort)`` in closed form, ``None`` for any other block (then ``vmap(jacrev)``).

    ``linear`` is a plain ``nn.Linear`` or an ``OrthogonalLinear`` (weight ``W``, Cayley too):
    the Jacobian is ``W``, ``diag(z > 0) W`` after a ReLU (ReLU's derivative is 1 where its
    output is positive), and ``W`` with its rows permuted as GroupSort sorts each group after a
    GroupSort. These are the entries ``vmap(jacrev)`` produces (copies of ``W``'s entries and
    zeros), without the autograd passes (tests/test_diagnostics.py).
    """
    from torch.nn.utils import parametrize

    from .nn import GroupSort, OrthogonalLinear

    layers = list(block) if isinstance(block, nn.Sequential) else [block]
    if not layers or len(layers) > 2 or h.ndim != 2:
        return None
    linear = layers[0]
    # the input Jacobian of x W^T + b is W whatever makes W: a Cayley OrthogonalLinear's
    # parametrized weight is computed once here, as its forward does
    if not (isinstance(linear, OrthogonalLinear) or (type(linear) is nn.Linear and not parametrize.is_parametrized(linear))):
        return None
    W = linear.weight  # (d_out, d_in)
    if len(layers) == 1:
        return W.expand(h.shape[0], *W.shape)
    act = layers[1]
    z = linear(h)  # (N, d_out)
    if type(act) is nn.ReLU:
        return (z > 0).to(W.dtype).unsqueeze(-1) * W  # (N, d_out, d_in)
    if type(act) is GroupSort and act.group_size > 1 and z.shape[-1] % act.group_size == 0:
        g = act.group_size
        order = z.unflatten(-1, (-1, g)).sort(dim=-1, descending=True).indices  # (N, d_out / g, g)
        rows = (order + g * torch.arange(z.shape[-1] // g, device=z.device).unsqueeze(-1)).flatten(1)  # (N, d_out)
        return W[rows]  # (N, d_out, d_in)
    return None



# ----------------------------------------------------------------------------------------------
# Per-layer isometry: scale and spread of the layer Jacobians over their active directions
# ----------------------------------------------------------------------------------------------


def block_kind(block: nn.Module):
    """``(kind, linear)``: the block's kind and its weight's module (or None).

    ``linear``: an ``nn.Linear`` / ``OrthogonalLinear`` alone (a head); ``relu``: ``(linear,
    ReLU)``; ``groupsort``: ``(linear, GroupSort)``; ``layernorm``: ``(linear, LayerNorm, ReLU)``;
    anything else is ``other`` (its weight is its first linear module, if any).

    Example:
        >>> from isoplast_lite import relu_mlp
        >>> [block_kind(b)[0] for b in relu_mlp(3, 4, 2, 2, layernorm=True)]
        ['layernorm', 'layernorm', 'linear']
    """
    from .nn import GroupSort, OrthogonalLinear

    linear_types = (nn.Linear, OrthogonalLinear)
    if isinstance(block, linear_types):
        return "linear", block
    if isinstance(block, nn.Sequential) and len(block) >= 2 and isinstance(block[0], linear_types):
        middle, act = list(block)[1:-1], block[-1]
        if not middle and isinstance(act, nn.ReLU):
            return "relu", block[0]
        if not middle and isinstance(act, GroupSort):
            return "groupsort", block[0]
        if (len(middle) == 1 and isinstance(middle[0], nn.LayerNorm) and isinstance(act, nn.ReLU)
                and tuple(middle[0].normalized_shape) == (block[0].out_features,)):
            return "layernorm", block[0]
    linear = next((m for m in block.modules() if isinstance(m, linear_types)), None)
    return "other", linear


def _weight_matrix(linear: Optional[nn.Module]) -> Optional[torch.Tensor]:
    """The ``(d_out, d_in)`` weight of a linear module (the computed weight of a parametrized one)."""
    return None if linear is None else linear.weight.detach()


def _block_jacobians(fn, h: torch.Tensor) -> torch.Tensor:
    """Per-example Jacobians of ``fn`` at the rows of ``h``: ``(N, d_out, prod(in))``."""
    jac = vmap(jacrev(lambda hi: fn(hi.unsqueeze(0)).reshape(-1)))(h)
    return jac.reshape(h.shape[0], jac.shape[1], -1)


def _layernorm_jacobian_times(norm: nn.LayerNorm, z: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    r"""LayerNorm's Jacobian at each row of ``z`` ``(N, d)``, radial direction removed exactly, times ``W``: ``(N, d, d_in)``.

    :math:`\mathrm{diag}(\gamma)\,(\mathrm{var}(z) + \epsilon)^{-1/2}\,(I - \tfrac1d 11^\top -
    \tfrac1d \hat z \hat z^\top)\,W` with :math:`\hat z = (z - \bar z)/\sqrt{\mathrm{var}(z)}`
    (biased variance, as LayerNorm; :math:`\hat z = 0` if the variance is 0), without forming
    the ``(N, d, d)`` Jacobian. The bracket equals the exact Jacobian on the complement of
    :math:`\mathrm{span}(1, \hat z)` and is exactly 0 on that span, where the exact one is 0
    on :math:`1` and :math:`\epsilon/(\mathrm{var} + \epsilon)` times smaller on :math:`\hat z`.
    """
    d = z.shape[-1]
    centered = z - z.mean(-1, keepdim=True)
    var = centered.square().mean(-1, keepdim=True)  # (N, 1)
    zhat = torch.where(var > 0, centered / var.sqrt().clamp_min(torch.finfo(z.dtype).tiny), torch.zeros_like(z))
    projected = W - W.mean(0) - zhat.unsqueeze(-1) * (zhat @ W / d).unsqueeze(-2)  # (N, d, d_in)
    gamma = torch.ones(d, dtype=z.dtype, device=z.device) if norm.weight is None else norm.weight.detach()
    return (gamma / (var + norm.eps).sqrt()).unsqueeze(-1) * projected  # rows scaled by gamma_i / sigma


def _active_rows_svdvals(mats: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Singular values of the active rows of each matrix: ``(N, m, d)``, ``(N, m)`` bool -> ``(N, min(m, d))``.

    Descending, NaN-padded past ``min(|A_n|, d)``. One ``svdvals`` per input on the
    ``(|A_n|, d)`` submatrix: with about half the units active this is about 2x faster than
    one batched ``svdvals`` of the zero-masked ``(N, m, d)`` stack (``benchmarks/layer_isometry.py``).
    """
    n, m, d = mats.shape
    sv = mats.new_full((n, min(m, d)), math.nan)
    for i in range(n):
        rows = mats[i][active[i]]  # (|A_i|, d)
        if rows.shape[0] > 0:
            s = torch.linalg.svdvals(rows)
            sv[i, : s.shape[0]] = s
    return sv


def _active_svdvals(block: nn.Module, h: torch.Tensor):
    """Singular values of one block's Jacobian over its active directions, at each row of ``h``.

    Returns ``(sv, active, n_null, kind)``: ``sv`` ``(N, k)`` descending with NaN past the
    active span (see :func:`active_jacobian_svdvals`), ``active`` ``(N, d_out)`` bool (units
    whose activation derivative is nonzero; ``None`` when all are), ``n_null`` the number of
    directions of the active span whose singular value is numerically zero (also NaN in ``sv``).
    """
    kind, linear = block_kind(block)
    n = h.shape[0]
    if kind != "other" and h.ndim != 2:
        kind = "other"  # the structured forms below are written for (N, d_in) features
    active = None
    if kind in ("linear", "groupsort"):
        W = _weight_matrix(linear)  # (d_out, d_in)
        sv = torch.linalg.svdvals(W).expand(n, -1)  # (N, k): J = P(x) W has the singular values of W
        rank = torch.full((n,), min(W.shape), dtype=torch.long, device=h.device)
        size = max(W.shape)
    elif kind == "relu":
        W = _weight_matrix(linear)
        active = linear(h) > 0  # (N, d_out): the units with ReLU'(z) = 1
        sv = _active_rows_svdvals(W.expand(n, -1, -1), active)  # the singular values of W_A(x)
        rank = active.sum(1).clamp(max=W.shape[1])  # min(|A(x)|, d_in)
        size = max(W.shape)
    elif kind == "layernorm":
        W = _weight_matrix(linear)
        norm = block[1]
        z = linear(h)  # (N, d_out), LayerNorm's input
        active = norm(z) > 0  # (N, d_out)
        sv = _active_rows_svdvals(_layernorm_jacobian_times(norm, z, W), active)  # (N, k)
        size = max(W.shape)
        rank = (sv > sv[:, :1] * size * torch.finfo(sv.dtype).eps).sum(1)  # numerical rank (NaN: False)
    else:
        jac = _block_jacobians(block, h)  # (N, d_out, d_in)
        sv = torch.linalg.svdvals(jac)  # (N, k)
        size = max(jac.shape[1], jac.shape[2])
        rank = (sv > sv[:, :1] * size * torch.finfo(sv.dtype).eps).sum(1)  # numerical rank
    k = sv.shape[1]
    in_span = torch.arange(k, device=sv.device) < rank.unsqueeze(1)  # (N, k)
    tol = sv[:, :1] * size * torch.finfo(sv.dtype).eps  # numpy.linalg.matrix_rank's default
    null = in_span & (sv <= tol)
    keep = in_span & ~null
    return torch.where(keep, sv, torch.full_like(sv, math.nan)), active, int(null.sum()), kind


def active_jacobian_svdvals(model: nn.Sequential, x: torch.Tensor) -> Dict[int, torch.Tensor]:
    r"""Singular values of each block's Jacobian over the directions its active units span.

    For a model ``nn.Sequential(block_0, ..., block_L)`` (hidden blocks then the head, as built
    by :func:`~isoplast_lite.nn.relu_mlp` / :func:`~isoplast_lite.nn.aei_mlp`), block :math:`l`
    with weight :math:`W_l \in \mathbb{R}^{d_l \times d_{l-1}}` and input :math:`h_{l-1}(x)`,
    ``result[l][n]`` holds the singular values :math:`\sigma` of the block Jacobian
    :math:`J_l(x_n) = \partial h_l / \partial h_{l-1}` on the subspace where it is not
    structurally zero. Our definition (a reconstruction, ``PAPER.md`` "Definitions of the
    measures"; the paper's text as we have it gives no formula), by block kind:

    - ReLU block ``(Linear, ReLU)``: :math:`J = D(x) W` with :math:`D(x)` the 0/1 diagonal of
      the units active at :math:`x` (pre-activation :math:`> 0`); its nonzero singular values
      are those of :math:`W_{A(x)}`, the rows of the active units: the
      :math:`r(x) = \min(|A(x)|, d_{l-1})` largest singular values of :math:`D(x) W`. An
      inactive unit is a direction the layer does not use, not a singular value 0.
    - GroupSort block ``(Linear, GroupSort)``: :math:`J = P(x) W` with :math:`P(x)` a
      permutation (almost everywhere), so all :math:`\min(d_l, d_{l-1})` singular values of
      :math:`W`, at every input.
    - Head or linear block (``Linear`` alone): the singular values of :math:`W`.
    - LayerNorm block ``(Linear, LayerNorm, ReLU)`` with pre-activation
      :math:`u = \mathrm{LN}(z)`, :math:`z = Wh + b`: the block Jacobian
      :math:`D(x)\,\mathrm{diag}(\gamma)\,(\mathrm{var}\,z + \epsilon)^{-1/2}
      (I - \tfrac1d 11^\top - \tfrac1d \hat z \hat z^\top)\,W`, with
      :math:`\hat z = (z - \bar z)/\sqrt{\mathrm{var}\,z}` and :math:`D(x)` the units with
      :math:`u > 0`, restricted to the active rows; its singular values above the tolerance
      below. LayerNorm removes the mean direction :math:`1` and the radial direction
      :math:`\hat z`; we remove the latter exactly (its exact singular value is
      :math:`\epsilon/(\mathrm{var}\,z + \epsilon)` times the others, a numerical artefact
      of ``eps``, which with a zero bias is the direction of the input's scale, to which the
      block is then invariant). Analytic, no autograd.
    - Any other block: the full Jacobian (``jacrev``), singular values above the numerical-rank
      tolerance below.

    In every case a kept singular value that is numerically zero,
    :math:`\sigma \le \sigma_{max}(x) \max(d_l, d_{l-1})\,\epsilon` (``numpy.linalg.matrix_rank``'s
    default tolerance, :math:`\epsilon` the dtype's machine epsilon), is dropped too (it would
    make :math:`\log\sigma = -\infty`); :func:`layer_isometry` counts those as ``n_null``.
    Dynamical isometry means every kept :math:`\sigma` is close to 1. The ReLU, LayerNorm,
    GroupSort and linear cases need no autograd (one forward, and ``svdvals`` of each input's
    active rows).

    Args:
        model: an ``nn.Sequential`` of blocks.
        x: probe inputs ``(N, *in)``.

    Returns:
        A dict mapping each block index ``l = 0 .. len(model) - 1`` to a tensor
        ``(N, min(d_l, d_{l-1}))`` of singular values in descending order, ``NaN`` in the
        positions past the active span of that input.

    Shape:
        ``x``: ``(N, *in)``; ``result[l]``: ``(N, min(d_l, d_{l-1}))``.

    Example:
        >>> from isoplast_lite import relu_mlp
        >>> model = relu_mlp(2, 3, 1, 1)
        >>> with torch.no_grad():
        ...     _ = model[0][0].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0]]))
        ...     _ = model[0][0].bias.zero_()
        >>> active_jacobian_svdvals(model, torch.tensor([[1.0, 1.0], [1.0, -1.0]]))[0]
        tensor([[3., 2.],
                [2., nan]])

    References:
        Pennington, Schoenholz & Ganguli (2017), "Resurrecting the sigmoid in deep learning
        through dynamical isometry", NeurIPS (singular values of input-output Jacobians);
        ``PAPER.md`` for the per-layer, active-direction form (ours).
    """
    check_model_and_probe(model, x)
    result: Dict[int, torch.Tensor] = {}
    h = x.detach()
    with torch.no_grad():
        for index, block in enumerate(model):
            result[index] = _active_svdvals(block, h)[0]
            h = block(h)
    return result


def weight_singular_values(model: nn.Sequential) -> Dict[int, torch.Tensor]:
    r"""Singular values of each block's weight matrix :math:`W_l` (descending).

    The weight of a block is its first ``nn.Linear`` / :class:`~isoplast_lite.nn.OrthogonalLinear`
    (for a Cayley-parametrized layer, the computed orthogonal weight), as a ``(d_l, d_{l-1})``
    matrix; biases are not included. A block without a linear module is left out.

    Args:
        model: an ``nn.Sequential`` of blocks.

    Returns:
        A dict mapping each block index (ints, in order) to a tensor ``(min(d_l, d_{l-1}),)``.

    Example:
        >>> from isoplast_lite import relu_mlp
        >>> model = relu_mlp(4, 8, 2, 3, generator=torch.Generator().manual_seed(0))
        >>> sv = weight_singular_values(model)  # orthogonal initialization: every sigma is 1
        >>> [tuple(s.shape) for s in sv.values()], all(torch.allclose(s, torch.ones_like(s)) for s in sv.values())
        ([(4,), (8,), (3,)], True)
    """
    check_block_model(model)
    check_finite_parameters("model", model)
    result: Dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for index, block in enumerate(model):
            W = _weight_matrix(block_kind(block)[1])
            if W is not None:
                result[index] = torch.linalg.svdvals(W.reshape(W.shape[0], -1))
    return result


def _log_stats(sv: torch.Tensor):
    """``(scale, spread, n, min, max)`` of the non-NaN entries of ``sv`` (float64 logs, population std)."""
    values = sv[~torch.isnan(sv)].double()
    if values.numel() == 0:
        return math.nan, math.nan, 0, math.nan, math.nan
    logs = values.log()
    return float(logs.mean()), float(logs.std(correction=0)), int(values.numel()), float(values.min()), float(values.max())


def matrix_isometry(W: torch.Tensor) -> Dict[str, Union[int, float]]:
    r"""Scale and spread of :math:`\log\sigma` of one weight matrix, the weight columns of :func:`layer_isometry`.

    ``W`` of shape ``(d_out, *in)`` is read as the ``(d_out, prod(in))`` matrix (a convolution
    kernel ``(out, in, k, k)`` as ``(out, in k k)``, as :class:`~isoplast_lite.optim.AdamO`
    treats it). Its singular values :math:`\sigma \le \sigma_{max} \max(d_{out}, d_{in})\,
    \epsilon` (``numpy.linalg.matrix_rank``'s tolerance) are numerically zero: they are counted
    in ``n_null`` and left out of the statistics, which are over the :math:`n` others:
    ``scale`` :math:`= \frac1n\sum\log\sigma`, ``spread`` the population standard deviation of
    :math:`\log\sigma` (float64 logs).

    Args:
        W: a weight tensor with at least 2 dimensions.

    Returns:
        A dict with ``scale``, ``spread``, ``sigma_min``, ``sigma_max`` (floats, NaN when every
        singular value is zero), ``n`` and ``n_null`` (ints).

    Example:
        >>> r = matrix_isometry(torch.diag(torch.tensor([2.0, 0.5, 0.0])))
        >>> round(r["scale"], 6), round(r["spread"], 4), r["n"], r["n_null"]
        (0.0, 0.6931, 2, 1)
    """
    check_tensor("W", W, min_ndim=2, finite=True, full_precision=True)
    with torch.no_grad():
        M = W.detach().reshape(W.shape[0], -1)
        sv = torch.linalg.svdvals(M)
        tol = sv[:1] * max(M.shape) * torch.finfo(sv.dtype).eps
        kept = torch.where(sv > tol, sv, torch.full_like(sv, math.nan))
    scale, spread, count, s_min, s_max = _log_stats(kept)
    return {"scale": scale, "spread": spread, "sigma_min": s_min, "sigma_max": s_max, "n": count, "n_null": sv.numel() - count}


def layer_isometry(model: nn.Sequential, x: torch.Tensor) -> List[Dict[str, Union[int, float, str]]]:
    r"""Per-layer isometry of a block model on a probe: scale and spread of :math:`\log\sigma`, tidy rows.

    For each block :math:`l`, pool the singular values :math:`\sigma` of
    :func:`active_jacobian_svdvals` over the probe inputs and their active directions (the set
    :math:`S_l` of :math:`(x, \sigma)` pairs, :math:`|S_l|` = ``n_directions``) and report

    .. math::
        \text{scale}_l = \frac{1}{|S_l|}\sum_{S_l} \log\sigma, \qquad
        \text{spread}_l = \Big(\frac{1}{|S_l|}\sum_{S_l} (\log\sigma - \text{scale}_l)^2\Big)^{1/2}

    (population standard deviation). Scale 0 means the layer preserves norms on average (in the
    geometric-mean sense); spread 0 means all its singular values are equal, and it is
    scale-free (``spread`` of :math:`cW` equals that of :math:`W`), like the eNTK condition
    number. Dynamical isometry of layer :math:`l` is scale = spread = 0. These definitions are
    **ours** (a reconstruction: ``PAPER.md``, "Definitions of the measures", proposes exactly
    this split of scale and spread over the directions the active units span); the paper's own
    statistic is not known to us. A pooled standard deviation of raw :math:`\sigma` over all
    layers (the runner's ``jac_sv_std`` before issue 11) mixes scale with spread and counts
    inactive ReLUs as :math:`\sigma = 0`.

    Each row also carries the weight matrix's singular values (:func:`weight_singular_values`):
    ``weight_scale`` / ``weight_spread`` are the same statistics of :math:`\log\sigma(W_l)`
    (numerically zero singular values dropped as above), and their extremes.

    Args:
        model: an ``nn.Sequential`` of blocks (hidden blocks, then the head).
        x: probe inputs ``(N, *in)`` (the runner uses about 16).

    Returns:
        One dict per block, in order, with keys:

        - ``layer`` (int): the block index :math:`l`; ``kind`` (str): ``"hidden"`` or
          ``"head"`` (the last block); ``block`` (str): one of ``"linear"``, ``"relu"``,
          ``"groupsort"``, ``"layernorm"``, ``"other"`` (see :func:`active_jacobian_svdvals`).
        - ``scale``, ``spread`` (float): as above; NaN when no direction was measured.
        - ``n_directions`` (int): :math:`|S_l|`; ``directions_share`` (float): :math:`|S_l| /
          (N \min(d_l, d_{l-1}))`, the share of the possible directions that were measured;
          ``inputs_share`` (float): the share of probe inputs with at least one direction;
          ``active_share`` (float): the share of (input, unit) pairs whose unit is active
          (pre-activation :math:`> 0`; 1.0 for GroupSort, linear and other blocks);
          ``n_null`` (int): directions of the active span dropped as numerically zero.
        - ``null_share`` (float): the share of the Jacobian's :math:`N \min(d_l, d_{l-1})`
          singular values that are zero: past the active span (an inactive or dead unit's
          direction) or numerically zero (below the resolution above). It is
          ``1 - directions_share``, reported in its own column so that the isometry measure
          counts null directions (:math:`\sigma = 0`, the farthest a singular value can be from
          1) beside the scale and spread of the rest, instead of leaving them out (issue 23).
          ``weight_null_share`` (float): the same share for :math:`W_l`'s singular values
          (numerically zero ones; NaN for a block without a linear module).
        - ``jac_sigma_min``, ``jac_sigma_max`` (float): extremes of the pooled :math:`\sigma`.
        - ``weight_scale``, ``weight_spread``, ``weight_sigma_min``, ``weight_sigma_max``
          (float): of :math:`W_l`'s singular values (NaN for a block without a linear module).

    Example:
        >>> from isoplast_lite import aei_mlp
        >>> model = aei_mlp(4, 8, 2, 3, generator=torch.Generator().manual_seed(0))
        >>> rows = layer_isometry(model, torch.randn(16, 4))
        >>> [(r["layer"], r["kind"], r["block"], r["n_directions"]) for r in rows]
        [(0, 'hidden', 'groupsort', 64), (1, 'hidden', 'groupsort', 128), (2, 'head', 'linear', 48)]
        >>> all(abs(r["scale"]) < 1e-5 and r["spread"] < 1e-5 for r in rows[:-1])
        True

    References:
        Pennington, Schoenholz & Ganguli (2017), NeurIPS; ``PAPER.md`` (scale and spread, ours).
    """
    check_model_and_probe(model, x)
    rows: List[Dict[str, Union[int, float, str]]] = []
    h = x.detach()
    with torch.no_grad():
        for index, block in enumerate(model):
            sv, active, n_null, kind = _active_svdvals(block, h)
            scale, spread, count, s_min, s_max = _log_stats(sv)
            W = _weight_matrix(block_kind(block)[1])
            w = dict.fromkeys(("scale", "spread", "sigma_min", "sigma_max"), math.nan) if W is None else matrix_isometry(W)
            w_null = math.nan if W is None else w["n_null"] / (w["n"] + w["n_null"])
            rows.append({
                "layer": index,
                "kind": "head" if index == len(model) - 1 else "hidden",
                "block": kind,
                "scale": scale,
                "spread": spread,
                "n_directions": count,
                "directions_share": count / sv.numel(),
                "inputs_share": float((~torch.isnan(sv)).any(1).double().mean()),
                "active_share": 1.0 if active is None else float(active.double().mean()),
                "n_null": n_null,
                "null_share": 1.0 - count / sv.numel(),
                "jac_sigma_min": s_min,
                "jac_sigma_max": s_max,
                "weight_scale": w["scale"],
                "weight_spread": w["spread"],
                "weight_sigma_min": w["sigma_min"],
                "weight_sigma_max": w["sigma_max"],
                "weight_null_share": w_null,
            })  # fmt: skip
            h = block(h)
    return rows
