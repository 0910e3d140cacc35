"""The seed-batched continual-learning runner, its configuration and its disk cache.

:func:`run` trains the ``seeds`` seeds of one :class:`Config` at once: the seeds' weights are
stacked along a leading dimension (``(S, out, in)``), the forward pass is
``torch.func.vmap(functional_call)`` over that dimension, the loss is the sum over seeds of each
seed's mean cross-entropy (so every seed receives exactly its own gradient) and one optimizer
with ``seed_dims=1`` steps all of them. Each seed starts from the same weights as
``relu_mlp(..., generator=torch.Generator().manual_seed(seed))`` and sees its own task stream
(:func:`isoplast_lite.tasks.make_stream` with that seed), so a batched run equals a plain
per-seed loop (tested to 1e-5).

After each task the runner logs, per seed, on the task's training set (``n_train`` images) and
a fixed probe of its first ``probe_size`` images:

=====================  ===================================================================
column                 meaning
=====================  ===================================================================
``train_acc``          accuracy on the task's training set at the end of the task
``train_acc_online``   mean of the per-batch accuracies during the task (before each step)
``test_acc``           held-out accuracy (permuted / label-shuffle streams; NaN otherwise)
``loss``               cross-entropy on the training set at the end of the task
``loss_online``        mean per-batch loss during the task
``dormant_0.025``      tau-dormant fraction of hidden units, tau = 0.025 (Sokar et al. 2023)
``dormant_0.1``        tau-dormant fraction, tau = 0.1
``dead``               fraction of hidden units that are zero on every training input
``feature_erank``      effective rank (Roy & Vetterli) of the last hidden features
``weight_norm``        Euclidean norm of all parameters
``jac_sv_mean``        mean of all layer-Jacobian singular values on the probe (every block,
                       the head included, not the end-to-end map; 1 = isometric)
``jac_sv_std``         their standard deviation (pooled over all blocks: mixes scale with spread;
                       the per-layer table of ``run(..., layers=True)`` separates them)
``jac_sv_ratio``       their max / min over the non-zero ones (> 1e-6 max; inactive ReLUs give
                       exact zeros, which ``dead`` and ``dormant_*`` already count)
``ntk_cond``           condition number of the empirical NTK on the probe (formed in float64
                       from the weights as stored); ``inf`` when the smallest eigenvalue is at
                       or below the resolution of
                       :func:`isoplast_lite.diagnostics.ntk_resolution` (beyond resolution:
                       the kernel is numerically singular; never a round-off number)
``ntk_rank``           the eNTK's numerical rank: eigenvalues above that resolution
``ntk_resolved``       1.0 when ``ntk_cond`` is a resolved number, 0.0 when it is beyond
                       resolution (floats, so a diverged row is NaN; files written before
                       issue 22 formed the kernel in float32: :mod:`isoplast_lite.results`
                       reads their ``ntk_cond`` against the float32 resolution)
``ntk_progress_mean``  mean over random residual directions of the fraction of the ideal loss
                       decrease one optimally sized gradient step achieves (ours,
                       :func:`isoplast_lite.diagnostics.ntk_summary`; depends on the spectrum's
                       shape, not on the condition number alone)
``ntk_progress_worst`` its worst case over directions, ``4 kappa / (1 + kappa)^2`` (Kantorovich)
``ntk_erank``          effective rank of the eNTK's spectrum (Roy & Vetterli)
``diverged``           ``True`` from the task in which the seed's loss or weights became
                       non-finite (NaN or inf) on; every metric of such a row is NaN
=====================  ===================================================================

plus the config columns ``benchmark, method, settings, lr, seed, task``, where ``settings`` is the
canonical JSON of the method's settings (``{"iso_strength":0.1,"iso_scaling":"lr"}``; ``{}`` for a
method without settings; :func:`isoplast_lite.results.expand_settings` turns it into one column
per setting). The result is a tidy ``pandas.DataFrame`` (one row per seed x task).

The diagnostics of all seeds are computed at once on the stacked weights (one forward pass on
the task data gives the logits and the features; one batched singular value or eigenvalue
decomposition per quantity; :mod:`isoplast_lite._stacked_measure`), equal to the public
diagnostics on each seed's own model to float rounding (tests/test_stacked_measure.py).

Two more tidy tables come from the same measurement and are returned on request:
``run(cfg, layers=True)`` adds the per-layer table (:data:`LAYER_COLUMNS`, one row per seed x
task x block: the scale and spread of each layer's Jacobian and weight singular values,
:func:`isoplast_lite.diagnostics.layer_isometry`), and ``run(cfg, spectra=True)`` the eNTK
spectrum table (:data:`SPECTRUM_COLUMNS`, one row per seed x task x eigenvalue, descending: the
whole spectrum whose condition number, expected progress and effective rank the ``ntk_*``
columns summarize). Both are cached and checkpointed with the rows.

Divergence is a result, not a crash: after each task the runner checks, per seed, that its
weights, its online loss and its end-of-task loss are finite, and that the method's penalty was
finite at every step (the penalty is one number summed over the seeds: a non-finite one counts
for every seed of the batch). A seed that fails is recorded
as diverged from that task on (its metrics NaN; the other seeds train on, unaffected, since
seeds never interact); once every seed of a batch has diverged, the remaining tasks are
recorded without training. The diverged rows are cached like any others, so a re-run does not
redo the run. Files written before the column existed lack it; :func:`with_diverged_column`
reads a missing column as "not diverged".

Cache (:mod:`isoplast_lite.cache`): results are stored under ``cache_dir`` (default
``$ISOPLAST_CACHE`` or ``~/.cache/isoplast``) in a folder named by :func:`cache_key`: the SHA-256
of the config's canonical JSON (:meth:`Config.to_json`: the run's fields, the method's name,
``version`` and settings; no other method's), ``isoplast_lite.__version__``, the method's identity
(module, qualified name, hash of its source) and a hash of the library code that computes results
(``key.json`` in the folder lists them). After every task the model, optimizer and method state and
the rows so far are checkpointed atomically (tensors and plain values only, read back with
``torch.load(weights_only=True)``; a SHA-256 sidecar written after the file and checked before it
is read), so an interrupted run (Ctrl-C) resumes at the task where it stopped and a re-run of a
finished config returns from the cache. Every CSV of an entry has a SHA-256 sidecar
(``result.csv.sha256``, ``sha256sum -c`` format) that is verified when the entry is served; an
unreadable, malformed, edited or unverifiable (no sidecar) entry or checkpoint is recomputed with a
one-line warning. Temporary files left by interrupted writes are removed at the next run of the
config.

Before training, :func:`check_config` rejects what cannot run (a device that is not there, more
training images than the data set holds, sizes the memory cannot hold, a width a method cannot
use) with a :class:`ConfigError` naming the settings at fault.

Full-scale configurations for a GPU (use ``--device cuda``; the paper states lr 1e-3 for Adam and
AdamO, lambda 1e-3 and 8 seeds; the width, depth, task counts and budgets are our guesses)::

    python -m isoplast_lite run --benchmark permuted-mnist --method adamo --set iso_strength=1e-3 \\
        --lr 1e-3 --seeds 8 --width 512 --depth 4 --tasks 50 --steps-per-task 2000 \\
        --batch-size 128 --n-train 10000 --device cuda --out permuted-mnist-adamo.csv
    python -m isoplast_lite run --benchmark random-label-mnist --method adam --lr 1e-3 \\
        --seeds 8 --width 512 --depth 4 --tasks 50 --steps-per-task 2000 --batch-size 128 \\
        --n-train 10000 --device cuda --out random-label-mnist-adam.csv
    python -m isoplast_lite run --benchmark random-label-cifar10 --method adamo --set iso_strength=1e-3 \\
        --lr 1e-3 --seeds 8 --width 512 --depth 4 --tasks 50 --steps-per-task 2000 \\
        --batch-size 128 --n-train 10000 --device cuda --out random-label-cifar10-adamo.csv

(The MNIST and CIFAR-10 data are downloaded once, SHA-256 verified, on first use; see
:mod:`isoplast_lite.tasks`.)

Example:
    >>> cfg = Config("random-label-digits", "adamo", seeds=2, n_tasks=2, steps_per_task=5,
    ...              width=16, depth=2, n_train=32, probe_size=4)
    >>> df = run(cfg, cache_dir=False, progress=False)
    >>> df.shape[0], sorted(df.seed.unique().tolist())
    (4, [0, 1])
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pandas as pd
import torch
import torch.nn.functional as F

from . import _files, cache
from .cache import cache_key, default_cache_dir
from ._validation import ConfigError, check_choice, check_int, check_nonnegative, check_positive, check_probability
from .diagnostics import (
    _dormant_mask,
    _fractions,
    effective_rank,
    empirical_ntk,
    _layer_jacobian_svdvals,
    hidden_features,
    layer_isometry,
    ntk_summary,
)
from ._stacked_measure import measure_stacked, stacked_blocks, stacked_forward
from .engine import StackedModel
from .methods import Method, StepContext, TaskContext, make_method, method_class
from .settings import make_settings, settings_dict, settings_json
from .tasks import BENCHMARKS, SOURCE_SIZES, load_source, make_stream, parse_benchmark

__all__ = [
    "Config", "run", "check_config", "ConfigError", "cache_key", "default_cache_dir", "with_diverged_column",
    "METRIC_COLUMNS", "RESULT_COLUMNS", "CONFIG_COLUMNS", "LAYER_COLUMNS", "LAYER_MEASURES", "SPECTRUM_COLUMNS",
    "LIMITS", "MAX_LR", "MAX_SECONDS", "MAX_HOURS_ENV", "MethodError", "estimate_seconds", "time_limit",
]  # fmt: skip
METRIC_COLUMNS = (
    "train_acc", "train_acc_online", "test_acc", "loss", "loss_online", "dormant_0.025", "dormant_0.1",
    "dead", "feature_erank", "weight_norm", "jac_sv_mean", "jac_sv_std", "jac_sv_ratio", "ntk_cond",
    "ntk_progress_mean", "ntk_progress_worst", "ntk_erank", "ntk_rank", "ntk_resolved",
)  # fmt: skip
#: metrics added after results were shipped: files written before lack them (NaN when read,
#: :func:`with_diverged_column`)
LATER_METRICS = ("ntk_progress_mean", "ntk_progress_worst", "ntk_erank", "ntk_rank", "ntk_resolved")
CONFIG_COLUMNS = ("benchmark", "method", "settings", "lr", "seed", "task")
RESULT_COLUMNS = CONFIG_COLUMNS + METRIC_COLUMNS + ("diverged",)
#: the per-layer table (``run(..., layers=True)``): one row per seed x task x block, the measures
#: of :func:`isoplast_lite.diagnostics.layer_isometry` on the probe
LAYER_MEASURES = (
    "scale", "spread", "n_directions", "directions_share", "inputs_share", "active_share", "n_null",
    "jac_sigma_min", "jac_sigma_max", "weight_scale", "weight_spread", "weight_sigma_min", "weight_sigma_max",
)  # fmt: skip
LAYER_COLUMNS = CONFIG_COLUMNS + ("layer", "kind", "block") + LAYER_MEASURES
#: the eNTK spectrum table (``run(..., spectra=True)``): one row per seed x task x eigenvalue of
#: the probe's eNTK arranged as a ``(P*O, P*O)`` matrix, ``index`` 0 the largest (descending)
SPECTRUM_COLUMNS = CONFIG_COLUMNS + ("index", "eigenvalue")
# Upper bounds of the sizes of a Config: far above any run a machine can do in a day, low
# enough that an absurd value (a typo such as --depth 1000000000000) is an error, not a hang.
# check_config also compares the memory a config needs with the memory available.
LIMITS = {"seeds": 10_000, "n_tasks": 1_000_000, "steps_per_task": 100_000_000, "batch_size": 10_000_000,
          "width": 1_000_000, "depth": 10_000, "probe_size": 100_000, "n_train": 100_000_000}  # fmt: skip
MAX_LR = 10.0  # Adam moves every weight by about lr per step: lr > 10 cannot train anything
#: the :func:`isoplast_lite.diagnostics.empirical_ntk` method of the per-task measurement; the
#: seed-batched measurement computes the layer-wise form, any other value measures seed by seed
NTK_METHOD = "layerwise"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_SCHEMA = 4  # checkpoints: 2 since method settings moved out of Config (issue 10), 3 with per-layer rows, 4 with eNTK spectra


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

    Example:
        >>> Config("random-label-digits", "adamo", settings={"iso_strength": 0.01}).settings.iso_strength
        0.01
        >>> Config("random-label-digits", "adam", settings={"iso_strength": 0.01})
        Traceback (most recent call last):
        ...
        isoplast_lite.settings.SettingError: method 'adam': setting iso_strength=0.01: unknown setting; allowed: no settings (this method has none)
    """

    benchmark: str
    method: str
    settings: Any = None
    lr: float = 1e-3
    seeds: int = 4
    first_seed: int = 0
    n_tasks: int = 20
    steps_per_task: int = 800
    batch_size: int = 32
    width: int = 256
    depth: int = 3
    n_train: Optional[int] = 512
    init: str = "orthogonal"
    probe_size: int = 16
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self):
        check_choice("benchmark", self.benchmark, BENCHMARKS)
        cls = method_class(self.method)
        object.__setattr__(self, "settings", make_settings(self.method, cls.Settings, self.settings))
        object.__setattr__(self, "lr", check_positive("lr", self.lr))
        if self.lr > MAX_LR:
            raise ValueError(f"lr must be in (0, {MAX_LR:g}] (Adam moves every weight by about lr per step), got {self.lr}")
        check_int("first_seed", self.first_seed, minimum=0)
        for name in ("seeds", "n_tasks", "steps_per_task", "batch_size", "width", "depth", "probe_size"):
            check_int(name, getattr(self, name), minimum=1, maximum=LIMITS[name])
        if self.n_train is not None:
            check_int("n_train", self.n_train, minimum=1, maximum=LIMITS["n_train"])
        check_choice("init", self.init, ("orthogonal", "kaiming", "default"))
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a str such as 'cpu' or 'cuda', got {type(self.device).__name__}")
        check_choice("dtype", self.dtype, tuple(_DTYPES))

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


def with_diverged_column(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the columns of today's result files: files written before a column existed
    lack it. A missing ``diverged`` means "not diverged" (such runs were finite, or they
    crashed); a missing metric of :data:`LATER_METRICS` is NaN (not measured). The columns of
    :data:`RESULT_COLUMNS` that ``df`` has come first, in that order; others follow.

    Example:
        >>> df = with_diverged_column(pd.DataFrame({"task": [0, 1]}))
        >>> df.diverged.tolist(), bool(df.ntk_progress_mean.isna().all())
        ([False, False], True)
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas.DataFrame, got {type(df).__name__}")
    missing = {c: math.nan for c in LATER_METRICS if c not in df.columns}
    if "diverged" not in df.columns:
        missing["diverged"] = False
    if not missing:
        return df
    df = df.assign(**missing)
    first = [c for c in RESULT_COLUMNS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def _available_memory(device: torch.device) -> Optional[int]:
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


def _memory_terms(cfg: Config, n_seeds: int) -> Dict[str, tuple]:
    """Rough bytes a run of ``n_seeds`` stacked seeds needs, per cause: ``{term: (bytes, fields)}``.

    A lower estimate: weights, gradients, the two Adam moments, the checkpoint copy and one
    method copy (6 per parameter and seed); the probe's per-example Jacobians of the eNTK
    (``probe_size * n_classes`` per parameter); the task's minibatch indices (int64, built with
    their epoch permutations); the activations of a step; the stacked task data.
    """
    n_images, in_dim, n_classes = SOURCE_SIZES[parse_benchmark(cfg.benchmark)[1]]
    n_train = n_images if cfg.n_train is None else cfg.n_train
    b = _DTYPES[cfg.dtype].itemsize
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
        threads: torch threads (default: ``torch.get_num_threads()``); used on the CPU only.

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
    threads = torch.get_num_threads() if threads is None else check_int("threads", threads, minimum=1)
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


def _check_device(device: str) -> torch.device:
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
    device = _check_device(cfg.device)
    source = parse_benchmark(cfg.benchmark)[1]
    n_images = SOURCE_SIZES[source][0]
    if cfg.n_train is not None and cfg.n_train > n_images:
        raise ConfigError({"n_train": cfg.n_train}, f"more than the {n_images} training images of {source!r}; allowed: 1 to {n_images}")
    _hook(make_method(cfg.method, cfg.settings), "check", cfg, passing=(ValueError, TypeError))
    n_seeds = cfg.seeds if seed_batch is None else min(cfg.seeds, check_int("seed_batch", seed_batch, minimum=1))
    available = _available_memory(device)
    terms = _memory_terms(cfg, n_seeds)
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


def _progress_enabled(progress: Optional[bool]) -> bool:
    if progress is not None:
        return bool(progress)
    return os.environ.get("ISOPLAST_PROGRESS", "1") != "0"


def _load_entry(path: Path, n_rows: int, columns: tuple = RESULT_COLUMNS) -> Optional[pd.DataFrame]:
    """A cached CSV of ``n_rows`` rows and ``columns``, verified against its checksum (``None``: recompute it)."""
    return cache.load_entry(path, n_rows, columns, with_diverged_column if columns == RESULT_COLUMNS else None, stacklevel=4)


class MethodError(RuntimeError):
    """A method's hook raised an exception: the message names the method, the hook and the error
    in one line; the original exception is its ``__cause__`` (``--debug`` shows its traceback)."""


def _hook(method: Method, name: str, *args, passing: tuple = ()):
    """``method.<name>(*args)``; an exception (other than ``passing`` ones) becomes a :class:`MethodError`."""
    try:
        return getattr(method, name)(*args)
    except passing:
        raise
    except Exception as err:
        text = (str(err).strip().splitlines() or [""])[0]
        raise MethodError(f"method {getattr(method, 'name', '?')!r} ({type(method).__module__}.{type(method).__qualname__}), hook {name}: "
                          f"{type(err).__name__}: {text}") from err  # fmt: skip


def _to_device(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


def _jacobian_spread(model: torch.nn.Module, x: torch.Tensor):
    out = _layer_jacobian_svdvals(model, x, end_to_end=False)  # {block index: (N, k)}: the end-to-end map is not logged
    sv = torch.cat([s.detach().flatten() for s in out.values()]).double()
    sv_max = float(sv.max())
    active = sv[sv > 1e-6 * sv_max]  # exactly-zero directions (inactive ReLUs) would make it inf
    return float(sv.mean()), float(sv.std()), (sv_max / float(active.min()) if active.numel() else math.nan)


def _newly_diverged(stack: StackedModel, loss_sum: torch.Tensor, loss: torch.Tensor) -> List[int]:
    """Seed numbers whose weights, online loss sum or end-of-task loss are not all finite."""
    with torch.no_grad():
        finite = torch.isfinite(loss_sum) & torch.isfinite(loss)  # (S,)
        for p in stack.params.values():
            finite &= torch.isfinite(p).flatten(1).all(1)
    return [k for k in range(len(finite)) if not bool(finite[k])]


def _diverged_row(cfg: Config, seed: int, task: int) -> dict:
    """The row of a diverged seed: its config columns, NaN metrics, ``diverged=True``."""
    return {**_config_row(cfg, seed, task), **dict.fromkeys(METRIC_COLUMNS, math.nan), "diverged": True}


def _config_row(cfg: Config, seed: int, task: int) -> dict:
    """The config columns of a row: what identifies the run, the method's settings included."""
    return dict(zip(CONFIG_COLUMNS, (cfg.benchmark, cfg.method, settings_json(cfg.settings), cfg.lr, seed, task)))


@torch.no_grad()
def _evaluate(stack: StackedModel, x: torch.Tensor, y: torch.Tensor):
    """Per-seed accuracy and loss, ``x`` ``(S, N, D)``."""
    return _accuracy_and_loss(stack(x), y)


def _accuracy_and_loss(logits: torch.Tensor, y: torch.Tensor):
    """Per-seed accuracy and mean cross-entropy of ``logits`` ``(S, N, O)`` against ``y`` ``(S, N)``."""
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
    acc = (logits.argmax(-1) == y).double().mean(1)
    return acc, loss


def _measure(stack: StackedModel, k: int, x: torch.Tensor, probe: torch.Tensor):
    """Diagnostics of seed number ``k`` on its task inputs ``x`` ``(N, D)`` and probe ``(P, D)``:
    the row's metrics, the per-layer rows (:func:`isoplast_lite.diagnostics.layer_isometry`) and
    the eNTK's eigenvalues (a list of ``P*O``), descending (those the row's ``ntk_*`` summarize).

    The per-seed path, with the public diagnostics on a standalone copy of the seed's model: the
    runner takes it for nets the seed-batched :func:`_measure_seeds` does not cover (a Cayley
    ``OrthogonalLinear``, Parseval's diagonal layers, a custom module) and when
    :data:`NTK_METHOD` is not ``"layerwise"``; it is the reference the batched path is tested
    against (tests/test_stacked_measure.py)."""
    model = stack.model_for_seed(k).eval()
    feats = hidden_features(model, x)  # one forward pass for the four feature measures below
    with torch.no_grad():
        weight_norm = math.sqrt(sum(float((p.double() ** 2).sum()) for p in model.parameters()))
    row = {  # what dormant_fraction(model, x, tau) and dead_fraction(model, x) compute, on feats
        "dormant_0.025": float(_fractions([_dormant_mask(h, 0.025) for h in feats], False)),
        "dormant_0.1": float(_fractions([_dormant_mask(h, 0.1) for h in feats], False)),
        "dead": float(_fractions([(h == 0).all(dim=0) for h in feats], False)),
        "feature_erank": float(effective_rank(feats[-1])),
        "weight_norm": weight_norm,
    }
    row["jac_sv_mean"], row["jac_sv_std"], row["jac_sv_ratio"] = _jacobian_spread(model, probe)
    # a fixed generator: the summary's random directions never touch torch's global RNG
    # the layer-wise form (every linear map of these nets is a plain or Newton-Schulz linear
    # layer; anything else falls back to per-example Jacobians inside empirical_ntk): the same
    # kernel as method="jacobian" (tests/test_run.py) at a fraction of the cost
    # in float64 from the weights as stored: float64 round-off only (diagnostics.ntk_resolution)
    kernel = empirical_ntk(model, probe, method=NTK_METHOD, dtype=torch.float64)
    summary = ntk_summary(kernel, generator=torch.Generator().manual_seed(0))
    row["ntk_cond"] = float(summary["condition_number"])  # inf when beyond resolution
    row["ntk_rank"] = float(summary["rank"])  # floats, like every metric: a diverged seed's row is NaN
    row["ntk_resolved"] = float(summary["resolved"])  # 1.0 resolved, 0.0 beyond resolution
    row["ntk_progress_mean"] = float(summary["progress_mean"])  # mean over random residual directions
    row["ntk_progress_worst"] = float(summary["progress_kantorovich"])  # worst case, 4 kappa / (1 + kappa)^2
    row["ntk_erank"] = float(summary["effective_rank"])
    return row, layer_isometry(model, probe), summary["eigenvalues"].detach().double().cpu().tolist()


@dataclass
class _TaskData:
    """One task of every seed, staged on the device: training data, batch indices, test split."""

    tasks: list
    x: torch.Tensor  # (S, N, D)
    y: torch.Tensor  # (S, N)
    idx: torch.Tensor  # (S, steps_per_task, batch_size)
    x_test: Optional[torch.Tensor] = None
    y_test: Optional[torch.Tensor] = None


def _stage_task(cfg: Config, streams: list, t: int, device: torch.device, dtype: torch.dtype) -> _TaskData:
    """Task ``t`` of each seed's stream, stacked ``(S, ...)`` on ``device``."""
    tasks = [st.task(t) for st in streams]
    data = _TaskData(
        tasks=tasks,
        x=torch.stack([tk.x_train for tk in tasks]).to(device=device, dtype=dtype),
        y=torch.stack([tk.y_train for tk in tasks]).to(device),
        idx=torch.stack([tk.batch_indices(cfg.steps_per_task, cfg.batch_size) for tk in tasks]).to(device),
    )
    if tasks[0].x_test is not None:
        data.x_test = torch.stack([tk.x_test for tk in tasks]).to(device=device, dtype=dtype)
        data.y_test = torch.stack([tk.y_test for tk in tasks]).to(device)
    return data


def _train_task(cfg: Config, method: Method, stack: StackedModel, opt, data: _TaskData, t: int, bar,
                member_configs: Optional[torch.Tensor] = None):  # fmt: skip
    """``steps_per_task`` optimizer steps on task ``t``; returns the per-seed sums of the online
    (before-step) batch accuracies and losses, float64 ``(S,)``.

    ``member_configs`` (a stacked group of several configurations): each member's configuration
    number ``(S,)``. A non-finite penalty then counts for every member of the configurations
    with a member whose gradient it made non-finite, so one configuration's divergence never
    marks another's members and each configuration's seeds are marked as in its own run; one
    that no member's gradient shows cannot be attributed: ``FloatingPointError`` (the sweep then
    runs the configurations one by one)."""
    S = stack.n_seeds
    ar = torch.arange(S, device=data.x.device)[:, None]
    acc_sum = torch.zeros(S, dtype=torch.float64, device=data.x.device)
    loss_sum = torch.zeros(S, dtype=torch.float64, device=data.x.device)
    for i in range(cfg.steps_per_task):
        xb, yb = data.x[ar, data.idx[:, i]], data.y[ar, data.idx[:, i]]  # (S, B, D), (S, B)
        logits = stack(xb)  # (S, B, O)
        per_seed = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(S, -1).mean(1)
        ctx = StepContext(cfg=cfg, task=t, step=i, stack=stack, x=xb, y=yb, logits=logits)
        total = per_seed.sum()
        extra = _hook(method, "penalty", stack, ctx)
        if extra is not None:
            total = total + extra
        opt.zero_grad(set_to_none=True)
        total.backward()
        marked = None
        if extra is not None and member_configs is not None and not bool(torch.isfinite(extra.detach())):
            with torch.no_grad():  # which configurations the non-finite penalty is of
                bad = torch.zeros(S, dtype=torch.bool, device=data.x.device)
                for p in stack.params.values():
                    if p.grad is not None:
                        bad |= ~torch.isfinite(p.grad).flatten(1).all(1)
                if not bool(bad.any()):
                    raise FloatingPointError(f"task {t}, step {i}: a non-finite penalty that no member's gradient shows cannot be "
                                             "attributed to a configuration of the stacked group; allowed: the configurations one by one")  # fmt: skip
                per_config = torch.zeros(int(member_configs.max()) + 1, dtype=torch.long, device=bad.device)
                marked = per_config.index_add_(0, member_configs, bad.long())[member_configs] > 0
        opt.step()
        ctx.logits = logits.detach()
        _hook(method, "after_step", stack, opt, ctx)
        with torch.no_grad():
            acc_sum += (logits.argmax(-1) == yb).double().mean(1)
            loss_sum += per_seed.detach().double()
            if marked is not None:  # a non-finite penalty of a stacked group: its configurations' members
                loss_sum += torch.where(marked, math.nan, 0.0).double()
            elif extra is not None and member_configs is None:  # a non-finite penalty makes the objective non-finite: divergence. The
                # penalty is one number summed over the seeds, so it counts for every seed of the batch
                loss_sum += torch.where(torch.isfinite(extra.detach()), 0.0, math.nan).double()
        bar.update(1)
    return acc_sum, loss_sum


def _task_rows(cfg: Config, stack: StackedModel, seeds: Sequence[int], data: _TaskData, t: int,
               acc_sum: torch.Tensor, loss_sum: torch.Tensor, diverged: set,
               cfg_of: Optional[Sequence[Config]] = None) -> Tuple[List[dict], List[dict], List[dict]]:  # fmt: skip
    """The rows of task ``t``: end-of-task accuracy and loss, online means, test accuracy and
    the diagnostics of every seed, the per-layer rows and the eNTK spectrum rows (updates
    ``diverged`` with the seeds that just diverged; a diverged seed's layer and spectrum rows
    are NaN). ``cfg_of``: each member's config (a stacked group), else ``cfg`` for all."""
    cfg_of = [cfg] * len(seeds) if cfg_of is None else cfg_of
    blocks = stacked_blocks(stack) if NTK_METHOD == "layerwise" else None
    forward = None
    if blocks is None:
        acc, loss = _evaluate(stack, data.x, data.y)
    else:  # one forward pass gives the logits and every feature the measurement needs
        with torch.no_grad():
            forward = stacked_forward(blocks, {n: p.detach() for n, p in stack.params.items()}, data.x)
        acc, loss = _accuracy_and_loss(forward[2][-1], data.y)
    test_acc = _evaluate(stack, data.x_test, data.y_test)[0] if data.x_test is not None else None
    diverged.update(_newly_diverged(stack, loss_sum, loss))
    live = [k for k in range(len(seeds)) if k not in diverged]
    measured = {}  # seed number -> (metrics, layer rows, eigenvalues)
    if blocks is not None and live:
        measured = _measure_seeds(stack, blocks, forward, live, cfg.probe_size)
    elif live:
        measured = {k: _measure(stack, k, data.x[k], data.x[k, : cfg.probe_size]) for k in live}
    acc, loss, acc_sum, loss_sum = acc.tolist(), loss.tolist(), acc_sum.tolist(), loss_sum.tolist()
    test_acc = test_acc.tolist() if test_acc is not None else None
    rows, layer_rows, spectrum_rows = [], [], []
    for k, s in enumerate(seeds):
        if k in diverged:
            rows.append(_diverged_row(cfg_of[k], s, t))
            layer_rows.extend(_diverged_layer_rows(cfg_of[k], stack, s, t))
            spectrum_rows.extend(_spectrum_rows(cfg_of[k], s, t, [math.nan] * _n_eigenvalues(cfg)))
            continue
        row = {**_config_row(cfg_of[k], s, t), "train_acc": acc[k], "train_acc_online": acc_sum[k] / cfg.steps_per_task,
               "test_acc": test_acc[k] if test_acc is not None else math.nan,
               "loss": loss[k], "loss_online": loss_sum[k] / cfg.steps_per_task}  # fmt: skip
        metrics, layers, eigenvalues = measured[k]
        row.update(metrics, diverged=False)
        rows.append(row)
        layer_rows.extend({**_config_row(cfg_of[k], s, t), **r} for r in layers)
        spectrum_rows.extend(_spectrum_rows(cfg_of[k], s, t, eigenvalues))
    return rows, layer_rows, spectrum_rows


def _measure_seeds(stack: StackedModel, blocks, forward, live: List[int], probe_size: int) -> Dict[int, tuple]:
    """:func:`_measure` of the seed numbers ``live``, all at once (:mod:`isoplast_lite._stacked_measure`):
    ``{k: (metrics, layer rows, eigenvalues)}`` with Python numbers, the same values as ``_measure``'s
    to float rounding (tests/test_stacked_measure.py). ``forward`` is :func:`stacked_forward` of
    every seed on its task inputs; the probe is their first ``probe_size`` inputs."""
    params = stack.params
    if len(live) < stack.n_seeds:
        # a diverged seed's NaN weights stay out of the linear algebra: it is measured with a live
        # seed's weights, then dropped, so the live seeds are measured in a batch of the same
        # shape as without it (the same numbers, to the bit)
        x = forward[0][0]  # (S, N, D)
        source = torch.tensor([k if k in live else live[0] for k in range(stack.n_seeds)], device=x.device)
        params = {n: p.detach()[source] for n, p in stack.params.items()}
        with torch.no_grad():
            forward = stacked_forward(blocks, params, x)
    metrics, layers, eigenvalues = measure_stacked(blocks, params, forward, probe_size)
    metrics = {name: v.tolist() for name, v in metrics.items()}  # one conversion per column, not per seed
    layers = [{name: v.tolist() if torch.is_tensor(v) else [v] * stack.n_seeds for name, v in r.items()} for r in layers]
    eigenvalues = eigenvalues.cpu().tolist()
    return {k: ({name: v[k] for name, v in metrics.items()}, [{name: v[k] for name, v in r.items()} for r in layers], eigenvalues[k])
            for k in live}  # fmt: skip


def _n_eigenvalues(cfg: Config) -> int:
    """Eigenvalues of the probe's eNTK: probe inputs (at most the training images) x classes."""
    n_images, _, n_classes = SOURCE_SIZES[parse_benchmark(cfg.benchmark)[1]]
    return min(cfg.probe_size, n_images if cfg.n_train is None else cfg.n_train) * n_classes


def _spectrum_rows(cfg: Config, seed: int, task: int, eigenvalues: Sequence[float]) -> List[dict]:
    """One row per eigenvalue (already descending), ``index`` 0 the largest."""
    config = _config_row(cfg, seed, task)
    return [{**config, "index": i, "eigenvalue": float(v)} for i, v in enumerate(eigenvalues)]


def _diverged_layer_rows(cfg: Config, stack: StackedModel, seed: int, task: int) -> List[dict]:
    """NaN per-layer rows of a diverged seed (one per block)."""
    n = stack.n_blocks
    return [{**_config_row(cfg, seed, task), "layer": i, "kind": "head" if i == n - 1 else "hidden", "block": "",
             **dict.fromkeys(LAYER_MEASURES, math.nan)} for i in range(n)]  # fmt: skip


def _save_checkpoint(path: Path, key: str, next_task: int, tables: Tuple[List[dict], List[dict], List[dict]],
                     stack: StackedModel, opt, method: Method) -> None:  # fmt: skip
    """Everything needed to resume at ``next_task`` (``tables``: rows, layer rows, spectrum rows so far), written atomically."""
    rows, layer_rows, spectrum_rows = tables
    state = {"schema": _SCHEMA, "key": key, "next_task": next_task, "rows": rows, "layer_rows": layer_rows, "spectrum_rows": spectrum_rows,
             "stack": _to_device(stack.state(), "cpu"), "opt": opt.state_dict(),
             "method": _to_device(_hook(method, "state_dict"), "cpu")}  # fmt: skip
    cache.save_checkpoint(path, state)


def _train_seed_batch(cfg: Config, seeds: List[int], ckpt_path: Optional[Path], key: str, progress: bool,
                      callback, member_cfgs: Optional[Sequence[Config]] = None) -> Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Train the stacked ``seeds`` of ``cfg`` task after task, resuming from ``ckpt_path``;
    returns the rows, the per-layer rows and the eNTK spectrum rows.

    Per task: stage the data, call the method's task-boundary hook, train, log the rows
    (:func:`_task_rows`), checkpoint, call ``callback``.

    ``member_cfgs`` (a stacked group, :mod:`isoplast_lite.stacking`): the configuration of each
    member, ``seeds[k]`` being member ``k``'s seed; they differ from ``cfg`` (the first) only in
    ``lr`` and in the settings the method reads per member, which the method is given
    (:meth:`isoplast_lite.methods.Method.stack_members`); each row carries its member's config.
    """
    device, dtype = torch.device(cfg.device), _DTYPES[cfg.dtype]
    source = load_source(parse_benchmark(cfg.benchmark)[1])
    streams = [make_stream(cfg.benchmark, seed=s, n_tasks=cfg.n_tasks, n_train=cfg.n_train, source=source) for s in seeds]
    method = make_method(cfg.method, cfg.settings)
    cfg_of = list(member_cfgs) if member_cfgs is not None else [cfg] * len(seeds)  # each member's config (its rows' columns)
    if member_cfgs is not None:
        from .stacking import member_values

        distinct = list(dict.fromkeys(member_cfgs))  # each configuration's seeds are consecutive members
        method.stack_members(member_values(distinct))
    member_configs = None  # each member's configuration number, when there are several
    if member_cfgs is not None and len(set(member_cfgs)) > 1:
        member_configs = torch.tensor([distinct.index(c) for c in member_cfgs], device=device)
    stack = StackedModel.build(lambda g: _hook(method, "build_model", source.in_dim, source.n_classes, cfg, g), seeds, device=device, dtype=dtype)
    _hook(method, "setup", stack, cfg)
    opt = _hook(method, "make_optimizer", stack, cfg)
    rows: List[dict] = []
    layer_rows: List[dict] = []
    spectrum_rows: List[dict] = []
    start = 0
    ckpt = cache.load_checkpoint(ckpt_path, key, schema=_SCHEMA) if ckpt_path is not None else None
    if ckpt is not None:
        stack.load_state(_to_device(ckpt["stack"], device))
        opt.load_state_dict(ckpt["opt"])
        _hook(method, "load_state_dict", _to_device(ckpt["method"], device))
        rows, layer_rows, spectrum_rows, start = ckpt["rows"], ckpt["layer_rows"], ckpt["spectrum_rows"], ckpt["next_task"]
    diverged = {k for k, s in enumerate(seeds) if any(r["seed"] == s and r["diverged"] for r in rows[k :: len(seeds)])}

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.n_tasks * cfg.steps_per_task, initial=start * cfg.steps_per_task, disable=not progress,
               desc=f"{cfg.benchmark} {cfg.method} seeds {seeds[0]}-{seeds[-1]}", leave=False)  # fmt: skip
    try:
        for t in range(start, cfg.n_tasks):
            if len(diverged) == len(seeds):  # every seed diverged: the remaining tasks are recorded, not trained
                rows.extend(_diverged_row(c, s, u) for c, s in zip(cfg_of, seeds) for u in range(t, cfg.n_tasks))
                layer_rows.extend(r for c, s in zip(cfg_of, seeds) for u in range(t, cfg.n_tasks) for r in _diverged_layer_rows(c, stack, s, u))
                nan = [math.nan] * _n_eigenvalues(cfg)
                spectrum_rows.extend(r for c, s in zip(cfg_of, seeds) for u in range(t, cfg.n_tasks) for r in _spectrum_rows(c, s, u, nan))
                break
            data = _stage_task(cfg, streams, t, device, dtype)
            if t > 0:
                _hook(method, "at_task_boundary", stack, opt, TaskContext(cfg=cfg, task=t, x=data.x, y=data.y, tasks=data.tasks))
            acc_sum, loss_sum = _train_task(cfg, method, stack, opt, data, t, bar, member_configs)
            new_rows, new_layer_rows, new_spectrum_rows = _task_rows(cfg, stack, seeds, data, t, acc_sum, loss_sum, diverged, cfg_of)
            rows.extend(new_rows)
            layer_rows.extend(new_layer_rows)
            spectrum_rows.extend(new_spectrum_rows)
            if ckpt_path is not None:
                _save_checkpoint(ckpt_path, key, t + 1, (rows, layer_rows, spectrum_rows), stack, opt, method)
            if callback is not None:
                callback(t, pd.DataFrame(rows, columns=RESULT_COLUMNS))
    finally:
        bar.close()
    return (pd.DataFrame(rows, columns=RESULT_COLUMNS), pd.DataFrame(layer_rows, columns=LAYER_COLUMNS),
            pd.DataFrame(spectrum_rows, columns=SPECTRUM_COLUMNS))  # fmt: skip


#: the tables of :func:`run` besides the rows: ``run`` argument -> (file stem, columns, name in messages)
_TABLES = {"layers": ("layers", LAYER_COLUMNS, "per-layer table"),
           "spectra": ("spectra", SPECTRUM_COLUMNS, "eNTK spectrum table")}  # fmt: skip


def _table_rows(cfg: Config, n_seeds: int) -> Dict[str, int]:
    """Rows of each table for ``n_seeds`` seeds of ``cfg``: the rows, then the tables of :data:`_TABLES`."""
    per_task = {"result": 1, "layers": cfg.depth + 1, "spectra": _n_eigenvalues(cfg)}
    return {name: n_seeds * cfg.n_tasks * n for name, n in per_task.items()}


def run(
    cfg: Config,
    *,
    cache_dir: Union[str, os.PathLike, None, bool] = None,
    progress: Optional[bool] = None,
    seed_batch: Optional[int] = None,
    callback: Optional[Callable[[int, pd.DataFrame], None]] = None,
    layers: bool = False,
    spectra: bool = False,
):
    """Run (or load from the cache) the experiment ``cfg``.

    Args:
        cfg: the :class:`Config`.
        cache_dir: cache folder; ``None`` uses :func:`default_cache_dir`, ``False`` disables the
            cache (no files written).
        progress: show a ``tqdm.auto`` progress bar; ``None`` reads ``ISOPLAST_PROGRESS``
            (``"0"`` disables; default on).
        seed_batch: how many seeds to stack in one batch (default: all). Results do not depend
            on it beyond floating-point rounding; it is not part of the cache key.
        callback: called as ``callback(task, rows_so_far)`` after each task is logged and
            checkpointed (used by tests and notebooks).
        layers: also return the per-layer table.
        spectra: also return the eNTK spectrum table.

    Returns:
        A tidy ``pandas.DataFrame`` with :data:`RESULT_COLUMNS`, one row per seed x task, sorted
        by seed then task. With ``layers=True`` and/or ``spectra=True``, a tuple: the rows, then
        the per-layer table if ``layers``, then the spectrum table if ``spectra``
        (``rows, layer_rows = run(cfg, layers=True)``;
        ``rows, spectrum_rows = run(cfg, spectra=True)``;
        ``rows, layer_rows, spectrum_rows = run(cfg, layers=True, spectra=True)``).

        ``layer_rows`` has :data:`LAYER_COLUMNS`, one row per seed x task x block (hidden blocks
        then the head): the scale and spread of ``log sigma`` of each block's Jacobian over the
        directions its active units span, and of its weight's singular values, on the probe
        (:func:`isoplast_lite.diagnostics.layer_isometry`; a diverged seed's rows are NaN).

        ``spectrum_rows`` has :data:`SPECTRUM_COLUMNS`, one row per seed x task x eigenvalue,
        sorted by seed, task, ``index``: the eigenvalues of the eNTK on the probe, arranged as
        the ``(P*O, P*O)`` matrix of :func:`isoplast_lite.diagnostics.ntk_summary` (``P`` probe
        inputs, ``O`` classes), in descending order, ``index`` 0 the largest. They are the
        eigenvalues of the very kernel that the row's ``ntk_cond``, ``ntk_progress_*`` and
        ``ntk_erank`` summarize (the same computation, not a second one): ``ntk_cond`` is their
        largest absolute value over their smallest. A diverged seed's eigenvalues are NaN.

        The tables are cached beside the rows (``layers.csv``, ``spectra.csv``); the cache key
        does not depend on ``layers`` or ``spectra`` (every run computes all three tables), and
        an entry cached before a table existed is recomputed when that table is asked for.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be an isoplast_lite.run.Config, got {type(cfg).__name__}")
    wanted = [name for name, asked in (("layers", layers), ("spectra", spectra)) if asked]
    seeds = cfg.seed_list
    if seed_batch is None:
        seed_batch = len(seeds)
    seed_batch = check_int("seed_batch", seed_batch, minimum=1)
    show = _progress_enabled(progress)
    key = cache_key(cfg)
    n_rows = _table_rows(cfg, cfg.seeds)
    folder: Optional[Path] = None
    if cache_dir is not False:
        folder = (default_cache_dir() if cache_dir is None else Path(cache_dir)) / key
        _files.clean_stale_temps(folder)  # leftovers of writes interrupted in earlier runs
        result = _load_entry(folder / "result.csv", n_rows["result"])
        if result is not None:
            extra = [_load_entry(folder / f"{_TABLES[t][0]}.csv", n_rows[t], _TABLES[t][1]) for t in wanted]
            if all(e is not None for e in extra):
                return (result, *extra) if wanted else result
            missing = " or ".join(_TABLES[t][2] for t, e in zip(wanted, extra) if e is None)
            warnings.warn(f"cache entry {folder} has no {missing} (made before it existed); recomputing", RuntimeWarning, stacklevel=2)
            for stale in folder.glob("*.csv"):
                cache.remove_entry_file(stale)
    check_config(cfg, seed_batch=seed_batch)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        _files.atomic_write(folder / "config.json", lambda h: h.write(cfg.to_json().encode()))
        _files.atomic_write(folder / "key.json", lambda h: h.write(json.dumps(cache.key_parts(cfg), indent=1, sort_keys=True).encode()))
    parts: Dict[str, list] = {"result": [], "layers": [], "spectra": []}
    for b in range(0, len(seeds), seed_batch):
        batch = seeds[b : b + seed_batch]
        stem = f"seeds-{'-'.join(map(str, batch))}"
        n_part = _table_rows(cfg, len(batch))
        files = {"result": (f"{stem}.csv", RESULT_COLUMNS)} | {t: (f"{stem}.{file}.csv", cols) for t, (file, cols, _) in _TABLES.items()}
        got = {t: None for t in files}
        if folder is not None:
            got = {t: _load_entry(folder / name, n_part[t], cols) for t, (name, cols) in files.items()}
        if any(part is None for part in got.values()):  # every table of a batch comes from one training
            trained = _train_seed_batch(cfg, batch, None if folder is None else folder / f"{stem}.ckpt", key, show, callback)
            got = dict(zip(files, trained))
            if folder is not None:
                for t, (name, _) in files.items():
                    cache.write_entry(folder / name, got[t])
                cache.remove_entry_file(folder / f"{stem}.ckpt")
        for t in parts:
            parts[t].append(got[t])
    order = {"result": ["seed", "task"], "layers": ["seed", "task", "layer"], "spectra": ["seed", "task", "index"]}
    columns = {"result": RESULT_COLUMNS} | {t: cols for t, (_, cols, _) in _TABLES.items()}
    tables = {t: pd.concat(parts[t], ignore_index=True).sort_values(order[t], kind="stable").reset_index(drop=True)[list(columns[t])]
              for t in parts}  # fmt: skip
    if folder is not None:
        for t, (file, _, _) in _TABLES.items():
            cache.write_entry(folder / f"{file}.csv", tables[t])
        cache.write_entry(folder / "result.csv", tables["result"])  # last: its presence means the entry is complete
    return (tables["result"], *(tables[t] for t in wanted)) if wanted else tables["result"]
