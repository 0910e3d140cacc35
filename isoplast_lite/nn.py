"""Layers and model builders: GroupSort, orthogonal linear layers, ReLU and AEI MLPs.

The models returned by :func:`relu_mlp` and :func:`aei_mlp` share one structure, on which the
diagnostics and the runner rely (see ``DEVELOPING.md``): an ``nn.Sequential`` whose children
are *blocks*, ``depth`` hidden blocks followed by one head. A hidden block is itself an
``nn.Sequential`` ``(Linear | OrthogonalLinear, [LayerNorm], activation)``; the head is an
``nn.Linear`` (or an :class:`OrthogonalLinear`).

References:
    Anil, Lucas & Grosse (2019), "Sorting out Lipschitz function approximation", ICML.
    Chernodub & Nowicki (2016), "Norm-preserving Orthogonal Permutation Linear Unit
    activation functions (OPLU)".
    Saxe, McClelland & Ganguli (2013), "Exact solutions to the nonlinear dynamics of learning
    in deep linear neural networks" (orthogonal initialization).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn.utils import parametrizations

from ._validation import check_bool, check_choice, check_generator, check_int, check_module, check_real, check_tensor
from .isometry import COEFFICIENTS, check_interval, newton_schulz_steps

__all__ = ["group_sort", "GroupSort", "OrthogonalLinear", "orthogonal_", "relu_mlp", "aei_mlp", "retract_", "retract_after_step",
           "ORTHOGONAL_METHODS"]


def group_sort(x: torch.Tensor, group_size: int = 2) -> torch.Tensor:
    """Sort each consecutive group of ``group_size`` features of ``x`` in descending order.

    With ``group_size=2`` this is MaxMin (OPLU): ``(a, b) -> (max(a, b), min(a, b))``. With
    ``group_size`` equal to the feature count it is FullSort. On every input the map permutes the
    features, so its Jacobian is a permutation matrix almost everywhere (an isometry) and the
    function is 1-Lipschitz and norm preserving.

    Args:
        x: input whose last dimension holds the features.
        group_size: number of features per group (>= 1); must divide ``x.shape[-1]``.

    Returns:
        A tensor of the same shape as ``x``.

    Raises:
        ValueError: if ``x.shape[-1]`` is not divisible by ``group_size``.

    Shape:
        ``x``: ``(*, C)`` with ``C % group_size == 0``; output ``(*, C)``.

    Example:
        >>> group_sort(torch.tensor([[1.0, 3.0, -2.0, -5.0]]))
        tensor([[ 3.,  1., -2., -5.]])
        >>> group_sort(torch.tensor([1.0, 3.0, -2.0, 4.0]), group_size=4)
        tensor([ 4.,  3.,  1., -2.])

    References:
        Anil, Lucas & Grosse (2019), "Sorting out Lipschitz function approximation", ICML.
    """
    group_size = check_int("group_size", group_size, minimum=1)
    check_tensor("x", x, min_ndim=1, floating=False, nonempty=False)
    return group_sort_unchecked(x, group_size)


def group_sort_unchecked(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Unchecked :func:`group_sort` except for the divisibility test (shapes are static): the kernel
    that :class:`GroupSort` and the runner's stacked forward (:mod:`isoplast_lite.engine`) call."""
    features = x.shape[-1]
    if features % group_size != 0:
        raise ValueError(
            f"GroupSort with group_size={group_size} needs a feature count divisible by "
            f"group_size, got x.shape[-1]={features}"
        )
    if group_size == 1:
        return x
    groups = x.unflatten(-1, (features // group_size, group_size))  # (*, C/g, g)
    return groups.sort(dim=-1, descending=True).values.flatten(-2)  # (*, C)


class GroupSort(nn.Module):
    """GroupSort activation: sorts each consecutive group of features (MaxMin when 2).

    Module form of :func:`group_sort`. The map is a permutation of its input, so it preserves
    the Euclidean norm and its Jacobian has all singular values equal to 1 (almost everywhere).

    Args:
        group_size: number of features per group (>= 1). The feature count of the input must
            be divisible by it; otherwise ``forward`` raises a ``ValueError``.

    Non-finite input: ``forward`` makes no finiteness check (it would synchronize a GPU at every
    call). NaN and inf entries are sorted like values (NaN as the largest) and come out
    unchanged, so the output has exactly as many NaN and inf entries as the input: they are
    never turned into finite numbers. The diagnostics reject a non-finite input or model.

    Shape:
        - Input: ``(*, C)`` with ``C % group_size == 0``.
        - Output: ``(*, C)``.

    Example:
        >>> act = GroupSort(2)
        >>> act(torch.tensor([[0.5, -1.0, 2.0, 3.0]]))
        tensor([[ 0.5000, -1.0000,  3.0000,  2.0000]])

    References:
        Anil, Lucas & Grosse (2019), "Sorting out Lipschitz function approximation", ICML.
    """

    def __init__(self, group_size: int = 2) -> None:
        super().__init__()
        self.group_size = check_int("group_size", group_size, minimum=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_sort_unchecked(x, self.group_size)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


def orthogonal_(tensor: torch.Tensor, gain: float = 1.0, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Fill a 2-D (or conv) weight in place with a random (semi-)orthogonal matrix times ``gain``.

    Thin wrapper over ``torch.nn.init.orthogonal_`` (QR of a Gaussian matrix, Saxe et al. 2013)
    that validates its arguments and takes an explicit generator. Tensors with more than two
    dimensions are treated as ``(out, in * k * ...)`` matrices, like conv kernels.

    Args:
        tensor: the weight to fill, at least 2-D.
        gain: multiplier of the orthogonal matrix (finite real).
        generator: random source; ``None`` uses torch's global RNG (as ``torch.nn.init`` does).

    Returns:
        ``tensor`` (filled in place, under ``torch.no_grad``).

    Example:
        >>> w = orthogonal_(torch.empty(5, 3), generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(w.T @ w, torch.eye(3), atol=1e-6)
        True
    """
    check_tensor("tensor", tensor, min_ndim=2)
    gain = check_real("gain", gain)
    generator = check_generator("generator", generator)
    with torch.no_grad():
        return nn.init.orthogonal_(tensor, gain=gain, generator=generator)


ORTHOGONAL_METHODS = ("newton-schulz", "cayley")


class OrthogonalLinear(nn.Module):
    r"""A linear layer whose weight is kept (semi-)orthogonal during training.

    Computes :math:`y = x W^\top + b` with :math:`W \in \mathbb{R}^{d_{out} \times d_{in}}`
    kept on the set

    .. math::
        W^\top W = I_{d_{in}} \ \text{if}\ d_{out} \ge d_{in}, \qquad
        W W^\top = I_{d_{out}} \ \text{otherwise},

    so every singular value of :math:`W` equals 1. Two mechanisms (``method``):

    - ``"newton-schulz"`` (default; the paper's): ``weight`` is an ordinary parameter that any
      optimizer updates freely, and one Björck / Newton–Schulz step :math:`W \leftarrow
      \tfrac32 W - \tfrac12 W W^\top W`, the polar factor of :math:`W` to first order
      (:func:`isoplast_lite.isometry.newton_schulz`), pulls it back after each change: the
      layer retracts lazily, at the first forward after its weight changed in place (an
      optimizer step, an in-place edit), whatever loop trains it. A change is detected by the
      weight's version counter (``weight._version``, a Python integer: no device sync and no
      work in a forward that follows no change). :meth:`retract_` (or :func:`retract_` on the
      whole model, or the hook of :func:`retract_after_step`) does it right after the step
      instead, and the next forward then finds nothing to do; both give the same numbers.
      A weight read directly after a step (``layer.weight``, ``state_dict``) is the optimizer's,
      not yet retracted. A weight loaded by ``load_state_dict``, assigned as a new parameter or
      copied with the module (``copy.deepcopy``) is taken as it is (a saved state is restored
      exactly); weights passed to ``torch.func.functional_call`` belong to the caller and are
      never modified (the runner retracts its stacked weights itself,
      :func:`isoplast_lite.engine.retract_stacked_`). If the step moved the singular values by
      :math:`\delta`, one retraction leaves them within about :math:`\tfrac32\delta^2` of 1.
      Documented bound: with one retraction after each Adam step at lr 1e-3, after 1000 steps
      every retracted weight has :math:`\max|\sigma - 1| \le 10^{-3}` and
      :math:`\lVert W^\top W - I\rVert_F \le 10^{-3}` (``tests/test_nn.py``; we measure
      about :math:`5\cdot 10^{-5}` at width 64 and :math:`5\cdot 10^{-4}` at width 256 in
      float32, while one Adam step alone moves them by about :math:`2\cdot 10^{-2}`). Cost:
      two matrix products per layer and step (:math:`4\,d_{out} d_{in} \min(d_{out}, d_{in})`
      FLOPs, independent of the batch), once per change (``benchmarks/orthogonal_lazy.py``
      measures the lazy check and retraction against explicit ones).
    - ``"cayley"`` (exact reference): ``torch.nn.utils.parametrizations.orthogonal`` with the
      Cayley map and its default *trivialization*: the trained parameter is
      ``parametrizations.weight.original`` (an unconstrained matrix whose strictly lower triangle
      defines a skew-symmetric :math:`A`), and ``self.weight`` is recomputed at every forward as
      :math:`W = B\,(I + A/2)^{-1}(I - A/2)` (the first ``d_in`` columns, or the transpose for
      wide layers) with :math:`B` the orthogonal ``base`` buffer. Orthogonal to machine
      precision with any optimizer and no retraction, but every forward and backward pays a
      linear solve (several times the cost of a Newton–Schulz step on a CPU). :meth:`retract_`
      does nothing.

    Both start from the same weight for the same ``generator`` (a random orthogonal matrix
    from :func:`orthogonal_`); the bias starts at zero. The layer works with ``torch.func``
    (``functional_call``, ``jacrev``, ``jvp``, ``vmap``), ``copy.deepcopy`` and
    ``state_dict``/``load_state_dict``. Its parameters are ``weight`` and ``bias``
    (``"newton-schulz"``) or ``parametrizations.weight.original`` and ``bias`` (``"cayley"``).

    Non-finite values: ``forward`` makes no finiteness check (it would synchronize a GPU at
    every call). A NaN or inf input gives non-finite outputs (``W`` mixes every input feature);
    a non-finite trained parameter makes the whole weight non-finite (the Cayley map solves a
    linear system), so nothing is silently repaired. The diagnostics reject such a model.
    float16 / bfloat16 are refused at construction: the orthogonal initialization and the
    Cayley map need linear algebra that torch does not provide in half precision.

    Args:
        in_features: input size ``d_in`` (>= 1).
        out_features: output size ``d_out`` (>= 1).
        bias: whether to add a learnable bias (initialized to zero).
        method: ``"newton-schulz"`` or ``"cayley"`` (see above).
        generator: random source for the initial orthogonal matrix; ``None`` uses torch's
            global RNG.
        dtype: optional dtype of the parameters, float32 or float64.

    Shape:
        - Input: ``(*, in_features)``.
        - Output: ``(*, out_features)``.

    Example:
        >>> layer = OrthogonalLinear(3, 5, generator=torch.Generator().manual_seed(0))
        >>> opt = torch.optim.SGD(layer.parameters(), lr=0.01)
        >>> layer(torch.ones(8, 3)).sum().backward()
        >>> opt.step()  # W leaves the orthogonal set ...
        >>> gap = lambda w: float((w.T @ w - torch.eye(3)).abs().max())
        >>> round(gap(layer.weight.detach()), 2)
        0.32
        >>> _ = layer(torch.ones(1, 3))  # the next forward retracts it once ...
        >>> round(gap(layer.weight.detach()), 2)
        0.09
        >>> w = layer.retract_(steps=4).weight.detach()  # ... and more retractions by hand
        >>> w.shape, gap(w) < 1e-5
        (torch.Size([5, 3]), True)
        >>> exact = OrthogonalLinear(3, 5, method="cayley", generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(exact.weight, OrthogonalLinear(3, 5, generator=torch.Generator().manual_seed(0)).weight)
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        method: str = "newton-schulz",
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        check_bool("bias", bias)
        self.method = check_choice("method", method, ORTHOGONAL_METHODS)
        generator = check_generator("generator", generator)
        dtype = _check_dtype(dtype)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype))
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        orthogonal_(self.weight, generator=generator)
        # The Cayley parametrization completes a rectangular weight to a square orthogonal
        # ``base`` with columns drawn from the global RNG; with a generator, those draws come from
        # a forked global RNG seeded from ``generator``, so the global RNG is left untouched. The
        # seed is drawn for both methods, so both consume the generator alike (same initial
        # weights, layer by layer, in ``aei_mlp``).
        seed = None if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))
        if self.method == "newton-schulz":
            self._mark_retracted()
            return
        # From here on ``self.weight`` is computed from ``parametrizations.weight.original``.
        if seed is None:
            parametrizations.orthogonal(self, "weight", orthogonal_map="cayley", use_trivialization=True)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                parametrizations.orthogonal(self, "weight", orthogonal_map="cayley", use_trivialization=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "newton-schulz":
            self._retract_if_changed()
        return nn.functional.linear(x, self.weight, self.bias)

    def _mark_retracted(self) -> None:
        """Record the weight as it is now (its identity and version) as needing no retraction."""
        w = self._parameters.get("weight")  # absent if a parametrization took it over
        self._retracted_key = None if w is None else (id(w), w._version)

    def _retract_if_changed(self) -> None:
        """One Newton–Schulz retraction if this layer's own weight changed in place since the last one.

        Note (lazy retraction). The key is ``(id, _version)`` of the registered parameter; the
        version counter grows with every in-place write (optimizer steps, ``copy_``), so a
        forward after no change costs one tuple comparison. A tensor that is not an
        ``nn.Parameter`` (``functional_call``'s arguments, ``torch.func`` wrappers) is the
        caller's and is left alone; a new parameter object (assigned, or a ``deepcopy``) is
        adopted as it is.
        """
        w = self.weight
        if type(w) is not nn.Parameter:
            return
        key = getattr(self, "_retracted_key", None)
        if key == (id(w), w._version):
            return
        if key is not None and key[0] == id(w):
            with torch.no_grad():
                w.copy_(newton_schulz_steps(w, 1))
        self._mark_retracted()

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        if self.method == "newton-schulz":
            self._mark_retracted()  # a saved state is restored as it was saved

    @torch.no_grad()
    def retract_(self, steps: int = 1, *, coefficients: str = "bjorck", interval: Optional[Tuple[float, float]] = None) -> "OrthogonalLinear":
        """Pull ``weight`` back towards the orthogonal set, in place (``"newton-schulz"`` only).

        Applies ``steps`` iterations of :func:`isoplast_lite.isometry.newton_schulz` without
        normalization (``coefficients`` and ``interval`` as there). A ``"cayley"`` layer is
        exactly orthogonal already and is left untouched.

        Args:
            steps: iterations (>= 1); 1 after each optimizer step is the default retraction.
            coefficients: ``"bjorck"`` (default) or ``"chebyshev"``.
            interval: bounds on the singular values before the retraction (``"chebyshev"``).

        Returns:
            ``self``.
        """
        steps, coefficients, interval = _check_retraction(steps, coefficients, interval)
        self._retract(steps, coefficients, interval)
        return self

    @torch.no_grad()
    def _retract(self, steps: int, coefficients: str, interval: Optional[Tuple[float, float]]) -> None:
        if self.method == "newton-schulz":
            self.weight.copy_(newton_schulz_steps(self.weight, steps, coefficients, interval))
            self._mark_retracted()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"method={self.method!r}")  # fmt: skip


def _check_retraction(steps, coefficients, interval):
    steps = check_int("steps", steps, minimum=1)
    coefficients = check_choice("coefficients", coefficients, COEFFICIENTS)
    return steps, coefficients, check_interval(coefficients, interval)


@torch.no_grad()
def retract_(model: nn.Module, steps: int = 1, *, coefficients: str = "bjorck", interval: Optional[Tuple[float, float]] = None) -> nn.Module:
    """Retract every Newton–Schulz :class:`OrthogonalLinear` of ``model`` (see its ``retract_``).

    Optional since the layers retract lazily (at the first forward after a change, see
    :class:`OrthogonalLinear`): called after each optimizer step (or by the hook of
    :func:`retract_after_step`) it retracts at once, e.g. to read or save retracted weights, or
    with more ``steps``. Modules of other kinds, and ``"cayley"`` layers, are left alone; a
    model without orthogonal layers is a no-op.

    Args:
        model: any module.
        steps: Newton–Schulz iterations per layer (>= 1).
        coefficients: ``"bjorck"`` (default) or ``"chebyshev"``
            (:func:`isoplast_lite.isometry.newton_schulz`).
        interval: bounds on the singular values before the retraction (``"chebyshev"`` only).

    Returns:
        ``model``.

    Example:
        >>> model = aei_mlp(4, 8, 2, 3, generator=torch.Generator().manual_seed(0))
        >>> opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     model(torch.ones(5, 4)).sum().backward()
        ...     opt.step()
        ...     _ = retract_(model)
        >>> w = model[1][0].weight.detach()
        >>> bool((w.T @ w - torch.eye(8)).abs().max() < 1e-3)
        True
    """
    check_module("model", model)
    steps, coefficients, interval = _check_retraction(steps, coefficients, interval)
    for module in model.modules():
        if isinstance(module, OrthogonalLinear):
            module._retract(steps, coefficients, interval)
    return model


def retract_after_step(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    steps: int = 1,
    *,
    coefficients: str = "bjorck",
    interval: Optional[Tuple[float, float]] = None,
):
    """Make ``optimizer`` call :func:`retract_` on ``model`` after each of its steps.

    Registers a post-step hook (``optimizer.register_step_post_hook``), so a plain training
    loop (``loss.backward(); optimizer.step()``) keeps the Newton–Schulz orthogonal layers
    orthogonal with any optimizer.

    Args:
        optimizer: a ``torch.optim.Optimizer`` stepping ``model``'s parameters.
        model: the module holding the :class:`OrthogonalLinear` layers.
        steps, coefficients, interval: as in :func:`retract_`.

    Returns:
        The hook's handle; ``handle.remove()`` stops the retractions.

    Example:
        >>> model = aei_mlp(4, 8, 2, 3, generator=torch.Generator().manual_seed(0))
        >>> opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        >>> handle = retract_after_step(opt, model)
        >>> for _ in range(100):
        ...     opt.zero_grad()
        ...     model(torch.ones(5, 4)).sum().backward()
        ...     opt.step()  # the hook retracts
        >>> w = model[1][0].weight.detach()
        >>> bool((w.T @ w - torch.eye(8)).abs().max() < 1e-3)
        True
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    check_module("model", model)
    steps, coefficients, interval = _check_retraction(steps, coefficients, interval)
    return optimizer.register_step_post_hook(
        lambda opt, args, kwargs: retract_(model, steps, coefficients=coefficients, interval=interval)
    )


def _check_dtype(dtype: Optional[torch.dtype]) -> Optional[torch.dtype]:
    """``None``, float32 or float64 (the orthogonal initialization's QR has no half-precision kernel)."""
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"dtype must be None or a floating torch.dtype, got {dtype!r}")
    if dtype in (torch.float16, torch.bfloat16):
        raise TypeError(
            f"dtype must be None, torch.float32 or torch.float64, got {dtype}: the orthogonal initialization "
            "and parametrization need linear algebra that torch has no half-precision kernels for "
            "(train in float32, with torch.autocast for mixed precision)"
        )
    return dtype


def _make_linear(
    in_features: int, out_features: int, init: str, generator: Optional[torch.Generator], dtype: Optional[torch.dtype]
) -> nn.Linear:
    """An ``nn.Linear`` initialized by ``init`` with draws from ``generator`` only.

    ``skip_init`` builds the layer without touching any RNG, so the global RNG is not advanced
    when a generator is given.
    """
    layer = torch.nn.utils.skip_init(nn.Linear, in_features, out_features, dtype=dtype)
    with torch.no_grad():
        if init == "orthogonal":
            nn.init.orthogonal_(layer.weight, gain=1.0, generator=generator)
            layer.bias.zero_()
        elif init == "kaiming":
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
            layer.bias.zero_()
        else:  # "default": exactly what nn.Linear.reset_parameters does
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(in_features)
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


def _check_mlp_dims(in_dim, width, depth, out_dim) -> Tuple[int, int, int, int]:
    """The four sizes of an MLP builder, each an int >= 1 (the error names the argument)."""
    return tuple(check_int(name, value, minimum=1)
                 for name, value in (("in_dim", in_dim), ("width", width), ("depth", depth), ("out_dim", out_dim)))


def relu_mlp(
    in_dim: int,
    width: int,
    depth: int,
    out_dim: int,
    *,
    init: str = "orthogonal",
    layernorm: bool = False,
    generator: Optional[torch.Generator] = None,
    dtype: Optional[torch.dtype] = None,
) -> nn.Sequential:
    """A ReLU multilayer perceptron made of ``depth`` hidden blocks and a linear head.

    Block ``l`` (``l = 0 .. depth-1``) is ``nn.Sequential(nn.Linear, [nn.LayerNorm], nn.ReLU)``;
    block ``depth`` is the head ``nn.Linear(width, out_dim)``. The 64-256-256-256-10 net of our
    own probes (``PAPER.md``; not a configuration of the paper) is ``relu_mlp(64, 256, 3, 10)``.

    Initialization (weights of every layer, head included):

    - ``"orthogonal"`` (default, as in the paper): random (semi-)orthogonal matrices with gain 1
      (every singular value 1), zero biases.
    - ``"kaiming"``: He-normal ``N(0, 2 / fan_in)``, zero biases.
    - ``"default"``: PyTorch's ``nn.Linear`` default (Kaiming-uniform with ``a = sqrt(5)``,
      uniform biases in ``+-1/sqrt(fan_in)``).

    Args:
        in_dim: input features (>= 1).
        width: hidden units per hidden block (>= 1).
        depth: number of hidden blocks (>= 1).
        out_dim: output features (>= 1).
        init: ``"orthogonal"``, ``"kaiming"`` or ``"default"``.
        layernorm: insert ``nn.LayerNorm(width)`` between each hidden linear map and its ReLU.
        generator: random source for every initial weight; ``None`` uses torch's global RNG.
        dtype: optional dtype of the parameters, float32 or float64 (half precision: TypeError).

    Returns:
        ``nn.Sequential`` of ``depth + 1`` blocks.

    Shape:
        ``(N, in_dim) -> (N, out_dim)``.

    Example:
        >>> model = relu_mlp(8, 16, 2, 3, generator=torch.Generator().manual_seed(0))
        >>> len(model), model(torch.randn(4, 8)).shape
        (3, torch.Size([4, 3]))
        >>> model[0]
        Sequential(
          (0): Linear(in_features=8, out_features=16, bias=True)
          (1): ReLU()
        )
    """
    in_dim, width, depth, out_dim = _check_mlp_dims(in_dim, width, depth, out_dim)
    init = check_choice("init", init, ("orthogonal", "kaiming", "default"))
    check_bool("layernorm", layernorm)
    generator = check_generator("generator", generator)
    dtype = _check_dtype(dtype)

    blocks = []
    fan_in = in_dim
    for _ in range(depth):
        layers = [_make_linear(fan_in, width, init, generator, dtype)]
        if layernorm:
            layers.append(nn.LayerNorm(width, dtype=dtype))
        layers.append(nn.ReLU())
        blocks.append(nn.Sequential(*layers))
        fan_in = width
    blocks.append(_make_linear(width, out_dim, init, generator, dtype))
    return nn.Sequential(*blocks)


def aei_mlp(
    in_dim: int,
    width: int,
    depth: int,
    out_dim: int,
    *,
    head: str = "free",
    group_size: int = 2,
    orthogonal: str = "newton-schulz",
    generator: Optional[torch.Generator] = None,
    dtype: Optional[torch.dtype] = None,
) -> nn.Sequential:
    """An almost-everywhere isometric (AEI) MLP: orthogonal weights + GroupSort activations.

    Block ``l`` (``l = 0 .. depth-1``) is ``nn.Sequential(OrthogonalLinear, GroupSort)``, so each
    hidden block's Jacobian ``P W`` (``P`` a permutation) has all its singular values equal to 1
    at almost every input. The first weight is semi-orthogonal when ``in_dim != width``. Block
    ``depth`` is the head:

    - ``head="free"`` (default): an unconstrained ``nn.Linear(width, out_dim)`` (orthogonal init,
      zero bias), as the paper does so that a Lipschitz-1 trunk can fit L-Lipschitz functions.
    - ``head="orthogonal"``: an :class:`OrthogonalLinear` head (the whole net is then
      1-Lipschitz and, when ``in_dim == width == out_dim``, an isometry a.e.).

    Args:
        in_dim: input features (>= 1).
        width: hidden units (>= 1), divisible by ``group_size``.
        depth: number of hidden blocks (>= 1).
        out_dim: output features (>= 1).
        head: ``"free"`` or ``"orthogonal"``.
        group_size: GroupSort group size (2 = MaxMin); must divide ``width``.
        orthogonal: ``method`` of every :class:`OrthogonalLinear`: ``"newton-schulz"`` (default;
            train with :func:`retract_` after each optimizer step, or :func:`retract_after_step`)
            or ``"cayley"`` (exact parametrization, slower). Measured on a shared 2-core CPU
            (one thread, width 256, batch 32, Adam, ``benchmarks/aei_step.py``), a step with one
            Newton–Schulz retraction costs about 2.7x a ReLU step, against about 15x with
            Cayley.
        generator: random source for every initial weight; ``None`` uses torch's global RNG.
        dtype: optional dtype of the parameters, float32 or float64 (half precision: TypeError).

    Returns:
        ``nn.Sequential`` of ``depth + 1`` blocks.

    Shape:
        ``(N, in_dim) -> (N, out_dim)``.

    Example:
        >>> model = aei_mlp(8, 16, 2, 3, generator=torch.Generator().manual_seed(0))
        >>> model(torch.randn(4, 8)).shape
        torch.Size([4, 3])
        >>> isinstance(model[0][0], OrthogonalLinear), isinstance(model[0][1], GroupSort), type(model[2])
        (True, True, <class 'torch.nn.modules.linear.Linear'>)

    References:
        Anil, Lucas & Grosse (2019), "Sorting out Lipschitz function approximation", ICML.
    """
    in_dim, width, depth, out_dim = _check_mlp_dims(in_dim, width, depth, out_dim)
    head = check_choice("head", head, ("free", "orthogonal"))
    group_size = check_int("group_size", group_size, minimum=1)
    if width % group_size != 0:
        raise ValueError(f"group_size must divide width, got group_size={group_size} and width={width}")
    orthogonal = check_choice("orthogonal", orthogonal, ORTHOGONAL_METHODS)
    generator = check_generator("generator", generator)
    dtype = _check_dtype(dtype)

    def ortho(d_in, d_out):
        return OrthogonalLinear(d_in, d_out, method=orthogonal, generator=generator, dtype=dtype)

    blocks = []
    fan_in = in_dim
    for _ in range(depth):
        blocks.append(nn.Sequential(ortho(fan_in, width), GroupSort(group_size)))
        fan_in = width
    if head == "free":
        blocks.append(_make_linear(width, out_dim, "orthogonal", generator, dtype))
    else:
        blocks.append(ortho(width, out_dim))
    return nn.Sequential(*blocks)
