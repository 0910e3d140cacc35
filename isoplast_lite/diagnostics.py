r"""Diagnostics of plasticity: empirical NTK, layer Jacobians, dormant/dead units, ranks.

Model-level diagnostics (:func:`layer_jacobian_svdvals`, :func:`active_jacobian_svdvals`,
:func:`layer_isometry`, :func:`weight_singular_values`, :func:`dormant_fraction`,
:func:`dead_fraction`, :func:`firing_share`, :func:`hidden_features`) rely on the block structure of
:func:`~isoplast_lite.nn.relu_mlp` and :func:`~isoplast_lite.nn.aei_mlp`: an ``nn.Sequential``
of hidden blocks followed by a head. The *features* of a model on ``x`` are the outputs of its
hidden blocks (post-activation). The rank measures are pure functions of tensors and use the
singular values of the matrix as given (no centering).

Non-finite input is an error: every function here raises a ``ValueError`` naming the argument
when a tensor (or a model's parameter) holds NaN or inf, since no diagnostic of such a network
is meaningful (a diverged run is recorded as such by the runner), and a ``TypeError`` for
float16 / bfloat16 tensors or models (torch's linear algebra has no half-precision kernels).
The scale-invariant measures (:func:`effective_rank`, :func:`srank`, :func:`stable_rank`, the
condition number and progress of :func:`ntk_summary`) give the same value for ``c * x`` as for
``x`` at any scale ``c`` that float arithmetic can hold.

References:
    Jacot, Gabriel & Hongler (2018), "Neural tangent kernel", NeurIPS.
    Novak, Sohl-Dickstein & Schoenholz (2022), "Fast finite width neural tangent kernel", ICML
    (Jacobian contraction, NTK-vector products and structured derivatives).
    Sokar et al. (2023), "The dormant neuron phenomenon in deep reinforcement learning", ICML.
    Roy & Vetterli (2007), "The effective rank: a measure of effective dimensionality".
    Kumar et al. (2021), "Implicit under-parameterization inhibits data-efficient deep RL", ICLR.
"""

from __future__ import annotations

import contextlib
import math
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from ._validation import (
    check_bool,
    check_choice,
    check_finite_parameters,
    check_generator,
    check_int,
    check_module,
    check_probability,
    check_real,
    check_tensor,
)

__all__ = [
    "empirical_ntk",
    "ntk_summary",
    "ntk_resolution",
    "layer_jacobian_svdvals",
    "active_jacobian_svdvals",
    "layer_isometry",
    "weight_singular_values",
    "hidden_features",
    "clone_pairs",
    "clones",
    "CLONE_TOLERANCE",
    "firing_share",
    "revived",
    "REVIVAL_THRESHOLD",
    "dormant_fraction",
    "dead_fraction",
    "dormant_units",
    "dead_units",
    "matrix_isometry",
    "effective_rank",
    "srank",
    "stable_rank",
]


# ----------------------------------------------------------------------------------------------
# Empirical NTK
# ----------------------------------------------------------------------------------------------


def _check_inputs(x1: torch.Tensor, x2: Optional[torch.Tensor]) -> None:
    check_tensor("x1", x1, min_ndim=2, finite=True, full_precision=True)
    if x2 is not None:
        check_tensor("x2", x2, min_ndim=2, finite=True, full_precision=True)
        if x2.shape[1:] != x1.shape[1:]:
            raise ValueError(
                f"x2 must have the feature shape of x1 {tuple(x1.shape[1:])}, got x2.shape={tuple(x2.shape)}"
            )
        if x2.dtype != x1.dtype:
            raise TypeError(f"x2 must have the dtype of x1 ({x1.dtype}), got {x2.dtype}")


def empirical_ntk(
    model: nn.Module,
    x1: torch.Tensor,
    x2: Optional[torch.Tensor] = None,
    *,
    method: str = "auto",
    chunk_size: Optional[int] = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    r"""The empirical neural tangent kernel :math:`\Theta(x_1, x_2) = J(x_1) J(x_2)^\top`.

    :math:`J(x) = \partial f_\theta(x) / \partial\theta` is the Jacobian of the outputs with
    respect to every parameter with ``requires_grad=True``. For an
    :class:`~isoplast_lite.nn.OrthogonalLinear` layer that is its trained parameter: with
    ``method="cayley"`` ``parametrizations.weight.original``, so the kernel describes the
    actual training dynamics; with ``method="newton-schulz"`` the weight itself, so the kernel
    is that of the unconstrained step *before* the retraction (which then removes, to first
    order, the part of the step that leaves the orthogonal set). Entry ``[n, m, a, b]`` is
    :math:`\sum_p \partial f_a(x_1^{(n)})/\partial\theta_p \; \partial f_b(x_2^{(m)})/\partial\theta_p`.
    The model is called as it is (use ``model.eval()`` for dropout or batch norm); it must
    treat examples independently. Built with ``torch.func``; no autograd graph is kept.

    Methods (same result, different cost):

    - ``"auto"`` (default): the fastest exact method that applies: ``"layerwise"`` when the
      model has a layer it handles in closed form (a plain linear layer, see below), unless
      ``chunk_size`` is given and some trained parameters lie outside such layers (their
      per-example Jacobians would not be chunked); ``"jacobian"`` otherwise. On the MLPs of
      this library (:func:`~isoplast_lite.nn.relu_mlp`, :func:`~isoplast_lite.nn.aei_mlp`
      with Newton–Schulz weights) every trained weight is such a layer; ``benchmarks/entk.py``
      measures it against the per-example loop.
    - ``"jacobian"``: per-example Jacobians ``vmap(jacrev(f))`` then a contraction over
      parameters. ``chunk_size`` splits ``x1`` and ``x2`` into blocks of that many examples,
      so at most ``2 * chunk_size * O * P`` Jacobian entries live at once (``P`` = number of
      parameters); the second block's Jacobian is recomputed per block of ``x1``.
    - ``"ntk_vp"``: NTK-vector products: for each example ``n`` of ``x1`` and output ``a``, a
      vector-Jacobian product on that example gives the row ``J_a(x_n)`` as a parameter-shaped
      tangent, and one Jacobian-vector product on the whole of ``x2`` gives
      ``J(x2) J_a(x_n)^T`` (no Jacobian of ``x2`` is ever stored). ``chunk_size`` is passed to
      the ``vmap`` over the examples of ``x1``, so at most ``chunk_size * O``
      parameter-shaped tangents live at once.
    - ``"layerwise"``: the layered form of the kernel (``PAPER.md``, our reconstruction),
      :math:`\Theta = \sum_l (B_l B_l^\top) \odot (H_{l-1} H_{l-1}^\top + 1)`, for every plain
      linear layer (an ``nn.Linear``, or an :class:`~isoplast_lite.nn.OrthogonalLinear` with
      Newton–Schulz weights, not a subclass, not parametrized) called once on a ``(N, d_in)``
      input, whose weight and bias are used by no other module: :math:`B_l` holds the
      per-example derivatives of the outputs with respect to the layer's output (computed with
      ``vmap(jacrev)`` through a zero perturbation added by a forward hook), :math:`H_{l-1}` its
      inputs, and the ``+ 1`` is the bias. This avoids the ``O(N^2 O^2 P)`` contraction; all
      other parameters (LayerNorm, parametrized orthogonal weights, ...) are handled as in
      ``"jacobian"``. ``chunk_size`` is passed to the ``vmap`` over examples.

    Args:
        model: the network; ``model(x)`` maps ``(N, *in)`` to ``(N, *out)`` (flattened to
            ``O = prod(out)`` outputs).
        x1: inputs ``(N1, *in)``.
        x2: inputs ``(N2, *in)``; ``None`` means "same as ``x1``" (the ``"jacobian"`` method
            then computes the Jacobians once, and with chunking fills the lower blocks by
            symmetry).
        method: ``"auto"``, ``"jacobian"``, ``"ntk_vp"`` or ``"layerwise"``.
        chunk_size: ``None`` (no chunking) or an int >= 1 (see above).
        dtype: ``None`` (the model's dtype) or a floating dtype in which the whole computation
            runs: the parameters, buffers and inputs are cast to it (a float32 value is exact
            in float64, so ``dtype=torch.float64`` gives the kernel *of the weights as stored*
            to float64 round-off, without the float32 forward's own error; the runner does
            this, see :func:`ntk_resolution`). The model itself is not changed.

    Returns:
        The kernel, a tensor of shape ``(N1, N2, O, O)`` (of ``dtype`` when given).

    Shape:
        ``x1``: ``(N1, *in)``, ``x2``: ``(N2, *in)``; output ``(N1, N2, O, O)``.

    Example:
        >>> from isoplast_lite import relu_mlp
        >>> model = relu_mlp(3, 8, 2, 2, generator=torch.Generator().manual_seed(0))
        >>> x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
        >>> K = empirical_ntk(model, x)
        >>> K.shape
        torch.Size([5, 5, 2, 2])
        >>> torch.allclose(K, empirical_ntk(model, x, method="ntk_vp", chunk_size=3), atol=1e-5)
        True
        >>> torch.allclose(K, empirical_ntk(model, x, method="jacobian"), atol=1e-5)
        True
        >>> K64 = empirical_ntk(model, x, dtype=torch.float64)
        >>> K64.dtype, torch.allclose(K.double(), K64, atol=1e-5)
        (torch.float64, True)

    References:
        Jacot et al. (2018); Novak et al. (2022); PyTorch tutorial "Neural Tangent Kernels"
        (torch.func).
    """
    check_module("model", model)
    check_finite_parameters("model", model)
    _check_inputs(x1, x2)
    _check_model_input(model, "x1", x1)
    method = check_choice("method", method, NTK_METHODS)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.float64)):
        raise TypeError(f"dtype must be None, torch.float32 or torch.float64, got {dtype!r}")

    def cast(t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    params = {name: cast(p) for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model must have at least one parameter with requires_grad=True")
    buffers = {name: cast(b) for name, b in model.named_buffers()}
    # a parameter that is not trained stays in the module: cast it too, so the forward runs in one dtype
    buffers.update({name: cast(p) for name, p in model.named_parameters() if not p.requires_grad})
    x1 = cast(x1)
    symmetric = x2 is None
    x2 = x1 if symmetric else cast(x2)

    def f_batch(p: Dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (x,))
        return out.reshape(x.shape[0], -1)  # (N, O)

    with _preserve_parameters(model):
        if method == "ntk_vp":
            return _ntk_vp(f_batch, params, x1, x2, chunk_size)
        plan = None
        if method in ("auto", "layerwise"):
            plan = _layerwise_plan(model, params, buffers, x1, x2, symmetric)
            if method == "auto" and (not plan.structured or (chunk_size is not None and plan.generic)):
                plan = None
        if plan is None:
            return _ntk_jacobian(f_batch, params, x1, x2, symmetric, chunk_size)
        return _ntk_layerwise(model, plan, buffers, x1, x2, symmetric, chunk_size)


#: the methods of :func:`empirical_ntk` (``"auto"``: ``"layerwise"`` where it applies, else ``"jacobian"``)
NTK_METHODS = ("auto", "jacobian", "ntk_vp", "layerwise")


@contextlib.contextmanager
def _preserve_parameters(model: nn.Module):
    """Put every module's own parameter and buffer objects back after a ``functional_call``.

    Note (tied weights): in torch 2.13 ``functional_call`` on a model that uses one module
    twice (tied weights) leaves a plain tensor in place of the shared ``nn.Parameter``; this
    guard restores the original objects so the model is unchanged.
    """
    modules = {id(m): m for m in model.modules()}.values()
    saved = [(m, dict(m._parameters), dict(m._buffers)) for m in modules]
    try:
        yield
    finally:
        for module, parameters, buffers in saved:
            module._parameters.clear()
            module._parameters.update(parameters)
            module._buffers.clear()
            module._buffers.update(buffers)


def _ntk_jacobian(f_batch, params, x1, x2, symmetric, chunk_size):
    """Jacobian-contraction eNTK (see :func:`empirical_ntk`)."""

    def f_single(p, x):
        return f_batch(p, x.unsqueeze(0))[0]  # (O,)

    jac_fn = vmap(jacrev(f_single), in_dims=(None, 0))

    def jacobians(x):  # list of (n, O, P_k)
        jac = jac_fn(params, x)
        return [j.reshape(j.shape[0], j.shape[1], -1) for j in jac.values()]

    def contract(ja, jb):  # (na, nb, O, O)
        return sum(torch.einsum("naf,mbf->nmab", a, b) for a, b in zip(ja, jb))

    if chunk_size is None:
        j1 = jacobians(x1)
        j2 = j1 if symmetric else jacobians(x2)
        return contract(j1, j2)

    n1, n2 = x1.shape[0], x2.shape[0]
    blocks1 = list(range(0, n1, chunk_size))
    blocks2 = list(range(0, n2, chunk_size))
    result = None
    for i in blocks1:
        j1 = jacobians(x1[i : i + chunk_size])
        for j in blocks2:
            if symmetric and j < i:
                continue  # filled from the transposed block below
            j2 = j1 if (symmetric and j == i) else jacobians(x2[j : j + chunk_size])
            block = contract(j1, j2)  # (ci, cj, O, O)
            if result is None:
                result = block.new_empty(n1, n2, block.shape[2], block.shape[3])
            result[i : i + chunk_size, j : j + chunk_size] = block
            if symmetric and j > i:
                result[j : j + chunk_size, i : i + chunk_size] = block.permute(1, 0, 3, 2)
    return result


def _ntk_vp(f_batch, params, x1, x2, chunk_size):
    """NTK-vector-product eNTK (see :func:`empirical_ntk`)."""
    n_out = f_batch(params, x1[:1]).shape[1]
    basis = torch.eye(n_out, dtype=x1.dtype, device=x1.device).reshape(n_out, 1, n_out)  # (O, 1, O)

    def ntk_rows(x_single):  # (*in) -> K[n, :, a, :] for every a, shape (O, N2, O)
        _, vjp_fn = vjp(lambda p: f_batch(p, x_single.unsqueeze(0)), params)

        def row(cotangent):  # (1, O) -> J(x2) J(x_n)^T cotangent, (N2, O)
            (tangent,) = vjp_fn(cotangent)
            _, column = jvp(lambda p: f_batch(p, x2), (params,), (tangent,))
            return column

        return vmap(row)(basis)

    rows = vmap(ntk_rows, chunk_size=chunk_size)(x1)  # (N1, O, N2, O)
    return rows.permute(0, 2, 1, 3).contiguous()


class _LayerwisePlan(NamedTuple):
    candidates: Dict[str, nn.Module]  # the plain linear modules, by name
    structured: Dict[str, Tuple[bool, bool]]  # module name -> (weight trained?, bias trained?)
    h1: Dict[str, torch.Tensor]  # module name -> its input on x1, (N1, d_in)
    h2: Dict[str, torch.Tensor]  # ... on x2, (N2, d_in)
    fixed: Dict[str, torch.Tensor]  # parameters handled in closed form
    generic: Dict[str, torch.Tensor]  # parameters handled by per-example Jacobians


def _layerwise_plan(model, params, buffers, x1, x2, symmetric) -> _LayerwisePlan:
    """Which parameters the layered form covers (see :func:`empirical_ntk`, ``"layerwise"``)."""
    from torch.nn.utils import parametrize

    from .nn import OrthogonalLinear

    # plain linear maps x W^T + b of their trained (weight, bias); a Newton-Schulz OrthogonalLinear
    # is one. Exact types: a subclass may compute something else in its forward.
    candidates = {
        name: module
        for name, module in model.named_modules()
        if type(module) in (nn.Linear, OrthogonalLinear) and not parametrize.is_parametrized(module)
    }
    # a parameter used by two modules (tied weights) gets the contributions of both: per-example Jacobians
    uses: Dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1
    shared = {name for name, p in model.named_parameters() if uses[id(p)] > 1}
    inputs: Dict[str, List[torch.Tensor]] = {name: [] for name in candidates}

    def record(name):
        return lambda module, args, out: inputs[name].append(args[0].detach())

    def probe(x):  # layer inputs on x; a layer is eligible if called once on a 2-D input
        for lst in inputs.values():
            lst.clear()
        handles = [m.register_forward_hook(record(n)) for n, m in candidates.items()]
        try:
            with torch.no_grad():
                functional_call(model, (params, buffers), (x,))
        finally:
            for h in handles:
                h.remove()
        return {n: v[0] for n, v in inputs.items() if len(v) == 1 and v[0].ndim == 2}

    h1 = probe(x1)
    h2 = h1 if symmetric else probe(x2)
    structured = {}
    for name in h1:
        if name in h2:
            w, b = f"{name}.weight" if name else "weight", f"{name}.bias" if name else "bias"
            flags = (w in params and w not in shared, b in params and b not in shared)
            if any(flags):
                structured[name] = flags
    fixed = {}
    for name, (w, b) in structured.items():
        prefix = f"{name}." if name else ""
        for key, trained in ((prefix + "weight", w), (prefix + "bias", b)):
            if trained:
                fixed[key] = params[key]
    generic = {k: v for k, v in params.items() if k not in fixed}
    return _LayerwisePlan(candidates, structured, h1, h2, fixed, generic)


def _ntk_layerwise(model, plan: _LayerwisePlan, buffers, x1, x2, symmetric, chunk_size):
    """Layered eNTK: structured products for plain linear layers (see :func:`empirical_ntk`)."""
    candidates, structured, h1, h2, fixed, generic = plan
    holder: Dict[str, Dict[str, torch.Tensor]] = {}

    def perturb(name):
        return lambda module, args, out: out + holder["eps"][name]

    def g_single(eps, p_generic, x):  # (O,)
        holder["eps"] = eps
        return functional_call(model, ({**fixed, **p_generic}, buffers), (x.unsqueeze(0),)).reshape(-1)

    def derivatives(x):
        eps0 = {n: torch.zeros(candidates[n].out_features, dtype=x.dtype, device=x.device) for n in structured}
        handles = [candidates[n].register_forward_hook(perturb(n)) for n in structured]
        try:
            fn = vmap(jacrev(g_single, argnums=(0, 1)), in_dims=(None, None, 0), chunk_size=chunk_size)
            d_eps, d_generic = fn(eps0, generic, x)  # {n: (N, O, d_out)}, {k: (N, O, *shape)}
        finally:
            for h in handles:
                h.remove()
            holder.clear()
        return d_eps, {k: v.reshape(v.shape[0], v.shape[1], -1) for k, v in d_generic.items()}

    b1, j1 = derivatives(x1)
    b2, j2 = (b1, j1) if symmetric else derivatives(x2)
    kernel = None
    for name, (w, b) in structured.items():
        factor = (h1[name] @ h2[name].T if w else 0.0) + (1.0 if b else 0.0)  # (N1, N2)
        term = torch.einsum("nak,mbk->nmab", b1[name], b2[name]) * torch.as_tensor(factor)[..., None, None]
        kernel = term if kernel is None else kernel + term
    for key in j1:
        term = torch.einsum("naf,mbf->nmab", j1[key], j2[key])
        kernel = term if kernel is None else kernel + term
    return kernel


def ntk_resolution(lambda_max, size: int, dtype: torch.dtype = torch.float64):
    r"""The resolution of a symmetric kernel's eigenvalues: below it an eigenvalue counts as zero.

    The rule (the one home of it: :func:`ntk_summary` and the runner's seed-batched measurement
    call this function) is

    .. math:: \tau = M \, \varepsilon \, \lambda_{max},

    with :math:`M` the size of the ``(M, M)`` kernel matrix, :math:`\varepsilon` the machine
    epsilon of the dtype its entries were formed in, and :math:`\lambda_{max}` its largest
    absolute eigenvalue: the convention of ``numpy.linalg.matrix_rank`` and LAPACK. Why it is
    the right scale: a symmetric eigensolver is backward stable, so the computed eigenvalues are
    the exact ones of :math:`\Theta + E` with :math:`\lVert E\rVert_2` a modest multiple of
    :math:`\varepsilon \lVert\Theta\rVert_2`, and by Weyl's inequality every eigenvalue moves
    by at most :math:`\lVert E\rVert_2`; entries formed in that dtype carry a relative error of
    order :math:`\varepsilon` of the largest entries as well, which the factor :math:`M` covers
    (:math:`\lVert E\rVert_2 \le M \max|E_{ij}|`). An eigenvalue at or below :math:`\tau`
    is therefore not distinguishable from zero, the numerical rank counts the eigenvalues above
    it, and a condition number :math:`\lambda_{max}/\lambda_{min}` with
    :math:`\lambda_{min} \le \tau` (so above :math:`1/(M\varepsilon)`) is **beyond
    resolution**: :func:`ntk_summary` reports it as ``inf``, never as a number.

    Which :math:`\varepsilon`: the runner forms the kernel in float64 from the float32 weights
    as stored (``empirical_ntk(..., dtype=torch.float64)``: a float32 value is exact in
    float64, so the float32 forward's own rounding does not enter), hence
    :math:`\varepsilon = 2^{-52}` and condition numbers up to about :math:`10^{13}` are
    resolved for :math:`M = 160`. A kernel formed in float32 (the shipped results before issue
    22) resolves only :math:`1/(M\,2^{-23})`, about :math:`5 \cdot 10^4` at :math:`M = 160`.

    Args:
        lambda_max: the largest absolute eigenvalue (a float, or a tensor of them: then the
            result is a tensor of the same shape).
        size: :math:`M`, the kernel matrix's side (probe inputs x outputs), >= 1.
        dtype: the floating dtype the kernel's entries were formed in.

    Returns:
        :math:`\tau`, of the type of ``lambda_max``.

    Example:
        >>> ntk_resolution(1.0, 160) == 160 * 2.0 ** -52
        True
        >>> round(1.0 / ntk_resolution(1.0, 160, torch.float32))  # the largest resolved kappa of a float32 kernel
        52429
    """
    size = check_int("size", size, minimum=1)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return size * torch.finfo(dtype).eps * lambda_max


def ntk_summary(
    ntk: torch.Tensor,
    *,
    n_directions: int = 256,
    generator: Optional[torch.Generator] = None,
) -> Dict[str, Union[torch.Tensor, float]]:
    r"""Spectral summary of an eNTK: eigenvalues, conditioning, effective rank, expected progress.

    A kernel of shape ``(N, N, O, O)`` is first arranged as the ``(N*O, N*O)`` matrix
    :math:`\Theta` with row index ``n * O + a`` and symmetrized, :math:`(\Theta + \Theta^\top)/2`.
    Let :math:`\lambda_1 \ge \dots \ge \lambda_M` be its eigenvalues and
    :math:`s_i = |\lambda_i|` its singular values (equal for a PSD kernel).

    - ``condition_number`` :math:`\kappa = s_{max} / s_{min}`, or ``inf`` when :math:`s_{min}`
      is at or below the resolution :math:`\tau` of :func:`ntk_resolution` (the kernel is
      numerically singular: a number there would be round-off, never reported); ``resolved``
      says which (``True``: :math:`\kappa` is a resolved number).
    - ``rank``: the numerical rank, the number of :math:`s_i > \tau`; ``resolution``: :math:`\tau`
      (in the kernel's dtype's :math:`\varepsilon`).
    - ``effective_rank``: Roy & Vetterli's :math:`\exp H(p)`, :math:`p_i = s_i / \sum_j s_j`
      (see :func:`effective_rank`).
    - ``progress_mean``: **our reconstruction** of the paper's plasticity measure (``PAPER.md``):
      one optimally sized gradient step on the loss :math:`\tfrac12\lVert r\rVert^2` along a
      residual direction :math:`u` in output space changes it by :math:`-\eta\Theta u` and
      achieves the fraction

      .. math:: \rho(u) = \frac{(u^\top \Theta u)^2}{\lVert u\rVert^2\,\lVert \Theta u\rVert^2}

      of the ideal decrease; ``progress_mean`` is its mean over ``n_directions`` standard
      Gaussian directions :math:`u` (a direction with :math:`\Theta u = 0` counts as 0
      progress). :math:`\rho \equiv 1` iff :math:`\Theta \propto I`; it is scale-free. The
      mean depends on the **whole shape of the spectrum**, not on :math:`\kappa` alone: with
      many eigenvalues, :math:`\rho(u) \to \bar\lambda^2 / \overline{\lambda^2}` (mean
      eigenvalue squared over mean squared eigenvalue; our derivation, law of large numbers).
      Measured on :math:`M = 400` eigenvalues in :math:`\{1, 100\}` (so :math:`\kappa = 100`
      in each case), with 1/8, 1/2 and 7/8 of them at 100: ``progress_mean`` = 0.14, 0.51 and
      0.88 (``tests/test_diagnostics.py``).
    - ``progress_kantorovich``: the worst case :math:`\min_u \rho(u) = 4\kappa/(1+\kappa)^2`
      (Kantorovich inequality), 0 when :math:`\kappa = \infty`. Only this worst case is a
      function of the condition number alone (``PAPER.md``, "Reconstructions").
    - ``trace``: :math:`\operatorname{tr}\Theta` (the kernel's scale).

    Args:
        ntk: kernel ``(N, N, O, O)`` (as returned by :func:`empirical_ntk` with ``x2=None``)
            or a square matrix ``(M, M)``.
        n_directions: number of random directions for ``progress_mean`` (>= 1).
        generator: random source for the directions; ``None`` uses torch's global RNG.

    Returns:
        A dict with ``"eigenvalues"`` (tensor ``(M,)``, descending) and the Python floats
        ``"condition_number"``, ``"effective_rank"``, ``"progress_mean"``,
        ``"progress_kantorovich"``, ``"trace"``, ``"lambda_max"``, ``"lambda_min"``,
        ``"resolution"``, the int ``"rank"`` and the bool ``"resolved"``.

    Example:
        >>> s = ntk_summary(torch.diag(torch.tensor([1.0, 4.0])), generator=torch.Generator().manual_seed(0))
        >>> s["condition_number"], s["progress_kantorovich"], s["rank"], s["resolved"]
        (4.0, 0.64, 2, True)
        >>> t = ntk_summary(torch.diag(torch.tensor([1.0, 1e-16], dtype=torch.float64)))
        >>> t["condition_number"], t["rank"], t["resolved"]  # 1e-16 is below 2 * 2^-52 (4.4e-16): beyond resolution
        (inf, 1, False)
        >>> 0.64 <= s["progress_mean"] <= 1.0
        True

    References:
        Kantorovich (1948); Rosseau, Müller & Nowé (2026) for the link between plasticity and
        eNTK conditioning.
    """
    check_tensor("ntk", ntk, finite=True, full_precision=True)
    if ntk.ndim == 4:
        n, n_b, o, o_b = ntk.shape
        if n != n_b or o != o_b:
            raise ValueError(f"ntk of 4 dimensions must have shape (N, N, O, O), got {tuple(ntk.shape)}")
        theta = ntk.permute(0, 2, 1, 3).reshape(n * o, n * o)
    elif ntk.ndim == 2:
        if ntk.shape[0] != ntk.shape[1]:
            raise ValueError(f"ntk of 2 dimensions must be square, got shape {tuple(ntk.shape)}")
        theta = ntk
    else:
        raise ValueError(f"ntk must have shape (N, N, O, O) or (M, M), got shape {tuple(ntk.shape)}")
    n_directions = check_int("n_directions", n_directions, minimum=1)
    generator = check_generator("generator", generator)

    with torch.no_grad():
        theta = 0.5 * (theta + theta.mT)  # (M, M)
        eigenvalues = torch.linalg.eigvalsh(theta).flip(0)  # (M,), descending
        s = _scale_safe(eigenvalues.abs())
        s_max, s_min = float(s.max()), float(s.min())
        resolution = ntk_resolution(s_max, theta.shape[0], theta.dtype)
        rank = int((s > resolution).sum())
        resolved = s_min > resolution
        cond = s_max / s_min if resolved else math.inf
        kantorovich = 0.0 if math.isinf(cond) else 4.0 * cond / (1.0 + cond) ** 2

        u = torch.randn(n_directions, theta.shape[0], generator=generator, dtype=theta.dtype, device=theta.device)
        # rho is scale-free: bring theta's largest entry into [0.5, 1) by a power of two, which is
        # exact in floating point (same bits as unscaled) but keeps (u' theta u)^2 from over- or
        # underflowing for kernels of any scale
        exponent = math.frexp(float(theta.abs().max()))[1]
        rho = _progress(theta * 2.0 ** -max(min(exponent, 120), -120), u)

    return {
        "eigenvalues": eigenvalues,
        "condition_number": cond,
        "effective_rank": float(_effective_rank_from_svals(s)),
        "progress_mean": float(rho.mean()),
        "progress_kantorovich": kantorovich,
        "trace": float(theta.diagonal().sum()),
        "lambda_max": float(eigenvalues[0]),
        "lambda_min": float(eigenvalues[-1]),
        "resolution": float(ntk_resolution(float(eigenvalues.abs().max()), theta.shape[0], theta.dtype)),
        "rank": rank,
        "resolved": bool(resolved),
    }


def _progress(theta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """rho(u) of :func:`ntk_summary` for each direction ``u`` ``(D, M)``, theta symmetric ``(M, M)``."""
    theta_u = u @ theta  # (D, M); theta is symmetric
    num = (u * theta_u).sum(-1).square()
    den = u.square().sum(-1) * theta_u.square().sum(-1)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))


# ----------------------------------------------------------------------------------------------
# Layer Jacobians and hidden features
# ----------------------------------------------------------------------------------------------


def _check_model_input(model: nn.Module, name: str, x: torch.Tensor) -> None:
    """Check ``x`` against the model: parameter dtype, and input features if the first layer is linear."""
    first = next(iter(model.parameters()), None)
    if first is not None and first.is_floating_point() and x.dtype != first.dtype:
        raise TypeError(f"{name} must have the dtype of the model's parameters ({first.dtype}), got {x.dtype}")
    for module in model.modules():
        in_features = getattr(module, "in_features", None)
        if isinstance(in_features, int):
            if x.shape[-1] != in_features:
                raise ValueError(
                    f"{name} must have {in_features} features in its last dimension (the model's "
                    f"first layer), got {name}.shape={tuple(x.shape)}"
                )
            return
        if len(list(module.children())) == 0 and any(True for _ in module.parameters(recurse=False)):
            return  # the first layer with parameters is not linear: nothing to check


def _check_block_model(model: nn.Module, *, min_blocks: int = 1) -> nn.Sequential:
    check_module("model", model, nn.Sequential)
    if len(model) < min_blocks:
        raise ValueError(f"model must be an nn.Sequential of at least {min_blocks} blocks, got {len(model)}")
    return model


def layer_jacobian_svdvals(model: nn.Sequential, x: torch.Tensor) -> Dict[Union[int, str], torch.Tensor]:
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

    Returns:
        A dict mapping each block index ``l = 0 .. len(model) - 1`` (ints, in order) and then
        the key ``"end_to_end"`` to a tensor ``(N, k)`` of singular values in descending order,
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
    _check_block_model(model)
    check_finite_parameters("model", model)
    check_tensor("x", x, min_ndim=2, finite=True, full_precision=True)
    _check_model_input(model, "x", x)
    return _layer_jacobian_svdvals(model, x, end_to_end=True)


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
    _check_block_model(model, min_blocks=2)
    check_finite_parameters("model", model)
    check_tensor("x", x, min_ndim=2, finite=True, full_precision=True)
    _check_model_input(model, "x", x)
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


def _dormant_mask(h: torch.Tensor, tau: float) -> torch.Tensor:
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
    return _dormant_mask(_unit_matrix("features", features), tau)


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
    _check_block_model(model, min_blocks=2)
    tau = check_probability("tau", tau)
    check_bool("per_layer", per_layer)
    masks = [_dormant_mask(h, tau) for h in hidden_features(model, x)]
    return _fractions(masks, per_layer)


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
    _check_block_model(model, min_blocks=2)
    check_bool("per_layer", per_layer)
    masks = [dead_units(h) for h in hidden_features(model, x)]
    return _fractions(masks, per_layer)


def _fractions(masks: List[torch.Tensor], per_layer: bool) -> Union[float, List[float]]:
    if per_layer:
        return [float(m.float().mean()) for m in masks]
    return float(sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks))


# ----------------------------------------------------------------------------------------------
# Per-layer isometry: scale and spread of the layer Jacobians over their active directions
# ----------------------------------------------------------------------------------------------


def _block_kind(block: nn.Module):
    """``(kind, linear)``: the block's kind and its weight's module (or None).

    ``linear``: an ``nn.Linear`` / ``OrthogonalLinear`` alone (a head); ``relu``: ``(linear,
    ReLU)``; ``groupsort``: ``(linear, GroupSort)``; ``layernorm``: ``(linear, LayerNorm, ReLU)``;
    anything else is ``other`` (its weight is its first linear module, if any).
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
    kind, linear = _block_kind(block)
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


def _check_model_and_probe(model: nn.Module, x: torch.Tensor, *, min_blocks: int = 1) -> None:
    _check_block_model(model, min_blocks=min_blocks)
    check_finite_parameters("model", model)
    check_tensor("x", x, min_ndim=2, finite=True, full_precision=True)
    _check_model_input(model, "x", x)


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
    _check_model_and_probe(model, x)
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
    _check_block_model(model)
    check_finite_parameters("model", model)
    result: Dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for index, block in enumerate(model):
            W = _weight_matrix(_block_kind(block)[1])
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
    _check_model_and_probe(model, x)
    rows: List[Dict[str, Union[int, float, str]]] = []
    h = x.detach()
    with torch.no_grad():
        for index, block in enumerate(model):
            sv, active, n_null, kind = _active_svdvals(block, h)
            scale, spread, count, s_min, s_max = _log_stats(sv)
            W = _weight_matrix(_block_kind(block)[1])
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
    _check_model_and_probe(model, x, min_blocks=2)
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


def _scale_safe(s: torch.Tensor) -> torch.Tensor:
    """Singular values ``(..., k)``, divided by the largest if their sum overflows.

    For the scale-invariant measures only; below the overflow the values are returned as they
    are (so results are bitwise unchanged for ordinary inputs).
    """
    if bool(torch.isfinite(s.sum(dim=-1)).all()):
        return s
    top = s.amax(dim=-1, keepdim=True)
    return s / torch.where(top > 0, top, torch.ones_like(top))


def _effective_rank_from_svals(s: torch.Tensor) -> torch.Tensor:
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
        return _effective_rank_from_svals(_scale_safe(torch.linalg.svdvals(features)))


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
        s = _scale_safe(torch.linalg.svdvals(features))  # (..., k), descending
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


def _relative_distances(a: torch.Tensor) -> torch.Tensor:
    """``D[i, j] = ||a_i - a_j|| / max(||a_i||, ||a_j||)`` for the rows of ``a`` (0 when both are 0)."""
    a = a.double()
    norms = a.norm(dim=1)  # (m,)
    dist = torch.cdist(a.unsqueeze(0), a.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)  # (m, m), exact differences
    scale = torch.maximum(norms.unsqueeze(0), norms.unsqueeze(1))
    return torch.where(scale > 0, dist / torch.where(scale > 0, scale, torch.ones_like(scale)), torch.zeros_like(dist))


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
    close = (_relative_distances(weights) <= tol) & (_relative_distances(activations.mT) <= tol)
    return torch.triu(close, diagonal=1).nonzero()


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
        linear = _block_kind(block)[1]
        W = _weight_matrix(linear)
        if W is None or W.shape[0] != h.shape[1]:
            raise ValueError(f"clones needs hidden blocks whose linear module's outputs are the block's units; block {block!r} has none")
        W = W.reshape(W.shape[0], -1)
        if getattr(linear, "bias", None) is not None:
            W = torch.cat([W, linear.bias.detach().reshape(-1, 1).to(W.dtype)], dim=1)
        result.append(clone_pairs(W, h, tol=tol))
    return result
