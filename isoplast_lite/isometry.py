r"""The isometry regularizer (Eq. 16 of the paper), its analytic gradient, and orthogonalization.

For a weight :math:`W \in \mathbb{R}^{d_{out} \times d_{in}}` (PyTorch layout ``(out, in)``):

.. math::
    R_{iso}(W) = \begin{cases}
        \lVert W^\top W - I \rVert_F^2 & d_{out} \ge d_{in} \ \text{(tall: orthonormal columns)}\\
        \lVert W W^\top - I \rVert_F^2 & \text{otherwise (wide: orthonormal rows)}
    \end{cases}
    \;=\; \sum_{i=1}^{\min(d_{out}, d_{in})} (\sigma_i^2 - 1)^2,

.. math::
    \nabla R_{iso}(W) = 4\,W (W^\top W - I) \quad\text{or}\quad 4\,(W W^\top - I)\,W
    \;=\; 4\,(W W^\top W - W) \ \text{in both cases.}

The two gradient formulas are one function of :math:`W` (expand the products); only the
penalty values differ, by the constant :math:`|d_{out} - d_{in}|` (the zero eigenvalues of the
larger Gram matrix). The code uses the smaller Gram matrix for speed, and
:func:`isometry_grad_terms` splits the one gradient into its two row terms (``PAPER.md``).

This module is the one home of the isometry maths. Its unchecked kernels on stacks of matrices
``(..., d_out, d_in)`` (:func:`gram_deviation`: Gram minus target; :func:`isometry_direction`:
the gradient over 4; :func:`decayed_isometry_step`: decay and isometry step fused;
:func:`isometry_penalty_matrix`, :func:`isometry_grad_matrix`; :func:`newton_schulz_steps`:
the retraction) are what :class:`~isoplast_lite.optim.AdamO` (both paths), the ``coupled-iso``,
``parseval`` and ``adamo-target`` methods, the layers and the runner call; the checked public
functions below wrap them.

Conv kernels ``(out, in, k, ...)`` are reshaped to ``(out, in * k * ...)`` first.

References:
    Rosseau, Müller & Nowé (2026), "Preserving Plasticity in Continual Learning via Dynamical
    Isometry", ICML (Eq. 16).
    Bansal, Chen & Wang (2018), "Can we gain more from orthogonality regularizations in
    training deep CNNs?" (soft orthogonality, SO).
    Björck & Bowie (1971), "An iterative algorithm for computing the best estimate of an
    orthogonal matrix", SIAM J. Numer. Anal.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from ._validation import check_bool, check_choice, check_int, check_positive, check_real, check_tensor

__all__ = [
    "gram_deviation",
    "isometry_direction",
    "decayed_isometry_step",
    "isometry_penalty_matrix",
    "isometry_grad_matrix",
    "newton_schulz_steps",
    "check_interval",
    "isometry_penalty",
    "isometry_grad",
    "isometry_grad_terms",
    "newton_schulz",
    "chebyshev_cubic",
    "partial_isometry_measures",
    "isometry_half_life",
    "isometry_step_regime",
]


def _as_matrix(W: torch.Tensor) -> torch.Tensor:
    """View a weight as a matrix: ``(out, in)`` as is, ``(out, in, k, ...)`` as ``(out, in*k*...)``."""
    return W if W.ndim == 2 else W.reshape(W.shape[0], -1)


# ----------------------------------------------------------------------------------------------
# The kernel: the one home of the Gram deviation and the isometry direction. Every user of the
# isometry maths calls these (AdamO's two paths, the coupled penalty, Parseval, adamo-target,
# the Newton-Schulz step): public within the package, unchecked (the callers validate once),
# stacks ``(..., d_out, d_in)`` with any leading dimensions, no device sync.
# ----------------------------------------------------------------------------------------------


def gram_deviation(W: torch.Tensor, target=1.0, *, tall: Optional[bool] = None) -> Tuple[torch.Tensor, bool]:
    r"""``(G, tall)``: the Gram matrix of a stack of matrices minus its target, and which one it is.

    .. math::
        G = W^\top W - T \ \text{(tall: columns)}, \qquad G = W W^\top - T \ \text{(wide: rows)},

    of shape ``(..., k, k)``. Unchecked kernel shared by the package.

    Args:
        W: a stack of matrices ``(..., d_out, d_in)``.
        target: :math:`T`: a number ``t`` (:math:`T = tI`, subtracted from the diagonal; the
            isometry's ``1.0``) or a tensor broadcastable to ``(..., k, k)``.
        tall: ``None`` (default) the smaller Gram matrix, columns when ``d_out >= d_in`` (ties
            included); ``True`` columns, ``False`` rows, whatever the shape.

    Returns:
        ``(G, tall)``; ``G`` is a new tensor (differentiable when ``W`` requires grad).

    Example:
        >>> G, tall = gram_deviation(torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        >>> G, tall
        (tensor([[3., 0.],
                [0., 0.]]), True)
    """
    if tall is None:
        tall = W.shape[-2] >= W.shape[-1]
    gram = W.mT @ W if tall else W @ W.mT  # (..., k, k)
    if isinstance(target, torch.Tensor):
        gram.sub_(target)
    else:
        gram.diagonal(dim1=-2, dim2=-1).sub_(target)
    return gram, tall


def isometry_direction(W: torch.Tensor, target=1.0, *, tall: Optional[bool] = None) -> torch.Tensor:
    r"""The descent direction of :math:`\lVert \mathrm{Gram}(W) - T\rVert_F^2`, divided by 4.

    ``W G`` (tall) or ``G W`` (wide) with ``(G, tall) =`` :func:`gram_deviation` ``(W, target,
    tall=tall)``: for :math:`T = I`, :math:`\nabla R_{iso}(W) / 4`. A new tensor of ``W``'s
    shape ``(..., d_out, d_in)``. Unchecked kernel shared by the package (AdamO's fused path,
    ``adamo-target``; :func:`isometry_grad` is 4 times it).

    Example:
        >>> isometry_direction(2 * torch.eye(2))  # 2 * (4 - 1) on the diagonal
        tensor([[6., 0.],
                [0., 6.]])
    """
    gram, tall = gram_deviation(W, target, tall=tall)
    return W @ gram if tall else gram @ W


def decayed_isometry_step(W: torch.Tensor, decay: float, coef: float) -> torch.Tensor:
    r"""``decay * W - coef * grad R_iso(W)`` for a stack of matrices, as one fused product.

    Note (fusion): with :math:`G = W^\top W - I` (tall) the isometry gradient is :math:`4 W G`,
    so a decay and an isometry step both evaluated at :math:`W` are one ``addmm``:
    ``addmm(W, W, G, beta=decay, alpha=-4 coef)`` (``G W`` for wide matrices; ``baddbmm`` for
    ``(S, d_out, d_in)``). Unchecked kernel shared by the package (AdamO's reference path).

    Example:
        >>> decayed_isometry_step(2 * torch.eye(2), 1.0, 0.001)  # 2 - 0.001 * 4 * 2 * 3
        tensor([[1.9760, 0.0000],
                [0.0000, 1.9760]])
    """
    gram, tall = gram_deviation(W)
    alpha = -4.0 * coef
    a, b = (W, gram) if tall else (gram, W)
    if W.ndim == 2:
        return torch.addmm(W, a, b, beta=decay, alpha=alpha)
    if W.ndim == 3:
        return torch.baddbmm(W, a, b, beta=decay, alpha=alpha)
    return (a @ b).mul_(alpha).add_(W, alpha=decay)


def isometry_penalty_matrix(W: torch.Tensor) -> torch.Tensor:
    """Batched :math:`R_{iso}` of a stack of matrices ``(..., d_out, d_in)`` -> ``(...)``.

    The unchecked form of :func:`isometry_penalty` (the runner's coupled penalty calls it every
    step on seed slices; a finiteness check would synchronize a GPU).

    Example:
        >>> isometry_penalty_matrix(torch.stack([torch.eye(2), 2 * torch.eye(2)]))
        tensor([ 0., 18.])
    """
    return gram_deviation(W)[0].square().sum(dim=(-2, -1))


def isometry_grad_matrix(W: torch.Tensor) -> torch.Tensor:
    r"""Batched :math:`\nabla R_{iso}` of a stack of matrices ``(..., d_out, d_in)``: 4 times
    :func:`isometry_direction`; the unchecked form of :func:`isometry_grad`.

    Returns:
        ``4 W (W^T W - I)`` if ``d_out >= d_in`` else ``4 (W W^T - I) W``, same shape as ``W``.

    Example:
        >>> isometry_grad_matrix(torch.stack([torch.eye(2), 2 * torch.eye(2)]))[1]
        tensor([[24.,  0.],
                [ 0., 24.]])
    """
    return isometry_direction(W).mul_(4.0)


def isometry_penalty(W: torch.Tensor) -> torch.Tensor:
    r"""The isometry regularizer :math:`R_{iso}(W)` of one weight (Eq. 16).

    :math:`\lVert W^\top W - I\rVert_F^2` if :math:`d_{out} \ge d_{in}`, else
    :math:`\lVert W W^\top - I\rVert_F^2`; equal to :math:`\sum_i (\sigma_i^2 - 1)^2` over the
    :math:`\min(d_{out}, d_{in})` singular values. It is zero iff :math:`W` is (semi-)orthogonal.
    Differentiable (autograd gives :func:`isometry_grad`).

    Args:
        W: a weight of at least 2 dimensions, finite. Tensors with more dimensions are conv
            kernels ``(out, in, k, ...)``, reshaped to ``(out, in * k * ...)``.

    Returns:
        A 0-dim tensor.

    Raises:
        ValueError: ``W`` holds NaN or inf (checked with one reduction, which synchronizes a
            GPU; the runner's methods call the unchecked :func:`isometry_penalty_matrix` every step).

    Shape:
        ``W``: ``(out, in)`` or ``(out, in, *kernel)``; output ``()``.

    Example:
        >>> isometry_penalty(torch.eye(3))
        tensor(0.)
        >>> isometry_penalty(2 * torch.eye(2))  # two singular values 2: 2 * (4 - 1)^2
        tensor(18.)

    References:
        Rosseau, Müller & Nowé (2026), ICML, Eq. 16.
    """
    check_tensor("W", W, min_ndim=2, finite=True)
    return isometry_penalty_matrix(_as_matrix(W))


def isometry_grad(W: torch.Tensor) -> torch.Tensor:
    r"""Analytic gradient of :func:`isometry_penalty`: :math:`4(WW^\top W - W)`, for every shape.

    Written :math:`4W(W^\top W - I)` for a tall and :math:`4(WW^\top - I)W` for a wide
    :math:`W` in the paper; both are the same polynomial :math:`4(WW^\top W - W)`, and the code
    merely associates the product so that the Gram matrix is the smaller one
    (:math:`\min(d_{out}, d_{in})^2` entries). No SVD and no autograd: two matrix products.
    For a conv kernel the gradient is computed on the ``(out, in * k * ...)`` matrix and
    reshaped back. :func:`isometry_grad_terms` gives its two row terms.

    Args:
        W: a weight of at least 2 dimensions, finite (see :func:`isometry_penalty`; NaN or inf
            raise a ``ValueError``).

    Returns:
        A tensor of the same shape as ``W``. It is built from differentiable operations, so it
        carries an autograd graph when ``W`` requires grad (optimizers call it under
        ``torch.no_grad()``).

    Shape:
        ``W``: ``(out, in)`` or ``(out, in, *kernel)``; output: same as ``W``.

    Example:
        >>> W = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # tall, sigma = (2, 1)
        >>> isometry_grad(W)  # 4 * sigma * (sigma^2 - 1) on the diagonal
        tensor([[24.,  0.],
                [ 0.,  0.],
                [ 0.,  0.]])

    References:
        Rosseau, Müller & Nowé (2026), ICML, Eq. 16 and its gradient.
    """
    check_tensor("W", W, min_ndim=2, finite=True)
    return isometry_grad_matrix(_as_matrix(W)).reshape(W.shape)


def isometry_grad_terms(W: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""The isometry gradient split by rows into a renormalizing and a decorrelating term, for every shape.

    With :math:`w_i` the :math:`i`-th row of :math:`W` (unit :math:`i`'s incoming weights), the
    identity :math:`\nabla R_{iso}(W) = 4(WW^\top W - W)` (tall or wide alike: see
    :func:`isometry_grad`) reads, row by row,

    .. math::
        [\nabla R_{iso}(W)]_i = \underbrace{4(\lVert w_i\rVert^2 - 1)\,w_i}_{\text{renormalize}}
        + \underbrace{4\sum_{j \ne i} (w_i \cdot w_j)\,w_j}_{\text{decorrelate}} .

    The first term scales the row towards unit norm, the second removes its components along
    the other rows. This holds for tall layers too (``PAPER.md``: one mechanism, not two), but
    there the rows cannot become orthonormal (at most :math:`d_{in}` of them can be), so
    :math:`\lVert w_i\rVert^2 \to 1` is not where the gradient leads: at a semi-orthogonal
    tall :math:`W` the two terms cancel row by row (the row norms average
    :math:`d_{in}/d_{out}`), which is why the revival hypothesis must be tested term by term.

    Args:
        W: a weight of at least 2 dimensions, finite (conv kernels ``(out, in, k, ...)`` as
            ``(out, in * k * ...)``).

    Returns:
        ``(renormalize, decorrelate)``, two tensors of the shape of ``W`` whose sum is
        :func:`isometry_grad` ``(W)`` (up to rounding).

    Shape:
        ``W``: ``(out, in)`` or ``(out, in, *kernel)``; each output: same as ``W``.

    Example:
        >>> W = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])  # tall
        >>> renormalize, decorrelate = isometry_grad_terms(W)
        >>> renormalize
        tensor([[ 0.,  0.],
                [ 4.,  4.],
                [ 0., 24.]])
        >>> torch.equal(renormalize + decorrelate, isometry_grad(W))
        True

    References:
        Rosseau, Müller & Nowé (2026), ICML (the gradient); ``PAPER.md`` (the row form and the
        revival hypothesis, our reconstruction).
    """
    check_tensor("W", W, min_ndim=2, finite=True)
    M = _as_matrix(W)  # (d_out, d_in)
    gram = gram_deviation(M, 0.0, tall=False)[0]  # (d_out, d_out): w_i . w_j, the row Gram matrix itself
    sq_norms = gram.diagonal()  # (d_out,): |w_i|^2
    renormalize = 4.0 * (sq_norms - 1.0).unsqueeze(-1) * M
    decorrelate = 4.0 * (gram - torch.diag_embed(sq_norms)) @ M
    return renormalize.reshape(W.shape), decorrelate.reshape(W.shape)


COEFFICIENTS = ("bjorck", "chebyshev")


def chebyshev_cubic(lo: float, hi: float) -> Tuple[float, float, float]:
    r"""The odd cubic :math:`p(s) = c_1 s + c_3 s^3` closest to 1 on :math:`[lo, hi]` (minimax).

    By Chebyshev's alternance theorem the best approximation equioscillates at three points,
    :math:`lo`, the interior maximum :math:`e` and :math:`hi`:
    :math:`1 - p(lo) = p(e) - 1 = 1 - p(hi) = E`. Solving these with :math:`p'(e) = 0` gives

    .. math::
        e = \sqrt{(lo^2 + lo\,hi + hi^2)/3}, \quad
        c_3 = \frac{-2}{2e^3 + lo\,hi\,(lo + hi)}, \quad
        c_1 = -c_3\,(lo^2 + lo\,hi + hi^2), \quad
        E = \frac{2e^3 - lo\,hi\,(lo + hi)}{2e^3 + lo\,hi\,(lo + hi)},

    and :math:`p` maps :math:`[lo, hi]` onto :math:`[1 - E, 1 + E]`. On the degenerate interval
    :math:`[1, 1]` it is the classic Björck step :math:`(c_1, c_3) = (3/2, -1/2)`.

    Args:
        lo: lower end of the interval holding the singular values (> 0).
        hi: upper end (>= ``lo``).

    Returns:
        ``(c1, c3, E)`` as Python floats.

    Example:
        >>> chebyshev_cubic(1.0, 1.0)
        (1.5, -0.5, 0.0)
        >>> c1, c3, err = chebyshev_cubic(0.5, 1.0)
        >>> round(err, 4), round(1 - (c1 * 0.5 + c3 * 0.5**3), 4), round(1 - (c1 + c3), 4)
        (0.086, 0.086, 0.086)

    References:
        Grishina, Smirnov & Rakhuba (2025), "Accelerating Newton-Schulz iteration for
        orthogonalization via Chebyshev-type polynomials", arXiv:2506.10935 (the abstract states
        that they derive the optimal third-order coefficients from the alternance theorem; we
        did not have their full text: the formula above is our derivation, and it agrees with a
        public third-party reimplementation of their method).
    """
    lo, hi = check_positive("lo", lo), check_positive("hi", hi)
    if hi < lo:
        raise ValueError(f"hi must be >= lo, got lo={lo} and hi={hi}")
    s2 = lo * lo + lo * hi + hi * hi
    e3 = 2.0 * (s2 / 3.0) ** 1.5
    mixed = lo * hi * (lo + hi)
    c3 = -2.0 / (e3 + mixed)
    return -c3 * s2, c3, (e3 - mixed) / (e3 + mixed)


def _cubic_step(X: torch.Tensor, c1: float, c3: float) -> torch.Tensor:
    r"""One odd cubic step :math:`c_1 X + c_3 X X^\top X` on a stack ``(..., m, n)``, unchecked.

    Written as :math:`(c_1 + c_3) X + c_3 X E` with :math:`E = X^\top X - I` (tall) or
    :math:`E X` with :math:`E = X X^\top - I` (wide, the smaller Gram matrix), so that a nearly
    orthogonal :math:`X` only receives a small correction (less float32 rounding). Two matrix
    products; for ``(S, m, n)`` stacks they are batched (``baddbmm``).
    """
    E, tall = gram_deviation(X)  # (..., k, k), k = min(m, n)
    a, b = (X, E) if tall else (E, X)
    if X.ndim == 2:
        return torch.addmm(X, a, b, beta=c1 + c3, alpha=c3)
    if X.ndim == 3:
        return torch.baddbmm(X, a, b, beta=c1 + c3, alpha=c3)
    return (a @ b).mul_(c3).add_(X, alpha=c1 + c3)


def newton_schulz_steps(X: torch.Tensor, steps: int, coefficients: str = "bjorck", interval: Optional[Tuple[float, float]] = None) -> torch.Tensor:
    """``steps`` unchecked iterations of :func:`newton_schulz` without the normalization: the
    retraction kernel shared by the layers (:mod:`isoplast_lite.nn`) and the runner
    (:func:`isoplast_lite.engine.retract_stacked_`); ``interval`` as checked by :func:`check_interval`."""
    lo, hi = interval if interval is not None else (1.0, 1.0)
    for _ in range(steps):
        if coefficients == "bjorck":
            c1, c3 = 1.5, -0.5
        else:
            c1, c3, err = chebyshev_cubic(lo, hi)
            lo, hi = 1.0 - err, 1.0 + err
        X = _cubic_step(X, c1, c3)
    return X


def newton_schulz(
    W: torch.Tensor,
    steps: int = 30,
    *,
    normalize: bool = True,
    eps: float = 1e-12,
    coefficients: str = "bjorck",
    interval: Optional[Tuple[float, float]] = None,
) -> torch.Tensor:
    r"""Orthogonalize a (stack of) matrix by the Björck–Bowie / Newton–Schulz iteration.

    Iterates an odd cubic map on the singular values,

    .. math::
        X_0 = W / \lVert W \rVert_F, \qquad X_{k+1} = c_1 X_k + c_3 X_k X_k^\top X_k ,

    which maps every singular value :math:`s \mapsto c_1 s + c_3 s^3` and leaves the singular
    vectors alone, so :math:`X_k \to U V^\top`, the orthogonal polar factor of
    :math:`W = U \Sigma V^\top` (the closest (semi-)orthogonal matrix in Frobenius norm).

    - ``coefficients="bjorck"`` (default): the classic cubic :math:`(c_1, c_3) = (3/2, -1/2)`
      (Björck & Bowie 1971), the Taylor expansion of :math:`s (s^2)^{-1/2}` at :math:`s = 1`. For
      :math:`0 < s < \sqrt{3}` the singular values converge to 1, quadratically once close:
      :math:`s = 1 + \delta \mapsto 1 - \tfrac32 \delta^2 + O(\delta^3)`. Dividing by the
      Frobenius norm puts every singular value in :math:`(0, 1]`; small ones grow by a factor
      1.5 per step, so ``steps`` should exceed about :math:`\log(1/s_{min}) / \log 1.5 + 5`.
    - ``coefficients="chebyshev"``: at step :math:`k` the minimax cubic on an interval
      :math:`[lo_k, hi_k]` known to hold the singular values (:func:`chebyshev_cubic`, Grishina
      et al. 2025); ``interval`` gives :math:`[lo_0, hi_0]` (after the normalization, if any) and
      each step maps it to :math:`[1 - E_k, 1 + E_k]`. It needs fewer steps than Björck's when
      the interval is wide and tight (e.g. a known lower bound on the smallest singular value);
      singular values outside ``interval`` are not guaranteed to converge.

    A single Björck step without normalization is the *retraction* the AEI nets use after each
    optimizer step (:func:`isoplast_lite.nn.retract_`): for :math:`W = Q(I + S)` with
    :math:`Q` orthogonal and :math:`S` small and symmetric it returns
    :math:`Q(I + O(S^2))`, the polar factor to first order. Singular values that are exactly 0
    stay 0. For tall matrices the Gram matrix is :math:`X^\top X`, for wide ones :math:`X X^\top`
    (the smaller one).

    Pure function: differentiable and ``vmap``-friendly; leading dimensions are batch
    dimensions (e.g. seeds stacked as ``(S, m, n)``, each orthogonalized on its own).

    Args:
        W: matrix or stack of matrices ``(..., m, n)``, floating point.
        steps: number of iterations (>= 0).
        normalize: divide each matrix by its Frobenius norm first (needed for convergence
            unless every singular value of ``W`` is already below ``sqrt(3)``).
        eps: added to the Frobenius norm to avoid dividing by zero (>= 0).
        coefficients: ``"bjorck"`` or ``"chebyshev"``.
        interval: ``(lo, hi)`` with ``0 < lo <= hi``, bounds on the singular values of the
            (normalized) input; required by ``"chebyshev"``, not used by ``"bjorck"``.

    Returns:
        The iterate :math:`X_{steps}`, same shape as ``W``.

    Raises:
        ValueError: for an unknown ``coefficients``, or ``"chebyshev"`` without a valid
            ``interval``.

    Shape:
        ``W``: ``(..., m, n)``; output ``(..., m, n)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> W = torch.randn(6, 4, generator=g, dtype=torch.float64)
        >>> Q = newton_schulz(W, steps=40)
        >>> torch.allclose(Q.T @ Q, torch.eye(4, dtype=torch.float64))
        True
        >>> U, s, Vh = torch.linalg.svd(W, full_matrices=False)
        >>> torch.allclose(Q, U @ Vh)
        True
        >>> lo = float(s.min() / torch.linalg.matrix_norm(W))  # known here from the SVD
        >>> Qc = newton_schulz(W, steps=5, coefficients="chebyshev", interval=(0.9 * lo, 1.0))
        >>> torch.allclose(Qc, U @ Vh), torch.allclose(newton_schulz(W, steps=5), U @ Vh)
        (True, False)

    References:
        Björck & Bowie (1971), SIAM J. Numer. Anal. 8(2); Higham (2008), "Functions of
        Matrices", ch. 8; Grishina, Smirnov & Rakhuba (2025), arXiv:2506.10935 (Chebyshev
        coefficients, see :func:`chebyshev_cubic`).
    """
    check_tensor("W", W, min_ndim=2)
    # each step multiplies a small singular value by about 1.5: from the smallest positive float64
    # (1e-308) it reaches 1 in under 1800 steps, so more cannot change a result, only hang
    steps = check_int("steps", steps, minimum=0, maximum=10_000)
    check_bool("normalize", normalize)
    eps = check_real("eps", eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    coefficients = check_choice("coefficients", coefficients, COEFFICIENTS)
    interval = check_interval(coefficients, interval)
    X = W
    if normalize:
        X = X / (torch.linalg.matrix_norm(X, keepdim=True) + eps)  # (..., m, n), sigma in (0, 1]
    return newton_schulz_steps(X, steps, coefficients, interval)


def check_interval(coefficients: str, interval) -> Optional[Tuple[float, float]]:
    """The checked ``interval`` argument of :func:`newton_schulz` (and of the layers' retractions):
    ``interval`` as a pair of floats ``0 < lo <= hi`` (required iff ``coefficients="chebyshev"``)."""
    if coefficients != "chebyshev":
        return None
    if not isinstance(interval, (tuple, list)) or len(interval) != 2:
        raise ValueError(f"interval must be a pair (lo, hi) with 0 < lo <= hi for coefficients='chebyshev', got {interval!r}")
    lo, hi = check_positive("interval[0]", interval[0]), check_positive("interval[1]", interval[1])
    if hi < lo:
        raise ValueError(f"interval must be a pair (lo, hi) with 0 < lo <= hi, got {interval!r}")
    return lo, hi


def partial_isometry_measures(W: torch.Tensor, W0: Optional[torch.Tensor] = None) -> Dict[str, float]:
    r"""The spectral quantities that prior plasticity methods each control, for one weight.

    With :math:`\sigma_1 \ge \dots \ge \sigma_k` the singular values of :math:`W` (conv kernels
    reshaped to ``(out, in * k * ...)``):

    - ``"sum_sq"``: :math:`\lVert W\rVert_F^2 = \sum \sigma_i^2`, what weight decay / L2 shrink;
    - ``"sigma_max"``: :math:`\sigma_1`, what spectral regularization pushes to 1;
    - ``"sigma_min"``: :math:`\sigma_k`;
    - ``"mean_sq"`` and ``"std_sq"``: mean and (population) standard deviation of
      :math:`\sigma_i^2`; :math:`R_{iso}` controls both (``iso_penalty`` equals
      :math:`k\,[(\text{mean\_sq} - 1)^2 + \text{std\_sq}^2]`);
    - ``"iso_penalty"``: :math:`R_{iso}(W) = \sum (\sigma_i^2 - 1)^2`;
    - ``"dist_init_sq"`` (only when ``W0`` is given): :math:`\lVert W - W_0\rVert_F^2`, what
      L2 Init penalizes.

    This is our reconstruction of the paper's "partial isometry" argument (see ``PAPER.md``).

    Args:
        W: a weight with at least 2 dimensions, finite, float32 or float64.
        W0: optional reference weight (e.g. the initialization), same shape as ``W``, finite.

    Returns:
        A dict of Python floats.

    Example:
        >>> m = partial_isometry_measures(torch.diag(torch.tensor([2.0, 1.0])))
        >>> m["sum_sq"], m["sigma_max"], m["mean_sq"], m["std_sq"], m["iso_penalty"]
        (5.0, 2.0, 2.5, 1.5, 9.0)
    """
    check_tensor("W", W, min_ndim=2, finite=True, full_precision=True)
    if W0 is not None:
        check_tensor("W0", W0, min_ndim=2, finite=True)
        if W0.shape != W.shape:
            raise ValueError(f"W0 must have the shape of W {tuple(W.shape)}, got {tuple(W0.shape)}")
    with torch.no_grad():
        M = _as_matrix(W.detach())
        sigma = torch.linalg.svdvals(M)  # (k,) descending
        sq = sigma.square()
        out = {
            "sum_sq": float(sq.sum()),
            "sigma_max": float(sigma[0]),
            "sigma_min": float(sigma[-1]),
            "mean_sq": float(sq.mean()),
            "std_sq": float(sq.std(correction=0)),
            "iso_penalty": float((sq - 1.0).square().sum()),
        }
        if W0 is not None:
            out["dist_init_sq"] = float((W.detach() - W0.detach()).square().sum())
    return out


# ----------------------------------------------------------------------------------------------
# How fast the decoupled step restores isometry: one home for the half-life and its regime
# ----------------------------------------------------------------------------------------------


def isometry_half_life(step, iso_strength=1.0):
    r"""Steps for :math:`R_{iso}` to halve near isometry under the decoupled step
    :math:`W \leftarrow W - s\lambda\,\nabla R_{iso}(W)` (our reconstruction, chapter 5).

    Near :math:`\sigma = 1` one step multiplies :math:`\sigma - 1` by :math:`1 - c`, with
    :math:`c = 8 s\lambda`, so :math:`R_{iso} \approx 4\sum(\sigma_i - 1)^2` halves in
    :math:`\ln 2 / (16\, s\lambda)` steps **while** :math:`c \ll 1`
    (:func:`isometry_step_regime` says ``"half-life"`` there). Outside that regime the number is
    not a half-life: for :math:`0.1 \le c < 2` the deviation shrinks by :math:`|1 - c|` per step
    (a few steps), and from :math:`c = 2` on :math:`\sigma = 1` repels and there is none; check
    the regime before quoting the number. ``s`` is the isometry step size of the reading
    (``lr`` under PyTorch's, the schedule multiplier under Loshchilov & Hutter's).

    Args:
        step: the step size :math:`s` (a float or a numpy array), > 0.
        iso_strength: :math:`\lambda` (a float or a numpy array), > 0.

    Returns:
        :math:`\ln 2 / (16\, s\lambda)` (a float, or an array for array input).

    Example:
        >>> round(isometry_half_life(1e-3, 1e-3))  # PyTorch's reading at the paper's stated setting
        43322
        >>> round(isometry_half_life(1.0, 1e-3), 1)  # Loshchilov & Hutter's
        43.3
    """
    import numpy as np

    product = np.asarray(step, dtype=float) * np.asarray(iso_strength, dtype=float)
    if not (np.all(np.isfinite(product)) and np.all(product > 0)):
        raise ValueError(f"step * iso_strength must be finite and > 0, got {product.tolist()}")
    value = np.log(2) / (16 * product)
    return float(value) if value.ndim == 0 else value


def isometry_step_regime(step, iso_strength=1.0) -> str:
    r"""The regime of the decoupled isometry step for :math:`c = 8 s\lambda`
    (:func:`isometry_half_life`; ``optim.ISO_STABILITY_LIMIT`` is the 2 below).

    Returns:
        ``"half-life"`` (:math:`c < 0.1`: :func:`isometry_half_life` holds), ``"monotone"``
        (:math:`0.1 \le c < 1`), ``"oscillating"`` (:math:`1 \le c < 2`: converging with
        alternating sign) or ``"unstable"`` (:math:`c \ge 2`: no half-life, AdamO refuses it).

    Example:
        >>> isometry_step_regime(1.0, 1e-3), isometry_step_regime(1.0, 0.25)
        ('half-life', 'unstable')
    """
    c = 8.0 * check_positive("step", step) * check_positive("iso_strength", iso_strength)
    return "half-life" if c < 0.1 else "monotone" if c < 1 else "oscillating" if c < 2 else "unstable"

