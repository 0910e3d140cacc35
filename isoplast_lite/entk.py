r"""The empirical neural tangent kernel: :func:`empirical_ntk` (Jacobian contraction,
NTK-vector products, or the layered form), the resolution of its eigenvalues
(:func:`ntk_resolution`) and its summary (:func:`ntk_summary`: condition number, numerical rank,
effective rank, expected progress of a gradient step).

Part of :mod:`isoplast_lite.diagnostics` (which re-exports every public name here); see its
docstring for the conventions shared by all diagnostics. ``ntk_progress`` is the kernel of the
summary's progress that the runner's seed-batched measurement (:mod:`isoplast_lite.measure`)
shares.

References:
    Jacot, Gabriel & Hongler (2018), "Neural tangent kernel", NeurIPS.
    Novak, Sohl-Dickstein & Schoenholz (2022), "Fast finite width neural tangent kernel", ICML
    (Jacobian contraction, NTK-vector products and structured derivatives).
"""

from __future__ import annotations

import contextlib
import math
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from ._validation import (
    check_choice,
    check_finite_parameters,
    check_generator,
    check_int,
    check_model_input,
    check_module,
    check_tensor,
)
from .units import effective_rank_from_svals, scale_safe

__all__ = [
    "empirical_ntk",
    "ntk_summary",
    "ntk_resolution",
    "NTK_METHODS",
    "ntk_progress",
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
    check_model_input(model, "x1", x1)
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
        s = scale_safe(eigenvalues.abs())
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
        rho = ntk_progress(theta * 2.0 ** -max(min(exponent, 120), -120), u)

    return {
        "eigenvalues": eigenvalues,
        "condition_number": cond,
        "effective_rank": float(effective_rank_from_svals(s)),
        "progress_mean": float(rho.mean()),
        "progress_kantorovich": kantorovich,
        "trace": float(theta.diagonal().sum()),
        "lambda_max": float(eigenvalues[0]),
        "lambda_min": float(eigenvalues[-1]),
        "resolution": float(ntk_resolution(float(eigenvalues.abs().max()), theta.shape[0], theta.dtype)),
        "rank": rank,
        "resolved": bool(resolved),
    }


def ntk_progress(theta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """rho(u) of :func:`ntk_summary` for each direction ``u`` ``(D, M)``, theta symmetric ``(M, M)``:
    ``(u' theta u)^2 / (|u|^2 |theta u|^2)``, the fraction of the ideal loss decrease that one
    optimally sized gradient step achieves along the residual ``u`` (0 where theta u = 0).

    Example:
        >>> ntk_progress(torch.eye(2), torch.tensor([[1.0, 2.0]])), ntk_progress(torch.diag(torch.tensor([1.0, 0.0])), torch.tensor([[0.0, 1.0]]))
        (tensor([1.]), tensor([0.]))
    """
    theta_u = u @ theta  # (D, M); theta is symmetric
    num = (u * theta_u).sum(-1).square()
    den = u.square().sum(-1) * theta_u.square().sum(-1)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))
