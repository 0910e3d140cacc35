"""The compared continual-learning methods: one small interface, declared settings, a registry.

A method is a subclass of :class:`Method` registered with :func:`register_method`. It declares
its hyperparameters in a nested ``Settings`` dataclass (:func:`isoplast_lite.settings.setting`:
default, type, range, one-line meaning) and reads them as ``self.settings.<name>``; the runner's
:class:`~isoplast_lite.run.Config` holds the benchmark, the budget and the chosen method with
*its* settings only, and no method reads another's. A method decides:

- which network it trains (:meth:`Method.build_model`), and may refuse a run it cannot do
  (:meth:`Method.check`);
- its optimizer (:meth:`Method.make_optimizer`);
- an extra loss term (:meth:`Method.penalty`), given a :class:`StepContext`: the current batch,
  the model's outputs on it and :meth:`StepContext.forward` to evaluate the stacked model at
  other parameters (e.g. the parameters before the step, for a churn penalty);
- what it does after each step (:meth:`Method.after_step`, same context) and at each task
  boundary (:meth:`Method.at_task_boundary`, given a :class:`TaskContext`: the task, its
  training data per seed and the :class:`~isoplast_lite.tasks.Task` objects).

Every hook works on a :class:`~isoplast_lite.engine.StackedModel`: the ``S`` seeds of one
configuration stacked along a leading dimension. The loss is the *sum* over seeds of each seed's
mean loss, so each seed's gradient is exactly its own; a method must keep seeds apart
(element-wise or per-seed optimizer statistics, per-seed penalties and resets). A test runs
every registered method, user-registered ones included, with 2 stacked seeds and compares each
seed with a 1-seed run, so a method that couples seeds fails it.

Adding a method (outside the package; see ``DEVELOPING.md``)::

    from dataclasses import dataclass
    from isoplast_lite.methods import Method, register_method
    from isoplast_lite.settings import setting

    @register_method
    class L1(Method):
        name = "l1"
        summary = "Adam + strength * sum |theta| in the loss"

        @dataclass(frozen=True)
        class Settings:
            strength: float = setting(1e-5, low=0, help="coefficient of the L1 penalty")

        def penalty(self, stack, ctx):
            return self.settings.strength * sum(p.abs().sum() for p in stack.params.values())

Then ``run(Config("random-label-digits", "l1", settings={"strength": 1e-4}))``, the cache, the
plots and, after ``--import mymodule``, the command line treat it as a built-in method.

Built-in methods (``python -m isoplast_lite run --help`` lists their settings and defaults):

=================  ==========================================================================
name               what it is
=================  ==========================================================================
``adam``           Adam (Kingma & Ba 2015) on a ReLU MLP.
``adamw``          AdamW, decoupled weight decay (Loshchilov & Hutter 2019).
``l2``             Adam + ``strength * sum ||theta||^2`` in the loss (all parameters).
``l2-init``        Adam + ``strength * sum ||theta - theta_0||^2`` (Kumar et al. 2023).
``shrink-perturb`` at each task boundary ``theta <- shrink * theta + perturb * theta_fresh``
                   with ``theta_fresh`` a fresh initialization (Ash & Adams 2020).
``redo``           at each task boundary, tau-dormant units get re-initialized incoming
                   weights, zeroed outgoing weights and reset Adam moments (Sokar et al. 2023).
``spectral``       Adam + ``strength * sum (sigma_max(W)^2 - 1)^2``, sigma_max by power
                   iteration (Lewandowski et al. 2025).
``layernorm``      Adam on a ReLU MLP with LayerNorm before each activation (Lyle et al. 2023).
``coupled-iso``    Adam + ``iso_strength * sum R_iso(W)`` in the loss over hidden weights: the
                   "coupled" ablation of AdamO (target I, no width scaling: not Parseval).
``parseval``       Parseval regularization as in Chung et al. 2024: Adam +
                   ``strength (64/width)^2 sum ||W W^T - s I||_F^2`` over hidden weights, with
                   per-unit diagonal scale layers.
``adamo``          AdamO: decoupled isometry step on hidden weights (the paper's method).
``aei-adam``       almost-everywhere isometric net: orthogonal hidden weights + GroupSort
                   (Anil et al. 2019), free linear head, Adam; the hidden weights are kept
                   orthogonal by a Newton–Schulz retraction after each step (setting
                   ``orthogonal``; ``"cayley"`` is the exact parametrization).
``aei-adamo``      the same net trained with AdamO; the isometry step acts on the free head
                   (its "soft regularization", PAPER.md claim 3).
``fresh``          the reference of every plasticity measure: Adam on a network freshly
                   initialized (weights and optimizer state) at every task.
=================  ==========================================================================

Example:
    >>> from isoplast_lite.run import Config
    >>> cfg = Config("random-label-digits", "adamo", seeds=2, width=8, depth=2, settings={"iso_strength": 0.01})
    >>> method = make_method(cfg.method, cfg.settings)
    >>> method.settings
    AdamOSettings(iso_strength=0.01, iso_scaling='lr')
    >>> stack = StackedModel.build(lambda g: method.build_model(64, 10, cfg, g), seeds=(0, 1))
    >>> stack(torch.randn(2, 5, 64)).shape
    torch.Size([2, 5, 10])
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .seeding import seeded_generator
from ._validation import ConfigError
from .units import dormant_mask
from .engine import StackedModel, retract_stacked_
from .isometry import gram_deviation, isometry_direction, isometry_penalty_matrix
from .nn import ORTHOGONAL_METHODS, aei_mlp, relu_mlp
from .optim import ISO_SCALINGS, AdamO, EntryStepAdam, hidden_head_groups, member_adam, member_view
from .settings import NoSettings, describe_settings, make_settings, setting, setting_specs, settings_dict

if TYPE_CHECKING:  # pragma: no cover
    from .tasks import Task

__all__ = ["METHODS", "BUILTIN_METHODS", "Method", "StepContext", "TaskContext", "StackedModel", "register_method",
           "unregister_method", "make_method", "method_class", "methods_with_setting", "describe_methods",
           "fresh_parameters", "DEFAULT_ISO_STRENGTH", "MethodInfo", "method_info", "MethodError", "call_hook"]  # fmt: skip

#: The runner's default lambda (adamo, coupled-iso, aei-adamo, adamo-target): our probes' 0.1 at
#: lr 1e-3 (PAPER.md, "our own first probes"). Why not the paper's stated 1e-3, which is
#: ``optim.AdamO``'s own default (the optimizer alone follows the paper)? Under the "lr" reading
#: the isometry step is lr * lambda * grad R_iso, and near sigma = 1 R_iso halves in about
#: ln 2 / (16 lr lambda) steps: 43 000 at lr 1e-3 and lambda 1e-3, ten times the book's runs
#: (10 tasks x 400 steps), against 430 at lambda 0.1. Chapters that run the paper's setting set
#: lambda explicitly, and the streams tune it (Method.tuning).
DEFAULT_ISO_STRENGTH = 0.1


# ----------------------------------------------------------------------------------------------
# What hooks see
# ----------------------------------------------------------------------------------------------


@dataclass
class StepContext:
    """What :meth:`Method.penalty` and :meth:`Method.after_step` see at one training step.

    Attributes:
        cfg: the run's :class:`~isoplast_lite.run.Config` (benchmark, budget, architecture).
        task: the task index (from 0). step: the step within the task (from 0).
        stack: the stacked model being trained.
        x: the batch's inputs ``(S, B, D)``, one batch per seed. y: its labels ``(S, B)``.
        logits: the model's outputs on ``x`` at the current parameters ``(S, B, O)``; in
            :meth:`Method.penalty` they carry the graph (a penalty on them is differentiated),
            in :meth:`Method.after_step` they are the outputs *before* the step, detached.
    """

    cfg: Any
    task: int
    step: int
    stack: StackedModel
    x: torch.Tensor
    y: torch.Tensor
    logits: torch.Tensor

    def forward(self, x: Optional[torch.Tensor] = None, params: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """The stacked model's logits on ``x`` (default: this step's batch) at ``params``
        (default: the current parameters; a dict of some names evaluates the others at their
        current values). See :meth:`~isoplast_lite.engine.StackedModel.forward_all`."""
        return self.stack(self.x if x is None else x, params)


@dataclass
class TaskContext:
    """What :meth:`Method.at_task_boundary` sees before training on task ``task >= 1`` starts.

    Attributes:
        cfg: the run's config. task: the index of the task about to start.
        x: its training inputs per seed ``(S, N, D)``. y: their labels ``(S, N)``.
        tasks: the :class:`~isoplast_lite.tasks.Task` of each seed (test split, metadata).
    """

    cfg: Any
    task: int
    x: torch.Tensor
    y: torch.Tensor
    tasks: Sequence["Task"] = field(default_factory=tuple)


# ----------------------------------------------------------------------------------------------
# The interface and the registry
# ----------------------------------------------------------------------------------------------


class Method:
    """Base class: Adam on a ReLU MLP; subclasses override the hooks they need.

    Class attributes:
        name: the registry name (lower case, digits and dashes).
        summary: one line for ``--help``.
        Settings: a frozen dataclass of :func:`~isoplast_lite.settings.setting` fields (the
            base has none).
        version: part of the cache key; bump it when the method's behaviour changes, so cached
            results of the old behaviour are not served.

    Metadata (what figures and tools know of a method; read with :func:`method_info`, declared
    on the registered class itself and never inherited: a subclass is another method):
        family: the figures' group (``plots.FAMILIES``: panels, line style and marker);
            ``"other"`` by default.
        colour: its colour in every figure, an Okabe–Ito name of :data:`isoplast_lite.plots.OKABE_ITO`
            (unique within its family) or a matplotlib colour; ``None``: a colour from a hash
            of the name.
        tuning: ``(setting, values)``, the grid its main hyperparameter is tuned over (e.g. by
            ``tools/precompute_streams.py``); ``None``: nothing to tune.
        cost: the cost of one training step relative to Adam's at the book's widths (a hint
            for schedulers that start the longest runs first).
        compared: one of the benchmark comparisons (``tools/precompute_streams.py`` tunes it
            over ``tuning`` and runs it); ``False`` by default, so a method is compared only
            when it says so (our interventions, ``adamo-target``, are not).
        member_settings: what its hooks read per member (:meth:`member_values`,
            :meth:`member_lr`): ``"lr"`` and names of its settings declared ``stackable``.
            Configurations of the method that differ only in these are trained as one stacked
            model, hyperparameter values beside seeds (:mod:`isoplast_lite.stacking`); ``()``
            by default (a method that does not say so is never stacked across values: the
            sweep runs its configurations one by one).

    Per-member values: in a stacked group the method's ``settings`` are the first
    configuration's; a hook reads a setting that differs between members with
    ``self.member_values(name, like=p)`` (a number when every member shares it, else a tensor
    ``(M, 1, ..., 1)`` broadcast over ``p``'s trailing dimensions) and the learning rate with
    ``self.member_lr(cfg)``; outside a stacked group both give the plain numbers.

    Args:
        settings: ``None`` (defaults), a dict of some settings, or a ``Settings`` instance;
            validated (:class:`~isoplast_lite.settings.SettingError` on an unknown name, a wrong
            type or a value out of range). The result is ``self.settings``.
    """

    name: ClassVar[str] = "adam"
    summary: ClassVar[str] = "Adam (Kingma & Ba 2015) on a ReLU MLP"
    Settings: ClassVar[type] = NoSettings
    version: ClassVar[int] = 1
    family: ClassVar[str] = "other"
    colour: ClassVar[Optional[str]] = None
    tuning: ClassVar[Optional[Tuple[str, Tuple[Any, ...]]]] = None
    cost: ClassVar[float] = 1.0
    compared: ClassVar[bool] = False
    member_settings: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, settings: Any = None):
        self.settings = make_settings(self.name, self.Settings, settings)
        self._members: Dict[str, torch.Tensor] = {}
        self.n_members: Optional[int] = None

    def stack_members(self, values: Mapping[str, Sequence[float]]) -> None:
        """Make this instance the method of a stacked group: ``values`` maps ``"lr"`` and setting
        names to one value per member (in stacking order). Only names this method declares in
        ``member_settings`` may differ between members; ``self.settings`` must hold the first
        member's values.

        Raises:
            ValueError: a name that differs between members and is not declared, or lists of
                unequal lengths.
        """
        declared = _declared(type(self), "member_settings")
        lengths = {len(v) for v in values.values()}
        if len(lengths) > 1:
            raise ValueError(f"per-member values must all have one value per member, got lengths {sorted(lengths)}")
        members: Dict[str, torch.Tensor] = {}
        for name, vals in values.items():
            vals = [float(v) for v in vals]
            if len(set(vals)) <= 1:
                continue  # shared by every member: read as a plain number
            if name not in declared:
                raise ValueError(f"method {self.name!r}: {name!r} differs between stacked members but the method reads it per member "
                                 f"only for {declared or 'nothing'} (member_settings); allowed: separate runs")  # fmt: skip
            members[name] = torch.tensor(vals, dtype=torch.float64)
        self._members = members
        self.n_members = lengths.pop() if lengths else None

    def member_values(self, name: str, like: Optional[torch.Tensor] = None):
        """Setting ``name`` per member: its number when every member shares it (or outside a
        stacked group), else a float64 ``(M,)`` tensor, viewed as ``(M, 1, ..., 1)`` in
        ``like``'s dtype and device when ``like`` (a member-stacked tensor) is given.

        Example:
            >>> m = make_method("l2", {"strength": 1e-3})
            >>> m.member_values("strength")
            0.001
            >>> m.stack_members({"strength": [1e-3, 1e-3, 1e-2, 1e-2]})
            >>> m.member_values("strength", like=torch.zeros(4, 3, 2)).shape
            torch.Size([4, 1, 1])
        """
        if name in self._members:
            values = self._members[name]
            return values if like is None else member_view(values, like)
        if name == "lr":
            raise ValueError("the learning rate is read with member_lr(cfg)")
        return getattr(self.settings, name)

    def member_lr(self, cfg, like: Optional[torch.Tensor] = None):
        """The learning rate per member: ``cfg.lr`` when every member shares it (or outside a
        stacked group), else a float64 ``(M,)`` tensor (``(M, 1, ..., 1)`` like ``like``)."""
        if "lr" in self._members:
            return self._members["lr"] if like is None else member_view(self._members["lr"], like)
        return cfg.lr

    def check(self, cfg) -> None:
        """Raise a :class:`~isoplast_lite._validation.ConfigError` naming the fields of ``cfg``
        this method cannot run with (called before any work; the base accepts every config)."""

    def build_model(self, in_dim: int, out_dim: int, cfg, generator: torch.Generator) -> nn.Sequential:
        """One seed's network: an ``nn.Sequential`` of ``depth`` hidden blocks and a head."""
        return relu_mlp(in_dim, cfg.width, cfg.depth, out_dim, init=cfg.init, generator=generator)

    def setup(self, stack: StackedModel, cfg) -> None:
        """Called once after the stacked model is built (records initial weights, etc.)."""

    def make_optimizer(self, stack: StackedModel, cfg) -> torch.optim.Optimizer:
        # fused: one pass over each tensor's parameter, gradient and moments instead of ~10
        # elementwise passes (at width 256 the optimizer's memory traffic costs as much as the
        # matmuls); the same algorithm, its float rounding differs from the per-tensor loop in
        # the last bit (tests/test_methods.py; the shipped re-run checks still agree). With one
        # lr per member (a stacked group), optim.MemberAdam
        return member_adam(list(stack.params.values()), self.member_lr(cfg))

    def penalty(self, stack: StackedModel, ctx: StepContext) -> Optional[torch.Tensor]:
        """Extra loss term, summed over seeds (``None`` for none)."""
        return None

    def after_step(self, stack: StackedModel, opt: torch.optim.Optimizer, ctx: StepContext) -> None:
        """Called after every optimizer step."""

    def at_task_boundary(self, stack: StackedModel, opt: torch.optim.Optimizer, ctx: TaskContext) -> None:
        """Called before training on task ``ctx.task >= 1`` starts."""

    def state_dict(self) -> Dict[str, object]:
        """The method's own state to checkpoint (tensors are moved to the CPU)."""
        return {}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        pass


METHODS: Dict[str, type] = {}
_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def register_method(cls: Optional[type] = None, *, replace: bool = False):
    """Register a :class:`Method` subclass under its ``name`` (usable as a class decorator).

    The runner (:func:`isoplast_lite.run.run`), its cache (the key covers the method's name,
    ``version`` and settings), the command line (with ``--import MODULE``) and the plots then
    treat it as a built-in method.

    Args:
        cls: the subclass. Its ``name`` must be lower case (letters, digits, dashes), its
            ``Settings`` a frozen dataclass of :func:`~isoplast_lite.settings.setting` fields
            whose defaults are allowed values.
        replace: allow replacing a method registered under the same name.

    Raises:
        TypeError: ``cls`` is not a ``Method`` subclass or its settings are malformed.
        ValueError: a bad name, or the name is taken (and ``replace`` is false).
    """
    if cls is None:
        return lambda c: register_method(c, replace=replace)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"register_method needs a subclass of isoplast_lite.methods.Method, got {cls!r}")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{cls.__qualname__}.name must be set on the class, lower case letters, digits and dashes (e.g. 'my-method'), got {name!r}")
    if name in METHODS and METHODS[name] is not cls and not replace:
        raise ValueError(f"a method named {name!r} is already registered ({METHODS[name].__qualname__}); pass replace=True to replace it")
    if not isinstance(cls.summary, str) or "\n" in cls.summary:
        raise ValueError(f"{cls.__qualname__}.summary must be one line")
    setting_specs(cls.Settings)  # TypeError if malformed
    make_settings(name, cls.Settings, settings_dict(cls.Settings()))  # the defaults must be allowed values
    if not isinstance(cls.version, int) or isinstance(cls.version, bool):
        raise TypeError(f"{cls.__qualname__}.version must be an int, got {cls.version!r}")
    _check_metadata(cls, name)
    METHODS[name] = cls
    return cls


@dataclass(frozen=True)
class MethodInfo:
    """What figures and tools know of a registered method (:func:`method_info`).

    Attributes:
        name, family, colour, tuning, cost, compared: the class's declarations (see
            :class:`Method`), defaults where it declares none.
        stackable: the names of its settings declared ``stackable`` (:func:`~isoplast_lite.settings.setting`).
        member_settings: what its hooks read per member in a stacked group (``"lr"`` and
            stackable settings; see :class:`Method`): configurations differing only in these
            are stacked by :func:`isoplast_lite.sweep.run_sweep`.
    """

    name: str
    family: str
    colour: Optional[str]
    tuning: Optional[Tuple[str, Tuple[Any, ...]]]
    cost: float
    compared: bool
    stackable: Tuple[str, ...]
    member_settings: Tuple[str, ...] = ()


_METADATA = ("family", "colour", "tuning", "cost", "compared")


def _declared(cls: type, attr: str) -> Any:
    """``cls``'s own declaration of ``attr``, else :class:`Method`'s default (never a parent's)."""
    return cls.__dict__[attr] if attr in cls.__dict__ else Method.__dict__[attr]


def method_info(name: str) -> MethodInfo:
    """The metadata of the method registered as ``name`` (family, colour, tuning grid, ...).

    Example:
        >>> method_info("adamo").family, method_info("adamo").tuning
        ("the paper's", ('iso_strength', (0.01, 0.1, 1.0)))
        >>> method_info("adamo").stackable
        ('iso_strength',)
    """
    cls = method_class(name)
    values = {attr: _declared(cls, attr) for attr in _METADATA}
    stackable = tuple(s.name for s in setting_specs(cls.Settings) if s.stackable)
    return MethodInfo(name=name, stackable=stackable, member_settings=tuple(_declared(cls, "member_settings")), **values)


def _check_metadata(cls: type, name: str) -> None:
    """Raise naming the attribute if ``cls``'s metadata is malformed (see :class:`Method`)."""
    where = cls.__qualname__
    family, colour, tuning, cost, compared = (_declared(cls, a) for a in _METADATA)
    if not isinstance(family, str) or not family.strip() or "\n" in family:
        raise TypeError(f"{where}.family must be a one-line str (a figure group), got {family!r}")
    if colour is not None and (not isinstance(colour, str) or not colour):
        raise TypeError(f"{where}.colour must be None or a colour name, got {colour!r}")
    if not isinstance(cost, (int, float)) or isinstance(cost, bool) or not math.isfinite(cost) or cost <= 0:
        raise ValueError(f"{where}.cost must be a finite number > 0 (relative to Adam's step), got {cost!r}")
    if not isinstance(compared, bool):
        raise TypeError(f"{where}.compared must be a bool, got {compared!r}")
    members = _declared(cls, "member_settings")
    stackable = {s.name for s in setting_specs(cls.Settings) if s.stackable}
    if not isinstance(members, tuple) or any(m != "lr" and m not in stackable for m in members):
        raise TypeError(f"{where}.member_settings must be a tuple of 'lr' and settings declared stackable ({sorted(stackable)}), got {members!r}")
    if tuning is None:
        return
    if not (isinstance(tuning, tuple) and len(tuning) == 2 and isinstance(tuning[1], tuple) and tuning[1]):
        raise TypeError(f"{where}.tuning must be None or (setting name, non-empty tuple of values), got {tuning!r}")
    for value in tuning[1]:  # every value must be allowed (SettingError names the setting otherwise)
        make_settings(name, cls.Settings, {tuning[0]: value})


def unregister_method(name: str) -> None:
    """Remove a method registered by :func:`register_method` (built-in methods stay)."""
    if name in BUILTIN_METHODS:
        raise ValueError(f"{name!r} is a built-in method and cannot be unregistered")
    METHODS.pop(name, None)


def method_class(name: str) -> type:
    """The class registered as ``name``, or a ``ValueError`` listing the registered names."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a str, one of {tuple(METHODS)}, got {type(name).__name__}")
    if name not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {name!r} (a method of your own must be registered first: isoplast_lite.methods.register_method)")
    return METHODS[name]


def make_method(name: str, settings: Any = None) -> Method:
    """A fresh instance of the method registered as ``name``, with validated ``settings``.

    Example:
        >>> make_method("redo").settings
        ReDo.Settings(tau=0.1, reset_step=True)
        >>> make_method("redo", {"tau": -1})
        Traceback (most recent call last):
        ...
        isoplast_lite.settings.SettingError: method 'redo': setting tau=-1.0: out of range; allowed: a number >= 0 and <= 1
    """
    return method_class(name)(settings)


def methods_with_setting(setting_name: str) -> Tuple[str, ...]:
    """Names of the registered methods that declare the setting ``setting_name``."""
    return tuple(n for n, c in METHODS.items() if any(s.name == setting_name for s in setting_specs(c.Settings)))


def describe_methods() -> str:
    """Every registered method with its summary and settings (``--help`` shows this)."""
    lines = []
    for name, cls in METHODS.items():
        lines.append(f"  {name}: {cls.summary}")
        lines.extend(f"      {text}" for text in describe_settings(cls.Settings))
    return "\n".join(lines)


def fresh_parameters(method: Method, stack: StackedModel, cfg, task: int, salt: int) -> Dict[str, torch.Tensor]:
    """Stacked parameters of a fresh initialization of ``method``'s network for each seed.

    Seed ``s`` draws from :func:`~isoplast_lite.seeding.seeded_generator` ``(s, task, salt)``,
    so the draw is reproducible, resumable and independent of the other seeds; a method uses
    its own ``salt`` (distinct from the task streams' 1-3).
    """
    ref = next(iter(stack.params.values()))
    in_dim = int(stack.params[stack.linear_names(0)[0]].shape[-1])
    out_dim = int(stack.params[stack.linear_names(stack.n_blocks - 1)[0]].shape[1])
    models = [
        method.build_model(in_dim, out_dim, cfg, seeded_generator(s, task, salt)).to(device=ref.device, dtype=ref.dtype)
        for s in stack.seeds
    ]
    return {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n in stack.params}


def _reset_optimizer_entries(opt: torch.optim.Optimizer, p: torch.Tensor, keep: torch.Tensor) -> None:
    """Multiply the Adam moments of ``p`` by ``keep`` (0 resets an entry, 1 keeps it)."""
    state = opt.state.get(p, {})
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        if key in state and torch.is_tensor(state[key]) and state[key].shape == p.shape:
            state[key].mul_(keep)


def _adamo_optimizer(method: Method, stack, cfg, *, hidden_iso: bool) -> AdamO:
    """AdamO over the method's two groups (:func:`~isoplast_lite.optim.hidden_head_groups`), the
    isometry step (its ``iso_strength``, ``iso_scaling``) on the hidden weights if
    ``hidden_iso``, else on the head. In a stacked group each group gets the per-member ``lr``,
    and the one that takes the isometry step the per-member ``iso_strength``."""
    head, strength = stack.head_names(), method.settings.iso_strength
    hidden = [p for n, p in stack.params.items() if n not in set(head)]
    groups = hidden_head_groups(hidden, [stack.params[n] for n in head], hidden_iso=strength if hidden_iso else 0.0,
                                head_iso=0.0 if hidden_iso else strength, seed_dims=1)  # fmt: skip
    lr, iso = method.member_lr(cfg), method.member_values("iso_strength")
    for i, group in enumerate(groups):
        members = {}
        if torch.is_tensor(lr):
            members["lr"] = lr
        if torch.is_tensor(iso) and (i == 0) == hidden_iso:
            members["iso_strength"] = iso
        if members:
            group["members"] = members
    return AdamO(groups, lr=cfg.lr, iso_strength=strength, iso_scaling=method.settings.iso_scaling)


# ----------------------------------------------------------------------------------------------
# Built-in methods
# ----------------------------------------------------------------------------------------------


@register_method
class Adam(Method):
    """Adam (Kingma & Ba 2015), ``lr = cfg.lr``, default betas."""

    name = "adam"
    summary = "Adam (Kingma & Ba 2015) on a ReLU MLP"
    family = "Adam-like"
    compared = True
    colour = "black"
    member_settings = ("lr",)


@register_method
class AdamWMethod(Method):
    """AdamW (Loshchilov & Hutter 2019): ``torch.optim.AdamW(lr, weight_decay=weight_decay)``.

    The decay multiplies ``lr`` (PyTorch's convention): each step shrinks every parameter by the
    factor ``1 - lr * weight_decay``.
    """

    name = "adamw"
    summary = "AdamW, decoupled weight decay (Loshchilov & Hutter 2019; PyTorch's lr-coupled convention)"
    family = "Adam-like"
    compared = True
    colour = "sky"
    tuning = ("weight_decay", (0.01, 0.1, 1.0, 10.0))
    member_settings = ("lr", "weight_decay")

    @dataclass(frozen=True)
    class Settings:
        weight_decay: float = setting(1e-2, low=0, stackable=True, help="each step multiplies every parameter by 1 - lr * weight_decay (PyTorch's default 1e-2)")

    def make_optimizer(self, stack, cfg):
        lr, decay = self.member_lr(cfg), self.member_values("weight_decay")
        if torch.is_tensor(lr) or torch.is_tensor(decay):  # one value per member: optim.MemberAdam
            return member_adam(list(stack.params.values()), lr, weight_decay=decay)
        return torch.optim.AdamW(list(stack.params.values()), lr=lr, weight_decay=decay, fused=True)


@register_method
class L2(Method):
    """Adam + ``strength * sum_theta ||theta||^2`` (all weights and biases) in the loss.

    Coupled L2: Adam preconditions its gradient ``2 * strength * theta``.
    """

    name = "l2"
    summary = "Adam + strength * sum ||theta||^2 in the loss (all parameters)"
    family = "Adam-like"
    compared = True
    colour = "green"
    tuning = ("strength", (1e-5, 1e-4, 1e-3))
    member_settings = ("lr", "strength")

    @dataclass(frozen=True)
    class Settings:
        strength: float = setting(1e-4, low=0, stackable=True, help="coefficient of sum ||theta||^2 (our default, not tuned)")

    def penalty(self, stack, ctx):
        strength = self.member_values("strength")
        if torch.is_tensor(strength):  # one per member
            return sum((self.member_values("strength", like=p) * (p * p)).sum() for p in stack.params.values())
        return strength * sum((p * p).sum() for p in stack.params.values())


@register_method
class L2Init(Method):
    """L2 Init (Kumar et al. 2023): Adam + ``strength * sum ||theta - theta_0||^2``.

    ``theta_0`` are the parameters at initialization; the gradient of the term is
    ``2 * strength * (theta - theta_0)``. Kumar et al. tune the strength per benchmark.
    """

    name = "l2-init"
    summary = "L2 Init (Kumar et al. 2023): Adam + strength * sum ||theta - theta_0||^2"
    family = "Adam-like"
    compared = True
    colour = "purple"
    tuning = ("strength", (1e-3, 1e-2, 1e-1))
    member_settings = ("lr", "strength")

    @dataclass(frozen=True)
    class Settings:
        strength: float = setting(1e-2, low=0, stackable=True, help="coefficient of sum ||theta - theta_0||^2 (our default, not tuned)")

    def __init__(self, settings=None):
        super().__init__(settings)
        self.theta0: Dict[str, torch.Tensor] = {}

    def setup(self, stack, cfg):
        self.theta0 = {n: p.detach().clone() for n, p in stack.params.items()}

    def penalty(self, stack, ctx):
        strength = self.member_values("strength")
        if torch.is_tensor(strength):  # one per member
            return sum((self.member_values("strength", like=p) * (p - self.theta0[n]) ** 2).sum() for n, p in stack.params.items())
        return strength * sum(((p - self.theta0[n]) ** 2).sum() for n, p in stack.params.items())

    def state_dict(self):
        return {"theta0": self.theta0}

    def load_state_dict(self, state):
        self.theta0 = state["theta0"]


@register_method
class ShrinkPerturb(Method):
    """Shrink & Perturb (Ash & Adams 2020) at each task boundary.

    ``theta <- shrink * theta + perturb * theta_fresh`` for every parameter, where
    ``theta_fresh`` is a *fresh* initialization of the same architecture (a new draw per seed and
    per task, :func:`fresh_parameters`). Adam's moments are kept.
    """

    name = "shrink-perturb"
    summary = "Shrink & Perturb (Ash & Adams 2020) at each task boundary"
    family = "resets"
    compared = True
    colour = "sky"
    tuning = ("shrink", (0.4, 0.8, 0.95))
    member_settings = ("lr", "shrink", "perturb")
    _SALT = 11

    @dataclass(frozen=True)
    class Settings:
        shrink: float = setting(0.4, low=0, high=1, stackable=True, help="factor multiplying the weights at each task boundary (our choice, not tuned)")
        perturb: float = setting(0.1, low=0, stackable=True, help="factor of the fresh initialization added at each task boundary")

    def fresh_params(self, stack: StackedModel, cfg, task: int) -> Dict[str, torch.Tensor]:
        """Stacked parameters of a fresh initialization for each seed at ``task``."""
        return fresh_parameters(self, stack, cfg, task, self._SALT)

    def at_task_boundary(self, stack, opt, ctx):
        fresh = self.fresh_params(stack, ctx.cfg, ctx.task)
        with torch.no_grad():
            for n, p in stack.params.items():
                shrink, perturb = self.member_values("shrink", like=p), self.member_values("perturb", like=p)
                if torch.is_tensor(shrink) or torch.is_tensor(perturb):  # one value per member
                    p.mul_(shrink).add_(fresh[n] * perturb)
                else:
                    p.mul_(shrink).add_(fresh[n], alpha=perturb)


@register_method
class ShrinkPerturbStep(Method):
    r"""Shrink & Perturb at every step, the form of Dohare et al. (2024): after each optimizer step

    .. math:: \theta \leftarrow (1 - \text{shrink})\,\theta + \text{noise}\cdot\varepsilon,
        \qquad \varepsilon \sim \mathcal N(0, I),

    for every parameter: a decay towards zero (decoupled from Adam, as AdamW's) plus small
    Gaussian noise, so weights never settle and units keep being perturbed. The noise of seed
    ``s`` during task ``t`` comes from its own generator
    (:func:`~isoplast_lite.seeding.seeded_generator` ``(s, t, salt)``), so every seed's draws
    are independent of the others and a run resumed at a task boundary draws the same numbers.
    Without noise the stationary weight scale under the noise alone is
    ``noise / sqrt(2 * shrink)`` (the balance of the two terms).
    """

    name = "shrink-perturb-step"
    summary = "Shrink & Perturb at every step (Dohare et al. 2024): decay plus Gaussian noise"
    family = "resets"
    compared = True
    colour = "purple"
    tuning = ("noise", (1e-5, 1e-4, 1e-3))  # at the default shrink 1e-4
    member_settings = ("lr", "shrink", "noise")
    _SALT = 23

    @dataclass(frozen=True)
    class Settings:
        shrink: float = setting(1e-4, low=0, high=1, stackable=True, help="per-step decay: parameters are multiplied by 1 - shrink after each step")
        noise: float = setting(1e-4, low=0, stackable=True, help="standard deviation of the Gaussian noise added to every parameter after each step")

    def __init__(self, settings=None):
        super().__init__(settings)
        self._gens: List[torch.Generator] = []
        self._gen_task = -1

    def _generators(self, stack: StackedModel, task: int) -> List[torch.Generator]:
        if task != self._gen_task:
            self._gens = [seeded_generator(s, task, self._SALT) for s in stack.seeds]
            self._gen_task = task
        return self._gens

    def after_step(self, stack, opt, ctx):
        shrink, noise = self.member_values("shrink"), self.member_values("noise")
        params = list(stack.params.values())
        with torch.no_grad():
            if torch.is_tensor(shrink):  # one per member (a member with 0 is multiplied by 1: unchanged)
                for p in params:
                    p.mul_(1.0 - member_view(shrink, p))
            elif shrink:
                torch._foreach_mul_(params, 1.0 - shrink)
            if torch.is_tensor(noise) or noise:  # a member with noise 0 draws, and adds exact zeros
                sizes = [p[0].numel() for p in params]
                ref = params[0]
                draws = torch.stack([torch.randn(sum(sizes), generator=g, dtype=torch.float64) for g in self._generators(stack, ctx.task)])
                draws = draws.to(device=ref.device, dtype=ref.dtype).mul_(member_view(noise, draws))
                for p, chunk in zip(params, draws.split(sizes, dim=1)):
                    p.add_(chunk.view_as(p))


@register_method
class ReDo(Method):
    """ReDo (Sokar et al. 2023): recycle tau-dormant ReLU units at each task boundary.

    On the current task's training inputs, unit ``i`` of hidden layer ``l`` has score
    ``s_i = E_x|h_i(x)| / mean_k E_x|h_k(x)|`` and is dormant when ``s_i <= tau``. For every
    dormant unit: its incoming weights (row ``i`` of ``W_l`` and ``b_l[i]``) are replaced by
    those of a fresh initialization, its outgoing weights (column ``i`` of ``W_{l+1}``) are set
    to zero, and the optimizer state of exactly those entries is restarted: with
    ``reset_step`` (the default) the runner's optimizer is :class:`~isoplast_lite.optim.EntryStepAdam`
    (Adam with a step count per entry), whose moments *and* step count are set to zero for those
    entries, so a recycled weight is trained exactly as by a fresh Adam from that step on;
    without it, only the moments are zeroed in a fused ``torch.optim.Adam`` (the recycled entries'
    first steps are then about 3 times Adam's first step, see ``EntryStepAdam``).
    """

    name = "redo"
    summary = "ReDo (Sokar et al. 2023): recycle tau-dormant units at each task boundary"
    family = "resets"
    compared = True
    colour = "green"
    tuning = ("tau", (0.0, 0.025, 0.1))
    member_settings = ("lr", "tau")
    _SALT = 13

    @dataclass(frozen=True)
    class Settings:
        tau: float = setting(0.1, low=0, high=1, stackable=True, help="dormancy threshold of the normalized score (Sokar et al.'s supervised setting)")
        reset_step: bool = setting(True, help="restart the Adam step count of recycled entries as well as their moments (EntryStepAdam)")

    version = 2  # 2: restarts the step count of recycled entries (EntryStepAdam)

    def make_optimizer(self, stack, cfg):
        if self.settings.reset_step:
            return EntryStepAdam(list(stack.params.values()), lr=self.member_lr(cfg))
        return super().make_optimizer(stack, cfg)

    @staticmethod
    def dormant_masks(stack: StackedModel, x: torch.Tensor, tau) -> List[torch.Tensor]:
        """Per hidden layer, a bool mask ``(S, width)`` of tau-dormant units on inputs ``x`` ``(S, N, D)``
        (``tau`` a number, or a ``(S,)`` tensor: one threshold per member)."""
        with torch.no_grad():
            feats = stack.forward_all(x)[:-1]
        taus = tau.tolist() if torch.is_tensor(tau) else None
        # one mask per seed with the core's definition of the score (units.dormant_mask)
        return [torch.stack([dormant_mask(h[k], tau if taus is None else taus[k]) for k in range(h.shape[0])]) for h in feats]

    def at_task_boundary(self, stack, opt, ctx):
        masks = self.dormant_masks(stack, ctx.x, self.member_values("tau"))
        fresh = fresh_parameters(self, stack, ctx.cfg, ctx.task, self._SALT)
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
                    if isinstance(opt, EntryStepAdam):
                        opt.restart_entries(p, m.to(torch.bool))
                    else:
                        _reset_optimizer_entries(opt, p, 1 - m)


@register_method
class Spectral(Method):
    r"""Spectral regularization (Lewandowski et al. 2025): Adam + ``strength * R``.

    .. math:: R = \sum_W (\sigma_{\max}(W)^2 - 1)^2

    over every weight matrix (hidden and head), which pushes each top singular value towards 1
    and leaves the others free (a *partial* isometry measure, PAPER.md). ``sigma_max`` comes
    from ``n_power_iter`` power-iteration steps per training step with persistent vectors ``u``
    (seeded, stored in the method state); with ``u, v`` held fixed, ``sigma = u^T W v`` and its
    gradient is ``u v^T``.
    """

    name = "spectral"
    summary = "spectral regularization (Lewandowski et al. 2025): Adam + strength * sum (sigma_max^2 - 1)^2"
    family = "regularizers"
    compared = True
    colour = "sky"
    tuning = ("strength", (1e-4, 1e-3, 1e-2))
    member_settings = ("lr", "strength")
    _SALT = 17

    @dataclass(frozen=True)
    class Settings:
        strength: float = setting(1e-4, low=0, stackable=True, help="coefficient of sum (sigma_max(W)^2 - 1)^2 (our default, not tuned)")
        n_power_iter: int = setting(1, low=1, high=100, help="power-iteration steps per training step")

    def __init__(self, settings=None):
        super().__init__(settings)
        self.u: Dict[str, torch.Tensor] = {}

    def weight_names(self, stack):
        return [n for n, p in stack.params.items() if p.ndim >= 3]

    def setup(self, stack, cfg):
        self.u = {}
        for j, n in enumerate(self.weight_names(stack)):
            W = stack.params[n]
            us = [torch.randn(W.shape[1], generator=seeded_generator(s, j, self._SALT), dtype=W.dtype) for s in stack.seeds]
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
        u, v = self.power_iteration(W.detach(), self.u[name], self.settings.n_power_iter)
        self.u[name] = u
        return torch.einsum("so,soi,si->s", u, W, v)

    def penalty(self, stack, ctx):
        strength = self.member_values("strength")
        if torch.is_tensor(strength):  # one per member
            terms = [(self.sigma_max(stack, n) ** 2 - 1) ** 2 for n in self.weight_names(stack)]
            return sum((self.member_values("strength", like=t) * t).sum() for t in terms)
        return strength * sum(((self.sigma_max(stack, n) ** 2 - 1) ** 2).sum() for n in self.weight_names(stack))

    def state_dict(self):
        return {"u": self.u}

    def load_state_dict(self, state):
        self.u = state["u"]


@register_method
class LayerNormMLP(Method):
    """Adam on a ReLU MLP with ``nn.LayerNorm`` before each activation (Lyle et al. 2023)."""

    name = "layernorm"
    summary = "Adam on a ReLU MLP with LayerNorm before each activation (Lyle et al. 2023)"
    family = "regularizers"
    compared = True
    colour = "green"
    member_settings = ("lr",)

    def build_model(self, in_dim, out_dim, cfg, generator):
        return relu_mlp(in_dim, cfg.width, cfg.depth, out_dim, init=cfg.init, layernorm=True, generator=generator)


@dataclass(frozen=True)
class IsoSettings:
    iso_strength: float = setting(DEFAULT_ISO_STRENGTH, low=0, stackable=True, help="lambda, the isometry strength (our probes' 0.1 at lr 1e-3; the paper states 1e-3, AdamO's own default: see DEFAULT_ISO_STRENGTH)")


@register_method
class CoupledIso(Method):
    r"""Coupled isometry: Adam on ``L + iso_strength * sum_l R_iso(W_l)`` over hidden weights.

    Adam preconditions the regularizer's gradient together with the task gradient; this is the
    "coupled" ablation AdamO is compared with. It is *not* Parseval regularization (no ``s I``
    target, no width scaling, no diagonal layers: that is ``parseval``). ``R_iso`` is
    :func:`isoplast_lite.isometry.isometry_penalty`, here without its argument checks (their
    finiteness check would synchronize every step; a non-finite penalty is what the runner's
    divergence check then sees).
    """

    name = "coupled-iso"
    summary = "Adam + iso_strength * sum R_iso(W) in the loss over hidden weights (the coupled ablation of AdamO)"
    family = "regularizers"
    compared = True
    colour = "purple"
    tuning = ("iso_strength", (1e-3, 1e-2, 1e-1))
    cost = 3.0
    member_settings = ("lr", "iso_strength")
    Settings = IsoSettings

    def penalty(self, stack, ctx):
        lam = self.member_values("iso_strength")
        if torch.is_tensor(lam):  # one per member
            lams = lam.tolist()
            return sum(lams[k] * isometry_penalty_matrix(stack.params[n][k]) for n in stack.hidden_weight_names() for k in range(stack.n_seeds))
        if lam == 0:
            return None
        return lam * sum(isometry_penalty_matrix(stack.params[n][k]) for n in stack.hidden_weight_names() for k in range(stack.n_seeds))


@dataclass(frozen=True)
class AdamOSettings:
    iso_strength: float = setting(DEFAULT_ISO_STRENGTH, low=0, stackable=True, help="lambda, the isometry strength (our probes' 0.1 at lr 1e-3; the paper states 1e-3, AdamO's own default: see DEFAULT_ISO_STRENGTH)")
    iso_scaling: str = setting("lr", choices=ISO_SCALINGS,
                               help="'lr': step lr*lambda as PyTorch's AdamW; 'schedule': lambda times the schedule multiplier as Loshchilov & Hutter")  # fmt: skip


@register_method
class AdamOMethod(Method):
    """AdamO (the paper's optimizer) with the decoupled isometry step on hidden weights only.

    Two parameter groups (:func:`isoplast_lite.optim.hidden_head_groups`): hidden blocks with
    ``iso_strength``, the head with 0; both with ``seed_dims = 1`` so each seed's ``(out, in)``
    slice gets its own isometry step. ``iso_scaling`` names the reading of "decoupled like
    AdamW" (:class:`isoplast_lite.optim.AdamO`); the runner's learning rate is constant, so
    under ``"schedule"`` the isometry step is ``lambda`` per step (not ``lr * lambda``).
    """

    name = "adamo"
    summary = "AdamO: decoupled isometry step on the hidden weights (the paper's method)"
    family = "the paper's"
    compared = True
    colour = "vermillion"
    tuning = ("iso_strength", (0.01, 0.1, 1.0))
    cost = 1.2
    member_settings = ("lr", "iso_strength")
    Settings = AdamOSettings

    def make_optimizer(self, stack, cfg):
        return _adamo_optimizer(self, stack, cfg, hidden_iso=True)


@dataclass(frozen=True)
class AEISettings:
    orthogonal: str = setting("newton-schulz", choices=ORTHOGONAL_METHODS,
                              help="how hidden weights stay orthogonal: one Newton-Schulz retraction per step, or the exact Cayley parametrization")  # fmt: skip


@register_method
class AEIAdam(Method):
    """Adam on ``aei_mlp`` (orthogonal hidden weights + GroupSort, free linear head).

    With ``orthogonal == "newton-schulz"`` (the default) the hidden weights are plain stacked
    matrices ``(S, out, in)`` that Adam updates freely; after every optimizer step
    :meth:`after_step` applies one Björck / Newton–Schulz retraction
    (:func:`isoplast_lite.isometry.newton_schulz`, ``steps=1``, no normalization) to all of them
    at once, batched over seeds: exactly what :func:`isoplast_lite.nn.retract_` does to each
    seed's model. With ``"cayley"`` the exact parametrization of the shipped results is used
    instead (``vmap`` path, several times slower) and there is nothing to retract.
    """

    name = "aei-adam"
    summary = "almost-everywhere isometric net (orthogonal hidden weights + GroupSort, Anil et al. 2019) with Adam"
    family = "the paper's"
    compared = True
    colour = "orange"
    cost = 1.3
    member_settings = ("lr",)
    Settings = AEISettings
    group_size = 2  # MaxMin
    retraction_steps = 1

    def check(self, cfg):
        if cfg.width % self.group_size:
            raise ConfigError({"width": cfg.width, "method": cfg.method},
                              f"GroupSort with group size {self.group_size} needs a width divisible by {self.group_size}; allowed: an even width")  # fmt: skip

    def build_model(self, in_dim, out_dim, cfg, generator):
        return aei_mlp(in_dim, cfg.width, cfg.depth, out_dim, head="free", group_size=self.group_size,
                       orthogonal=self.settings.orthogonal, generator=generator)  # fmt: skip

    def after_step(self, stack, opt, ctx):
        if self.settings.orthogonal == "newton-schulz":
            retract_stacked_(stack, self.retraction_steps)


@dataclass(frozen=True)
class AEIAdamOSettings:
    iso_strength: float = setting(DEFAULT_ISO_STRENGTH, low=0, stackable=True, help="lambda of the isometry step on the free head")
    iso_scaling: str = setting("lr", choices=ISO_SCALINGS, help="'lr' as PyTorch's AdamW; 'schedule' as Loshchilov & Hutter (see adamo)")
    orthogonal: str = setting("newton-schulz", choices=ORTHOGONAL_METHODS, help="how hidden weights stay orthogonal (see aei-adam)")


@register_method
class AEIAdamO(AEIAdam):
    """AdamO on ``aei_mlp``: the hidden weights are kept orthogonal by the retraction (or by the
    Cayley parametrization, whose trained parameters an isometry step would not make sense on),
    so the isometry step acts on the free head only, softly regularizing it towards a partial
    isometry; the hidden group has ``iso_strength = 0``.
    """

    name = "aei-adamo"
    summary = "the AEI net trained with AdamO; the isometry step acts on the free head"
    family = "the paper's"
    compared = True
    colour = "blue"
    tuning = ("iso_strength", (0.01, 0.1, 1.0))
    cost = 1.3
    member_settings = ("lr", "iso_strength")
    Settings = AEIAdamOSettings

    def make_optimizer(self, stack, cfg):
        return _adamo_optimizer(self, stack, cfg, hidden_iso=False)


@register_method
class Fresh(Method):
    """The reference of plasticity: Adam on a network freshly initialized at every task.

    At each task boundary every parameter is replaced by a fresh initialization (a new draw per
    seed and task, :func:`fresh_parameters`) and Adam's state (moments and step count) is
    cleared, so task ``t`` is learned by a new network with the same budget: what a network
    that lost no plasticity at all would reach (Dohare et al. 2024; Kumar et al. 2023).
    """

    name = "fresh"
    summary = "reference: Adam on a network re-initialized (weights and optimizer state) at every task"
    family = "reference"
    compared = True
    colour = "#7F7F7F"  # grey: never a method's colour
    member_settings = ("lr",)
    _SALT = 19

    def at_task_boundary(self, stack, opt, ctx):
        fresh = fresh_parameters(self, stack, ctx.cfg, ctx.task, self._SALT)
        with torch.no_grad():
            for n, p in stack.params.items():
                p.copy_(fresh[n])
        opt.state.clear()


# ----------------------------------------------------------------------------------------------
# Parseval regularization (Chung et al. 2024), added as a method defined in one section
# ----------------------------------------------------------------------------------------------


class DiagonalScale(nn.Module):
    """Chung et al.'s diagonal layer: ``y = x * c + b`` per unit, ``c`` initialized to 1, ``b`` to 0.

    ``stacked_forward`` lets :class:`~isoplast_lite.engine.StackedModel` keep its batched fast
    path for nets containing it (``params`` are its own stacked ``(S, width)`` tensors).
    """

    def __init__(self, width: int, dtype: Optional[torch.dtype] = None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(width, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias

    @staticmethod
    def stacked_forward(h: torch.Tensor, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        return h * params["weight"].unsqueeze(1) + params["bias"].unsqueeze(1)


@register_method
class Parseval(Method):
    r"""Parseval regularization as in Chung et al. 2024: Adam on

    .. math:: L + \lambda \left(\tfrac{64}{\text{width}}\right)^2 \sum_{l\,\text{hidden}}
              \lVert W_l W_l^\top - s I\rVert_F^2

    with a per-unit diagonal scale layer (:class:`DiagonalScale`) after each hidden linear
    layer, which gives back the freedom of scale that the penalty takes from the rows of ``W``.
    The ``(64 / width)^2`` factor is theirs (their strength was tuned at width 64, the factor
    keeps the penalty's gradient comparable across widths); ``s`` is the squared gain of the
    orthogonal initialization (1 for ours; theirs is 2, the ReLU gain squared). The head is
    not regularized. Unlike ``coupled-iso`` (``R_iso`` on every hidden weight, target ``I``,
    no scaling, no diagonal layers), this is their method.
    """

    name = "parseval"
    summary = "Parseval regularization (Chung et al. 2024): strength (64/width)^2 sum ||W W^T - s I||^2, diagonal scale layers"
    family = "regularizers"
    compared = True
    colour = "orange"
    tuning = ("strength", (1e-4, 1e-3, 1e-2))
    cost = 3.0
    member_settings = ("lr", "strength", "target_scale")

    @dataclass(frozen=True)
    class Settings:
        strength: float = setting(1e-3, low=0, stackable=True, help="lambda at width 64 (Chung et al.'s value), scaled by (64/width)^2")
        target_scale: float = setting(1.0, low=0, low_open=True, stackable=True, help="s in W W^T -> s I (our orthogonal init has gain 1)")
        diagonal_layers: bool = setting(True, help="add a learnable per-unit scale after each hidden linear layer")

    def build_model(self, in_dim, out_dim, cfg, generator):
        model = relu_mlp(in_dim, cfg.width, cfg.depth, out_dim, init=cfg.init, generator=generator)
        if self.settings.diagonal_layers:
            for block in list(model)[:-1]:
                block.insert(1, DiagonalScale(cfg.width, dtype=block[0].weight.dtype))
        return model

    def penalty(self, stack, ctx):
        strength, scale = self.member_values("strength"), self.member_values("target_scale")
        if torch.is_tensor(strength) or torch.is_tensor(scale):  # one value per member
            total = 0.0
            for n in stack.hidden_weight_names():
                W = stack.params[n]
                s = self.member_values("target_scale", like=W)
                target = s * torch.eye(W.shape[1], dtype=W.dtype, device=W.device) if torch.is_tensor(s) else s
                per_member = gram_deviation(W, target, tall=False)[0].square().sum(dim=(-2, -1))  # (S,)
                total = total + (member_view(strength, per_member) * (64.0 / ctx.cfg.width) ** 2 * per_member).sum()
            return total
        coef = strength * (64.0 / ctx.cfg.width) ** 2
        if coef == 0:
            return None
        total = 0.0
        for n in stack.hidden_weight_names():
            W = stack.params[n]  # (S, out, in); rows whatever the shape: W W^T - s I
            total = total + gram_deviation(W, scale, tall=False)[0].square().sum()
        return coef * total


# ----------------------------------------------------------------------------------------------
# An intervention of ours: AdamO's decoupled step towards another spectrum
# ----------------------------------------------------------------------------------------------


@register_method
class AdamOTarget(Method):
    r"""Ours, an intervention: Adam, then a decoupled step that pulls each hidden weight's
    singular values to a *chosen* spectrum instead of all ones.

    After each Adam step every hidden weight (per seed) takes the step

    .. math:: W \leftarrow W - \eta\lambda\, 4\,(W W^\top - T) W,

    the gradient of :math:`\lVert W W^\top - T\rVert_F^2` (for a wide or square ``W``; the
    transposed form for a tall one), with the target :math:`T`:

    - ``"identity"``: :math:`T = I` (AdamO's isometry step, applied after Adam's step instead of
      at :math:`\theta_t`: the control);
    - ``"scaled"``: :math:`T = c^2 I`: every singular value pulled to ``c``; the layer stays
      perfectly conditioned (spread of :math:`\log\sigma` 0) but is *not* an isometry
      (scale :math:`\log c`);
    - ``"spread"``: :math:`T = \mathrm{diag}(d_i)` with :math:`\sqrt{d_i}` geometric from
      :math:`1/c` to :math:`c`: mean :math:`\log\sigma` 0 (scale of an isometry) but spread
      :math:`> 0`, a deliberately ill-conditioned layer whose units keep their rows (the rows
      stay orthogonal).

    It exists to test the causal chain of the paper (isometry -> conditioning -> plasticity)
    by breaking one link at a time; it is not a method anyone proposed.
    """

    name = "adamo-target"
    summary = "ours, an intervention: Adam + a decoupled step pulling hidden singular values to I, c I or a spread [1/c, c]"
    family = "interventions"
    colour = "blue"
    member_settings = ("lr", "iso_strength")  # not c: the targets are built once, for one c

    @dataclass(frozen=True)
    class Settings:
        iso_strength: float = setting(DEFAULT_ISO_STRENGTH, low=0, stackable=True, help="lambda of the decoupled step (step lr * lambda, as adamo)")
        target: str = setting("identity", choices=("identity", "scaled", "spread"), help="the spectrum the singular values are pulled to")
        c: float = setting(2.0, low=0, low_open=True, stackable=True, help="'scaled': every singular value to c; 'spread': geometric from 1/c to c")

    def _sigma(self, k: int, dtype, device) -> torch.Tensor:
        """The target singular values of a layer with ``k`` of them (the diagonal of ``sqrt(T)``)."""
        c, kind = self.settings.c, self.settings.target
        if kind == "identity":
            return torch.ones(k, dtype=dtype, device=device)
        if kind == "scaled":
            return torch.full((k,), c, dtype=dtype, device=device)
        return torch.logspace(-math.log10(c), math.log10(c), k, dtype=dtype, device=device) if k > 1 else torch.ones(1, dtype=dtype)

    def target_log_spectrum(self, k: int) -> torch.Tensor:
        """The target ``log sigma`` of a layer with ``k`` singular values (read by
        :func:`isoplast_lite.interventions.manipulation_check`)."""
        return self._sigma(k, torch.float64, "cpu").log()

    def _targets(self, stack) -> Dict[str, torch.Tensor]:
        out = {}
        for n in stack.hidden_weight_names():
            W = stack.params[n]
            out[n] = torch.diag(self._sigma(min(W.shape[1], W.shape[2]), W.dtype, W.device) ** 2)
        return out

    def setup(self, stack, cfg):
        self.targets = self._targets(stack)

    def after_step(self, stack, opt, ctx):
        step = self.member_lr(ctx.cfg) * self.member_values("iso_strength")  # a number, or one per member
        if not torch.is_tensor(step) and step == 0:
            return
        with torch.no_grad():
            for n, T in self.targets.items():
                W = stack.params[n]  # (S, out, in); wide or square: rows, W W^T -> T; tall: W^T W -> T
                W.sub_(4 * member_view(step, W) * isometry_direction(W, T, tall=W.shape[1] > W.shape[2]))


class MethodError(RuntimeError):
    """A method's hook raised an exception: the message names the method, the hook and the error
    in one line; the original exception is its ``__cause__`` (``--debug`` shows its traceback)."""


def call_hook(method: Method, name: str, *args, passing: tuple = ()):
    """``method.<name>(*args)``: how the runner calls every hook, so that an exception (other than
    the ``passing`` ones) becomes a :class:`MethodError` naming the method and the hook.

    Example:
        >>> class Broken(Method):
        ...     name = "broken"
        ...     def setup(self, stack, cfg):
        ...         raise KeyError("no such layer")
        >>> call_hook(Broken(), "setup", None, None)
        Traceback (most recent call last):
        ...
        isoplast_lite.methods.MethodError: method 'broken' (isoplast_lite.methods.Broken), hook setup: KeyError: 'no such layer'
    """
    try:
        return getattr(method, name)(*args)
    except passing:
        raise
    except Exception as err:
        text = (str(err).strip().splitlines() or [""])[0]
        raise MethodError(f"method {getattr(method, 'name', '?')!r} ({type(method).__module__}.{type(method).__qualname__}), hook {name}: "
                          f"{type(err).__name__}: {text}") from err  # fmt: skip


from . import interventions as _interventions  # noqa: E402,F401  (registers target-spectrum, issue 23)

BUILTIN_METHODS: Tuple[str, ...] = tuple(METHODS)
