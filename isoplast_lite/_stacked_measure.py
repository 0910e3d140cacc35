"""The runner's per-task measurement for all stacked seeds at once (private).

:func:`measure_stacked` computes, for every seed of a :class:`~isoplast_lite.engine.StackedModel`
at once, what :func:`isoplast_lite.run._measure` computes seed by seed on a standalone copy of
each model: the feature measures (dormant / dead fractions, effective rank of the last
features), the weight norm, the pooled layer-Jacobian singular values (``jac_sv_*``), the
layer-wise eNTK on the probe (in float64, from the weights as stored) and its summary (``ntk_*``
and the spectrum, with the resolution of :func:`isoplast_lite.diagnostics.ntk_resolution`), and the rows of
:func:`isoplast_lite.diagnostics.layer_isometry`. It works on the stacked ``(S, ...)`` tensors
with batched products and one batched ``svdvals`` / ``eigvalsh`` per quantity, and forms each
block Jacobian once for both Jacobian measures. ``tests/test_stacked_measure.py`` checks that
every number equals the per-seed path (float64, to rounding) for every kind of block it takes.

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
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from .diagnostics import _block_kind, _effective_rank_from_svals, _progress, ntk_resolution
from .nn import GroupSort, OrthogonalLinear

#: the number of random residual directions of ``ntk_progress_mean`` (ntk_summary's default)
N_DIRECTIONS = 256


@dataclass(frozen=True)
class _Block:
    """One block of a supported net: its kind and the names of its stacked parameters."""

    kind: str  # "linear", "relu", "groupsort" or "layernorm" (diagnostics._block_kind)
    weight: str
    bias: str
    norm: Optional[nn.LayerNorm] = None
    norm_weight: Optional[str] = None
    norm_bias: Optional[str] = None
    group_size: int = 1


def stacked_blocks(stack) -> Optional[List[_Block]]:
    """The blocks of ``stack`` if :func:`measure_stacked` covers its net, else ``None``."""
    blocks, names = [], set()
    for i, block in enumerate(stack.template):
        kind, linear = _block_kind(block)
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
    operations of ``StackedModel.forward_all`` (its outputs, the logits last, are the same numbers)."""
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
    (float64 logs, population std; NaN and 0 when there are none): diagnostics._log_stats batched."""
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
    """Every diagnostic of ``run._measure`` for the ``S`` stacked seeds of ``params``.

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
    s = torch.where(torch.isfinite(total), s, s / torch.where(top > 0, top, torch.ones_like(top)))  # diagnostics._scale_safe per seed
    metrics["feature_erank"] = _effective_rank_from_svals(s)
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
            # the radial direction removed exactly (diagnostics._layernorm_jacobian_times), for layer_isometry
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
            "n_null": n_null, "jac_sigma_min": s_min, "jac_sigma_max": s_max,
            "weight_scale": w_stats[0], "weight_spread": w_stats[1], "weight_sigma_min": w_stats[3], "weight_sigma_max": w_stats[4],
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
    eigenvalues = _ntk_eigenvalues(blocks, params64, inputs64, zs64, metrics)
    return metrics, layers, eigenvalues


def _ntk_eigenvalues(blocks, params, inputs, zs, metrics) -> torch.Tensor:
    """The layer-wise eNTK on the probe, its summary into ``metrics`` and its eigenvalues ``(S, M)`` (float64, descending)."""
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
    metrics["ntk_erank"] = _effective_rank_from_svals(s)
    # the same directions for every seed: ntk_summary's generator seeded with 0 (run._measure)
    u = torch.randn(N_DIRECTIONS, M, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    exponents = torch.frexp(theta.abs().flatten(1).amax(1))[1].tolist()
    scale = torch.tensor([2.0 ** -max(min(e, 120), -120) for e in exponents], dtype=dtype, device=device)  # exact powers of two
    metrics["ntk_progress_mean"] = _progress(theta * scale[:, None, None], u).mean(-1)
    return eigenvalues.double()
