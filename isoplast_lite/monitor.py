r"""A drop-in plasticity monitor for any PyTorch model: the book's measures, per layer, as a table.

:class:`PlasticityMonitor` attaches to an ``nn.Module`` and a fixed probe batch. Every
``every`` optimizer steps (or when asked, e.g. at a task boundary) it runs the probe through
the model in evaluation mode and records, for each layer it understands, one row of
:mod:`~isoplast_lite.diagnostics` measures:

- ``weight_scale``, ``weight_spread``, ``weight_sigma_min``, ``weight_sigma_max``,
  ``weight_null_share``: :func:`~isoplast_lite.diagnostics.matrix_isometry` of the layer's
  weight matrix (mean and population standard deviation of :math:`\log\sigma`);
- ``jac_scale``, ``jac_spread``, ``jac_null_share``: the same statistics of the layer
  Jacobian's singular values over its active directions
  (:func:`~isoplast_lite.diagnostics.layer_isometry` of the layer and the activation that
  follows it), where the layer allows it (see below), NaN elsewhere;
- ``dormant``, ``dead``, ``feature_rank``, ``n_units``: the shares of
  :func:`~isoplast_lite.diagnostics.dormant_units` and
  :func:`~isoplast_lite.diagnostics.dead_units`, and the
  :func:`~isoplast_lite.diagnostics.effective_rank` of the layer's features (its output after
  the activation that follows it, from forward hooks), units on the last axis (channels of a
  convolution), every other axis a sample axis.

Optionally (``ntk=n``), on the first ``n`` probe examples, the eNTK spectrum of the whole model
in float64 (:func:`~isoplast_lite.diagnostics.empirical_ntk`,
:func:`~isoplast_lite.diagnostics.ntk_summary`), one row per record in
:meth:`PlasticityMonitor.ntk_frame`.

Layers (the only ones measured; every other module with parameters is listed by name in
``monitor.skipped``, never an error):

- ``nn.Linear`` (and :class:`~isoplast_lite.nn.OrthogonalLinear`): kind ``"linear"``;
- ``nn.Conv2d``: kind ``"conv2d"``, the kernel ``(out, in, k, k)`` read as the
  ``(out, in k k)`` matrix, as :class:`~isoplast_lite.optim.AdamO` treats it;
- ``nn.MultiheadAttention``: kinds ``"attn_q"``, ``"attn_k"``, ``"attn_v"`` (``in_proj_weight``
  split in three, or ``q_proj_weight`` ...) and ``"attn_out"`` (``out_proj``); their features
  are the projections of the hooked query, key and value, and the attention's output.

A layer is measured on its last call in the probe's forward pass (a module applied twice, with
shared weights, is seen at its second call); a layer the probe does not reach gets NaN rows and
one warning.

*The activation that follows a layer* is found from the model's structure: the next modules of
the same ``nn.Sequential`` up to the first activation module (``ReLU``, ``GELU``, ``GroupSort``
...), if only normalization or dropout modules lie between; or the ``activation`` of an
``nn.TransformerEncoderLayer`` / ``DecoderLayer`` for its ``linear1``. Without one, the
features are the layer's output itself (``activation`` column ``"none"``). The Jacobian is
measured for linear layers alone or followed by ``ReLU``, ``GroupSort`` or ``LayerNorm, ReLU``
(the block kinds :func:`~isoplast_lite.diagnostics.layer_isometry` handles in closed form), on
the first ``jacobian_rows`` rows of the layer's input; for the attention projections, which are
linear maps, it equals the weight's; a convolution's Jacobian is a large structured operator
and is not measured.

Example (a plain loop, two lines):
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> probe = torch.randn(16, 4, generator=g)
    >>> monitor = PlasticityMonitor(model, probe, every=2)
    >>> opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    >>> for _ in range(4):
    ...     loss = model(torch.randn(8, 4, generator=g)).square().mean()
    ...     opt.zero_grad(); loss.backward(); opt.step()
    ...     _ = monitor.step()
    >>> df = monitor.frame()
    >>> df[["step", "layer", "kind", "activation"]].values.tolist()
    [[2, '0', 'linear', 'ReLU'], [2, '2', 'linear', 'none'], [4, '0', 'linear', 'ReLU'], [4, '2', 'linear', 'none']]

References:
    Sokar et al. (2023) (dormant units); Roy & Vetterli (2007) (effective rank); Pennington,
    Schoenholz & Ganguli (2017) (singular values of layer Jacobians); ``PAPER.md`` for the
    per-layer scale and spread (our reconstruction).
"""

from __future__ import annotations

import copy
import io
import math
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from . import files
from ._validation import check_int, check_module, check_probability, check_tensor
from .diagnostics import dead_units, dormant_units, effective_rank, empirical_ntk, layer_isometry, matrix_isometry, ntk_summary
from .nn import GroupSort, OrthogonalLinear

__all__ = ["PlasticityMonitor", "PlasticityCallback", "monitored_layers", "DEFAULT_EVERY"]

#: The default cadence: one record every this many optimizer steps (``benchmarks/monitor_overhead.py``
#: measures the overhead it costs on the chapter's CNN and transformer loops).
DEFAULT_EVERY = 200

_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Softplus, GroupSort)
_BETWEEN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.Dropout, nn.Dropout2d, nn.Identity)
_LINEAR = (nn.Linear, OrthogonalLinear)


@dataclass
class _Layer:
    """One monitored weight matrix and how to read its features from the hooked tensors."""

    name: str  # "features.0", "encoder.layers.0.self_attn.q"
    kind: str  # "linear", "conv2d", "attn_q", "attn_k", "attn_v", "attn_out"
    owner: nn.Module  # the module whose forward hook captures its tensors
    weight: Callable[[], torch.Tensor]  # the (out, ...) weight, read when recording
    follow: Tuple[Callable, ...]  # applied to the output to get the features (activation last)
    activation: str  # the activation's name, or "none"
    jacobian: Optional[str]  # "block": layer_isometry of (layer, *follow); "weight": J = W; None: not measured


def _activation_name(act) -> str:
    return type(act).__name__ if isinstance(act, nn.Module) else getattr(act, "__name__", type(act).__name__)


def _follow_in_sequential(parent: nn.Sequential, index: int) -> Tuple[nn.Module, ...]:
    """The modules after ``parent[index]`` up to the first activation, if only norms / dropout lie between."""
    follow = []
    for module in list(parent)[index + 1:]:
        if isinstance(module, _ACTIVATIONS):
            return (*follow, module)
        if not isinstance(module, _BETWEEN):
            return ()
        follow.append(module)
    return ()


def _jacobian_kind(layer: nn.Module, follow: Tuple) -> Optional[str]:
    """``"block"`` when ``(layer, *follow)`` is a block that layer_isometry handles in closed form."""
    if not isinstance(layer, _LINEAR):
        return None
    kinds = tuple(type(m) for m in follow)
    if kinds in ((), (nn.ReLU,), (GroupSort,)):
        return "block"
    if kinds == (nn.LayerNorm, nn.ReLU) and tuple(follow[0].normalized_shape) == (layer.weight.shape[0],):
        return "block"
    return None


def monitored_layers(model: nn.Module) -> Tuple[List[_Layer], Dict[str, str]]:
    """The layers :class:`PlasticityMonitor` measures in ``model``, and the skipped modules.

    Args:
        model: any ``nn.Module``.

    Returns:
        ``(layers, skipped)``: the monitored layers in module order (objects with ``name``,
        ``kind``, ``activation``), and ``{name: type name}`` of every other module that holds
        parameters of its own.

    Example:
        >>> m = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.GELU(), nn.LayerNorm(4))
        >>> layers, skipped = monitored_layers(m)
        >>> [(l.name, l.kind, l.activation) for l in layers], skipped
        ([('1', 'linear', 'GELU')], {'0': 'Embedding', '3': 'LayerNorm'})
    """
    check_module("model", model)
    parents = {}
    for pname, parent in model.named_modules():
        for cname, child in parent.named_children():
            parents[id(child)] = (parent, cname)
    layers: List[_Layer] = []
    skipped: Dict[str, str] = {}
    inside_attention = set()
    for name, module in model.named_modules():
        shown = name or "(model)"
        if id(module) in inside_attention:
            continue
        if isinstance(module, nn.MultiheadAttention):
            inside_attention.update(id(m) for m in module.modules() if m is not module)
            layers.extend(_attention_layers(shown, module))
            continue
        if isinstance(module, (*_LINEAR, nn.Conv2d)):
            follow: Tuple = ()
            parent, cname = parents.get(id(module), (None, None))
            if isinstance(parent, nn.Sequential):
                follow = _follow_in_sequential(parent, list(dict(parent.named_children())).index(cname))
            elif isinstance(parent, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)) and cname == "linear1":
                follow = (parent.activation,)
            act = _activation_name(follow[-1]) if follow else "none"
            if follow and follow[-1] is F.relu:
                follow = (*follow[:-1], nn.ReLU())
            kind = "conv2d" if isinstance(module, nn.Conv2d) else "linear"
            layers.append(_Layer(shown, kind, module, (lambda m=module: m.weight), follow, act, _jacobian_kind(module, follow)))
            continue
        if any(True for _ in module.parameters(recurse=False)):
            skipped[shown] = type(module).__name__
    return layers, skipped


def _attention_layers(name: str, mha: nn.MultiheadAttention) -> List[_Layer]:
    E = mha.embed_dim

    def projection(which: int) -> Callable[[], torch.Tensor]:
        if mha.in_proj_weight is not None:
            return lambda: mha.in_proj_weight[which * E:(which + 1) * E]
        return lambda: (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)[which]

    layers = [_Layer(f"{name}.{p}", f"attn_{p}", mha, projection(i), (), "none", "weight") for i, p in enumerate("qkv")]
    layers.append(_Layer(f"{name}.out_proj", "attn_out", mha, lambda: mha.out_proj.weight, (), "none", "weight"))
    return layers


def _as_args(name: str, probe) -> Tuple[torch.Tensor, ...]:
    args = tuple(probe) if isinstance(probe, (tuple, list)) else (probe,)
    if not args:
        raise ValueError(f"{name} must be a tensor or a non-empty tuple of tensors, got {probe!r}")
    for i, a in enumerate(args):
        check_tensor(f"{name}[{i}]" if len(args) > 1 else name, a, min_ndim=1, floating=False)
    return args


class PlasticityMonitor:
    r"""Per-layer plasticity measures of any model on a fixed probe, every ``every`` steps, as a tidy table.

    Use it in a plain loop with two lines (``monitor = PlasticityMonitor(model, probe)`` before,
    ``monitor.step()`` after each optimizer step), ``monitor.record(tag=...)`` at task
    boundaries, and read ``monitor.frame()``. The measures and the layers it understands are
    described in :mod:`isoplast_lite.monitor`. A record runs the probe in evaluation mode
    without gradients (then restores the model's mode; PyTorch's fused attention fast path is
    switched off during it, so the hooks see every projection) and changes no parameter.

    Args:
        model: any ``nn.Module``; the probe is passed as ``model(*probe)``.
        probe: a tensor ``(N, ...)`` or a tuple of tensors (token ids may be integers); keep it
            fixed and small (the chapter uses 128 examples).
        every: record every ``every`` calls of :meth:`step` (>= 1).
        tau: the dormancy threshold of :func:`~isoplast_lite.diagnostics.dormant_units`.
        jacobian_rows: how many rows (examples, or tokens) of a layer's input the Jacobian
            measure uses (>= 1; its cost is one small SVD per row).
        ntk: ``0`` (off) or the number of probe examples for the float64 eNTK spectrum (it needs a
            floating-point probe of one tensor; its cost grows as ``ntk**2`` times the outputs).

    Attributes:
        layers: the monitored layers (``name``, ``kind``, ``activation``).
        skipped: ``{name: type}`` of the modules with parameters that are not measured.
        steps: the number of :meth:`step` calls so far.

    Example:
        >>> import torch
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
        >>> monitor = PlasticityMonitor(model, torch.randn(8, 1, 6, 6), ntk=4)
        >>> monitor.record(tag="start")
        >>> monitor.frame()[["layer", "kind", "n_units"]].values.tolist()
        [['0', 'conv2d', 4], ['3', 'linear', 2]]
        >>> bool(monitor.ntk_frame()["ntk_condition_number"].iloc[0] >= 1.0)
        True
    """

    def __init__(self, model: nn.Module, probe, *, every: int = DEFAULT_EVERY, tau: float = 0.025,
                 jacobian_rows: int = 16, ntk: int = 0):
        self.model = check_module("model", model)
        self.probe = _as_args("probe", probe)
        self.every = check_int("every", every, minimum=1)
        self.tau = check_probability("tau", tau)
        self.jacobian_rows = check_int("jacobian_rows", jacobian_rows, minimum=1)
        self.ntk = check_int("ntk", ntk, minimum=0)
        if self.ntk and (len(self.probe) != 1 or not self.probe[0].is_floating_point() or self.probe[0].ndim < 2):
            raise ValueError(f"ntk={self.ntk} needs a probe of one floating-point tensor (N, ...); got "
                             f"{[(tuple(a.shape), str(a.dtype)) for a in self.probe]} (set ntk=0 for models on integer tokens)")
        self.layers, self.skipped = monitored_layers(model)
        self.steps = 0
        self._n_records = 0
        self._rows: List[dict] = []
        self._ntk_rows: List[dict] = []
        self._captured: Dict[int, tuple] = {}
        self._handles = []
        for owner in dict.fromkeys(layer.owner for layer in self.layers):  # one hook per module
            self._handles.append(owner.register_forward_hook(self._hook, with_kwargs=True))
        self._recording = False
        self._warned: set = set()

    def _hook(self, module, args, kwargs, output):
        if self._recording:
            self._captured[id(module)] = (args, kwargs, output)

    def close(self) -> None:
        """Remove the forward hooks (the monitor records nothing afterwards)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def step(self) -> bool:
        """Count one optimizer step; record when ``every`` steps have passed since the last record. Returns whether it recorded."""
        self.steps += 1
        if self.steps % self.every == 0:
            self.record()
            return True
        return False

    def record(self, tag: Optional[str] = None) -> None:
        """Record every measure now (at step :attr:`steps`), labelled ``tag`` (e.g. ``"task 3"``).

        Args:
            tag: ``None`` or a string stored in the ``tag`` column.

        Raises:
            RuntimeError: after :meth:`close`.
        """
        if tag is not None and not isinstance(tag, str):
            raise TypeError(f"tag must be a str or None, got {tag!r} of type {type(tag).__name__}")
        if not self._handles and self.layers:
            raise RuntimeError("this monitor was closed; make a new PlasticityMonitor")
        index = self._n_records
        for layer, tensors in zip(self.layers, self.probe_features()):
            row = {"record": index, "step": self.steps, "tag": tag, "layer": layer.name, "kind": layer.kind,
                   "activation": layer.activation}
            row.update(self._measure(layer, *tensors))
            self._rows.append(row)
        if self.ntk:
            self._ntk_rows.append({"record": index, "step": self.steps, "tag": tag, **self._ntk_summary()})
        self._n_records += 1

    def probe_features(self) -> List[Tuple[Optional[torch.Tensor], torch.Tensor]]:
        """``(layer input or None, features)`` for each of :attr:`layers`, from one forward pass
        of the probe in evaluation mode without gradients (what :meth:`record` measures; the
        model's mode is restored, no parameter changes, nothing is recorded).

        Returns:
            One pair per monitored layer: the layer's input (``None`` for an attention
            projection) and its features, units on the last axis (``(None, None)`` for a layer
            the probe's forward pass did not call, with a one-time warning).

        Example:
            >>> import torch
            >>> monitor = PlasticityMonitor(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)), torch.randn(4, 3))
            >>> [tuple(feats.shape) for _, feats in monitor.probe_features()]
            [(4, 5), (4, 2)]
        """
        was_training = self.model.training
        fastpath = torch.backends.mha.get_fastpath_enabled()
        self._captured = {}
        self.model.eval()
        torch.backends.mha.set_fastpath_enabled(False)
        self._recording = True
        try:
            with torch.no_grad():
                self.model(*self.probe)
                out = [self._features(layer) for layer in self.layers]
        finally:
            self._recording = False
            self._captured = {}
            torch.backends.mha.set_fastpath_enabled(fastpath)
            self.model.train(was_training)
        return out

    def _features(self, layer: _Layer) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
        if id(layer.owner) not in self._captured:
            if layer.name not in self._warned:
                self._warned.add(layer.name)
                warnings.warn(f"layer {layer.name!r} ({layer.kind}) was not called by model(*probe): its rows are NaN", stacklevel=4)
            return None, None
        args, kwargs, output = self._captured[id(layer.owner)]
        if layer.kind.startswith("attn_"):
            mha = layer.owner
            names = ("query", "key", "value")
            qkv = [args[i] if len(args) > i else kwargs[n] for i, n in enumerate(names)]
            if layer.kind == "attn_out":
                return None, output[0]
            which = "qkv".index(layer.kind[-1])
            bias = None if mha.in_proj_bias is None else mha.in_proj_bias[which * mha.embed_dim:(which + 1) * mha.embed_dim]
            return None, F.linear(qkv[which], layer.weight(), bias)
        h = output
        for module in layer.follow:
            h = module(h)
        if layer.kind == "conv2d":
            h = h.movedim(1, -1)  # (N, H, W, C): the channels are the units
        return args[0], h

    def _measure(self, layer: _Layer, inputs: Optional[torch.Tensor], feats: torch.Tensor) -> dict:
        W = layer.weight().detach()
        shape = "x".join(str(d) for d in (W.shape[0], W[0].numel()))
        if feats is None:  # the layer did not run on the probe
            return {"shape": shape, **dict.fromkeys(_MEASURES, math.nan)}
        if not (bool(torch.isfinite(W).all()) and bool(torch.isfinite(feats).all())
                and (inputs is None or bool(torch.isfinite(inputs).all()))):
            # a diverged model: no measure is meaningful, but the training loop must not stop (NaN row)
            return {"shape": shape, **dict.fromkeys(_MEASURES[:-1], math.nan), "n_units": int(feats.shape[-1])}
        w = matrix_isometry(W)
        row = {"shape": shape,
               "weight_scale": w["scale"], "weight_spread": w["spread"], "weight_sigma_min": w["sigma_min"],
               "weight_sigma_max": w["sigma_max"], "weight_null_share": w["n_null"] / (w["n"] + w["n_null"])}
        if layer.jacobian == "weight":
            row.update(jac_scale=w["scale"], jac_spread=w["spread"], jac_null_share=row["weight_null_share"])
        elif layer.jacobian == "block":
            h = inputs.detach().reshape(-1, inputs.shape[-1])[: self.jacobian_rows]
            block = nn.Sequential(nn.Sequential(layer.owner, *layer.follow)) if layer.follow else nn.Sequential(layer.owner)
            j = layer_isometry(block, h)[0]
            total = j["n_directions"] + j["n_null"]
            row.update(jac_scale=j["scale"], jac_spread=j["spread"], jac_null_share=j["n_null"] / total if total else math.nan)
        else:
            row.update(jac_scale=math.nan, jac_spread=math.nan, jac_null_share=math.nan)
        units = feats.detach().reshape(-1, feats.shape[-1])  # (rows, d)
        row.update(dormant=float(dormant_units(units, self.tau).double().mean()), dead=float(dead_units(units).double().mean()),
                   feature_rank=float(effective_rank(units)), n_units=int(units.shape[1]))
        return row

    def _ntk_summary(self) -> dict:
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            return {"ntk_condition_number": math.nan}  # a diverged model has no kernel
        model64 = copy.deepcopy(self.model).double().eval()
        x = self.probe[0][: self.ntk].double()
        kernel = empirical_ntk(model64, x)
        summary = ntk_summary(kernel, generator=torch.Generator().manual_seed(0))
        return {f"ntk_{k}": v for k, v in summary.items() if not isinstance(v, torch.Tensor)}

    def frame(self) -> pd.DataFrame:
        """The records so far: one row per record and layer (columns in :mod:`isoplast_lite.monitor`).

        Returns:
            A ``pandas.DataFrame`` with the columns ``record, step, tag, layer, kind, activation,
            shape``, the weight, Jacobian and feature measures (empty, with those columns, before
            the first record).
        """
        return pd.DataFrame(self._rows, columns=_COLUMNS)

    def ntk_frame(self) -> pd.DataFrame:
        """The eNTK records: one row per record, ``record, step, tag`` and the ``ntk_*`` summaries of :func:`~isoplast_lite.diagnostics.ntk_summary`.

        Raises:
            ValueError: the monitor was made with ``ntk=0``.
        """
        if not self.ntk:
            raise ValueError("ntk_frame needs a monitor made with ntk >= 1 (got ntk=0)")
        return pd.DataFrame(self._ntk_rows)

    def to_csv(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write :meth:`frame` as CSV (atomically; a path that is not a regular file is never replaced).

        Args:
            path: the file to write.
        """
        target = files.check_output_file("path", path)
        buffer = io.StringIO()
        self.frame().to_csv(buffer, index=False)
        data = buffer.getvalue().encode()
        files.atomic_write(target, lambda h: h.write(data))

    def plot(self, measures: Sequence[str] = ("weight_spread", "jac_spread", "dormant", "feature_rank"), *,
             layers: Optional[Sequence[str]] = None):
        """Small multiples of ``measures`` against the step, one line per layer (the book's plotting helpers).

        Args:
            measures: columns of :meth:`frame`.
            layers: the layers to draw (default: all).

        Returns:
            The matplotlib figure.
        """
        import matplotlib.pyplot as plt

        from .plots import legend_outside, lineplot, set_theme

        df = self.frame()
        if df.empty:
            raise ValueError("nothing to plot: the monitor has no record yet (call record() or step())")
        measures = [measures] if isinstance(measures, str) else list(measures)
        unknown = [m for m in measures if m not in _MEASURES]
        if not measures or unknown:
            raise ValueError(f"measures must be columns among {list(_MEASURES)}, got {measures}")
        if layers is not None:
            missing = sorted(set(layers) - set(df["layer"]))
            if missing:
                raise ValueError(f"layers {missing} are not monitored; monitored: {list(dict.fromkeys(df['layer']))}")
            df = df[df["layer"].isin(layers)]
        set_theme()
        fig, axes = plt.subplots(1, len(measures), figsize=(3.4 * len(measures), 2.8), squeeze=False)
        for ax, y in zip(axes[0], measures):
            data = df.dropna(subset=[y])
            if data.empty:
                ax.set_title(f"{y}: not measured")
                continue
            lineplot(ax, data, y, x="step", hue="layer", band=False, log=False)
        legend_outside(fig, title="layer")
        return fig

    def callback(self) -> "PlasticityCallback":
        """A PyTorch-Lightning-style callback that drives this monitor (see :class:`PlasticityCallback`)."""
        return PlasticityCallback(self)


_MEASURES = ("weight_scale", "weight_spread", "weight_sigma_min", "weight_sigma_max", "weight_null_share",
             "jac_scale", "jac_spread", "jac_null_share", "dormant", "dead", "feature_rank", "n_units")
_COLUMNS = ["record", "step", "tag", "layer", "kind", "activation", "shape", *_MEASURES]


class PlasticityCallback:
    """Drives a :class:`PlasticityMonitor` from a PyTorch Lightning ``Trainer``, without depending on Lightning.

    Lightning calls hooks by name; this object has the two it uses, ``on_train_batch_end``
    (one :meth:`PlasticityMonitor.step`) and ``on_train_epoch_end`` (a record tagged
    ``"epoch E"``), and every other ``on_*`` hook, ``setup`` and ``teardown`` as no-ops. If your
    Lightning version requires its ``Callback`` base class, combine them:
    ``class C(PlasticityCallback, lightning.Callback): pass`` (as our test does). Tested with
    a fake trainer below and, in ``tests/test_monitor.py``, inside a real ``lightning.Trainer``
    (Lightning is not a dependency of this package; the test environment installs it).

    Args:
        monitor: the monitor to drive.

    Example:
        >>> import torch
        >>> monitor = PlasticityMonitor(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(8, 3), every=2)
        >>> cb, trainer = monitor.callback(), type("Trainer", (), {"current_epoch": 0})()
        >>> for i in range(4):
        ...     cb.on_train_batch_end(trainer, None, None, None, i)
        >>> cb.on_train_epoch_end(trainer, None)
        >>> records = monitor.frame().drop_duplicates("record")
        >>> records["step"].tolist(), records["tag"].fillna("-").tolist()
        ([2, 4, 4], ['-', '-', 'epoch 0'])
    """

    def __init__(self, monitor: PlasticityMonitor):
        if not isinstance(monitor, PlasticityMonitor):
            raise TypeError(f"monitor must be a PlasticityMonitor, got {type(monitor).__name__}")
        self.monitor = monitor

    @property
    def state_key(self) -> str:
        return type(self).__qualname__

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.monitor.step()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.monitor.record(tag=f"epoch {trainer.current_epoch}")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        return None

    def setup(self, *args, **kwargs) -> None:
        return None

    def teardown(self, *args, **kwargs) -> None:
        return None

    def __getattr__(self, name: str):
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
