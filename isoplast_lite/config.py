"""The runner's configuration: :class:`Config`, its limits, and the checks made before any work.

A :class:`Config` is everything that defines one experiment and its cache key: the benchmark,
the budget, the architecture, and the chosen method with its settings only (validated against
the method's declaration when the config is made). :data:`LIMITS` and :data:`MAX_LR` bound its
fields (a typo such as ``--depth 1000000000000`` is an error, not a hang).

:func:`check_config` is what :func:`isoplast_lite.run.run` asks before training: that the device
exists (:func:`check_device`), that the benchmark's data set holds ``n_train`` images, that the
method accepts the config, that the memory estimate (:func:`memory_terms`, against
:func:`available_memory`) fits and that a lower estimate of the time (:func:`estimate_seconds`)
is within :func:`time_limit` (:data:`MAX_SECONDS`, 1 hour, unless raised). No data is loaded or downloaded. Everything here is re-exported
by :mod:`isoplast_lite.run` (``from isoplast_lite.run import Config, check_config`` works).

Example:
    >>> cfg = Config("random-label-digits", "adamo", seeds=2, n_tasks=2, steps_per_task=5, width=16)
    >>> check_config(cfg)
    >>> cfg.seed_list, cfg.method_settings["iso_strength"]
    ([0, 1], 0.1)
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import torch

from ._validation import ConfigError, check_choice, check_int, check_positive
from .methods import call_hook, make_method, method_class
from .settings import make_settings, settings_dict
from .tasks import BENCHMARKS, SOURCE_SIZES, parse_benchmark

__all__ = [
    "Config", "check_config", "ConfigError", "check_device", "available_memory", "memory_terms", "estimate_seconds",
    "time_limit", "LIMITS", "MAX_LR", "MAX_SECONDS", "MAX_HOURS_ENV", "DTYPES", "INITS", "cli_fields",
]  # fmt: skip

# Upper bounds of the sizes of a Config: far above any run a machine can do in a day, low
# enough that an absurd value (a typo such as --depth 1000000000000) is an error, not a hang.
# check_config also compares the memory a config needs with the memory available.
LIMITS = {"seeds": 10_000, "n_tasks": 1_000_000, "steps_per_task": 100_000_000, "batch_size": 10_000_000,
          "width": 1_000_000, "depth": 10_000, "probe_size": 100_000, "n_train": 100_000_000, "threads": 1024}  # fmt: skip
MAX_LR = 10.0  # Adam moves every weight by about lr per step: lr > 10 cannot train anything
#: the ``dtype`` values of a :class:`Config` and their torch dtypes
DTYPES = {"float32": torch.float32, "float64": torch.float64}


#: the ``init`` values of a :class:`Config`
INITS = ("orthogonal", "kaiming", "default")


def _run_field(default, flag: str, help: str, **extra):
    """A :class:`Config` field that the command line exposes as ``flag``, with ``help`` (and ``choices``)."""
    return dataclasses.field(default=default, metadata={"flag": flag, "help": help, **extra})


def cli_fields() -> List[dataclasses.Field]:
    """The fields of :class:`Config` that ``python -m isoplast_lite run|sweep`` exposes as flags, in
    declaration order: each has ``metadata["flag"]``, ``metadata["help"]`` and, for a choice,
    ``metadata["choices"]``; the command line generates its run flags from them.

    Example:
        >>> [(f.name, f.metadata["flag"]) for f in cli_fields()][:3]
        [('seeds', '--seeds'), ('n_tasks', '--tasks'), ('steps_per_task', '--steps-per-task')]
    """
    return [f for f in dataclasses.fields(Config) if "flag" in f.metadata]


@dataclass(frozen=True)
class Config:
    """Everything that defines one experiment (and its cache key): the benchmark, the budget,
    the architecture, and the chosen method with *its* settings only.

    Args:
        benchmark: one of :data:`isoplast_lite.tasks.BENCHMARKS`.
        method: a registered method (:data:`isoplast_lite.methods.METHODS`, or one added with
            :func:`isoplast_lite.methods.register_method`).
        settings: the method's settings: ``None`` (its defaults), a dict of some of them (the
            others take their defaults), or its ``Settings`` instance. Validated against the
            method's declaration; stored as the method's frozen ``Settings`` instance.
            ``python -m isoplast_lite run --help`` lists every method's settings.
        lr: learning rate eta.
        seeds: number of seeds; seeds ``first_seed, ..., first_seed + seeds - 1`` are run.
        first_seed: the first seed.
        n_tasks, steps_per_task, batch_size: stream length and budget.
        width, depth: hidden width and number of hidden layers.
        n_train: training images per task (``None`` = the whole training split).
        init: initialization of the ReLU nets (``"orthogonal"``, ``"kaiming"``, ``"default"``).
        probe_size: inputs in the fixed probe set (eNTK, layer Jacobians).
        device: torch device string. dtype: ``"float32"`` or ``"float64"``.
        threads: torch intra-op threads the run trains and measures with (default 1). Part of
            the result, so part of the configuration and its cache key: float32 training
            rounds differently under another thread count (the loss moves by about 1e-7
            relative in 600 steps, the ``ntk_*`` columns by about 5e-7), so a run pins its
            count (:func:`isoplast_lite.run.run` sets it for the run and restores the caller's
            afterwards) and gives the same rows whatever ``OMP_NUM_THREADS``, executor or
            worker runs it. On this project's busy 2-core machine a second thread made a
            width-64 run of 8 seeds 15 to 46 times slower (``benchmarks/threads.py``); a GPU
            run ignores it.

    Example:
        >>> Config("random-label-digits", "adamo", settings={"iso_strength": 0.01}).settings.iso_strength
        0.01
        >>> Config("random-label-digits", "adam", settings={"iso_strength": 0.01})
        Traceback (most recent call last):
        ...
        isoplast_lite.settings.SettingError: method 'adam': setting iso_strength=0.01: unknown setting; allowed: no settings (this method has none)
    """

    # The fields with a flag in their metadata are the command line's run flags, generated from
    # here with their help (python -m isoplast_lite run|sweep; cli_fields). benchmark, method, lr
    # and the settings have their own flags (one value for run, several for sweep); first_seed
    # and probe_size are not on the command line (they define the book's probes, not a run's size).
    benchmark: str
    method: str
    settings: Any = None
    lr: float = 1e-3
    seeds: int = _run_field(4, "--seeds", "number of seeds")
    first_seed: int = 0
    n_tasks: int = _run_field(20, "--tasks", "number of tasks")
    steps_per_task: int = _run_field(800, "--steps-per-task", "optimizer steps per task")
    batch_size: int = _run_field(32, "--batch-size", "minibatch size")
    width: int = _run_field(256, "--width", "hidden width")
    depth: int = _run_field(3, "--depth", "hidden layers")
    n_train: Optional[int] = _run_field(512, "--n-train", "training images per task")
    init: str = _run_field("orthogonal", "--init", "initialization of the ReLU nets", choices=INITS)
    probe_size: int = 16
    device: str = _run_field("cpu", "--device", "torch device, e.g. cpu or cuda")
    dtype: str = _run_field("float32", "--dtype", "floating-point type of the weights and data", choices=tuple(DTYPES))
    threads: int = _run_field(1, "--threads", "torch threads the run trains and measures with (part of the result: float32 "
                                              "rounds differently under another count)")

    def __post_init__(self):
        check_choice("benchmark", self.benchmark, BENCHMARKS)
        cls = method_class(self.method)
        object.__setattr__(self, "settings", make_settings(self.method, cls.Settings, self.settings))
        object.__setattr__(self, "lr", check_positive("lr", self.lr))
        if self.lr > MAX_LR:
            raise ValueError(f"lr must be in (0, {MAX_LR:g}] (Adam moves every weight by about lr per step), got {self.lr}")
        check_int("first_seed", self.first_seed, minimum=0)
        for name in ("seeds", "n_tasks", "steps_per_task", "batch_size", "width", "depth", "probe_size", "threads"):
            check_int(name, getattr(self, name), minimum=1, maximum=LIMITS[name])
        if self.n_train is not None:
            check_int("n_train", self.n_train, minimum=1, maximum=LIMITS["n_train"])
        check_choice("init", self.init, INITS)
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a str such as 'cpu' or 'cuda', got {type(self.device).__name__}")
        check_choice("dtype", self.dtype, tuple(DTYPES))

    @property
    def seed_list(self) -> List[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    @property
    def method_settings(self) -> Dict[str, Any]:
        """The method's settings as ``{name: value}`` (declaration order)."""
        return settings_dict(self.settings)

    def replace(self, **changes) -> "Config":
        """A copy with some fields changed; ``settings`` given as a dict updates the current
        settings (``cfg.replace(settings={"iso_strength": 0.01})``), and a change of method
        starts from the new method's defaults.

        Example:
            >>> cfg = Config("random-label-digits", "adamo", settings={"iso_scaling": "schedule"})
            >>> cfg.replace(settings={"iso_strength": 0.01}).method_settings
            {'iso_strength': 0.01, 'iso_scaling': 'schedule'}
        """
        new = changes.get("settings")
        if "method" in changes and changes["method"] != self.method:
            changes.setdefault("settings", None)
        elif isinstance(new, Mapping):
            changes["settings"] = {**self.method_settings, **new}
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, floats in repr) of what the run uses: every run field,
        the method's name and ``version`` and its settings (no other method's)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "settings"}
        fields["settings"] = self.method_settings
        fields["method_version"] = method_class(self.method).version
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def available_memory(device: torch.device) -> Optional[int]:
    """Bytes of memory free for a run on ``device`` (``None`` if unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return None


def memory_terms(cfg: Config, n_seeds: int) -> Dict[str, tuple]:
    """Rough bytes a run of ``n_seeds`` stacked seeds needs, per cause: ``{term: (bytes, fields)}``.

    A lower estimate: weights, gradients, the two Adam moments, the checkpoint copy and one
    method copy (6 per parameter and seed); the probe's per-example Jacobians of the eNTK
    (``probe_size * n_classes`` per parameter); the task's minibatch indices (int64, built with
    their epoch permutations); the activations of a step; the stacked task data.
    """
    n_images, in_dim, n_classes = SOURCE_SIZES[parse_benchmark(cfg.benchmark)[1]]
    n_train = n_images if cfg.n_train is None else cfg.n_train
    b = DTYPES[cfg.dtype].itemsize
    w, d = cfg.width, cfg.depth
    n_params = in_dim * w + w + (d - 1) * (w * w + w) + w * n_classes + n_classes
    return {
        f"{n_params:.3g} parameters per seed": (n_seeds * n_params * b * 6 + cfg.probe_size * n_classes * n_params * b, ("width", "depth")),
        "the minibatch indices of a task": (n_seeds * cfg.steps_per_task * cfg.batch_size * 8 * 2, ("steps_per_task", "batch_size")),
        "the activations of a step": (n_seeds * cfg.batch_size * w * d * b * 4, ("batch_size", "width")),
        "the minibatch inputs of a step": (n_seeds * cfg.batch_size * in_dim * b * 2, ("batch_size",)),
        "the task data": (n_seeds * n_train * in_dim * b * 3, ("n_train",)),
    }


#: the longest run :func:`check_config` accepts by default, in seconds of :func:`estimate_seconds`
#: (1 hour, about 2 hours or more of this project's machine): every run of the book and of its
#: tools is estimated below 2 minutes, so a longer one is a typo or a deliberate choice, made with
#: ``check_config(max_hours=...)``, ``$ISOPLAST_MAX_HOURS`` or the CLI's ``--max-hours``
MAX_SECONDS = 3600
#: the environment variable that sets the limit, in hours (what ``--max-hours`` sets)
MAX_HOURS_ENV = "ISOPLAST_MAX_HOURS"
# The time model (benchmarks/time_estimate.py measures the runner against it): a training step of
# a batch of stacked seeds costs _STEP_SECONDS, plus _LAYER_SECONDS per layer, plus per example
# and seed _EXAMPLE_SECONDS and 6 operations per parameter at _FLOPS per thread, plus per
# parameter and seed _PARAM_SECONDS (the optimizer's element-wise work); each task adds
# _TASK_SECONDS and _TASK_LAYER_SECONDS per layer (staging and the per-task measurement). Each
# constant is about half of what this project's machine kind measures with one thread (measured
# 0.2 ms, 0.07 ms, 0.7 us, 93 GFLOP/s, 4-10 ns, 45 ms, 1.3 ms; benchmarks/time_estimate.py), so
# the estimate is a lower one on a machine up to about twice as fast: a refusal is not wrong there.
_STEP_SECONDS = 1e-4
_LAYER_SECONDS = 3.5e-5
_EXAMPLE_SECONDS = 3e-7
_PARAM_SECONDS = 2e-9
_TASK_SECONDS = 2e-2
_TASK_LAYER_SECONDS = 6e-4
#: floating-point operations per second and torch thread, per device type (cpu: about twice the
#: 93 GFLOP/s peak of one thread's large matmul measured here)
_FLOPS = {"cpu": 2e11, "cuda": 1e14, "mps": 1e13}
#: how much faster than the CPU a device does the per-example and per-parameter element-wise
#: work (memory bandwidth): guesses, not measured (no GPU here), on the optimistic side
_ELEMENTWISE_SPEEDUP = {"cpu": 1.0, "cuda": 100.0, "mps": 20.0}


def _n_params(cfg: Config) -> int:
    n_images, in_dim, n_classes = SOURCE_SIZES[parse_benchmark(cfg.benchmark)[1]]
    w, d = cfg.width, cfg.depth
    return in_dim * w + (d - 1) * w * w + w * n_classes


def estimate_seconds(cfg: Config, *, seed_batch: Optional[int] = None, threads: Optional[int] = None) -> float:
    """A lower estimate of the seconds :func:`run` takes to train and measure ``cfg`` on its device.

    The model (constants measured by ``benchmarks/time_estimate.py`` on the project's CPU, then
    halved): per training step of a batch of stacked seeds, a fixed cost, a cost per layer, and
    per example and seed a fixed cost plus 6 floating-point operations per parameter at
    :data:`_FLOPS` per thread, and a cost per parameter and seed (the optimizer); per task, a
    cost per layer for the measurement. Methods that cost
    more than Adam per step (AdamO, the retractions) take longer than the estimate.

    Args:
        cfg: the run.
        seed_batch: seeds stacked in one batch (default: all of ``cfg.seeds``).
        threads: torch threads (default: the run's own, ``cfg.threads``); used on the CPU only.

    Example:
        >>> cfg = Config("random-label-digits", "adam", seeds=4, n_tasks=20, steps_per_task=800)
        >>> round(estimate_seconds(cfg, threads=1))  # the issue budget (measured: about 70 s here)
        33
        >>> estimate_seconds(cfg.replace(batch_size=10_000_000), threads=1) / 3600 > 100
        True
    """
    device = torch.device(cfg.device)
    n_seeds = cfg.seeds if seed_batch is None else min(cfg.seeds, check_int("seed_batch", seed_batch, minimum=1))
    n_batches = -(-cfg.seeds // n_seeds)
    threads = cfg.threads if threads is None else check_int("threads", threads, minimum=1)
    flops = _FLOPS.get(device.type, max(_FLOPS.values())) * (threads if device.type == "cpu" else 1)
    layers, speedup = cfg.depth + 1, _ELEMENTWISE_SPEEDUP.get(device.type, max(_ELEMENTWISE_SPEEDUP.values()))
    per_example = _EXAMPLE_SECONDS / speedup + 6 * _n_params(cfg) / flops
    per_step = _STEP_SECONDS + layers * _LAYER_SECONDS + n_seeds * (cfg.batch_size * per_example + _n_params(cfg) * _PARAM_SECONDS / speedup)
    per_task = cfg.steps_per_task * per_step + _TASK_SECONDS + layers * _TASK_LAYER_SECONDS
    return n_batches * cfg.n_tasks * per_task


def time_limit(max_hours: Optional[float] = None) -> float:
    """The longest estimated run :func:`check_config` accepts, in seconds: ``max_hours`` if given,
    else ``$ISOPLAST_MAX_HOURS`` if set, else :data:`MAX_SECONDS` (1 hour).

    Example:
        >>> time_limit(), time_limit(72)
        (3600, 259200.0)
    """
    if max_hours is None:
        text = os.environ.get(MAX_HOURS_ENV)
        if text is None or text.strip() == "":
            return MAX_SECONDS
        try:
            max_hours = float(text)
        except ValueError:
            raise ValueError(f"${MAX_HOURS_ENV} must be a number of hours > 0, got {text!r}") from None
        name = f"${MAX_HOURS_ENV}"
    else:
        name = "max_hours"
    return check_positive(name, max_hours) * 3600


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} seconds"


def check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError({"device": device}, "not a torch device; allowed: cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU found"
            raise ConfigError({"device": device}, f"CUDA is not available on this machine ({why}); allowed: cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError({"device": device}, f"there are {torch.cuda.device_count()} GPUs; allowed: cpu or cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return dev
    if dev.type == "mps" and torch.backends.mps.is_available():
        return dev
    raise ConfigError({"device": device}, f"{dev.type!r} devices are not available or not supported; allowed: cpu, cuda or mps where present")


def check_config(cfg: Config, *, seed_batch: Optional[int] = None, max_hours: Optional[float] = None) -> None:
    """Check, before any work, that ``cfg`` can run on this machine (:func:`run` calls it).

    Checks that the device exists, that ``n_train`` is at most the number of training images
    of the benchmark's data set, that the method accepts the config (e.g. the GroupSort nets of
    ``aei-*`` need an even width), that the memory of ``seed_batch`` stacked seeds (default
    all) fits in the memory available on the device, and that the run's time
    (:func:`estimate_seconds`, a lower estimate) is within :func:`time_limit` (``max_hours``,
    else ``$ISOPLAST_MAX_HOURS``, else 1 hour). No data is loaded or downloaded.

    Raises:
        TypeError: ``cfg`` is not a :class:`Config`.
        ConfigError: (a ``ValueError``) naming the fields at fault, the values and what is allowed.

    Example:
        >>> check_config(Config("random-label-digits", "adam", n_train=1438))
        Traceback (most recent call last):
        ...
        isoplast_lite._validation.ConfigError: n_train=1438: more than the 1437 training images of 'digits'; allowed: 1 to 1437
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be an isoplast_lite.run.Config, got {type(cfg).__name__}")
    device = check_device(cfg.device)
    source = parse_benchmark(cfg.benchmark)[1]
    n_images = SOURCE_SIZES[source][0]
    if cfg.n_train is not None and cfg.n_train > n_images:
        raise ConfigError({"n_train": cfg.n_train}, f"more than the {n_images} training images of {source!r}; allowed: 1 to {n_images}")
    call_hook(make_method(cfg.method, cfg.settings), "check", cfg, passing=(ValueError, TypeError))
    n_seeds = cfg.seeds if seed_batch is None else min(cfg.seeds, check_int("seed_batch", seed_batch, minimum=1))
    available = available_memory(device)
    terms = memory_terms(cfg, n_seeds)
    need = sum(b for b, _ in terms.values())
    if available is not None and need > available:
        what, (_, fields) = max(terms.items(), key=lambda item: item[1][0])
        fields = {f: getattr(cfg, f) for f in fields} | {"seeds": cfg.seeds}
        raise ConfigError(fields, f"needs about {need / 1e9:.3g} GB of memory (mostly {what}, {n_seeds} seeds stacked), more than "
                                  f"the {available / 1e9:.3g} GB available on {device}; allowed: smaller sizes")  # fmt: skip
    seconds, limit = estimate_seconds(cfg, seed_batch=seed_batch), time_limit(max_hours)
    if seconds > limit:
        fields = {"seeds": cfg.seeds, "tasks": cfg.n_tasks, "steps_per_task": cfg.steps_per_task, "batch_size": cfg.batch_size,
                  "width": cfg.width, "depth": cfg.depth}  # fmt: skip
        raise ConfigError(fields, f"needs about {_duration(seconds)} on {device} (estimated from this machine kind's measured speed; "
                                  f"a lower estimate), more than the limit of {_duration(limit)}; allowed: smaller sizes, or a higher "
                                  f"limit (--max-hours H on the command line, ${MAX_HOURS_ENV}=H, or check_config(max_hours=H))")  # fmt: skip
