"""The runner's per-task measurement: one :func:`measure` for every seed of a stacked model.

:func:`measure` gives, for each live seed of a :class:`~isoplast_lite.engine.StackedModel`, the
metrics of a result row (feature measures: dormant / dead fractions and effective rank of the
last features; the weight norm; the pooled layer-Jacobian singular values ``jac_sv_*``; the
layer-wise eNTK on the probe, in float64 from the weights as stored, and its summary ``ntk_*``
with the resolution of :func:`isoplast_lite.diagnostics.ntk_resolution`), the rows of
:func:`isoplast_lite.diagnostics.layer_isometry` (null shares included) with the clone counts of
:func:`isoplast_lite.diagnostics.clone_counts` on the probe, and the eNTK's eigenvalues. It picks one of two
paths, which agree to float rounding (tests/test_stacked_measure.py):

- the seed-batched path (:func:`measure_stacked`) on the stacked ``(S, ...)`` tensors, with
  batched products and one batched ``svdvals`` / ``eigvalsh`` per quantity, forming each block
  Jacobian once for both Jacobian measures, whenever :func:`stacked_blocks` covers the net and
  :data:`NTK_METHOD` is ``"layerwise"``;
- otherwise the per-seed reference (:func:`measure_seed`): a standalone copy of each seed's
  model measured with the public diagnostics.

Note (which nets): the closed forms below cover the blocks of :func:`~isoplast_lite.nn.relu_mlp`
(with or without LayerNorm) and of the Newton–Schulz :func:`~isoplast_lite.nn.aei_mlp`: a plain
``nn.Linear`` / Newton–Schulz ``OrthogonalLinear`` alone (a head), or followed by ``ReLU``,
``GroupSort`` or ``(LayerNorm, ReLU)``. :func:`stacked_blocks` returns ``None`` for any other
net (a Cayley ``OrthogonalLinear``, Parseval's diagonal layers, a custom module) and the runner
then measures seed by seed with the public diagnostics.

Note (the eNTK): for these nets every parameter is either the weight or bias of a linear map
``z_l = W_l h_{l-1} + b_l`` or a LayerNorm gain / bias, so the layered form of
:func:`isoplast_lite.diagnostics.empirical_ntk` (``method="layerwise"``) is

    Theta[n, m] = sum_l B_l(x_n) B_l(x_m)^T (h_{l-1}(x_n) . h_{l-1}(x_m) + 1) + sum_f J_f(x_n) J_f(x_m)^T

with ``B_l = d f / d z_l`` obtained here by one backward sweep of the block Jacobians (instead
of ``vmap(jacrev)`` through hooks) and ``J_f`` the per-example derivatives of the LayerNorm
parameters, ``d f / d gamma_i = (d f / d u_i) zhat_i`` and ``d f / d beta_i = d f / d u_i``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from .engine import StackedModel
from .entk import empirical_ntk, ntk_progress, ntk_resolution, ntk_summary
from .jacobians import block_kind, layer_isometry, layer_jacobian_svdvals
from .nn import OrthogonalLinear
from .units import (CLONE_TOLERANCE, clone_counts, clone_distance, count_clone_pairs, dormant_mask, effective_rank, effective_rank_from_svals,
                    exact_clone_tolerance, hidden_features, unit_fractions)

__all__ = ["measure", "measure_seed", "measure_stacked", "stacked_blocks", "stacked_forward", "stacked_ntk_eigenvalues", "jacobian_spread", "NTK_METHOD", "N_DIRECTIONS"]

#: the :func:`isoplast_lite.diagnostics.empirical_ntk` method of the per-task measurement; the
#: seed-batched measurement computes the layer-wise form, any other value measures seed by seed
NTK_METHOD = "layerwise"
#: the number of random residual directions of ``ntk_progress_mean`` (ntk_summary's default)
N_DIRECTIONS = 256


@dataclass(frozen=True)
class _Block:
    """One block of a supported net: its kind and the names of its stacked parameters."""

    kind: str  # "linear", "relu", "groupsort" or "layernorm" (jacobians.block_kind)
    weight: str
    bias: str
    norm: Optional[nn.LayerNorm] = None
    norm_weight: Optional[str] = None
    norm_bias: Optional[str] = None
    group_size: int = 1


def stacked_blocks(stack) -> Optional[List[_Block]]:
    """The blocks of ``stack`` if :func:`measure_stacked` covers its net, else ``None``.

    Example:
        >>> from isoplast_lite.nn import aei_mlp, relu_mlp
        >>> [b.kind for b in stacked_blocks(StackedModel.build(lambda g: relu_mlp(4, 8, 2, 3, generator=g), [0]))]
        ['relu', 'relu', 'linear']
        >>> stacked_blocks(StackedModel.build(lambda g: aei_mlp(4, 8, 2, 3, orthogonal="cayley", generator=g), [0])) is None
        True
    """
    blocks, names = [], set()
    for i, block in enumerate(stack.template):
        kind, linear = block_kind(block)
        if kind not in ("linear", "relu", "groupsort", "layernorm") or type(linear) not in (nn.Linear, OrthogonalLinear):
            return None
        if parametrize.is_parametrized(linear) or getattr(linear, "method", "newton-schulz") != "newton-schulz":
            return None
        prefix = f"{i}." if kind == "linear" else f"{i}.0."
        info = dict(kind=kind, weight=prefix + "weight", bias=prefix + "bias")
        if kind == "layernorm":
            norm = block[1]
            if not norm.elementwise_affine or norm.bias is None:
                return None
            info.update(norm=norm, norm_weight=f"{i}.1.weight", norm_bias=f"{i}.1.bias")
        if kind == "groupsort":
            info["group_size"] = block[-1].group_size
        b = _Block(**info)
        names.update(n for n in (b.weight, b.bias, b.norm_weight, b.norm_bias) if n is not None)
        blocks.append(b)
    if names != set(stack.params) or stack.buffers or not all(p.requires_grad for p in stack.params.values()):
        return None  # a parameter these closed forms do not know, or a frozen one
    return blocks


def _group_rows(z: torch.Tensor, g: int) -> torch.Tensor:
    """Index ``r`` with ``group_sort(z)[..., j] = z[..., r[j]]``: ``(..., d)`` long."""
    if g == 1:
        return torch.arange(z.shape[-1], device=z.device).expand(z.shape)
    order = z.unflatten(-1, (-1, g)).sort(dim=-1, descending=True).indices  # (..., d / g, g)
    return (order + g * torch.arange(z.shape[-1] // g, device=z.device).unsqueeze(-1)).flatten(-2)


def _layernorm_parts(z: torch.Tensor, eps: float):
    """``(zhat, sigma)`` of LayerNorm at each row of ``z`` (biased variance, as LayerNorm)."""
    centered = z - z.mean(-1, keepdim=True)
    sigma = (centered.square().mean(-1, keepdim=True) + eps).sqrt()  # (..., 1)
    return centered / sigma, sigma


def stacked_forward(blocks: List[_Block], params: Dict[str, torch.Tensor], x: torch.Tensor):
    """Inputs, linear outputs ``z`` and outputs of every block, ``x`` ``(S, N, D)``: the
    operations of ``StackedModel.forward_all`` (its outputs, the logits last, are the same numbers).

    Example:
        >>> from isoplast_lite.nn import relu_mlp
        >>> stack = StackedModel.build(lambda g: relu_mlp(4, 8, 2, 3, generator=g), [0, 1])
        >>> x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
        >>> inputs, zs, outs = stacked_forward(stacked_blocks(stack), {n: p.detach() for n, p in stack.params.items()}, x)
        >>> [tuple(h.shape) for h in outs], torch.allclose(outs[-1], stack(x))
        ([(2, 5, 8), (2, 5, 8), (2, 5, 3)], True)
    """
    inputs, zs, outs = [], [], []
    h = x
    for b in blocks:
        inputs.append(h)
        z = torch.baddbmm(params[b.bias].unsqueeze(1), h, params[b.weight].transpose(1, 2))  # (S, N, d)
        zs.append(z)
        if b.kind == "linear":
            h = z
        elif b.kind == "relu":
            h = torch.relu(z)
        elif b.kind == "groupsort":
            h = torch.gather(z, -1, _group_rows(z, b.group_size))
        else:
            u = nn.functional.layer_norm(z, b.norm.normalized_shape, eps=b.norm.eps)
            h = torch.relu(u * params[b.norm_weight].unsqueeze(1) + params[b.norm_bias].unsqueeze(1))
        outs.append(h)
    return inputs, zs, outs


def _log_stats(sv: torch.Tensor):
    """Per seed ``(scale, spread, n, min, max)`` of the non-NaN entries of ``sv`` ``(S, ...)``
    (float64 logs, population std; NaN and 0 when there are none): jacobians._log_stats batched."""
    flat = sv.flatten(1).double()
    valid = ~torch.isnan(flat)
    n = valid.sum(1)  # (S,)
    logs = torch.where(valid, flat, torch.ones_like(flat)).log()
    mean = logs.sum(1) / n
    spread = (torch.where(valid, logs - mean.unsqueeze(1), torch.zeros_like(logs)).square().sum(1) / n).sqrt()
    s_min = torch.where(valid, flat, torch.full_like(flat, math.inf)).amin(1)
    s_max = torch.where(valid, flat, torch.full_like(flat, -math.inf)).amax(1)
    none = n == 0
    nan = torch.full_like(mean, math.nan)
    return (torch.where(none, nan, mean), torch.where(none, nan, spread), n,
            torch.where(none, nan, s_min), torch.where(none, nan, s_max))  # fmt: skip


def _active_span(sv: torch.Tensor, rank: torch.Tensor, size: int):
    """``sv`` ``(S, N, k)`` NaN past ``rank`` ``(S, N)`` and where numerically zero; and the count of those zeros per seed."""
    k = sv.shape[-1]
    in_span = torch.arange(k, device=sv.device) < rank.unsqueeze(-1)  # (S, N, k)
    tol = sv[..., :1] * size * torch.finfo(sv.dtype).eps  # numpy.linalg.matrix_rank's default
    null = in_span & (sv <= tol)
    keep = in_span & ~null
    return torch.where(keep, sv, torch.full_like(sv, math.nan)), null.flatten(1).sum(1)


def _numerical_rank(sv: torch.Tensor, size: int) -> torch.Tensor:
    return (sv > sv[..., :1] * size * torch.finfo(sv.dtype).eps).sum(-1)


@torch.no_grad()
def measure_stacked(blocks: List[_Block], params: Dict[str, torch.Tensor], forward, probe_size: int):
    """Every diagnostic of ``measure_seed`` for the ``S`` stacked seeds of ``params``.

    Args:
        blocks: :func:`stacked_blocks` of the net.
        params: name -> stacked parameters ``(S, *shape)`` (the seeds to measure).
        forward: :func:`stacked_forward` of ``params`` on the task inputs ``(S, N, D)``; the
            probe is their first ``probe_size`` inputs.

    Returns:
        ``(metrics, layers, eigenvalues)``: ``metrics`` name -> ``(S,)`` tensor (the row's
        diagnostics columns); ``layers`` one dict per block of ``(S,)`` tensors (and the
        strings ``layer``, ``kind``, ``block``), the measures of ``layer_isometry``;
        ``eigenvalues`` ``(S, P*O)`` float64, descending.

    Example:
        >>> from isoplast_lite.nn import relu_mlp
        >>> stack = StackedModel.build(lambda g: relu_mlp(4, 8, 2, 3, generator=g), [0, 1])
        >>> blocks, params = stacked_blocks(stack), {n: p.detach() for n, p in stack.params.items()}
        >>> x = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(0))
        >>> metrics, layers, eigenvalues = measure_stacked(blocks, params, stacked_forward(blocks, params, x), 3)
        >>> tuple(metrics["ntk_cond"].shape), len(layers), tuple(eigenvalues.shape)
        ((2,), 3, (2, 9))
    """
    params = {n: p.detach() for n, p in params.items()}
    inputs, zs, outs = forward
    feats = outs[:-1]  # the hidden features, (S, N, d) each
    S, P = zs[0].shape[0], probe_size
    metrics: Dict[str, torch.Tensor] = {}

    # --- the features on the task data: dormant and dead fractions, effective rank
    n_units = sum(h.shape[-1] for h in feats)
    activity = [h.abs().mean(dim=1) for h in feats]  # (S, d): E_x |h_i(x)|
    for tau in (0.025, 0.1):
        count = 0
        for a in activity:
            mean = a.mean(-1, keepdim=True)  # (S, 1)
            count = count + torch.where(mean == 0, torch.ones_like(a, dtype=torch.bool), a / mean <= tau).sum(-1)
        metrics[f"dormant_{tau}"] = count.double() / n_units
    metrics["dead"] = sum((h == 0).all(dim=1).sum(-1) for h in feats).double() / n_units
    s = torch.linalg.svdvals(feats[-1])  # (S, k)
    total = s.sum(-1, keepdim=True)
    top = s.amax(-1, keepdim=True)
    s = torch.where(torch.isfinite(total), s, s / torch.where(top > 0, top, torch.ones_like(top)))  # units.scale_safe per seed
    metrics["feature_erank"] = effective_rank_from_svals(s)
    metrics["weight_norm"] = sum(p.double().square().flatten(1).sum(1) for p in params.values()).sqrt()

    # --- the probe: block Jacobians (raw and over the active directions), the eNTK's B_l
    inputs, zs = [h[:, :P] for h in inputs], [z[:, :P] for z in zs]  # on the probe
    raw_sv, layers = [], []
    for index, (b, z) in enumerate(zip(blocks, zs)):
        W = params[b.weight]  # (S, d_out, d_in)
        d_out, d_in = W.shape[1:]
        size = max(d_out, d_in)
        w_sv = torch.linalg.svdvals(W)  # (S, k)
        active = None
        if b.kind in ("linear", "groupsort"):
            sv = w_sv.unsqueeze(1).expand(S, P, -1)  # J = P(x) W has the singular values of W
            raw = sv
            rank = torch.full((S, P), min(d_out, d_in), dtype=torch.long, device=W.device)
            sv, n_null = _active_span(sv, rank, size)
        elif b.kind == "relu":
            active = z > 0  # (S, P, d_out)
            raw = torch.linalg.svdvals(active.to(W.dtype).unsqueeze(-1) * W.unsqueeze(1))  # of D(x) W, (S, P, k)
            sv, n_null = _active_span(raw, active.sum(-1).clamp(max=d_in), size)  # the singular values of W_A(x)
        else:  # layernorm
            zhat, sigma = _layernorm_parts(z, b.norm.eps)  # (S, P, d), (S, P, 1)
            gamma = params[b.norm_weight].unsqueeze(1)  # (S, 1, d)
            active = zhat * gamma + params[b.norm_bias].unsqueeze(1) > 0
            Wb = W.unsqueeze(1)  # (S, 1, d, d_in)
            # the radial direction removed exactly (jacobians._layernorm_jacobian_times), for layer_isometry
            centered_var = (z - z.mean(-1, keepdim=True)).square().mean(-1, keepdim=True)
            zhat0 = torch.where(centered_var > 0, (z - z.mean(-1, keepdim=True)) / centered_var.sqrt().clamp_min(torch.finfo(z.dtype).tiny),
                                torch.zeros_like(z))  # fmt: skip
            projected = Wb - W.mean(1, keepdim=True).unsqueeze(1) - zhat0.unsqueeze(-1) * (zhat0.unsqueeze(-2) @ Wb / d_out)
            projected = (gamma / (centered_var + b.norm.eps).sqrt()).unsqueeze(-1) * projected
            sv = torch.linalg.svdvals(active.to(W.dtype).unsqueeze(-1) * projected)  # (S, P, k)
            sv, n_null = _active_span(sv, _numerical_rank(sv, size), size)
            # the exact Jacobian diag(D gamma / sigma) (I - 11^T/d - zhat zhat^T / d) W, for jac_sv_*
            exact = Wb - W.mean(1, keepdim=True).unsqueeze(1) - zhat.unsqueeze(-1) * (zhat.unsqueeze(-2) @ Wb / d_out)
            raw = torch.linalg.svdvals((active.to(W.dtype) * gamma / sigma).unsqueeze(-1) * exact)
        raw_sv.append(raw.flatten(1))
        scale, spread, count, s_min, s_max = _log_stats(sv)
        w_tol = w_sv[:, :1] * size * torch.finfo(w_sv.dtype).eps
        w_stats = _log_stats(torch.where(w_sv > w_tol, w_sv, torch.full_like(w_sv, math.nan)))
        layers.append({
            "layer": index, "kind": "head" if index == len(blocks) - 1 else "hidden", "block": b.kind,
            "scale": scale, "spread": spread, "n_directions": count, "directions_share": count.double() / sv[0].numel(),
            "inputs_share": (~torch.isnan(sv)).any(-1).double().mean(-1),
            "active_share": torch.ones(S, dtype=torch.float64, device=W.device) if active is None else active.flatten(1).double().mean(1),
            "n_null": n_null, "null_share": 1.0 - count.double() / sv[0].numel(), "jac_sigma_min": s_min, "jac_sigma_max": s_max,
            "weight_scale": w_stats[0], "weight_spread": w_stats[1], "weight_sigma_min": w_stats[3], "weight_sigma_max": w_stats[4],
            "weight_null_share": (w_sv <= w_tol).double().mean(1),
            **_stacked_clone_counts(params, b, feats[index][:, :P] if index < len(feats) else None),
        })  # fmt: skip

    sv = torch.cat(raw_sv, dim=1).double()  # (S, all): _jacobian_spread of every seed
    sv_max = sv.amax(1)
    metrics["jac_sv_mean"], metrics["jac_sv_std"] = sv.mean(1), sv.std(1)
    counted = sv > 1e-6 * sv_max.unsqueeze(1)
    sv_min = torch.where(counted, sv, torch.full_like(sv, math.inf)).amin(1)
    metrics["jac_sv_ratio"] = torch.where(counted.any(1), sv_max / sv_min, torch.full_like(sv_max, math.nan))

    # the eNTK in float64 from the weights as stored (exact in float64): the probe's forward again,
    # in float64, so the kernel has float64 round-off only (diagnostics.ntk_resolution)
    params64 = {n: p.double() for n, p in params.items()}
    inputs64, zs64, _ = stacked_forward(blocks, params64, inputs[0].double())
    eigenvalues = stacked_ntk_eigenvalues(blocks, params64, inputs64, zs64, metrics)
    return metrics, layers, eigenvalues


def _stacked_clone_counts(params: Dict[str, torch.Tensor], b: _Block, h: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
    """:func:`isoplast_lite.diagnostics.clone_counts` of one block for every seed: its units' incoming
    weights (bias appended) ``(S, m, d + 1)`` and activations on the probe ``h`` ``(S, P, m)``; NaN
    for the head (``h`` None)."""
    W = params[b.weight]
    S = W.shape[0]
    if h is None:
        nan = torch.full((S,), math.nan, dtype=torch.float64, device=W.device)
        return dict.fromkeys(("clone_pairs", "exact_clone_pairs", "clone_tol", "exact_clone_tol"), nan)
    exact = exact_clone_tolerance(W.dtype)
    distance = clone_distance(torch.cat([W, params[b.bias].unsqueeze(-1)], dim=-1), h)  # (S, m, m)
    full = torch.ones(S, dtype=torch.float64, device=W.device)
    return {"clone_pairs": count_clone_pairs(distance, CLONE_TOLERANCE), "exact_clone_pairs": count_clone_pairs(distance, exact),
            "clone_tol": full * CLONE_TOLERANCE, "exact_clone_tol": full * exact}  # fmt: skip


def stacked_ntk_eigenvalues(blocks, params, inputs, zs, metrics) -> torch.Tensor:
    """The layer-wise eNTK of every seed on the probe, its summary into ``metrics`` (the ``ntk_*``
    columns, ``(S,)`` each) and its eigenvalues ``(S, M)``, ``M = P*O``, descending, in the dtype
    of ``zs`` (the runner passes float64): the kernel of the module note, from one backward sweep.

    Args:
        blocks: :func:`stacked_blocks` of the stacked model.
        params: its stacked parameters (in the dtype of the kernel).
        inputs, zs: the first two lists of :func:`stacked_forward` on the probe ``(S, P, D)``.
        metrics: a dict the summary is written into.

    Example:
        >>> from isoplast_lite.nn import relu_mlp
        >>> stack = StackedModel.build(lambda g: relu_mlp(4, 8, 2, 3, generator=g), [0, 1], dtype=torch.float64)
        >>> blocks, params = stacked_blocks(stack), {n: p.detach() for n, p in stack.params.items()}
        >>> inputs, zs, _ = stacked_forward(blocks, params, torch.randn(2, 5, 4, dtype=torch.float64))
        >>> ev = stacked_ntk_eigenvalues(blocks, params, inputs, zs, metrics := {})
        >>> tuple(ev.shape), bool((ev[:, :-1] >= ev[:, 1:]).all()), sorted(metrics)[:2]
        ((2, 15), True, ['ntk_cond', 'ntk_erank'])
    """
    S, P, O = zs[-1].shape
    dtype, device = zs[-1].dtype, zs[-1].device
    grad = torch.eye(O, dtype=dtype, device=device).expand(S, P, O, O)  # d f / d h of the head's output
    kernel = None
    generic = []  # (S, P, O, n) per-example derivatives of the LayerNorm parameters
    for b, h_in, z in zip(reversed(blocks), reversed(inputs), reversed(zs)):
        if b.kind == "relu":
            grad = grad * (z > 0).to(dtype).unsqueeze(-2)
        elif b.kind == "groupsort":
            rows = _group_rows(z, b.group_size).unsqueeze(-2).expand(grad.shape)
            grad = torch.zeros_like(grad).scatter(-1, rows, grad)
        elif b.kind == "layernorm":
            zhat, sigma = _layernorm_parts(z, b.norm.eps)
            gamma = params[b.norm_weight].unsqueeze(1)
            grad = grad * (zhat * gamma + params[b.norm_bias].unsqueeze(1) > 0).to(dtype).unsqueeze(-2)  # d f / d u
            generic += [grad * zhat.unsqueeze(-2), grad]  # gamma, beta
            v = grad * gamma.unsqueeze(-2)  # d f / d (normalized z)
            grad = (v - v.mean(-1, keepdim=True) - (v * zhat.unsqueeze(-2)).sum(-1, keepdim=True) * zhat.unsqueeze(-2) / z.shape[-1]) / sigma.unsqueeze(-1)
        # grad is now B_l = d f / d z_l, (S, P, O, d_l)
        term = torch.einsum("snak,smbk->snmab", grad, grad) * (h_in @ h_in.transpose(1, 2) + 1.0)[..., None, None]
        kernel = term if kernel is None else kernel + term
        grad = grad @ params[b.weight].unsqueeze(1)  # d f / d h_{l-1}
    for j in generic:
        kernel = kernel + torch.einsum("snak,smbk->snmab", j, j)
    M = P * O
    theta = kernel.permute(0, 1, 3, 2, 4).reshape(S, M, M)
    theta = 0.5 * (theta + theta.mT)
    eigenvalues = torch.linalg.eigvalsh(theta).flip(-1)  # (S, M), descending
    s = eigenvalues.abs()
    total, top = s.sum(-1, keepdim=True), s.amax(-1, keepdim=True)
    s = torch.where(torch.isfinite(total), s, s / torch.where(top > 0, top, torch.ones_like(top)))  # _scale_safe per seed
    s_max, s_min = s.amax(-1).double(), s.amin(-1).double()
    resolution = ntk_resolution(s_max, M, dtype).unsqueeze(-1)  # (S, 1)
    resolved = s_min > resolution.squeeze(-1)
    cond = torch.where(resolved, s_max / s_min, torch.full_like(s_max, math.inf))  # beyond resolution: inf
    metrics["ntk_cond"] = cond
    metrics["ntk_rank"] = (s > resolution).sum(-1).double()  # floats: a diverged seed's row is NaN
    metrics["ntk_resolved"] = resolved.double()  # 1.0 resolved, 0.0 beyond resolution
    metrics["ntk_progress_worst"] = torch.where(torch.isinf(cond), torch.zeros_like(cond), 4.0 * cond / (1.0 + cond) ** 2)
    metrics["ntk_erank"] = effective_rank_from_svals(s)
    # the same directions for every seed: ntk_summary's generator seeded with 0 (measure_seed)
    u = torch.randn(N_DIRECTIONS, M, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    exponents = torch.frexp(theta.abs().flatten(1).amax(1))[1].tolist()
    scale = torch.tensor([2.0 ** -max(min(e, 120), -120) for e in exponents], dtype=dtype, device=device)  # exact powers of two
    metrics["ntk_progress_mean"] = ntk_progress(theta * scale[:, None, None], u).mean(-1)
    return eigenvalues.double()


def measure(stack: StackedModel, x: torch.Tensor, live: Sequence[int], probe_size: int, *, forward=None) -> Dict[int, tuple]:
    """The diagnostics of the seed numbers ``live`` of ``stack`` on their task inputs ``x``
    ``(S, N, D)``, the probe being each seed's first ``probe_size`` inputs: ``{k: (metrics,
    layer rows, eigenvalues)}`` with Python numbers (the row's metrics, the rows of
    :func:`isoplast_lite.diagnostics.layer_isometry`, the ``P*O`` eNTK eigenvalues descending).

    Takes the seed-batched path when :data:`NTK_METHOD` is ``"layerwise"`` and
    :func:`stacked_blocks` covers the net, else measures seed by seed (:func:`measure_seed`); the
    two agree to float rounding (tests/test_stacked_measure.py).

    Args:
        stack: the stacked model (``S`` seeds).
        x: every seed's task inputs, ``(S, N, D)``.
        live: the seed numbers (``0 <= k < S``) to measure; the others (diverged seeds) are not.
        probe_size: inputs of the probe.
        forward: :func:`stacked_forward` of every seed on ``x`` if the caller already has it
            (the runner's evaluation pass); used by the seed-batched path only.

    Example:
        >>> from isoplast_lite.nn import relu_mlp
        >>> stack = StackedModel.build(lambda g: relu_mlp(4, 8, 2, 3, generator=g), [0, 1])
        >>> x = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(0))
        >>> out = measure(stack, x, [0, 1], probe_size=3)
        >>> sorted(out), len(out[0][2]), out[0][0]["ntk_rank"] <= 9
        ([0, 1], 9, True)
    """
    live = list(live)
    if not live:
        return {}
    blocks = stacked_blocks(stack) if NTK_METHOD == "layerwise" else None
    if blocks is None:
        return {k: measure_seed(stack, k, x[k], x[k, :probe_size]) for k in live}
    if forward is None:
        with torch.no_grad():
            forward = stacked_forward(blocks, {n: p.detach() for n, p in stack.params.items()}, x)
    return _measure_seeds(stack, blocks, forward, live, probe_size)


def measure_seed(stack: StackedModel, k: int, x: torch.Tensor, probe: torch.Tensor) -> tuple:
    """Diagnostics of seed number ``k`` on its task inputs ``x`` ``(N, D)`` and probe ``(P, D)``:
    the row's metrics, the per-layer rows (:func:`isoplast_lite.diagnostics.layer_isometry`) and
    the eNTK's eigenvalues (a list of ``P*O``), descending (those the row's ``ntk_*`` summarize).

    The per-seed path, with the public diagnostics on a standalone copy of the seed's model: the
    :func:`measure` takes it for nets the seed-batched :func:`measure_stacked` does not cover (a Cayley
    ``OrthogonalLinear``, Parseval's diagonal layers, a custom module) and when
    :data:`NTK_METHOD` is not ``"layerwise"``; it is the reference the batched path is tested
    against (tests/test_stacked_measure.py).

    Example:
        >>> from isoplast_lite.nn import relu_mlp
        >>> stack = StackedModel.build(lambda g: relu_mlp(4, 8, 2, 3, generator=g), [0, 1])
        >>> x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
        >>> metrics, layers, eigenvalues = measure_seed(stack, 1, x, x[:3])
        >>> len(layers), len(eigenvalues), metrics["ntk_rank"] <= 9
        (3, 9, True)
    """
    model = stack.model_for_seed(k).eval()
    feats = hidden_features(model, x)  # one forward pass for the four feature measures below
    with torch.no_grad():
        weight_norm = math.sqrt(sum(float((p.double() ** 2).sum()) for p in model.parameters()))
    row = {  # what dormant_fraction(model, x, tau) and dead_fraction(model, x) compute, on feats
        "dormant_0.025": float(unit_fractions([dormant_mask(h, 0.025) for h in feats], False)),
        "dormant_0.1": float(unit_fractions([dormant_mask(h, 0.1) for h in feats], False)),
        "dead": float(unit_fractions([(h == 0).all(dim=0) for h in feats], False)),
        "feature_erank": float(effective_rank(feats[-1])),
        "weight_norm": weight_norm,
    }
    row["jac_sv_mean"], row["jac_sv_std"], row["jac_sv_ratio"] = jacobian_spread(model, probe)
    # a fixed generator: the summary's random directions never touch torch's global RNG
    # the layer-wise form (every linear map of these nets is a plain or Newton-Schulz linear
    # layer; anything else falls back to per-example Jacobians inside empirical_ntk): the same
    # kernel as method="jacobian" (tests/test_run.py) at a fraction of the cost
    # in float64 from the weights as stored: float64 round-off only (diagnostics.ntk_resolution)
    kernel = empirical_ntk(model, probe, method=NTK_METHOD, dtype=torch.float64)
    summary = ntk_summary(kernel, generator=torch.Generator().manual_seed(0))
    row["ntk_cond"] = float(summary["condition_number"])  # inf when beyond resolution
    row["ntk_rank"] = float(summary["rank"])  # floats, like every metric: a diverged seed's row is NaN
    row["ntk_resolved"] = float(summary["resolved"])  # 1.0 resolved, 0.0 beyond resolution
    row["ntk_progress_mean"] = float(summary["progress_mean"])  # mean over random residual directions
    row["ntk_progress_worst"] = float(summary["progress_kantorovich"])  # worst case, 4 kappa / (1 + kappa)^2
    row["ntk_erank"] = float(summary["effective_rank"])
    layers = [{**r, **c} for r, c in zip(layer_isometry(model, probe), clone_counts(model, probe))]
    return row, layers, summary["eigenvalues"].detach().double().cpu().tolist()


def _measure_seeds(stack: StackedModel, blocks, forward, live: List[int], probe_size: int) -> Dict[int, tuple]:
    """:func:`measure_seed` of the seed numbers ``live``, all at once (:func:`measure_stacked`):
    ``{k: (metrics, layer rows, eigenvalues)}`` with Python numbers, the same values as ``measure_seed``'s
    to float rounding (tests/test_stacked_measure.py). ``forward`` is :func:`stacked_forward` of
    every seed on its task inputs; the probe is their first ``probe_size`` inputs."""
    params = stack.params
    if len(live) < stack.n_seeds:
        # a diverged seed's NaN weights stay out of the linear algebra: it is measured with a live
        # seed's weights, then dropped, so the live seeds are measured in a batch of the same
        # shape as without it (the same numbers, to the bit)
        x = forward[0][0]  # (S, N, D)
        source = torch.tensor([k if k in live else live[0] for k in range(stack.n_seeds)], device=x.device)
        params = {n: p.detach()[source] for n, p in stack.params.items()}
        with torch.no_grad():
            forward = stacked_forward(blocks, params, x)
    metrics, layers, eigenvalues = measure_stacked(blocks, params, forward, probe_size)
    metrics = {name: v.tolist() for name, v in metrics.items()}  # one conversion per column, not per seed
    layers = [{name: v.tolist() if torch.is_tensor(v) else [v] * stack.n_seeds for name, v in r.items()} for r in layers]
    eigenvalues = eigenvalues.cpu().tolist()
    return {k: ({name: v[k] for name, v in metrics.items()}, [{name: v[k] for name, v in r.items()} for r in layers], eigenvalues[k])
            for k in live}  # fmt: skip


def jacobian_spread(model: nn.Module, x: torch.Tensor) -> Tuple[float, float, float]:
    """The row's ``jac_sv_mean``, ``jac_sv_std`` and ``jac_sv_ratio`` of one model on the probe
    ``x``: the mean, standard deviation and max / min (over those above ``1e-6`` of the max) of
    every block's Jacobian singular values pooled (the head's included; not the end-to-end map).

    Example:
        >>> from isoplast_lite.nn import relu_mlp
        >>> net = relu_mlp(4, 8, 2, 3, generator=torch.Generator().manual_seed(0))
        >>> mean, std, ratio = jacobian_spread(net, torch.randn(5, 4, generator=torch.Generator().manual_seed(1)))
        >>> ratio >= 1.0 and std >= 0.0
        True
    """
    out = layer_jacobian_svdvals(model, x, end_to_end=False)  # {block index: (N, k)}: the end-to-end map is not logged
    sv = torch.cat([s.detach().flatten() for s in out.values()]).double()
    sv_max = float(sv.max())
    active = sv[sv > 1e-6 * sv_max]  # exactly-zero directions (inactive ReLUs) would make it inf
    return float(sv.mean()), float(sv.std()), (sv_max / float(active.min()) if active.numel() else math.nan)
