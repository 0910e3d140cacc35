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

from ._validation import check_bool, check_choice, check_generator, check_int, check_real, check_tensor

__all__ = ["group_sort", "GroupSort", "OrthogonalLinear", "orthogonal_", "relu_mlp", "aei_mlp"]


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
    return _group_sort(x, group_size)


def _group_sort(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Unchecked :func:`group_sort` except for the divisibility test (shapes are static)."""
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
        return _group_sort(x, self.group_size)

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


class OrthogonalLinear(nn.Module):
    r"""A linear layer whose weight stays exactly (semi-)orthogonal during training.

    Computes :math:`y = x W^\top + b` with :math:`W \in \mathbb{R}^{d_{out} \times d_{in}}`
    constrained to satisfy

    .. math::
        W^\top W = I_{d_{in}} \ \text{if}\ d_{out} \ge d_{in}, \qquad
        W W^\top = I_{d_{out}} \ \text{otherwise},

    so every singular value of :math:`W` equals 1.

    Mechanism (exact, not approximate): ``torch.nn.utils.parametrizations.orthogonal`` with the
    Cayley map and its default *trivialization*: the trained parameter is
    ``parametrizations.weight.original`` (an unconstrained matrix whose strictly lower triangle
    defines a skew-symmetric :math:`A`), and ``self.weight`` is recomputed at every forward as
    :math:`W = B\,(I + A/2)^{-1}(I - A/2)` (the first ``d_in`` columns, or the transpose for wide
    layers) with :math:`B` the orthogonal ``base`` buffer. The Cayley map is used rather than
    the matrix exponential because it costs one linear solve (about 100x faster on a CPU at
    width 256) and is just as exact. Any optimizer (SGD, Adam, ...) therefore moves
    along the orthogonal group and :math:`W` stays orthogonal to machine precision. The
    weight is initialized with :func:`orthogonal_` (a random orthogonal matrix) and the bias with
    zeros. For an *iterative* projection, see :func:`isoplast_lite.isometry.newton_schulz`.

    The layer works with ``torch.func`` (``functional_call``, ``jacrev``, ``jvp``, ``vmap``),
    ``copy.deepcopy`` and ``state_dict``/``load_state_dict``. Its parameters are named
    ``parametrizations.weight.original`` and ``bias``.

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
        generator: random source for the initial orthogonal matrix; ``None`` uses torch's
            global RNG.
        dtype: optional dtype of the parameters, float32 or float64.

    Shape:
        - Input: ``(*, in_features)``.
        - Output: ``(*, out_features)``.

    Example:
        >>> layer = OrthogonalLinear(3, 5, generator=torch.Generator().manual_seed(0))
        >>> w = layer.weight.detach()
        >>> w.shape, torch.allclose(w.T @ w, torch.eye(3), atol=1e-5)
        (torch.Size([5, 3]), True)
        >>> layer(torch.randn(2, 3)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        check_bool("bias", bias)
        generator = check_generator("generator", generator)
        dtype = _check_dtype(dtype)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype))
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        orthogonal_(self.weight, generator=generator)
        # From here on ``self.weight`` is computed from ``parametrizations.weight.original``.
        # For a rectangular weight, torch completes it to a square orthogonal ``base`` with
        # columns drawn from the global RNG; with a generator, those draws come from a forked
        # global RNG seeded from ``generator``, so the global RNG is left untouched.
        if generator is None:
            parametrizations.orthogonal(self, "weight", orthogonal_map="cayley", use_trivialization=True)
        else:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                parametrizations.orthogonal(self, "weight", orthogonal_map="cayley", use_trivialization=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


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
    block ``depth`` is the head ``nn.Linear(width, out_dim)``. The paper's "64-256-256-256-10"
    net is ``relu_mlp(64, 256, 3, 10)``.

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
    generator = check_generator("generator", generator)
    dtype = _check_dtype(dtype)

    blocks = []
    fan_in = in_dim
    for _ in range(depth):
        blocks.append(nn.Sequential(OrthogonalLinear(fan_in, width, generator=generator, dtype=dtype), GroupSort(group_size)))
        fan_in = width
    if head == "free":
        blocks.append(_make_linear(width, out_dim, "orthogonal", generator, dtype))
    else:
        blocks.append(OrthogonalLinear(width, out_dim, generator=generator, dtype=dtype))
    return nn.Sequential(*blocks)
