"""Declared method settings: each method's hyperparameters with defaults, types, ranges, meaning.

A method (:mod:`isoplast_lite.methods`) declares its hyperparameters as a frozen dataclass whose
fields are made with :func:`setting`::

    @dataclass(frozen=True)
    class Settings:
        strength: float = setting(1e-2, low=0, help="coefficient of the penalty")
        target: str = setting("identity", choices=("identity", "scaled"), help="what W W^T is pulled to")

The declaration is the single source of truth: :func:`make_settings` validates values against it
(type, range, choices) with a one-line :class:`SettingError` naming the method, the setting and
what is allowed; :func:`settings_dict` gives the canonical ``{name: value}`` that goes into the
cache key and into every result row (column ``settings``, canonical JSON); the command line
builds ``--set NAME=VALUE`` parsing (:func:`parse_setting`) and its ``--help`` text
(:func:`describe_settings`) from it.

Supported types: ``float``, ``int``, ``bool``, ``str`` and ``Optional[...]`` of those.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Settings:
    ...     strength: float = setting(1e-2, low=0, help="coefficient of the penalty")
    >>> make_settings("demo", Settings, {"strength": 0.5})
    Settings(strength=0.5)
    >>> make_settings("demo", Settings, {"strength": -1})
    Traceback (most recent call last):
    ...
    isoplast_lite.settings.SettingError: method 'demo': setting strength=-1.0: out of range; allowed: a number >= 0
    >>> settings_json(Settings())
    '{"strength":0.01}'
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import typing
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ._validation import ConfigError

__all__ = ["setting", "SettingError", "make_settings", "settings_dict", "settings_json", "parse_setting",
           "describe_settings", "setting_specs", "SettingSpec", "NoSettings"]  # fmt: skip

_META = "isoplast_setting"


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """The settings of a method that has none."""


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    """What a declared setting allows.

    Attributes:
        name: the field name. type: ``float``, ``int``, ``bool`` or ``str``. optional: ``None``
        is allowed. default: the default value. help: one line saying what it means.
        low, high: bounds of a number (``None``: unbounded); ``low_open``/``high_open`` make
        them strict. choices: the allowed values of a ``str`` setting (``None``: any).
        stackable: the setting only scales per-seed computations (a penalty, a decay, a step
        size, a threshold), so runs that differ only in it could share one stacked model,
        seed-like (a declaration for the runner; ``False``: it changes the architecture, the
        optimizer or the control flow).
    """

    name: str
    type: type
    optional: bool
    default: Any
    help: str
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    choices: Optional[Tuple[str, ...]] = None
    stackable: bool = False

    def allowed(self) -> str:
        """What is allowed, in words (for error messages and ``--help``)."""
        if self.type is bool:
            text = "true or false"
        elif self.type is str:
            text = "one of " + ", ".join(repr(c) for c in self.choices) if self.choices else "a string"
        else:
            kind = "an integer" if self.type is int else "a number"
            parts = []
            if self.low is not None:
                parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
            if self.high is not None:
                parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
            text = kind + (" " + " and ".join(parts) if parts else "")
        return text + (" or None" if self.optional else "")


def setting(default: Any, *, help: str, low: Optional[float] = None, high: Optional[float] = None,
            low_open: bool = False, high_open: bool = False, choices: Optional[Tuple[str, ...]] = None,
            stackable: bool = False) -> Any:  # fmt: skip
    """A dataclass field declaring one method setting (use as the field's default).

    Args:
        default: the default value (must itself be allowed).
        help: one line: what the setting means (shown by ``--help``).
        low, high: bounds of a numeric setting; ``low_open``/``high_open`` make them strict.
        choices: the allowed values of a ``str`` setting.
        stackable: whether runs differing only in this setting may be stacked beside seeds
            (see :class:`SettingSpec`; default ``False``, the safe answer).
    """
    if not isinstance(help, str) or not help.strip() or "\n" in help:
        raise ValueError(f"help must be one non-empty line, got {help!r}")
    if not isinstance(stackable, bool):
        raise TypeError(f"stackable must be a bool, got {stackable!r}")
    meta = {"help": help, "low": low, "high": high, "low_open": bool(low_open), "high_open": bool(high_open),
            "choices": None if choices is None else tuple(choices), "stackable": stackable}  # fmt: skip
    return dataclasses.field(default=default, metadata={_META: meta})


class SettingError(ConfigError):
    """A method setting that is unknown, of the wrong type or out of range.

    ``str(err)`` is one line: ``method 'adamo': setting iso_strength=-1: out of range; allowed: a
    number >= 0``. Attributes: ``method``, ``setting`` (the name), ``value``, ``problem``,
    ``allowed`` (and :class:`ConfigError`'s ``fields``/``reason``).
    """

    def __init__(self, method: str, name: str, value: Any, problem: str, allowed: str) -> None:
        self.method, self.setting, self.value, self.problem, self.allowed = method, name, value, problem, allowed
        shown = f"{name}={value!r}" if value is not _MISSING else name
        ValueError.__init__(self, f"method {method!r}: setting {shown}: {problem}; allowed: {allowed}")
        self.fields = {"method": method, name: value}
        self.reason = f"{problem}; allowed: {allowed}"


_MISSING = object()


def _unwrap(tp) -> Tuple[type, bool]:
    """(base type, optional) of an annotation ``float`` / ``Optional[float]`` / ..."""
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def setting_specs(settings_cls: type) -> List[SettingSpec]:
    """The :class:`SettingSpec` of every field of a settings dataclass, in declaration order.

    Raises:
        TypeError: ``settings_cls`` is not a frozen dataclass whose fields are declared with
            :func:`setting` and have a supported type.
    """
    if not (isinstance(settings_cls, type) and dataclasses.is_dataclass(settings_cls)):
        raise TypeError(f"Settings must be a dataclass, got {settings_cls!r}")
    if not settings_cls.__dataclass_params__.frozen:
        raise TypeError(f"Settings {settings_cls.__qualname__} must be a frozen dataclass (@dataclass(frozen=True))")
    hints = typing.get_type_hints(settings_cls)
    specs = []
    for f in dataclasses.fields(settings_cls):
        meta = f.metadata.get(_META)
        if meta is None:
            raise TypeError(f"setting {f.name!r} of {settings_cls.__qualname__} must be declared with isoplast_lite.settings.setting(default, help=...)")
        base, optional = _unwrap(hints[f.name])
        if base not in (float, int, bool, str):
            raise TypeError(f"setting {f.name!r} of {settings_cls.__qualname__} has type {hints[f.name]!r}; allowed: float, int, bool, str or Optional of them")
        specs.append(SettingSpec(f.name, base, optional, f.default, **meta))
    return specs


def _check_value(method: str, spec: SettingSpec, value: Any) -> Any:
    """``value`` converted to the setting's type, or a :class:`SettingError`."""
    if value is None:
        if spec.optional:
            return None
        raise SettingError(method, spec.name, value, "None is not allowed", spec.allowed())
    if spec.type is bool:
        if not isinstance(value, bool):
            raise SettingError(method, spec.name, value, f"wrong type {type(value).__name__}", spec.allowed())
        return value
    if spec.type is str:
        if not isinstance(value, str):
            raise SettingError(method, spec.name, value, f"wrong type {type(value).__name__}", spec.allowed())
        if spec.choices is not None and value not in spec.choices:
            raise SettingError(method, spec.name, value, "not a valid choice", spec.allowed())
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingError(method, spec.name, value, f"wrong type {type(value).__name__}", spec.allowed())
    if spec.type is int:
        if isinstance(value, numbers.Integral):
            value = int(value)
        elif float(value).is_integer():
            value = int(value)
        else:
            raise SettingError(method, spec.name, value, "not an integer", spec.allowed())
    else:
        value = float(value)
        if not math.isfinite(value):
            raise SettingError(method, spec.name, value, "not finite", spec.allowed())
    too_low = spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low)
    too_high = spec.high is not None and (value >= spec.high if spec.high_open else value > spec.high)
    if too_low or too_high:
        raise SettingError(method, spec.name, value, "out of range", spec.allowed())
    return value


def make_settings(method: str, settings_cls: type, values: Union[None, Mapping[str, Any], object] = None):
    """A validated instance of ``settings_cls`` from ``values``.

    Args:
        method: the method's name (for error messages).
        settings_cls: the method's settings dataclass.
        values: ``None`` (all defaults), a mapping ``{name: value}`` (missing names take their
            defaults), or an instance of ``settings_cls`` (re-validated).

    Raises:
        SettingError: an unknown name (with a close match if there is one), a wrong type or a
            value out of range.
    """
    specs = {s.name: s for s in setting_specs(settings_cls)}
    if values is None:
        values = {}
    elif isinstance(values, settings_cls):
        values = dataclasses.asdict(values)
    elif dataclasses.is_dataclass(values) and not isinstance(values, type):
        raise SettingError(method, "settings", values, f"settings of another method ({type(values).__qualname__})", _names(specs))
    elif not isinstance(values, Mapping):
        raise SettingError(method, "settings", values, f"wrong type {type(values).__name__}", f"a dict of {_names(specs)}")
    out = {}
    for name, value in values.items():
        if name not in specs:
            close = difflib.get_close_matches(str(name), list(specs), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SettingError(method, str(name), value, "unknown setting" + hint, _names(specs))
        out[name] = _check_value(method, specs[name], value)
    return settings_cls(**out)


def _names(specs: Mapping[str, SettingSpec]) -> str:
    return "settings " + ", ".join(specs) if specs else "no settings (this method has none)"


def settings_dict(settings) -> Dict[str, Any]:
    """The canonical ``{name: value}`` of a settings instance (declaration order)."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def settings_json(settings) -> str:
    """Canonical JSON of a settings instance (sorted keys, no spaces): the ``settings`` column
    of result rows and part of the cache key."""
    return json.dumps(settings_dict(settings), sort_keys=True, separators=(",", ":"))


def parse_setting(method: str, settings_cls: type, name: str, text: str) -> Any:
    """The value of setting ``name`` written as command-line ``text`` (``"1e-3"``, ``"true"``,
    ``"none"``, a choice), validated.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class S:
        ...     n: int = setting(1, low=1, help="how many")
        >>> parse_setting("demo", S, "n", "3")
        3
    """
    specs = {s.name: s for s in setting_specs(settings_cls)}
    if name not in specs:
        close = difflib.get_close_matches(name, list(specs), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SettingError(method, name, text, "unknown setting" + hint, _names(specs))
    spec = specs[name]
    low = text.strip().lower()
    if spec.optional and low == "none":
        return None
    if spec.type is bool:
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise SettingError(method, name, text, "not a boolean", spec.allowed())
    if spec.type is str:
        return _check_value(method, spec, text)
    try:
        value = int(text) if spec.type is int else float(text)
    except ValueError:
        raise SettingError(method, name, text, "not a number" if spec.type is float else "not an integer", spec.allowed()) from None
    return _check_value(method, spec, value)


def describe_settings(settings_cls: type) -> List[str]:
    """One line per setting: ``name=default (allowed): meaning``."""
    return [f"{s.name}={s.default!r} ({s.allowed()}): {s.help}" for s in setting_specs(settings_cls)]
