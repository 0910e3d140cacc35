"""The compared continual-learning methods, all behind one small interface.

A method decides four things (and may refuse a config it cannot run,
:meth:`Method.check_config`): which network it trains (:meth:`Method.build_model`), its
optimizer (:meth:`Method.make_optimizer`), an extra loss term (:meth:`Method.penalty`), and
what it does after each step and at each task boundary (:meth:`Method.after_step`,
:meth:`Method.at_task_boundary`). Every hook works on a :class:`StackedModel`: the ``S`` seeds
of one configuration stacked along a leading dimension (``(S, out, in)`` weights), so one
optimizer step trains all seeds at once. The stacked loss is the *sum* over seeds of each seed's
mean loss, so each seed's gradient is exactly the gradient of its own loss; every method is
written so that seeds never interact (element-wise optimizers, per-seed penalties, per-seed
resets), which the tests check against a plain per-seed loop.

Registry (``METHODS``; defaults in :class:`isoplast_lite.run.Config`):

=================  ==========================================================================
name               what it is
=================  ==========================================================================
``adam``           Adam (Kingma & Ba 2015) on a ReLU MLP.
``adamw``          AdamW, decoupled weight decay (Loshchilov & Hutter 2019), ``weight_decay``.
``l2``             Adam + ``l2_strength * sum ||theta||^2`` in the loss (all parameters).
``l2-init``        Adam + ``l2_init_strength * sum ||theta - theta_0||^2`` (Kumar et al. 2023).
``shrink-perturb`` at each task boundary ``theta <- sp_shrink * theta + sp_perturb * theta_fresh``
                   with ``theta_fresh`` a fresh initialization (Ash & Adams 2020).
``redo``           at each task boundary, tau-dormant units (``redo_tau``) get re-initialized
                   incoming weights, zeroed outgoing weights and reset Adam moments
                   (Sokar et al. 2023).
``spectral``       Adam + ``spectral_strength * sum (sigma_max(W)^2 - 1)^2``, sigma_max by
                   power iteration (Lewandowski et al. 2025).
``layernorm``      Adam on a ReLU MLP with LayerNorm before each activation (Lyle et al. 2023).
``coupled-iso``    Adam + ``iso_strength * sum R_iso(W)`` in the loss over hidden weights: the
                   "coupled" ablation of AdamO, i.e. Parseval regularization with target I
                   (Chung et al. 2024).
``adamo``          AdamO: decoupled isometry step on hidden weights (the paper's method).
``aei-adam``       almost-everywhere isometric net: orthogonal hidden weights + GroupSort
                   (Anil et al. 2019), free linear head, Adam; the hidden weights are kept
                   orthogonal by a Newton–Schulz retraction after each step (``orthogonal``,
                   default ``"newton-schulz"``; ``"cayley"`` is the exact parametrization).
``aei-adamo``      the same net trained with AdamO; the hidden weights are kept orthogonal as
                   above, so the isometry step acts on the free head (its "soft
                   regularization", PAPER.md claim 3).
=================  ==========================================================================

Cost note: with the default Newton–Schulz retraction the AEI nets take the same batched-matmul
path as the ReLU nets, plus one retraction per step (two ``(S, d, d) x (S, d, d)`` products per
hidden layer, ``4 d^3`` FLOPs per seed, against ``6 B d^2`` for the layer's forward + backward
at batch ``B``: about 2x a ReLU step at width 256 and batch 32 on a CPU, see
``benchmarks/aei_step.py``). The exact Cayley parametrization (``orthogonal="cayley"``) goes
through ``vmap`` and differentiates a linear solve per layer at every step: about 10x.

Example:
    >>> import torch
    >>> from isoplast_lite.run import Config
    >>> cfg = Config("random-label-digits", "adamo", seeds=2, width=8, depth=2)
    >>> method = make_method(cfg.method)
    >>> stack = StackedModel.build(lambda g: method.build_model(64, 10, cfg, g), seeds=(0, 1))
    >>> stack.params["0.0.weight"].shape
    torch.Size([2, 8, 64])
    >>> stack(torch.randn(2, 5, 64)).shape
    torch.Size([2, 5, 10])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, vmap

from ._validation import ConfigError
from .diagnostics import _dormant_mask
from .isometry import _isometry_penalty_matrix, _newton_schulz
from .nn import GroupSort, OrthogonalLinear, _group_sort, aei_mlp, relu_mlp
from .optim import AdamO

if TYPE_CHECKING:  # pragma: no cover
    from .run import Config

__all__ = ["METHODS", "ISO_METHODS", "AEI_METHODS", "Method", "StackedModel", "HookContext", "make_method", "fresh_generator"]


def fresh_generator(seed: int, task: int, salt: int) -> torch.Generator:
    """A generator for the random draws of ``seed`` at task ``task`` (no global RNG, resumable)."""
    mixed = (int(seed) * 2_147_483_629 + int(task) * 65_537 + int(salt) * 8_191 + 17) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


class StackedModel:
    """``S`` copies of one architecture, their parameters stacked along a leading seed dimension.

    Attributes:
        template: the module of the first seed; gives the structure for ``functional_call``.
        params: name -> leaf tensor of shape ``(S, *shape)`` (what the optimizer trains).
        buffers: name -> tensor of shape ``(S, *shape)``.
        seeds: the seeds, in stacking order.
        n_blocks: number of children of the ``nn.Sequential`` (hidden blocks + head).
    """

    def __init__(self, template: nn.Sequential, params: Dict[str, torch.Tensor], buffers: Dict[str, torch.Tensor], seeds: Tuple[int, ...]):
        self.template = template
        self.params = params
        self.buffers = buffers
        self.seeds = tuple(seeds)
        self.n_blocks = len(template)
        self._blocks = [template[i] for i in range(self.n_blocks)]
        self._batched = vmap(self._forward_one, in_dims=(0, 0, 0))
        self._plan = self._fast_plan()
        #: names of the stacked weights of every Newton–Schulz ``OrthogonalLinear`` (retracted)
        self.orthogonal_names = [
            f"{name}.weight" for name, m in template.named_modules() if isinstance(m, OrthogonalLinear) and m.method == "newton-schulz"
        ]

    @classmethod
    def build(cls, builder: Callable[[torch.Generator], nn.Sequential], seeds: Sequence[int], *, device="cpu", dtype=torch.float32) -> "StackedModel":
        """Build one model per seed with ``builder(torch.Generator().manual_seed(seed))`` and stack them."""
        models = [builder(torch.Generator().manual_seed(int(s))).to(device=device, dtype=dtype) for s in seeds]
        template = models[0]
        params = {
            name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]).clone().requires_grad_(True)
            for name, _ in template.named_parameters()
        }
        buffers = {name: torch.stack([dict(m.named_buffers())[name] for m in models]).clone() for name, _ in template.named_buffers()}
        return cls(template, params, buffers, tuple(int(s) for s in seeds))

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def block_names(self, i: int) -> List[str]:
        """Parameter names of block ``i``."""
        return [n for n in self.params if n.split(".", 1)[0] == str(i)]

    def hidden_weight_names(self) -> List[str]:
        """Names of the weight matrices (``ndim >= 2`` per seed) of the hidden blocks."""
        return [n for i in range(self.n_blocks - 1) for n in self.block_names(i) if self.params[n].ndim >= 3]

    def head_names(self) -> List[str]:
        return self.block_names(self.n_blocks - 1)

    def linear_names(self, i: int) -> Tuple[str, Optional[str]]:
        """(weight, bias) names of the first linear layer of block ``i`` (plain ``nn.Linear`` nets)."""
        prefix = f"{i}." if i == self.n_blocks - 1 else f"{i}.0."
        bias = prefix + "bias"
        return prefix + "weight", (bias if bias in self.params else None)

    def _sub(self, i: int, tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        p = f"{i}."
        return {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}

    def _forward_one(self, params, buffers, x):
        hs = []
        h = x
        for i, block in enumerate(self._blocks):
            h = functional_call(block, (self._sub(i, params), self._sub(i, buffers)), (h,))
            hs.append(h)
        return tuple(hs)

    def _fast_plan(self) -> Optional[List[List[Tuple[str, object]]]]:
        """Per block, a list of ``("linear" | "layernorm" | "relu" | "groupsort", module)`` when
        every block is made of plain ``nn.Linear``, Newton–Schulz ``OrthogonalLinear`` (both with
        a bias), ``nn.LayerNorm`` (affine), ``nn.ReLU`` and ``GroupSort`` only; else ``None``.

        Such nets (``relu_mlp``, ``aei_mlp(orthogonal="newton-schulz")``) take the batched-matmul
        path (``torch.baddbmm``), which computes the same function as ``vmap(functional_call)``
        with less per-step overhead; any other module (a Cayley ``OrthogonalLinear``, ...) uses
        ``vmap``.
        """
        plan = []
        for block in self._blocks:
            layers = list(block) if isinstance(block, nn.Sequential) else [block]
            steps = []
            for layer in layers:
                if type(layer) is nn.Linear and layer.bias is not None:
                    steps.append(("linear", layer))
                elif type(layer) is OrthogonalLinear and layer.method == "newton-schulz" and layer.bias is not None:
                    steps.append(("linear", layer))  # a plain linear map between retractions
                elif type(layer) is GroupSort:
                    steps.append(("groupsort", layer))
                elif type(layer) is nn.LayerNorm and layer.elementwise_affine and layer.bias is not None:
                    steps.append(("layernorm", layer))
                elif type(layer) is nn.ReLU:
                    steps.append(("relu", layer))
                else:
                    return None
            plan.append(steps)
        return plan

    def _forward_fast(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        hs, h = [], x  # (S, B, D)
        for i, steps in enumerate(self._plan):
            prefix = f"{i}." if len(self._blocks[i]._modules) == 0 or not isinstance(self._blocks[i], nn.Sequential) else None
            for j, (kind, layer) in enumerate(steps):
                name = prefix if prefix is not None else f"{i}.{j}."
                if kind == "linear":
                    w, b = self.params[name + "weight"], self.params[name + "bias"]  # (S, out, in), (S, out)
                    h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
                elif kind == "groupsort":
                    h = _group_sort(h, layer.group_size)
                elif kind == "layernorm":
                    w, b = self.params[name + "weight"], self.params[name + "bias"]  # (S, d)
                    h = F.layer_norm(h, layer.normalized_shape, eps=layer.eps) * w.unsqueeze(1) + b.unsqueeze(1)
                else:
                    h = torch.relu(h)
            hs.append(h)
        return tuple(hs)

    def forward_all(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Outputs of every block: ``depth`` feature tensors ``(S, B, width)`` then logits ``(S, B, O)``."""
        if self._plan is not None:
            return self._forward_fast(x)
        return self._batched(self.params, self.buffers, x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every seed, ``x`` of shape ``(S, B, D)`` -> ``(S, B, O)``."""
        return self.forward_all(x)[-1]

    def model_for_seed(self, k: int) -> nn.Sequential:
        """A standalone ``nn.Sequential`` holding seed number ``k``'s current weights (a copy)."""
        model = copy.deepcopy(self.template)
        state = {n: t[k].detach().clone() for n, t in {**self.params, **self.buffers}.items()}
        model.load_state_dict(state, strict=True)
        return model

    def state(self) -> Dict[str, Dict[str, torch.Tensor]]:
        return {"params": {n: t.detach().clone() for n, t in self.params.items()}, "buffers": {n: t.clone() for n, t in self.buffers.items()}}

    def load_state(self, state) -> None:
        with torch.no_grad():
            for n, t in state["params"].items():
                self.params[n].copy_(t)
            for n, t in state["buffers"].items():
                self.buffers[n].copy_(t)


@dataclass
class HookContext:
    """What a hook may look at: the task index, the step within it, each seed's task inputs."""

    task: int
    step: int
    x_task: torch.Tensor  # (S, N, D): the current task's training inputs, per seed


class Method:
    """Base class: Adam on a ReLU MLP. Subclasses override the hooks they need.

    Attributes:
        name: registry name.
        uses_iso: whether ``iso_strength`` means something for this method.
        uses_orthogonal: whether ``orthogonal`` (how orthogonal layers are kept orthogonal)
            means something for this method.
        batched: whether seeds can be stacked (all registered methods can).
    """

    name = "adam"
    uses_iso = False
    uses_orthogonal = False
    batched = True

    def check_config(self, cfg: "Config") -> None:
        """Raise a :class:`~isoplast_lite._validation.ConfigError` naming the fields of ``cfg``
        this method cannot run with (called before any work; the base accepts every config)."""

    def build_model(self, in_dim: int, out_dim: int, cfg: "Config", generator: torch.Generator) -> nn.Sequential:
        return relu_mlp(in_dim, cfg.width, cfg.depth, out_dim, init=cfg.init, generator=generator)

    def setup(self, stack: StackedModel, cfg: "Config") -> None:
        """Called once after the stacked model is built (records initial weights, etc.)."""

    def make_optimizer(self, stack: StackedModel, cfg: "Config") -> torch.optim.Optimizer:
        return torch.optim.Adam(list(stack.params.values()), lr=cfg.lr)

    def penalty(self, stack: StackedModel, cfg: "Config") -> Optional[torch.Tensor]:
        """Extra loss term, summed over seeds (``None`` for none)."""
        return None

    def after_step(self, stack: StackedModel, opt: torch.optim.Optimizer, cfg: "Config", ctx: HookContext) -> None:
        """Called after every optimizer step."""

    def at_task_boundary(self, stack: StackedModel, opt: torch.optim.Optimizer, cfg: "Config", ctx: HookContext) -> None:
        """Called before training on task ``ctx.task >= 1`` starts."""

    def state_dict(self) -> Dict[str, object]:
        return {}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        pass


class Adam(Method):
    """Adam (Kingma & Ba 2015), ``lr = cfg.lr``, default betas."""

    name = "adam"


class AdamWMethod(Method):
    """AdamW (Loshchilov & Hutter 2019): ``torch.optim.AdamW(lr, weight_decay=cfg.weight_decay)``.

    The decay multiplies ``lr`` (PyTorch's convention): each step shrinks every parameter by the
    factor ``1 - lr * weight_decay``. Default ``weight_decay = 1e-2`` (PyTorch's default).
    """

    name = "adamw"

    def make_optimizer(self, stack, cfg):
        return torch.optim.AdamW(list(stack.params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)


class L2(Method):
    """Adam + ``l2_strength * sum_theta ||theta||^2`` (all weights and biases) in the loss.

    Coupled L2: Adam preconditions its gradient ``2 * l2_strength * theta``. Default
    ``l2_strength = 1e-4`` (our choice, the usual order of magnitude; not tuned).
    """

    name = "l2"

    def penalty(self, stack, cfg):
        return cfg.l2_strength * sum((p * p).sum() for p in stack.params.values())


class L2Init(Method):
    """L2 Init (Kumar et al. 2023): Adam + ``l2_init_strength * sum ||theta - theta_0||^2``.

    ``theta_0`` are the parameters at initialization; the gradient of the term is
    ``2 * l2_init_strength * (theta - theta_0)``. Default ``l2_init_strength = 1e-2`` (Kumar et
    al. tune it per benchmark; our default is not tuned).
    """

    name = "l2-init"

    def __init__(self):
        self.theta0: Dict[str, torch.Tensor] = {}

    def setup(self, stack, cfg):
        self.theta0 = {n: p.detach().clone() for n, p in stack.params.items()}

    def penalty(self, stack, cfg):
        return cfg.l2_init_strength * sum(((p - self.theta0[n]) ** 2).sum() for n, p in stack.params.items())

    def state_dict(self):
        return {"theta0": self.theta0}

    def load_state_dict(self, state):
        self.theta0 = state["theta0"]


class ShrinkPerturb(Method):
    """Shrink & Perturb (Ash & Adams 2020) at each task boundary.

    ``theta <- sp_shrink * theta + sp_perturb * theta_fresh`` for every parameter, where
    ``theta_fresh`` is a *fresh* initialization of the same architecture (a new draw per seed and
    per task, from :func:`fresh_generator`). Defaults ``sp_shrink = 0.4``, ``sp_perturb = 0.1``
    (our choice inside the range Ash & Adams explore; not tuned). Adam's moments are kept.
    """

    name = "shrink-perturb"
    _SALT = 11

    def fresh_params(self, stack: StackedModel, cfg, task: int) -> Dict[str, torch.Tensor]:
        """Stacked parameters of a fresh initialization for each seed at ``task``."""
        return _fresh_params(self, stack, cfg, task, self._SALT)

    def at_task_boundary(self, stack, opt, cfg, ctx):
        fresh = self.fresh_params(stack, cfg, ctx.task)
        with torch.no_grad():
            for n, p in stack.params.items():
                p.mul_(cfg.sp_shrink).add_(fresh[n], alpha=cfg.sp_perturb)


class ReDo(Method):
    """ReDo (Sokar et al. 2023): recycle tau-dormant ReLU units at each task boundary.

    On the current task's training inputs, unit ``i`` of hidden layer ``l`` has score
    ``s_i = E_x|h_i(x)| / mean_k E_x|h_k(x)|`` and is dormant when ``s_i <= redo_tau``. For
    every dormant unit: its incoming weights (row ``i`` of ``W_l`` and ``b_l[i]``) are replaced by
    those of a fresh initialization, its outgoing weights (column ``i`` of ``W_{l+1}``) are set
    to zero, and the Adam moments of exactly those entries are reset to zero. Default
    ``redo_tau = 0.1`` (Sokar et al.'s setting for their supervised and most RL runs).
    """

    name = "redo"
    _SALT = 13

    @staticmethod
    def dormant_masks(stack: StackedModel, x: torch.Tensor, tau: float) -> List[torch.Tensor]:
        """Per hidden layer, a bool mask ``(S, width)`` of tau-dormant units on inputs ``x`` ``(S, N, D)``."""
        with torch.no_grad():
            feats = stack.forward_all(x)[:-1]
        # one mask per seed with the core's definition of the score (diagnostics._dormant_mask)
        return [torch.stack([_dormant_mask(h[k], tau) for k in range(h.shape[0])]) for h in feats]

    def at_task_boundary(self, stack, opt, cfg, ctx):
        masks = self.dormant_masks(stack, ctx.x_task, cfg.redo_tau)
        fresh = _fresh_params(self, stack, cfg, ctx.task, self._SALT)
        self.recycle(stack, opt, masks, fresh)

    @staticmethod
    def recycle(stack: StackedModel, opt: torch.optim.Optimizer, masks: List[torch.Tensor], fresh: Dict[str, torch.Tensor]) -> None:
        """Re-initialize incoming, zero outgoing, reset optimizer moments of the masked units."""
        with torch.no_grad():
            for l, mask in enumerate(masks):
                w_in, b_in = stack.linear_names(l)
                w_out, _ = stack.linear_names(l + 1)
                row = mask.unsqueeze(-1).to(stack.params[w_in].dtype)  # (S, width, 1)
                col = mask.unsqueeze(1).to(stack.params[w_out].dtype)  # (S, 1, width)
                edits = [(w_in, row), (w_out, col)] + ([(b_in, mask.to(row.dtype))] if b_in else [])
                for name, m in edits:
                    p = stack.params[name]
                    if name == w_out:
                        p.mul_(1 - m)
                    else:
                        p.mul_(1 - m).add_(fresh[name] * m)
                    state = opt.state.get(p, {})
                    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                        if key in state and torch.is_tensor(state[key]) and state[key].shape == p.shape:
                            state[key].mul_(1 - m)


def _fresh_params(method: Method, stack: StackedModel, cfg, task: int, salt: int) -> Dict[str, torch.Tensor]:
    ref = next(iter(stack.params.values()))
    in_dim = int(stack.params[stack.linear_names(0)[0]].shape[-1])
    out_dim = int(stack.params[stack.linear_names(stack.n_blocks - 1)[0]].shape[1])
    models = [
        method.build_model(in_dim, out_dim, cfg, fresh_generator(s, task, salt)).to(device=ref.device, dtype=ref.dtype)
        for s in stack.seeds
    ]
    return {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n in stack.params}


class Spectral(Method):
    r"""Spectral regularization (Lewandowski et al. 2025): Adam + ``spectral_strength * R``.

    .. math:: R = \sum_W (\sigma_{\max}(W)^2 - 1)^2

    over every weight matrix (hidden and head), which pushes each top singular value towards 1
    and leaves the others free (a *partial* isometry measure, PAPER.md). ``sigma_max`` comes
    from one power-iteration step per training step with persistent vectors ``u`` (seeded,
    stored in the method state); with ``u, v`` held fixed, ``sigma = u^T W v`` and its gradient
    is ``u v^T``. Default ``spectral_strength = 1e-4`` (our choice; not tuned).
    """

    name = "spectral"
    _SALT = 17

    def __init__(self, n_power_iter: int = 1):
        self.n_power_iter = n_power_iter
        self.u: Dict[str, torch.Tensor] = {}

    def weight_names(self, stack):
        return [n for n, p in stack.params.items() if p.ndim >= 3]

    def setup(self, stack, cfg):
        self.u = {}
        for j, n in enumerate(self.weight_names(stack)):
            W = stack.params[n]
            us = [torch.randn(W.shape[1], generator=fresh_generator(s, j, self._SALT), dtype=W.dtype) for s in stack.seeds]
            self.u[n] = F.normalize(torch.stack(us).to(W.device), dim=-1)

    @staticmethod
    def power_iteration(W: torch.Tensor, u: torch.Tensor, n_iter: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``n_iter`` power-iteration steps on a stack ``W`` ``(S, out, in)`` from ``u`` ``(S, out)``; returns ``(u, v)``."""
        with torch.no_grad():
            for _ in range(n_iter):
                v = F.normalize(torch.einsum("soi,so->si", W, u), dim=-1)
                u = F.normalize(torch.einsum("soi,si->so", W, v), dim=-1)
        return u, v

    def sigma_max(self, stack, name: str) -> torch.Tensor:
        """Current estimate of ``sigma_max`` per seed ``(S,)`` (differentiable in the weight)."""
        W = stack.params[name]
        u, v = self.power_iteration(W.detach(), self.u[name], self.n_power_iter)
        self.u[name] = u
        return torch.einsum("so,soi,si->s", u, W, v)

    def penalty(self, stack, cfg):
        return cfg.spectral_strength * sum(((self.sigma_max(stack, n) ** 2 - 1) ** 2).sum() for n in self.weight_names(stack))

    def state_dict(self):
        return {"u": self.u}

    def load_state_dict(self, state):
        self.u = state["u"]


class LayerNormMLP(Method):
    """Adam on a ReLU MLP with ``nn.LayerNorm`` before each activation (Lyle et al. 2023)."""

    name = "layernorm"

    def build_model(self, in_dim, out_dim, cfg, generator):
        return relu_mlp(in_dim, cfg.width, cfg.depth, out_dim, init=cfg.init, layernorm=True, generator=generator)


class CoupledIso(Method):
    r"""Coupled isometry: Adam on ``L + iso_strength * sum_l R_iso(W_l)`` over hidden weights.

    Adam preconditions the regularizer's gradient together with the task gradient; this is the
    ablation AdamO is compared with, and Parseval regularization (Chung et al. 2024) with target
    ``I`` (orthogonal init has gain 1). ``R_iso`` is :func:`isoplast_lite.isometry.isometry_penalty`,
    here without its argument checks (their finiteness check would synchronize every step; a
    non-finite penalty is what the runner's divergence check then sees).
    """

    name = "coupled-iso"
    uses_iso = True

    def penalty(self, stack, cfg):
        if cfg.iso_strength == 0:
            return None
        total = sum(_isometry_penalty_matrix(stack.params[n][k]) for n in stack.hidden_weight_names() for k in range(stack.n_seeds))
        return cfg.iso_strength * total


class AdamOMethod(Method):
    """AdamO (the paper's optimizer) with the decoupled isometry step on hidden weights only.

    Two parameter groups (DEVELOPING.md): hidden blocks with ``iso_strength = cfg.iso_strength``,
    the head with ``iso_strength = 0``; both with ``seed_dims = 1`` so each seed's ``(out, in)``
    slice gets its own isometry step.
    """

    name = "adamo"
    uses_iso = True

    def iso_groups(self, stack, cfg):
        head = set(stack.head_names())
        hidden = [p for n, p in stack.params.items() if n not in head]
        return [
            {"params": hidden, "iso_strength": cfg.iso_strength, "seed_dims": 1},
            {"params": [stack.params[n] for n in stack.head_names()], "iso_strength": 0.0, "seed_dims": 1},
        ]

    def make_optimizer(self, stack, cfg):
        return AdamO(self.iso_groups(stack, cfg), lr=cfg.lr, iso_strength=cfg.iso_strength)


class AEIAdam(Method):
    """Adam on ``aei_mlp`` (orthogonal hidden weights + GroupSort, free linear head).

    With ``cfg.orthogonal == "newton-schulz"`` (the default) the hidden weights are plain
    stacked matrices ``(S, out, in)`` that Adam updates freely; after every optimizer step
    :meth:`after_step` applies one Björck / Newton–Schulz retraction
    (:func:`isoplast_lite.isometry.newton_schulz`, ``steps=1``, no normalization) to all of them
    at once, batched over seeds: exactly what :func:`isoplast_lite.nn.retract_` does to each
    seed's model. With ``"cayley"`` the exact parametrization of the shipped results is used
    instead (``vmap`` path, several times slower) and there is nothing to retract.
    """

    name = "aei-adam"
    group_size = 2  # MaxMin
    uses_orthogonal = True
    retraction_steps = 1

    def check_config(self, cfg):
        if cfg.width % self.group_size:
            raise ConfigError({"width": cfg.width, "method": cfg.method},
                              f"GroupSort with group size {self.group_size} needs a width divisible by {self.group_size}; allowed: an even width")  # fmt: skip

    def build_model(self, in_dim, out_dim, cfg, generator):
        return aei_mlp(in_dim, cfg.width, cfg.depth, out_dim, head="free", group_size=self.group_size,
                       orthogonal=cfg.orthogonal, generator=generator)  # fmt: skip

    def after_step(self, stack, opt, cfg, ctx):
        if cfg.orthogonal == "newton-schulz":
            retract_stacked_(stack, self.retraction_steps)


def retract_stacked_(stack: StackedModel, steps: int = 1) -> None:
    """One Newton–Schulz retraction of every stacked hidden ``OrthogonalLinear`` weight, in place.

    The weights ``(S, out, in)`` of all seeds are retracted by one batched call per layer
    (``baddbmm``); seed ``k``'s slice gets exactly what :func:`isoplast_lite.nn.retract_` would
    give its own model (up to float rounding of the batched products).
    """
    with torch.no_grad():
        for name in stack.orthogonal_names:
            W = stack.params[name]  # (S, out, in)
            W.copy_(_newton_schulz(W, steps))


class AEIAdamO(AEIAdam):
    """AdamO on ``aei_mlp``: the hidden weights are kept orthogonal by the retraction (or by the
    Cayley parametrization, whose trained parameters ``parametrizations.weight.original`` an
    isometry step would not make sense on), so the isometry step (``iso_strength``) acts on the
    free head only, softly regularizing it towards a partial isometry; the hidden group has
    ``iso_strength = 0`` (its retraction already makes ``R_iso`` of those weights ~0).
    """

    name = "aei-adamo"
    uses_iso = True

    def make_optimizer(self, stack, cfg):
        head = set(stack.head_names())
        return AdamO(
            [
                {"params": [p for n, p in stack.params.items() if n not in head], "iso_strength": 0.0, "seed_dims": 1},
                {"params": [stack.params[n] for n in stack.head_names()], "iso_strength": cfg.iso_strength, "seed_dims": 1},
            ],
            lr=cfg.lr,
            iso_strength=cfg.iso_strength,
        )


METHODS: Dict[str, type] = {
    cls.name: cls
    for cls in (Adam, AdamWMethod, L2, L2Init, ShrinkPerturb, ReDo, Spectral, LayerNormMLP, CoupledIso, AdamOMethod, AEIAdam, AEIAdamO)
}
ISO_METHODS = tuple(n for n, c in METHODS.items() if c.uses_iso)
AEI_METHODS = tuple(n for n, c in METHODS.items() if c.uses_orthogonal)


def make_method(name: str) -> Method:
    """A fresh instance of the method registered as ``name`` (one of ``METHODS``).

    Example:
        >>> make_method("redo").name
        'redo'
    """
    if not isinstance(name, str):
        raise TypeError(f"method must be a str, one of {tuple(METHODS)}, got {type(name).__name__}")
    if name not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {name!r}")
    return METHODS[name]()
