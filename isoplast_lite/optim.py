"""AdamO: Adam with a decoupled isometry step (as AdamW decouples weight decay).

The update math lives in the pure function :func:`adamo_update_` (one parameter, in place);
:class:`AdamO` only loops over parameter groups and keeps the state.

References:
    Rosseau, Müller & Nowé (2026), "Preserving Plasticity in Continual Learning via Dynamical
    Isometry", ICML.
    Kingma & Ba (2015), "Adam: A method for stochastic optimization", ICLR.
    Loshchilov & Hutter (2019), "Decoupled weight decay regularization", ICLR.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch.optim import Optimizer
from torch.optim.adamw import adamw as _fused_adamw  # the functional AdamW; called with fused=True

from ._validation import check_bool, check_int, check_nonnegative, check_unit_interval_open
from .isometry import decayed_isometry_step, isometry_direction

__all__ = ["AdamO", "EntryStepAdam", "MemberAdam", "member_adam", "adamo_update_", "member_adam_update_", "member_view", "hidden_head_groups",
           "iso_stability_product", "adamo_param_groups"]  # fmt: skip


def _iso_applies(param: torch.Tensor, seed_dims: int) -> bool:
    """A parameter gets the isometry step iff each of its copies has at least 2 dimensions."""
    return param.ndim - seed_dims >= 2


def _as_matrices(param: torch.Tensor, seed_dims: int) -> torch.Tensor:
    """View ``(*seed, out, in, *kernel)`` as a stack of matrices ``(*seed, out, in * prod(kernel))``.

    ``flatten`` (not ``reshape(..., -1)``) so that empty parameters, e.g. ``(0, 3)``, work too.
    """
    return param.flatten(seed_dims + 1)


def adamo_update_(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: int,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    iso_strength: float,
    iso_lr: Optional[float],
    seed_dims: int = 0,
    iso_every: int = 1,
) -> None:
    r"""One AdamO step for one parameter, in place (the pure update rule :class:`AdamO` calls).

    With :math:`\theta_t` = ``param``, :math:`g_t` = ``grad``, :math:`t` = ``step``
    (1 for the first step), :math:`\eta` = ``lr``, :math:`\eta_{iso}` = ``iso_lr`` (or
    :math:`\eta` if ``None``), :math:`\lambda` = ``iso_strength``, :math:`\mu` = ``weight_decay``,
    :math:`k` = ``iso_every``:

    .. math::
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \theta_{t+1} &= (1 - \eta\mu)\,\theta_t
            - \eta\,\frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}
            - [t \bmod k = 0]\; k\,\eta_{iso}\,\lambda\,\nabla R_{iso}(\theta_t)

    With :math:`k = 1` (the default) the isometry step is exact, every step; :math:`k > 1` is the
    amortized mode of :class:`AdamO` (one isometry step of :math:`k` times the size every
    :math:`k` steps; why it is faithful: the note "amortized isometry step" in this function's
    source).

    The isometry term is applied only when ``param.ndim - seed_dims >= 2``, to each of the
    ``param.shape[:seed_dims]`` copies separately (conv kernels reshaped to
    ``(out, in * k * ...)``). The Adam part performs the operations of PyTorch's
    single-tensor Adam/AdamW in the same order, so with ``iso_strength=0`` it reproduces
    ``torch.optim.Adam`` (``weight_decay=0``) and ``torch.optim.AdamW`` exactly (bitwise on
    CPU).

    Args:
        param: :math:`\theta_t`, updated in place to :math:`\theta_{t+1}`.
        grad: task gradient :math:`g_t` (the only thing the moments see).
        exp_avg: :math:`m_{t-1}`, updated in place to :math:`m_t`.
        exp_avg_sq: :math:`v_{t-1}`, updated in place to :math:`v_t`.
        step: :math:`t >= 1`.
        lr, beta1, beta2, eps, weight_decay, iso_strength, iso_lr, seed_dims, iso_every: as in
            :class:`AdamO` (not validated here; the class validates them once).

    Example:
        >>> p = torch.eye(2) * 2.0
        >>> m, v = torch.zeros(2, 2), torch.zeros(2, 2)
        >>> adamo_update_(p, torch.zeros(2, 2), m, v, 1, lr=0.1, beta1=0.9, beta2=0.999,
        ...               eps=1e-8, weight_decay=0.0, iso_strength=0.01, iso_lr=None)
        >>> p  # 2 - 0.1 * 0.01 * 4 * 2 * (4 - 1) on the diagonal
        tensor([[1.9760, 0.0000],
                [0.0000, 1.9760]])
        >>> q, m, v = torch.eye(2) * 2.0, torch.zeros(2, 2), torch.zeros(2, 2)
        >>> for t in (1, 2):  # iso_every=2: nothing at t=1, twice the step at t=2
        ...     adamo_update_(q, torch.zeros(2, 2), m, v, t, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
        ...                   weight_decay=0.0, iso_strength=0.01, iso_lr=None, iso_every=2)
        ...     print(f"{q[0, 0].item():.4f}")
        2.0000
        1.9520
    """
    eta_iso = lr if iso_lr is None else iso_lr
    # Note (amortized isometry step, iso_every = k). Write c = eta_iso * lambda and take a window
    # of k steps whose pre-step parameters are theta_t, ..., theta_{t+k-1}. The exact mode
    # subtracts c * (grad R(theta_t) + ... + grad R(theta_{t+k-1})); the amortized mode subtracts
    # k * c * grad R at one pre-step point of the window, on the step whose count is a multiple
    # of k. The average rate per step is the same, and Adam and weight decay still act every step.
    # Why this is faithful when c is small: along the window theta moves by O(eta) per step and
    # coordinate (Adam) plus O(c * |grad R|) (isometry), so |theta_{t+j} - theta_t| = O(j * eta);
    # grad R has a bounded Hessian (4 (3 sigma^2 - 1) along each singular value), so the k-step
    # sum differs from k times one of its terms by c * sum_j O(j * eta) = O(k^2 * eta * c), i.e.
    # O(k^2 * lr^2 * lambda) when iso_lr follows lr. The isometry flow is slow relative to k steps,
    # and over a whole run the amortized and exact trajectories differ by O(k * c) (first order in
    # k, as for any explicit Euler step of size k * c on the flow of R).
    # Caveats. (1) Stability: one step of size k * c on R is stable only while
    # k * c * 4 (3 sigma_max^2 - 1) < 2, a bound k times tighter than the exact mode's.
    # (2) LR schedulers: with iso_lr=None the step uses the group's lr of the step where it is
    # applied (k * lr_t instead of the sum of the window's k learning rates): identical for a
    # constant lr, off by O(k^2 * |d lr / dt| * lambda) per window for a smooth schedule, and at a
    # step-schedule jump the one window that straddles it gets the new lr for all k steps.
    # (3) The phase comes from the parameter's step count, which state_dict saves, so a resumed
    # run keeps it; a run that stops mid-window misses up to k - 1 steps' worth of isometry.
    iso_coef = iso_every * eta_iso * iso_strength if step % iso_every == 0 else 0.0
    decay = 1.0 - lr * weight_decay

    # Decoupled terms at theta_t (before the Adam step touches param).
    new_theta = None
    if iso_coef != 0.0 and _iso_applies(param, seed_dims):
        new_theta = decayed_isometry_step(_as_matrices(param, seed_dims), decay, iso_coef).view(param.shape)
    elif weight_decay != 0.0:
        param.mul_(decay)

    exp_avg.lerp_(grad, 1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    bias_correction1 = 1.0 - beta1**step
    bias_correction2_sqrt = (1.0 - beta2**step) ** 0.5
    step_size = lr / bias_correction1
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)

    if new_theta is None:
        param.addcdiv_(exp_avg, denom, value=-step_size)
    else:
        new_theta.addcdiv_(exp_avg, denom, value=-step_size)
        param.copy_(new_theta)


def member_view(values: Union[float, torch.Tensor], like: torch.Tensor) -> Union[float, torch.Tensor]:
    """``values`` broadcast over the trailing dimensions of a member-stacked ``like`` ``(M, ...)``.

    A number is returned as it is; a tensor of shape ``(M,)`` (one value per member) becomes
    ``(M, 1, ..., 1)`` with ``like``'s dtype and device, so ``values * like`` scales member
    ``m``'s slice by ``values[m]``.

    Example:
        >>> member_view(torch.tensor([1.0, 2.0]), torch.ones(2, 3, 4)).shape
        torch.Size([2, 1, 1])
        >>> member_view(0.5, torch.ones(2, 3))
        0.5
    """
    if not torch.is_tensor(values):
        return values
    if values.ndim != 1 or values.shape[0] != like.shape[0]:
        raise ValueError(f"per-member values must have shape ({like.shape[0]},) (one per member), got {tuple(values.shape)}")
    return values.to(dtype=like.dtype, device=like.device).view(-1, *([1] * (like.ndim - 1)))


def member_adam_update_(params, grads, exp_avgs, exp_avg_sqs, steps, *, lr, weight_decay=0.0, beta1: float = 0.9,
                        beta2: float = 0.999, eps: float = 1e-8, scratch=None) -> None:  # fmt: skip
    r"""One Adam/AdamW step of member-stacked parameters whose step size and decay differ per member.

    Each parameter is ``(M, ...)``: ``M`` members (hyperparameter values x seeds, the runner's
    stacked groups). ``lr`` and ``weight_decay`` are numbers or ``(M,)`` tensors (one value per
    member, :func:`member_view`); ``steps`` are the float scalar step counts *before* this step
    (incremented here, as torch's functional Adam does). Member ``m``'s slice gets what
    ``torch.optim.AdamW(lr=lr[m], weight_decay=weight_decay[m])`` gives a model of its own
    (decay first, ``1 - lr * weight_decay``, then the Adam step), to float rounding
    (tests/test_stacking.py compares them in float64).

    Note (fused with per-member step sizes). Where torch has a fused Adam kernel (CPU, CUDA, ...)
    the moments and the normalized update :math:`u = \hat m / (\sqrt{\hat v} + \epsilon)` come
    from one fused pass at ``lr = 1`` on a zeroed work tensor (which it leaves at :math:`-u`),
    and the members' step sizes are applied by one ``addcmul``: :math:`\theta + \eta_m (-u)`,
    the step of each member's own run to the rounding of one product (no round-off of
    :math:`\theta` enters :math:`u`).
    Two passes besides the fused one (a write-only zeroing and the ``addcmul``), instead of about
    ten elementwise operations per tensor (at the book's widths the optimizer's passes cost as
    much as the matmuls). ``scratch``: the work tensors, like ``params``, which an optimizer keeps
    between steps (:func:`scratch_like`: a new allocation per step cost as much as the fused pass
    at 64 members of the book's net, ``benchmarks/stacked_hyperparameters.py``); ``None``: new
    ones. With one ``lr`` for all members, torch's fused kernel as it is.

    Example:
        >>> p, g = torch.ones(2, 3), torch.ones(2, 3)
        >>> m, v = torch.zeros(2, 3), torch.zeros(2, 3)
        >>> member_adam_update_([p], [g], [m], [v], [torch.tensor(0.0)], lr=torch.tensor([0.1, 0.2]))
        >>> p[:, 0]  # Adam's first step is lr * sign(g)
        tensor([0.9000, 0.8000])
    """
    params, grads = list(params), list(grads)
    if not params:
        return
    lrs = [member_view(lr, p) for p in params]
    if torch.is_tensor(weight_decay) or weight_decay != 0.0:
        torch._foreach_mul_(params, [1.0 - lr_m * member_view(weight_decay, p) for lr_m, p in zip(lrs, params)])
    if all(_has_fused_kernel(p) for p in params) and len({p.device for p in params}) == 1:
        fused = dict(fused=True, amsgrad=False, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps, maximize=False)
        if not torch.is_tensor(lr):  # one step size: torch's fused kernel as it is
            _fused_adamw(params, grads, list(exp_avgs), list(exp_avg_sqs), [], list(steps), lr=lr, **fused)
            return
        work = [torch.zeros_like(p) for p in params] if scratch is None else list(scratch)
        if scratch is not None:
            torch._foreach_zero_(work)
        _fused_adamw(work, grads, list(exp_avgs), list(exp_avg_sqs), [], list(steps), lr=1.0, **fused)  # work = 0 - 1 * u
        torch._foreach_addcmul_(params, work, lrs)  # theta + (-u) lr_m
        return
    for p, g, m, v, t, lr_m in zip(params, grads, exp_avgs, exp_avg_sqs, steps, lrs):  # the single-tensor reference
        t += 1
        step = float(t)
        m.lerp_(g, 1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        bias_correction1 = 1.0 - beta1**step
        denom = (v.sqrt() / (1.0 - beta2**step) ** 0.5).add_(eps)
        p.sub_((m / denom).mul_(lr_m / bias_correction1))


def scratch_like(holder: Dict[torch.Tensor, torch.Tensor], params) -> List[torch.Tensor]:
    """Per parameter, a tensor of its shape, dtype and device kept in ``holder`` between calls
    (an optimizer's work space, not its state: never checkpointed, overwritten at every use).

    Example:
        >>> holder, p = {}, torch.zeros(2, 3)
        >>> scratch_like(holder, [p])[0] is scratch_like(holder, [p])[0]
        True
    """
    out = []
    for p in params:
        t = holder.get(p)
        if t is None or t.shape != p.shape or t.dtype != p.dtype or t.device != p.device:
            t = holder[p] = torch.empty_like(p, memory_format=torch.contiguous_format)
        out.append(t)
    return out


def member_adam(params, lr: Union[float, torch.Tensor], weight_decay: Union[float, torch.Tensor] = 0.0) -> Optimizer:
    """The runner's Adam (``weight_decay`` 0) or AdamW: torch's fused ``Adam``/``AdamW`` when
    ``lr`` and ``weight_decay`` are numbers, :class:`MemberAdam` when either is a ``(M,)``
    tensor (one value per member of a stacked group).

    Example:
        >>> type(member_adam([torch.zeros(2, 3, requires_grad=True)], 1e-3)).__name__
        'Adam'
        >>> type(member_adam([torch.zeros(2, 3, requires_grad=True)], torch.tensor([1e-3, 1e-2]))).__name__
        'MemberAdam'
    """
    params = list(params)
    if torch.is_tensor(lr) or torch.is_tensor(weight_decay):
        return MemberAdam(params, lr=lr, weight_decay=weight_decay)
    if weight_decay:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.Adam(params, lr=lr, fused=True)


def _check_adam_defaults(lr: Union[float, torch.Tensor], betas: Tuple[float, float], eps: float) -> Dict[str, Any]:
    """``lr`` (a number, or one per member of ``(M, ...)`` parameters), ``betas`` and ``eps`` of an
    Adam-like optimizer, checked; the defaults dict they start."""
    lr = _check_member_values("lr", lr)
    check_unit_interval_open("betas[0]", betas[0])
    check_unit_interval_open("betas[1]", betas[1])
    check_nonnegative("eps", eps)
    return dict(lr=lr, betas=tuple(betas), eps=eps)


def _check_member_values(name: str, values: Union[float, torch.Tensor]) -> Union[float, torch.Tensor]:
    """A number >= 0, or a 1-D tensor of finite numbers >= 0 (one per member), else an error naming ``name``."""
    if torch.is_tensor(values):
        if values.ndim != 1 or not values.is_floating_point():
            raise ValueError(f"{name} must be a number or a 1-D floating-point tensor (one value per member), got shape {tuple(values.shape)}")
        if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
            raise ValueError(f"{name} must hold finite numbers >= 0, got {values.tolist()}")
        return values.detach().clone()
    return check_nonnegative(name, values)


class MemberAdam(Optimizer):
    """Adam, or AdamW with ``weight_decay``, whose ``lr`` and ``weight_decay`` may differ per member.

    Every parameter is member-stacked ``(M, ...)`` (the runner's stacked groups: hyperparameter
    values beside seeds); ``lr`` and ``weight_decay`` are numbers or ``(M,)`` tensors. The update
    is :func:`member_adam_update_`: member ``m`` gets ``torch.optim.AdamW(lr=lr[m],
    weight_decay=weight_decay[m])``'s step (``torch.optim.Adam``'s when the decay is 0), so a
    stacked group trains each member as its own run would (tests/test_stacking.py).

    Example:
        >>> w = torch.zeros(2, 3, requires_grad=True)
        >>> opt = MemberAdam([w], lr=torch.tensor([1e-3, 1e-2]))
        >>> w.sum().backward(); opt.step()
        >>> [round(x, 6) for x in w[:, 0].tolist()]  # Adam's first step: lr * sign(grad), per member
        [-0.001, -0.01]
    """

    def __init__(self, params, lr: Union[float, torch.Tensor] = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: Union[float, torch.Tensor] = 0.0):  # fmt: skip
        defaults = _check_adam_defaults(lr, betas, eps)
        super().__init__(params, dict(defaults, weight_decay=_check_member_values("weight_decay", weight_decay)))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32, device=p.device if _has_fused_kernel(p) else "cpu")
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
            states = [self.state[p] for p in params]
            beta1, beta2 = group["betas"]
            member_adam_update_(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                                [s["step"] for s in states], lr=group["lr"], weight_decay=group["weight_decay"], beta1=beta1,
                                beta2=beta2, eps=group["eps"], scratch=scratch_like(self.__dict__.setdefault("_scratch", {}), params))  # fmt: skip
        return loss


class AdamO(Optimizer):
    r"""Adam with a decoupled isometry step (AdamO).

    .. math::
        &\textbf{input}: \eta\ (\text{lr}),\ \beta_1, \beta_2\ (\text{betas}),\ \epsilon,\
            \mu\ (\text{weight\_decay}),\ \lambda\ (\text{iso\_strength}),\
            \eta_{iso}\ (\text{from iso\_lr and iso\_scaling, below}),\
            k\ (\text{iso\_every})\\
        &m_0 \leftarrow 0,\ v_0 \leftarrow 0 \\
        &\textbf{for}\ t = 1, 2, \ldots: \\
        &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}) \quad\text{(task gradient only)}\\
        &\quad m_t \leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
              v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        &\quad \hat m_t \leftarrow m_t / (1-\beta_1^t), \quad \hat v_t \leftarrow v_t / (1-\beta_2^t)\\
        &\quad \theta_t \leftarrow \theta_{t-1} - \eta\mu\,\theta_{t-1}
              - \eta\,\hat m_t / (\sqrt{\hat v_t} + \epsilon)
              - [t \bmod k = 0]\; k\,\eta_{iso}\,\lambda\,\nabla R_{iso}(\theta_{t-1})
              \quad [\text{last term only if } \theta \text{ is a matrix}]

    where :math:`\nabla R_{iso}(W) = 4W(W^\top W - I)` for tall and :math:`4(WW^\top - I)W` for
    wide matrices (:func:`isoplast_lite.isometry.isometry_grad`). The Adam moments never see
    the isometry gradient, and it is not preconditioned: it is *decoupled*, exactly as
    AdamW's weight decay (the "coupled" alternative adds :math:`\lambda R_{iso}` to the loss).
    Both decoupled terms are evaluated at the pre-step parameters.

    Amortized isometry step (``iso_every``): with the default :math:`k = 1` the isometry step is
    taken every step, exactly as above. With :math:`k > 1` it is taken only on the steps
    :math:`t = k, 2k, \ldots` (:math:`t` counts this parameter's steps from 1), :math:`k` times
    as large and still evaluated at the pre-step parameters, so its average rate per step is the
    exact mode's; weight decay and the Adam step stay every step, unchanged. This is a faithful
    approximation when :math:`\eta_{iso}\lambda` is small (see the note "amortized isometry step"
    in the source) and divides the cost of the isometry gradients, :math:`2 d_{in} d_{out}
    \min(d_{in}, d_{out})` multiply-adds per matrix and step, by :math:`k`. With ``iso_lr=None``
    the step uses the group's ``lr`` at the step where it is applied (not the average over the
    last :math:`k` steps). Keep :math:`k\,\eta_{iso}\lambda` small: one amortized step is an
    explicit Euler step of size :math:`k\,\eta_{iso}\lambda` on :math:`R_{iso}`, stable only
    while :math:`4k\,\eta_{iso}\lambda\,(3\sigma_{max}^2 - 1) < 2`.

    Step size of the isometry term, one formula per reading (``iso_scaling``): the step at
    :math:`t` is :math:`s_t\,\nabla R_{iso}(\theta_{t-1})` on the steps that take it, with
    :math:`\eta_t` the group's current ``lr`` and :math:`\eta_0` its ``lr`` at construction
    (``initial_lr``):

    .. math::
        \text{"lr"}: \quad s_t = k\,\lambda \cdot
            \begin{cases} \eta_t & \text{iso\_lr = None} \\ \text{iso\_lr} & \text{otherwise} \end{cases}
        \qquad\qquad
        \text{"schedule"}: \quad s_t = k\,\lambda \cdot \frac{\eta_t}{\eta_0} \cdot
            \begin{cases} 1 & \text{iso\_lr = None} \\ \text{iso\_lr} & \text{otherwise} \end{cases}

    So ``iso_lr=None`` means "the learning rate" under ``"lr"`` (a scheduler scales the step
    with ``lr``) and "1" under ``"schedule"`` (only the schedule's multiplier
    :math:`\eta_t/\eta_0` scales it); a number replaces that factor (under ``"lr"`` it is then
    fixed regardless of schedules). ``weight_decay`` is AdamW's in both:
    ``theta <- theta - lr * weight_decay * theta``.

    Default :math:`\lambda` = ``iso_strength=1e-3``, the paper's stated value (``PAPER.md``,
    quoted with its lr 1e-3). The runner's methods default to
    :data:`isoplast_lite.methods.DEFAULT_ISO_STRENGTH` = 0.1 instead, our probes' value, for a
    stated reason: under the ``"lr"`` reading at lr 1e-3, :math:`\lambda = 10^{-3}` halves
    :math:`R_{iso}` in about :math:`\ln 2 / (16\,\eta\lambda) \approx 43\,000` steps, ten times
    longer than the book's runs; 0.1 brings it to about 430.

    Which parameters get the isometry step: those with ``ndim - seed_dims >= 2`` (weight
    matrices and conv kernels, reshaped to ``(out, in * k * ...)``); biases and other vectors
    never do. Every hyperparameter can be overridden per parameter group, e.g. a head group
    with ``iso_strength=0.0``.

    Seed-stacked parameters: the group key ``seed_dims`` (default 0) is the number of leading
    dimensions that index independent copies of a parameter. With ``seed_dims=1`` a weight of
    shape ``(S, out, in)`` is S matrices, each regularized on its own, and a bias ``(S, out)``
    is a vector; the result equals S independent AdamO runs (Adam itself is elementwise).

    Checks: a parameter group may only hold the keys of the arguments below (plus ``params``);
    a misspelt key such as ``iso_strenght`` is a ``ValueError``, not a silently ignored
    setting. Every group's hyperparameters are checked again at each :meth:`step` (a few
    Python comparisons, no tensor operation), so a value assigned after construction, e.g.
    ``opt.param_groups[0]["lr"] = -1``, is caught before it is used. :meth:`load_state_dict`
    refuses the state dict of another optimizer (e.g. ``torch.optim.Adam``, whose groups have
    no ``iso_strength``) with a ``ValueError``.

    Non-finite gradients: AdamO does not inspect the gradients (a check would synchronize a GPU
    every step). As in ``torch.optim.Adam``, a NaN or infinite gradient entry makes the moments
    and the parameter entry non-finite from that step on; with the isometry step, the matrix
    products then spread it to the whole matrix at the next step. Nothing is clipped or
    skipped silently. To skip such steps, check the gradients before :meth:`step` (e.g.
    ``torch.nn.utils.clip_grad_norm_(params, max_norm, error_if_nonfinite=True)``); the runner
    instead records the run as diverged.

    Args:
        params: iterable of parameters or of dicts defining parameter groups.
        lr: learning rate :math:`\eta` (>= 0).
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: :math:`\epsilon` (>= 0) added to the denominator.
        weight_decay: decoupled weight decay :math:`\mu` (>= 0), as in ``torch.optim.AdamW``.
        iso_strength: :math:`\lambda` (>= 0), strength of the isometry step.
        iso_lr: :math:`\eta_{iso}` (>= 0) or ``None`` (see ``iso_scaling``).
        iso_scaling: which reading of "decoupled like AdamW" sets the isometry step size
            (``PAPER.md``, "Which AdamW is analogous"; the paper's text as we have it does not
            settle it):

            * ``"lr"`` (default): **lr-coupled, as PyTorch's AdamW** (whose decay is
              ``lr * weight_decay``): :math:`\eta_{iso}` = ``iso_lr``, or the group's current
              ``lr`` when ``iso_lr`` is ``None``. The step is :math:`\eta\lambda\nabla R`.
            * ``"schedule"``: **schedule-multiplier, as Loshchilov & Hutter's Algorithm 2**
              (:math:`\theta \leftarrow \theta - \eta_t(\alpha\,\hat m/(\sqrt{\hat v}+\epsilon)
              + \mu\theta)` with :math:`\alpha` the learning rate and :math:`\eta_t` only the
              schedule multiplier): :math:`\eta_{iso}` = (``iso_lr``, or 1 when ``None``) times
              :math:`\eta_t` = current ``lr`` / ``initial_lr`` (the group's ``lr`` at
              construction, the key PyTorch's LR schedulers use). With a constant ``lr`` the step
              is :math:`\lambda\nabla R`: at the paper's :math:`\lambda = 10^{-3}` it halves
              :math:`R_{iso}` in about 43 steps instead of the ~43 000 of the first reading at
              the paper's stated ``lr = 1e-3``.
        iso_every: :math:`k` (int >= 1): take the isometry step, scaled by :math:`k`, only every
            :math:`k`-th step (1 = exact, every step).
        seed_dims: number of leading copy dimensions of every parameter of the group (>= 0).
        members: ``None``, or per-member values of member-stacked ``(M, ...)`` parameters (the
            runner's stacked groups, hyperparameter values beside seeds): a dict with some of
            ``"lr"``, ``"iso_strength"``, ``"weight_decay"``, each a ``(M,)`` tensor that
            replaces the group's number for member ``m`` (each member is checked as a group of
            its own; the group's numbers must be one member's, e.g. the first). Such a group
            takes the fused path's order with per-member step sizes (:func:`member_adam_update_`).
        fused: how a group's step is computed (the same update, see "Implementation" below):
            ``None`` (default) the fused path whenever torch has a fused Adam kernel for every
            parameter of the group (floating point, on CPU, CUDA, MPS, ...), else the
            per-tensor reference; ``True`` the fused path (a ``ValueError`` if a parameter
            has no fused kernel); ``False`` the per-tensor reference.

    Implementation: two paths compute the update above. The *reference* (``fused=False``)
    calls :func:`adamo_update_` on one tensor at a time, the operations of PyTorch's
    single-tensor Adam/AdamW in the same order plus the isometry term. The *fused* path takes
    the decoupled isometry directions :math:`\nabla R_{iso}(\theta_t)/4` of the group's
    matrices (two matrix products each, at the pre-step parameters), runs PyTorch's fused
    AdamW kernel (``torch.optim.adamw.adamw(..., fused=True)``: moments, bias corrections,
    decay and the Adam step in one pass per tensor, the step counts read on the device) over
    the whole group, then adds :math:`-4k\eta_{iso}\lambda` times the directions with one
    ``torch._foreach_add_``. Both paths give the same update to rounding (the tests compare
    them in float64, state included); the fused one reads no value from the device when
    ``iso_every=1`` (with ``iso_every > 1``, the group's step counts once per step, to know
    which matrices take their isometry step). With ``iso_strength=0`` the fused path is
    ``torch.optim.AdamW(..., fused=True)`` exactly.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> opt = AdamO([{"params": model[0].parameters()},
        ...              {"params": model[2].parameters(), "iso_strength": 0.0}],
        ...             lr=1e-3, iso_strength=0.1)
        >>> x, y = torch.randn(16, 4), torch.randn(16, 2)
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = torch.nn.functional.mse_loss(model(x), y)
        ...     loss.backward()
        ...     return loss
        >>> loss = opt.step(closure)
        >>> opt.state[model[0].weight]["step"]
        tensor(1.)

    References:
        Rosseau, Müller & Nowé (2026), ICML; Loshchilov & Hutter (2019), ICLR (AdamW).
    """

    def __init__(
        self,
        params: Iterable[Union[torch.Tensor, Dict[str, Any]]],
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        iso_strength: float = 1e-3,
        iso_lr: Optional[float] = None,
        iso_every: int = 1,
        *,
        seed_dims: int = 0,
        iso_scaling: str = "lr",
        fused: Optional[bool] = None,
        members: Optional[Dict[str, torch.Tensor]] = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            iso_strength=iso_strength,
            iso_lr=iso_lr,
            iso_every=iso_every,
            seed_dims=seed_dims,
            iso_scaling=iso_scaling,
            fused=fused,
            members=members,
        )
        _validate_hyperparameters(defaults)
        _validate_members(defaults)
        if isinstance(params, torch.Tensor):
            raise TypeError("params must be an iterable of Tensors or dicts, got a single Tensor")
        super().__init__(params, defaults)

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a parameter group after checking its keys and hyperparameter overrides."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        for key in param_group:
            if key not in self.defaults and key not in _TORCH_GROUP_KEYS:
                close = difflib.get_close_matches(str(key), list(self.defaults), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"param_group has the unknown key {key!r}{hint}; allowed keys: params, {', '.join(self.defaults)}")
        merged = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        _validate_hyperparameters(merged)
        merged["params"] = param_group.get("params", ())
        merged["params"] = [merged["params"]] if torch.is_tensor(merged["params"]) else list(merged["params"])
        param_group = {**param_group, "params": merged["params"]}
        _validate_members(merged)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.setdefault("initial_lr", group["lr"])  # eta_t = lr / initial_lr for iso_scaling="schedule"
        try:
            _check_iso_stable(group)
        except ValueError:
            self.param_groups.pop()
            raise
        for p in group["params"]:
            if not p.is_floating_point():
                raise TypeError(f"params must be floating-point tensors, got dtype {p.dtype}")
            if p.ndim < group["seed_dims"]:
                raise ValueError(
                    f"seed_dims={group['seed_dims']} exceeds the number of dimensions of a parameter "
                    f"of shape {tuple(p.shape)}"
                )
            if group["fused"] and not _has_fused_kernel(p):
                raise ValueError(
                    f"fused=True needs every parameter on a device with a fused Adam kernel "
                    f"({', '.join(_fused_devices())}), got one on {p.device.type}; use fused=None or False"
                )

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load a state dict saved by :meth:`state_dict` of an ``AdamO``; refuse any other.

        Raises:
            TypeError: ``state_dict`` is not an optimizer state dict.
            ValueError: its parameter groups are not AdamO's (e.g. ``torch.optim.Adam``'s: no
                ``iso_strength``), or hold invalid hyperparameters.
        """
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("param_groups"), list) or "state" not in state_dict:
            raise TypeError("state_dict must be an optimizer state dict with the keys 'state' and 'param_groups'")
        for i, group in enumerate(state_dict["param_groups"]):
            missing = [k for k in _REQUIRED_GROUP_KEYS if not isinstance(group, dict) or k not in group]
            if missing:
                foreign = sorted(set(group) - set(self.defaults) - _TORCH_GROUP_KEYS) if isinstance(group, dict) else []
                other = f" and has the keys {foreign} of another optimizer (torch.optim.Adam?)" if foreign else ""
                raise ValueError(
                    f"state_dict is not an AdamO state dict: param_groups[{i}] lacks {missing}{other}; "
                    "build a fresh AdamO instead (its moments start at zero)"
                )
        super().load_state_dict(state_dict)
        _validate_groups(self.param_groups)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("iso_lr", None)
            group.setdefault("iso_every", 1)  # state dicts saved before iso_every existed
            group.setdefault("seed_dims", 0)
            group.setdefault("iso_scaling", "lr")  # state dicts saved before iso_scaling existed
            group.setdefault("initial_lr", group["lr"])
            group.setdefault("fused", None)  # state dicts saved before the fused path existed
            group.setdefault("members", None)  # state dicts saved before per-member values existed

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        """Perform one optimization step.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss (it is
                run with gradients enabled).

        Returns:
            The loss returned by ``closure``, or ``None``.
        """
        # values assigned after construction (by hand or by a scheduler); unchanged groups are skipped
        self._checked = _validate_groups(self.param_groups, getattr(self, "_checked", None))
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            if group.get("members"):
                self._member_group_step(group)
                continue
            fused = group["fused"]
            if fused is None:
                fused = all(_has_fused_kernel(p) for p in group["params"])
            if fused:
                self._fused_group_step(group)
            else:
                self._reference_group_step(group)
        return loss

    def _state(self, p: torch.Tensor, step_device: torch.device) -> Dict[str, Any]:
        """The state of ``p``, created on first use; the step count is kept on ``step_device``."""
        state = self.state[p]
        if len(state) == 0:
            # number of steps taken so far (float tensor, as in torch.optim.Adam: on the CPU for
            # the reference path, on the parameter's device for the fused kernel)
            state["step"] = torch.tensor(0.0, dtype=torch.float32, device=step_device)
            # first moment m_t of the task gradient
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            # second moment v_t of the task gradient
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        elif state["step"].device != step_device:  # a state loaded for the other path
            state["step"] = state["step"].to(device=step_device, dtype=torch.float32)
        return state

    def _with_grad(self, group: Dict[str, Any]) -> list:
        params = [p for p in group["params"] if p.grad is not None]
        if any(p.grad.is_sparse for p in params):
            raise RuntimeError("AdamO does not support sparse gradients")
        return params

    def _reference_group_step(self, group: Dict[str, Any]) -> None:
        """The per-tensor reference: :func:`adamo_update_` on each parameter in turn."""
        beta1, beta2 = group["betas"]
        iso_lr = _iso_step_size(group)
        for p in self._with_grad(group):
            state = self._state(p, torch.device("cpu"))
            state["step"] += 1
            adamo_update_(
                p,
                p.grad,
                state["exp_avg"],
                state["exp_avg_sq"],
                int(state["step"].item()),
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                iso_strength=group["iso_strength"],
                iso_lr=iso_lr,
                seed_dims=group["seed_dims"],
                iso_every=group["iso_every"],
            )

    def _fused_group_step(self, group: Dict[str, Any]) -> None:
        """The fused path: isometry directions at theta_t, fused AdamW, one foreach add."""
        params = self._with_grad(group)
        if not params:
            return
        states = [self._state(p, p.device) for p in params]
        seed_dims, k = group["seed_dims"], group["iso_every"]
        eta_iso = _iso_step_size(group)
        coef = k * (group["lr"] if eta_iso is None else eta_iso) * group["iso_strength"]

        # decoupled isometry term, evaluated at theta_t before the Adam step moves the parameters
        iso_params = [p for p in params if _iso_applies(p, seed_dims)] if coef != 0.0 else []
        if k > 1 and iso_params:  # only the matrices whose coming step count t has t % k == 0
            steps = [s["step"] for p, s in zip(params, states) if _iso_applies(p, seed_dims)]
            counts = torch.stack(steps).tolist() if len({t.device for t in steps}) == 1 else [t.item() for t in steps]
            iso_params = [p for p, t in zip(iso_params, counts) if (int(t) + 1) % k == 0]
        directions = [isometry_direction(_as_matrices(p, seed_dims)).view(p.shape) for p in iso_params]

        beta1, beta2 = group["betas"]
        _fused_adamw(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [s["step"] for s in states],
            fused=True,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )
        if iso_params:
            torch._foreach_add_(iso_params, directions, alpha=-4.0 * coef)

    def _member_group_step(self, group: Dict[str, Any]) -> None:
        """A group whose ``lr`` / ``iso_strength`` / ``weight_decay`` differ per member
        (``group["members"]``): the fused path's order (isometry directions at theta_t, the
        Adam/AdamW step, then the isometry step), each member with its own values."""
        params = self._with_grad(group)
        if not params:
            return
        members = group["members"]
        fused = all(_has_fused_kernel(p) for p in params)
        states = [self._state(p, p.device if fused else torch.device("cpu")) for p in params]
        seed_dims, k = group["seed_dims"], group["iso_every"]
        lr = members.get("lr", group["lr"])
        lr = lr * _schedule_multiplier(group) if torch.is_tensor(lr) else group["lr"]
        iso = members.get("iso_strength", group["iso_strength"])
        size = _iso_step_size(group)
        coef = (lr if size is None else size) * iso * k
        iso_params = []
        if torch.is_tensor(coef) or coef != 0.0:
            iso_params = [(p, s) for p, s in zip(params, states) if _iso_applies(p, seed_dims) and (k == 1 or (int(s["step"]) + 1) % k == 0)]
        directions = [isometry_direction(_as_matrices(p, seed_dims)).view(p.shape) for p, _ in iso_params]
        beta1, beta2 = group["betas"]
        member_adam_update_(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                            [s["step"] for s in states], lr=lr, weight_decay=members.get("weight_decay", group["weight_decay"]),
                            beta1=beta1, beta2=beta2, eps=group["eps"], scratch=scratch_like(self.__dict__.setdefault("_scratch", {}), params))  # fmt: skip
        for (p, _), d in zip(iso_params, directions):
            p.sub_(d.mul_(member_view(4.0 * coef, p)))


def _validate_members(group: Dict[str, Any]) -> None:
    """Check a group's per-member values (``members``: ``{"lr" | "iso_strength" | "weight_decay":
    (M,) tensor}``): each member's values must pass the checks of a group of its own."""
    members = group.get("members")
    if members is None:
        return
    if not isinstance(members, dict) or not set(members) <= set(_MEMBER_KEYS):
        raise ValueError(f"members must be None or a dict with keys among {_MEMBER_KEYS}, got {members!r}")
    sizes = {k: _check_member_values(k, v).shape[0] for k, v in members.items() if torch.is_tensor(v)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"members: every tensor needs one value per member, got sizes {sizes}")
    for m in range(next(iter(sizes.values()), 0)):
        one = {**group, **{k: float(v[m]) for k, v in members.items()}, "members": None}
        one["initial_lr"] = one["lr"]
        try:
            _validate_hyperparameters(one)
        except (TypeError, ValueError) as err:
            raise type(err)(f"member {m}: {err}") from None
    for p in group.get("params", ()):
        if torch.is_tensor(p) and sizes and (p.ndim == 0 or p.shape[0] != next(iter(sizes.values()))):
            raise ValueError(f"members: a parameter of shape {tuple(p.shape)} does not have {next(iter(sizes.values()))} members along its first dimension")


_MEMBER_KEYS = ("lr", "iso_strength", "weight_decay")


@functools.lru_cache(maxsize=None)
def _fused_devices() -> Tuple[str, ...]:
    """Device types with torch's fused Adam kernel."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # pragma: no cover - older torch
        return ("cpu", "cuda")
    return tuple(_get_fused_kernels_supported_devices())


def _has_fused_kernel(p: torch.Tensor) -> bool:
    return p.is_floating_point() and p.device.type in _fused_devices()


# keys torch itself (or its LR schedulers) may put in a param group besides the hyperparameters
_TORCH_GROUP_KEYS = frozenset({"params", "param_names", "initial_lr"})
# keys every AdamO group has had since the first version (iso_lr, iso_every, seed_dims came later)
_REQUIRED_GROUP_KEYS = ("lr", "betas", "eps", "weight_decay", "iso_strength")


_HYPER_KEYS = ("lr", "betas", "eps", "weight_decay", "iso_strength", "iso_lr", "iso_every", "seed_dims", "iso_scaling", "fused")
#: the two readings of "decoupled like AdamW" (AdamO's ``iso_scaling``)
ISO_SCALINGS = ("lr", "schedule")


def _iso_step_size(group: Dict[str, Any]) -> Optional[float]:
    """The ``iso_lr`` that :func:`adamo_update_` gets for ``group`` (``None``: the group's lr)."""
    if group.get("iso_scaling", "lr") == "lr":
        return group["iso_lr"]
    return (1.0 if group["iso_lr"] is None else group["iso_lr"]) * _schedule_multiplier(group)


def _schedule_multiplier(group: Dict[str, Any]) -> float:
    r""":math:`\eta_t` = ``lr / initial_lr``: what a scheduler did to the group's ``lr`` (1 without one)."""
    base = group.get("initial_lr", group["lr"])
    return group["lr"] / base if base > 0 else 1.0


#: the isometry step converges to sigma = 1 only while 8 * s * lambda < 2 (see :func:`iso_stability_product`)
ISO_STABILITY_LIMIT = 2.0


def iso_stability_product(group: Dict[str, Any]) -> float:
    r"""The product :math:`8 k s \lambda` that decides whether a group's isometry step converges.

    Near :math:`\sigma = 1` the decoupled step :math:`W \leftarrow W - c\,4(WW^\top W - W)`
    with :math:`c = k s \lambda` acts on each singular value alone,
    :math:`\sigma \leftarrow \sigma - 4c(\sigma^3 - \sigma)`, whose derivative at the fixed
    point is :math:`1 - 8c`: the step multiplies :math:`\sigma - 1` by :math:`1 - 8c` and the
    fixed point is unstable once :math:`8c > 2` (``ISO_STABILITY_LIMIT``). :math:`s` is the
    isometry step size of the group's reading (``iso_scaling``): ``iso_lr`` or the current
    ``lr`` under ``"lr"``, ``iso_lr`` (or 1) times the schedule multiplier under
    ``"schedule"``; :math:`k` = ``iso_every`` (the amortized step is :math:`k` times larger);
    :math:`\lambda` = ``iso_strength``. :class:`AdamO` refuses a group with a product above
    the limit, at construction and at every step after a scheduler changed ``lr`` (the check
    runs only when a hyperparameter changed: a comparison of a tuple per step).

    Example:
        >>> g = dict(lr=1e-3, iso_lr=None, iso_scaling="schedule", iso_strength=1e-3, iso_every=1)
        >>> round(iso_stability_product(g), 12)  # Loshchilov & Hutter's reading: s = 1
        0.008
        >>> round(iso_stability_product(dict(g, iso_scaling="lr")), 12)  # PyTorch's: s = lr
        8e-06
    """
    s = _iso_step_size(group)
    s = group["lr"] if s is None else s
    return 8.0 * group.get("iso_every", 1) * s * group["iso_strength"]


def _check_iso_stable(group: Dict[str, Any]) -> None:
    """Raise ``ValueError`` when the group's isometry step cannot converge (:func:`iso_stability_product`);
    a group none of whose parameters gets the isometry step (vectors only, or no params yet) passes."""
    if not any(_iso_applies(p, group.get("seed_dims", 0)) for p in group.get("params", ())):
        return
    product = iso_stability_product(group)
    if product > ISO_STABILITY_LIMIT:
        reading = group.get("iso_scaling", "lr")
        s = _iso_step_size(group)
        s = group["lr"] if s is None else s
        every = f" * iso_every {group.get('iso_every', 1)}" if group.get("iso_every", 1) != 1 else ""
        raise ValueError(
            f"iso_scaling={reading!r}: the isometry step cannot converge: 8 * s * lambda = 8 * {s:g} * {group['iso_strength']:g}{every}"
            f" = {product:g} > {ISO_STABILITY_LIMIT:g} (s = the isometry step size of this reading, "
            f"{'iso_lr or lr' if reading == 'lr' else 'iso_lr (or 1) times the schedule multiplier lr / initial_lr'}; near sigma = 1 "
            f"a step multiplies sigma - 1 by 1 - 8 s lambda); allowed: 8 * s * lambda <= {ISO_STABILITY_LIMIT:g}, lower iso_strength or iso_lr"
        )


def _validate_groups(groups, checked: Optional[list] = None) -> list:
    """Check every group's hyperparameters; the error names the group index.

    Returns the checked values (with their types) per group; a group whose values equal those
    in ``checked`` is not checked again (a tuple comparison instead of a dozen checks).
    """
    seen = []
    for i, group in enumerate(groups):
        values = tuple((type(group.get(k)), group.get(k)) for k in _HYPER_KEYS)
        seen.append(values)
        if checked is not None and i < len(checked) and checked[i] == values:
            continue
        try:
            _validate_hyperparameters(group)
        except (TypeError, ValueError) as err:
            raise type(err)(f"param_groups[{i}]: {err}") from None
    return seen


def _validate_hyperparameters(group: Dict[str, Any]) -> None:
    """Check the hyperparameters of one (merged) parameter group; raise naming the culprit."""
    check_nonnegative("lr", group["lr"])
    check_nonnegative("eps", group["eps"])
    check_nonnegative("weight_decay", group["weight_decay"])
    check_nonnegative("iso_strength", group["iso_strength"])
    if group["iso_lr"] is not None:
        check_nonnegative("iso_lr", group["iso_lr"])
    check_int("iso_every", group["iso_every"], minimum=1)
    check_int("seed_dims", group["seed_dims"], minimum=0)
    if group.get("fused") is not None:
        check_bool("fused", group["fused"])
    if group.get("iso_scaling", "lr") not in ISO_SCALINGS:
        raise ValueError(f"iso_scaling must be one of {ISO_SCALINGS}, got {group.get('iso_scaling')!r}")
    _check_iso_stable(group)
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    check_unit_interval_open("betas[0]", betas[0])
    check_unit_interval_open("betas[1]", betas[1])


def hidden_head_groups(hidden, head, *, hidden_iso: float, head_iso: float = 0.0, seed_dims: int = 0) -> list:
    """AdamO's two parameter groups: the hidden layers and the output head.

    The paper applies the isometry step to the hidden weights; the head (``out_dim x width``,
    a fixed small number of classes) is usually left out (``head_iso=0``: plain Adam there).
    The AEI nets do the reverse (their hidden weights are kept orthogonal by construction, so
    ``hidden_iso=0`` and the isometry step acts on the head). The project's one way to write
    these groups (``DEVELOPING.md``).

    Args:
        hidden, head: iterables of parameters (or a model's ``named_parameters`` values).
        hidden_iso, head_iso: each group's ``iso_strength`` (>= 0).
        seed_dims: leading seed dimensions of every parameter (1 for the runner's stacked
            ``(S, out, in)`` weights, 0 for a plain model).

    Example:
        >>> from isoplast_lite.nn import relu_mlp
        >>> m = relu_mlp(4, 8, 2, 3)
        >>> groups = hidden_head_groups(m[:-1].parameters(), m[-1].parameters(), hidden_iso=0.1)
        >>> [g["iso_strength"] for g in groups], [len(g["params"]) for g in groups]
        ([0.1, 0.0], [4, 2])
        >>> opt = AdamO(groups, lr=1e-3)
    """
    return [
        {"params": list(hidden), "iso_strength": hidden_iso, "seed_dims": seed_dims},
        {"params": list(head), "iso_strength": head_iso, "seed_dims": seed_dims},
    ]



class EntryStepAdam(Optimizer):
    r"""Adam whose step count is kept per entry, so that single entries can be restarted.

    The update is Adam's (Kingma & Ba 2015, PyTorch's ``torch.optim.Adam`` without weight decay)
    with one difference: the bias corrections use a step count :math:`t_i` per *entry* of
    each parameter instead of one per tensor,

    .. math::
        m_i \leftarrow \beta_1 m_i + (1-\beta_1) g_i,\quad
        v_i \leftarrow \beta_2 v_i + (1-\beta_2) g_i^2,\quad t_i \leftarrow t_i + 1,\\
        \theta_i \leftarrow \theta_i - \eta\,\frac{m_i / (1-\beta_1^{t_i})}
            {\sqrt{v_i / (1-\beta_2^{t_i})} + \epsilon}.

    Without restarts every :math:`t_i` equals the global step and the update is Adam's (tested
    against ``torch.optim.Adam`` to float64 rounding). :meth:`restart_entries` sets
    :math:`m_i = v_i = t_i = 0` for chosen entries, which then follow exactly the trajectory of
    a fresh Adam started at that step (tested). Resetting only the moments (and not
    :math:`t_i`) would make the first update of a restarted entry about
    :math:`(1-\beta_1)/\sqrt{1-\beta_2} \approx 3.2` times Adam's first step, because the
    global bias corrections are then close to one. ReDo (Sokar et al. 2023) uses it to restart
    the optimizer state of recycled units. ``lr`` may be a ``(M,)`` tensor, one step size per
    member of member-stacked ``(M, ...)`` parameters (:func:`member_view`).
    """

    def __init__(self, params, lr: Union[float, torch.Tensor] = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, _check_adam_defaults(lr, betas, eps))  # lr: a number, or one per member of (M, ...) parameters

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros_like(p)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
            grads = [p.grad for p in params]
            steps = [self.state[p]["step"] for p in params]
            m = [self.state[p]["exp_avg"] for p in params]
            v = [self.state[p]["exp_avg_sq"] for p in params]
            torch._foreach_add_(steps, 1.0)
            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
            for p, t, mi, vi in zip(params, steps, m, v):
                bc1 = 1 - torch.pow(beta1, t)
                bc2 = 1 - torch.pow(beta2, t)
                denom = (vi / bc2).sqrt_().add_(group["eps"])
                if torch.is_tensor(group["lr"]):  # one lr per member (the runner's stacked groups)
                    p.sub_((mi / bc1).div_(denom).mul_(member_view(group["lr"], p)))
                else:
                    p.addcdiv_(mi / bc1, denom, value=-group["lr"])
        return loss

    @torch.no_grad()
    def restart_entries(self, p: torch.Tensor, mask: torch.Tensor) -> None:
        """Restart the state of the entries of ``p`` where ``mask`` is true (moments and step to 0).

        ``mask`` is a bool tensor broadcastable to ``p``. A parameter without state yet is left
        alone (its first step is a fresh Adam step anyway).
        """
        state = self.state.get(p)
        if not state:
            return
        keep = (~mask.to(torch.bool)).to(p.dtype).expand_as(p)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            state[key].mul_(keep)


def adamo_param_groups(model: "torch.nn.Module", iso_strength: float, *, head: Union[str, "torch.nn.Module", None] = "auto") -> list:
    r"""AdamO's parameter groups for any model: which weights get the isometry term, which do not.

    The default follows the book's MLPs (:func:`hidden_head_groups`: the hidden weight matrices
    get :math:`\lambda`, the output head does not), extended to convolutions and transformers:

    - **isometry group** (``iso_strength``): the weight of every ``nn.Linear`` (and
      :class:`~isoplast_lite.nn.OrthogonalLinear`) and ``nn.Conv1d/2d/3d`` (a kernel
      ``(out, in, *k)`` as the ``(out, in prod(k))`` matrix, as AdamO treats it), and the
      projections of ``nn.MultiheadAttention`` (``in_proj_weight`` or ``q/k/v_proj_weight``, and
      ``out_proj.weight``), so also the feed-forward ``linear1``/``linear2`` of a
      ``TransformerEncoderLayer``;
    - **plain group** (``iso_strength=0``, Adam): everything else: biases, normalization
      weights, embeddings, free parameters (positional embeddings, ``bias_k``), and the head.

    Note (packed attention): ``nn.MultiheadAttention`` with equal query, key and value sizes
    holds ``W_q, W_k, W_v`` as one ``(3E, E)`` parameter; AdamO's term then acts on that stack,
    pulling :math:`W_q^\top W_q + W_k^\top W_k + W_v^\top W_v` towards :math:`I`, not each
    projection to an isometry (each to about :math:`1/\sqrt3` when balanced). ``kdim``/``vdim``
    different from ``embed_dim`` give three separate parameters. A parameter shared by a
    weight and a plain module (tied embedding and head) goes to the plain group.

    Args:
        model: any ``nn.Module``.
        iso_strength: :math:`\lambda` of the isometry group (>= 0).
        head: ``"auto"`` (default): the last ``nn.Linear`` in ``model.modules()`` order (outside
            attention) is the head and is left out of the isometry group; a module name (as in
            ``model.named_modules()``) or the module itself: that one; ``None``: no head, every
            linear weight gets the term.

    Returns:
        ``[isometry group, plain group]``, dicts with ``params`` and ``iso_strength`` for
        :class:`AdamO` (a group without parameters is left out).

    Example:
        >>> from torch import nn
        >>> cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
        >>> groups = adamo_param_groups(cnn, iso_strength=0.1)
        >>> [(g["iso_strength"], [tuple(p.shape) for p in g["params"]]) for g in groups]
        [(0.1, [(4, 1, 3, 3)]), (0.0, [(4,), (4,), (4,), (10, 144), (10,)])]
        >>> opt = AdamO(groups, lr=1e-3)
    """
    from torch import nn

    from .nn import OrthogonalLinear

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_nonnegative("iso_strength", iso_strength)
    modules = dict(model.named_modules())
    attention_parts = {id(m) for mha in modules.values() if isinstance(mha, nn.MultiheadAttention) for m in mha.modules() if m is not mha}
    if head == "auto":
        linears = [m for m in modules.values() if isinstance(m, nn.Linear) and id(m) not in attention_parts]
        head_module = linears[-1] if linears else None
    elif head is None:
        head_module = None
    elif isinstance(head, str):
        if head not in modules:
            raise ValueError(f"head {head!r} is not a module of model; allowed: 'auto', None, a module or one of {[n for n in modules if n][:20]}")
        head_module = modules[head]
    elif isinstance(head, nn.Module):
        if not any(m is head for m in modules.values()):
            raise ValueError("head must be a module of model (or 'auto', None, a module name)")
        head_module = head
    else:
        raise TypeError(f"head must be 'auto', None, a module name or an nn.Module, got {head!r}")

    iso, plain = {}, {}
    for module in modules.values():
        own = dict(module.named_parameters(recurse=False))
        chosen = []
        if module is head_module:
            chosen = []
        elif isinstance(module, (nn.Linear, OrthogonalLinear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            chosen = ["weight"]
        elif isinstance(module, nn.MultiheadAttention):
            chosen = ["in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"]
        for name, p in own.items():
            (iso if name in chosen else plain)[id(p)] = p
    iso = {k: p for k, p in iso.items() if k not in plain}  # shared with a plain use: plain
    groups = [{"params": list(iso.values()), "iso_strength": float(iso_strength)},
              {"params": list(plain.values()), "iso_strength": 0.0}]
    return [g for g in groups if g["params"]]
