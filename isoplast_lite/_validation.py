"""Private argument checks shared by every module of ``isoplast_lite``.

Every check raises a ``TypeError`` (wrong kind of object) or a ``ValueError`` (right kind, value
not allowed) whose message names the argument, shows the value that arrived and says what is
allowed. The checks return the (possibly converted) value so callers can write
``lr = check_nonnegative("lr", lr)``.

These helpers are private (no stability promise) but shared by all modules of the package,
including ``tasks``, ``methods`` and ``run``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Iterable, Optional

import torch
from torch import nn

__all__ = [
    "check_real",
    "check_positive",
    "check_nonnegative",
    "check_probability",
    "check_unit_interval_open",
    "check_int",
    "check_choice",
    "check_bool",
    "check_tensor",
    "check_generator",
    "check_module",
    "check_finite_parameters",
    "ConfigError",
]


class ConfigError(ValueError):
    """A configuration that cannot run, with the settings at fault.

    Attributes:
        fields: the offending settings, ``{name: value}`` (``Config`` field names, e.g.
            ``{"n_train": 1438}``), in the order they should be named.
        reason: what is wrong and what is allowed.

    ``str(err)`` is ``"n_train=1438: <reason>"``; the command line names the flags instead.
    """

    def __init__(self, fields: Dict[str, Any], reason: str) -> None:
        self.fields = dict(fields)
        self.reason = reason
        named = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        super().__init__(f"{named}: {reason}")


_HALF = (torch.float16, torch.bfloat16)


def _nonfinite_counts(value: torch.Tensor) -> str:
    """``"2 NaN, 1 inf of 12 entries"`` for an error message (called only on failure)."""
    n_nan = int(torch.isnan(value).sum())
    n_inf = int(torch.isinf(value).sum())
    return f"{n_nan} NaN and {n_inf} infinite of {value.numel()} entries"


def _show(value: Any) -> str:
    """A short representation of ``value`` for error messages."""
    text = repr(value)
    if isinstance(value, torch.Tensor):
        text = f"Tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    if len(text) > 80:
        text = text[:77] + "..."
    return text


def check_real(name: str, value: Any) -> float:
    """Return ``value`` as a finite ``float``; reject bools, non-numbers, NaN and infinities."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_show(value)} of type {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value}")
    return value


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a float after checking ``value > 0`` (finite)."""
    value = check_real(name, value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def check_nonnegative(name: str, value: Any) -> float:
    """Return ``value`` as a float after checking ``value >= 0`` (finite)."""
    value = check_real(name, value)
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_probability(name: str, value: Any) -> float:
    """Return ``value`` as a float after checking ``0 <= value <= 1``."""
    value = check_real(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def check_unit_interval_open(name: str, value: Any) -> float:
    """Return ``value`` as a float after checking ``0 <= value < 1`` (Adam's betas)."""
    value = check_real(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return value


def check_int(name: str, value: Any, *, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    """Return ``value`` as an ``int`` (bools rejected) after checking ``minimum <= value <= maximum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_show(value)} of type {type(value).__name__}")
    value = int(value)
    too_small = minimum is not None and value < minimum
    if maximum is not None and (too_small or value > maximum):
        lower = "" if minimum is None else f"{minimum} <= "
        raise ValueError(f"{name} must be an int with {lower}{name} <= {maximum}, got {value}")
    if too_small:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` after checking it is one of the strings ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, got {_show(value)} of type {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` after checking it is a ``bool``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {_show(value)} of type {type(value).__name__}")
    return value


def check_tensor(
    name: str,
    value: Any,
    *,
    ndim: Optional[int] = None,
    min_ndim: Optional[int] = None,
    floating: bool = True,
    nonempty: bool = True,
    finite: bool = False,
    full_precision: bool = False,
) -> torch.Tensor:
    """Return ``value`` after checking it is a ``torch.Tensor`` of the requested kind.

    Args:
        name: argument name used in the error message.
        value: the object to check.
        ndim: exact number of dimensions required, if given.
        min_ndim: minimal number of dimensions required, if given.
        floating: require a floating-point dtype.
        nonempty: require at least one element (and no zero-sized dimension).
        finite: require every entry to be finite (costs one reduction and a device
            synchronization, so off by default; never use it inside a ``forward``).
        full_precision: reject float16 and bfloat16 (torch's linear algebra, e.g. ``svdvals``,
            has no half-precision kernels).
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_show(value)} of type {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if min_ndim is not None and value.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(value.shape)}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}")
    if nonempty and value.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(value.shape)}")
    if full_precision and value.dtype in _HALF:
        raise TypeError(f"{name} must be float32 or float64 (no linear algebra in half precision), got {value.dtype}; convert it with .float()")
    if finite and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must contain only finite values, got {_nonfinite_counts(value)}")
    return value


def check_generator(name: str, value: Any) -> Optional[torch.Generator]:
    """Return ``value`` after checking it is ``None`` or a ``torch.Generator``."""
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {_show(value)} of type {type(value).__name__}")
    return value


def check_module(name: str, value: Any, cls: type = torch.nn.Module) -> torch.nn.Module:
    """Return ``value`` after checking it is an instance of ``cls`` (an ``nn.Module`` class)."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be a {cls.__module__}.{cls.__qualname__}, got {_show(value)} of type {type(value).__name__}")
    return value


def check_finite_parameters(name: str, model: torch.nn.Module) -> torch.nn.Module:
    """Return ``model`` after checking its parameters are finite and not in half precision.

    Raises:
        TypeError: a float16 / bfloat16 parameter (the diagnostics' linear algebra has no
            half-precision kernels).
        ValueError: a parameter holds NaN or infinite entries (a diverged model); the message
            names the first such parameter.
    """
    for pname, p in model.named_parameters():
        if p.dtype in _HALF:
            raise TypeError(
                f"{name} has {p.dtype} parameters ({pname}); the diagnostics need float32 or float64 "
                f"(no linear algebra in half precision): use a float copy, e.g. copy.deepcopy({name}).float()"
            )
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise ValueError(
                f"{name} must have finite parameters, got {_nonfinite_counts(p.detach())} in {pname} "
                "(a diverged model: its diagnostics are undefined)"
            )
    return model


# ---- checks of the diagnostics' models and probes (units, jacobians, entk)


def check_model_input(model: nn.Module, name: str, x: torch.Tensor) -> None:
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


def check_block_model(model: nn.Module, *, min_blocks: int = 1) -> nn.Sequential:
    """Check that ``model`` is an ``nn.Sequential`` of at least ``min_blocks`` blocks (the diagnostics' models)."""
    check_module("model", model, nn.Sequential)
    if len(model) < min_blocks:
        raise ValueError(f"model must be an nn.Sequential of at least {min_blocks} blocks, got {len(model)}")
    return model


def check_model_and_probe(model: nn.Module, x: torch.Tensor, *, min_blocks: int = 1) -> None:
    """The diagnostics' checks of a block model and its probe ``x``: blocks, finite parameters, a finite full-precision tensor that fits the model."""
    check_block_model(model, min_blocks=min_blocks)
    check_finite_parameters("model", model)
    check_tensor("x", x, min_ndim=2, finite=True, full_precision=True)
    check_model_input(model, "x", x)
