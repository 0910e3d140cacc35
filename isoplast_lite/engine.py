"""The seed-batching engine: ``S`` seeds of one network trained as one stacked model.

A :class:`StackedModel` holds the parameters of ``S`` copies of one architecture stacked along
a leading seed dimension (``(S, out, in)`` weights), so one optimizer step trains all seeds at
once. Its forward pass is a batched matrix product for the plain nets (``nn.Linear``, ReLU,
LayerNorm, GroupSort, Newton–Schulz ``OrthogonalLinear``) and ``torch.func.vmap`` over
``functional_call`` for any other module. The loss the runner minimizes is the *sum* over seeds
of each seed's mean loss, so each seed's gradient is exactly the gradient of its own loss;
methods (:mod:`isoplast_lite.methods`) are written so that seeds never interact, which
``tests/test_methods.py`` checks for every registered method.

This module knows nothing about methods or the runner: :mod:`isoplast_lite.methods` and
:mod:`isoplast_lite.run` build on it.

Example:
    >>> from isoplast_lite.nn import relu_mlp
    >>> stack = StackedModel.build(lambda g: relu_mlp(64, 8, 2, 10, generator=g), seeds=(0, 1))
    >>> stack.params["0.0.weight"].shape
    torch.Size([2, 8, 64])
    >>> stack(torch.randn(2, 5, 64)).shape
    torch.Size([2, 5, 10])
"""

from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, vmap

from .isometry import newton_schulz_steps
from .seeding import seeded_generator
from .nn import GroupSort, OrthogonalLinear, group_sort_unchecked

__all__ = ["StackedModel", "retract_stacked_", "seeded_generator", "stacked_linear"]


#: weights of at least this many numbers (32 members of a 64 x 64 layer) take the custom
#: backward of :func:`stacked_linear`; smaller ones autograd's (measured crossover, book's net)
STACKED_LINEAR_MIN_NUMEL = 32 * 64 * 64


class _StackedLinear(torch.autograd.Function):
    """``h @ w^T + b`` per member, with the weight's gradient formed in the weight's own layout.

    Autograd's ``baddbmm(b, h, w.transpose(1, 2))`` forms the gradient of ``w^T`` and transposes
    it, so every step ``AccumulateGrad`` copies a non-contiguous ``(M, out, in)`` gradient into
    the parameter's layout (a fifth of forward + backward at the book's widths:
    ``benchmarks/stacked_hyperparameters.py``). Here the three gradients are the products
    themselves: ``g w``, ``g^T h`` and ``sum_B g``. Its backward is made of differentiable ops
    (a double backward works) and ``generate_vmap_rule`` lets ``torch.func`` transform it.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(h, w, b):
        return torch.baddbmm(b.unsqueeze(-2), h, w.transpose(-1, -2))

    @staticmethod
    def setup_context(ctx, inputs, output):
        h, w, _ = inputs
        ctx.save_for_backward(h, w)

    @staticmethod
    def backward(ctx, g):
        h, w = ctx.saved_tensors
        gh = torch.matmul(g, w) if ctx.needs_input_grad[0] else None
        gw = torch.matmul(g.transpose(-1, -2), h) if ctx.needs_input_grad[1] else None
        gb = g.sum(-2) if ctx.needs_input_grad[2] else None
        return gh, gw, gb


def stacked_linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h @ w^T + b`` of every member: ``h`` ``(M, B, in)``, ``w`` ``(M, out, in)``, ``b``
    ``(M, out)`` -> ``(M, B, out)`` (``torch.baddbmm``), differentiable in all three.

    When a gradient is recorded and ``w`` holds at least :data:`STACKED_LINEAR_MIN_NUMEL`
    numbers, the weight's gradient comes out contiguous in ``w``'s layout
    (:class:`_StackedLinear`), which saves the copy autograd's ``baddbmm`` backward needs; the
    values are the same products (equal up to float rounding of the summation order). Smaller
    weights take autograd's ``baddbmm``: there the Python cost of an ``autograd.Function``
    (forward and backward, measured +0.35 ms per step of the book's 4-layer net at 1-3 members)
    exceeds the copy it saves (-0.35 ms at 64 members), ``benchmarks/stacked_hyperparameters.py``.

    Example:
        >>> h, w, b = torch.randn(2, 5, 3), torch.randn(2, 4, 3, requires_grad=True), torch.zeros(2, 4)
        >>> out = stacked_linear(h, w, b)
        >>> torch.allclose(out, h @ w.transpose(1, 2))
        True
        >>> out.sum().backward(); w.grad.is_contiguous()
        True
    """
    if w.numel() >= STACKED_LINEAR_MIN_NUMEL and torch.is_grad_enabled() and (h.requires_grad or w.requires_grad or b.requires_grad):
        return _StackedLinear.apply(h, w, b)
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))

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
        path (:func:`stacked_linear`, ``torch.baddbmm``), which computes the same function as ``vmap(functional_call)``
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
                elif callable(getattr(layer, "stacked_forward", None)):
                    steps.append(("custom", layer))  # a module that knows its stacked forward
                else:
                    return None
            plan.append(steps)
        return plan

    def _forward_fast(self, x: torch.Tensor, params: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        hs, h = [], x  # (S, B, D)
        for i, steps in enumerate(self._plan):
            prefix = f"{i}." if len(self._blocks[i]._modules) == 0 or not isinstance(self._blocks[i], nn.Sequential) else None
            for j, (kind, layer) in enumerate(steps):
                name = prefix if prefix is not None else f"{i}.{j}."
                if kind == "linear":
                    w, b = params[name + "weight"], params[name + "bias"]  # (S, out, in), (S, out)
                    h = stacked_linear(h, w, b)
                elif kind == "groupsort":
                    h = group_sort_unchecked(h, layer.group_size)
                elif kind == "layernorm":
                    w, b = params[name + "weight"], params[name + "bias"]  # (S, d)
                    h = F.layer_norm(h, layer.normalized_shape, eps=layer.eps) * w.unsqueeze(1) + b.unsqueeze(1)
                elif kind == "custom":
                    own = {k: params[name + k] for k, _ in layer.named_parameters()}
                    h = layer.stacked_forward(h, own)
                else:
                    h = torch.relu(h)
            hs.append(h)
        return tuple(hs)

    def forward_all(self, x: torch.Tensor, params: Optional[Dict[str, torch.Tensor]] = None) -> Tuple[torch.Tensor, ...]:
        """Outputs of every block: ``depth`` feature tensors ``(S, B, width)`` then logits ``(S, B, O)``.

        Args:
            x: inputs ``(S, B, D)``, one batch per seed.
            params: stacked parameters to evaluate the model at instead of :attr:`params`
                (name -> ``(S, *shape)``; a name left out takes its current value), e.g. the
                parameters before the last step, or a perturbed copy. Gradients flow into
                whatever tensors are passed.
        """
        if params is None:
            params = self.params
        elif params.keys() != self.params.keys():
            unknown = sorted(set(params) - set(self.params))
            if unknown:
                raise KeyError(f"params has names the model does not have: {unknown}; allowed: {sorted(self.params)}")
            params = {**self.params, **params}
        if self._plan is not None:
            return self._forward_fast(x, params)
        return self._batched(params, self.buffers, x)

    def __call__(self, x: torch.Tensor, params: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """Logits of every seed, ``x`` of shape ``(S, B, D)`` -> ``(S, B, O)`` (at ``params`` if given)."""
        return self.forward_all(x, params)[-1]

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


def retract_stacked_(stack: StackedModel, steps: int = 1) -> None:
    """One Newton–Schulz retraction of every stacked hidden ``OrthogonalLinear`` weight, in place.

    The weights ``(S, out, in)`` of all seeds are retracted by one batched call per layer
    (``baddbmm``); seed ``k``'s slice gets exactly what :func:`isoplast_lite.nn.retract_` would
    give its own model (up to float rounding of the batched products).
    """
    with torch.no_grad():
        for name in stack.orthogonal_names:
            W = stack.params[name]  # (S, out, in)
            W.copy_(newton_schulz_steps(W, steps))
