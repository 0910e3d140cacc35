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
``jac_sv_std``         their standard deviation (0 = isometric)
``jac_sv_ratio``       their max / min over the non-zero ones (> 1e-6 max; inactive ReLUs give
                       exact zeros, which ``dead`` and ``dormant_*`` already count)
``ntk_cond``           condition number of the empirical NTK on the probe
``diverged``           ``True`` from the task in which the seed's loss or weights became
                       non-finite (NaN or inf) on; every metric of such a row is NaN
=====================  ===================================================================

plus the config columns ``benchmark, method, iso_strength, lr, seed, task``. The result is a
tidy ``pandas.DataFrame`` (one row per seed x task).

Divergence is a result, not a crash: after each task the runner checks, per seed, that its
weights, its online loss and its end-of-task loss are finite. A seed that fails is recorded
as diverged from that task on (its metrics NaN; the other seeds train on, unaffected, since
seeds never interact); once every seed of a batch has diverged, the remaining tasks are
recorded without training. The diverged rows are cached like any others, so a re-run does not
redo the run. Files written before the column existed lack it; :func:`with_diverged_column`
reads a missing column as "not diverged".

Cache: results are stored under ``cache_dir`` (default ``$ISOPLAST_CACHE`` or
``~/.cache/isoplast``) in a folder named by the SHA-256 of the canonical JSON of the full
config plus ``isoplast_lite.__version__``. After every task the model, optimizer and method
state and the rows so far are checkpointed atomically (``torch.save`` to a temporary file, then
``os.replace``), so an interrupted run (Ctrl-C) resumes at the task where it stopped and a
re-run of a finished config returns from the cache. Every CSV of an entry has a SHA-256 sidecar
(``result.csv.sha256``, ``sha256sum -c`` format) that is verified when the entry is served; an
unreadable, malformed or edited entry is recomputed with a warning (entries of earlier versions,
without a sidecar, are served after the schema check). Temporary files left by interrupted
writes are removed at the next run of the config.

Before training, :func:`check_config` rejects what cannot run (a device that is not there, more
training images than the data set holds, sizes the memory cannot hold, a width a method cannot
use) with a :class:`ConfigError` naming the settings at fault.

Full-scale configurations for a GPU (use ``--device cuda``; the paper's reported setup is depth
4, width 512, lr 1e-4, lambda 1e-3, 8 seeds; its task counts and budgets are unknown)::

    python -m isoplast_lite run --benchmark permuted-mnist --method adamo --iso-strength 1e-3 \\
        --lr 1e-4 --seeds 8 --width 512 --depth 4 --tasks 50 --steps-per-task 2000 \\
        --batch-size 128 --n-train 10000 --device cuda --out permuted-mnist-adamo.csv
    python -m isoplast_lite run --benchmark random-label-mnist --method adam --lr 1e-4 \\
        --seeds 8 --width 512 --depth 4 --tasks 50 --steps-per-task 2000 --batch-size 128 \\
        --n-train 10000 --device cuda --out random-label-mnist-adam.csv
    python -m isoplast_lite run --benchmark random-label-cifar10 --method adamo --iso-strength 1e-3 \\
        --lr 1e-4 --seeds 8 --width 512 --depth 4 --tasks 50 --steps-per-task 2000 \\
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
import hashlib
import io
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import pandas as pd
import torch
import torch.nn.functional as F

from . import __version__, _files
from ._validation import ConfigError, check_choice, check_int, check_nonnegative, check_positive, check_probability
from .diagnostics import (
    dead_fraction,
    dormant_fraction,
    effective_rank,
    empirical_ntk,
    _layer_jacobian_svdvals,
    hidden_features,
    ntk_summary,
)
from .methods import AEI_METHODS, ISO_METHODS, METHODS, HookContext, StackedModel, make_method
from .nn import ORTHOGONAL_METHODS
from .tasks import BENCHMARKS, SOURCE_SIZES, load_source, make_stream, parse_benchmark

__all__ = [
    "Config", "run", "check_config", "ConfigError", "cache_key", "default_cache_dir", "with_diverged_column",
    "METRIC_COLUMNS", "RESULT_COLUMNS", "DEFAULT_ISO_STRENGTH", "LIMITS", "MAX_LR",
]  # fmt: skip

DEFAULT_ISO_STRENGTH = 0.1  # PAPER.md probes at lr 1e-3 (the paper's 1e-3 pairs with lr 1e-4)
METRIC_COLUMNS = (
    "train_acc", "train_acc_online", "test_acc", "loss", "loss_online", "dormant_0.025", "dormant_0.1",
    "dead", "feature_erank", "weight_norm", "jac_sv_mean", "jac_sv_std", "jac_sv_ratio", "ntk_cond",
)  # fmt: skip
CONFIG_COLUMNS = ("benchmark", "method", "iso_strength", "lr", "seed", "task")
RESULT_COLUMNS = CONFIG_COLUMNS + METRIC_COLUMNS + ("diverged",)
# Upper bounds of the sizes of a Config: far above any run a machine can do in a day, low
# enough that an absurd value (a typo such as --depth 1000000000000) is an error, not a hang.
# check_config also compares the memory a config needs with the memory available.
LIMITS = {"seeds": 10_000, "n_tasks": 1_000_000, "steps_per_task": 100_000_000, "batch_size": 10_000_000,
          "width": 1_000_000, "depth": 10_000, "probe_size": 100_000, "n_train": 100_000_000}  # fmt: skip
MAX_LR = 10.0  # Adam moves every weight by about lr per step: lr > 10 cannot train anything
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_SCHEMA = 1


@dataclass(frozen=True)
class Config:
    """Everything that defines one experiment (and its cache key).

    Args:
        benchmark: one of :data:`isoplast_lite.tasks.BENCHMARKS`.
        method: one of :data:`isoplast_lite.methods.METHODS`.
        iso_strength: lambda of ``adamo``, ``coupled-iso``, ``aei-adamo``; ``None`` means
            ``DEFAULT_ISO_STRENGTH`` (0.1) for those and 0 for the other methods (which reject a
            non-zero value).
        lr: learning rate eta.
        seeds: number of seeds; seeds ``first_seed, ..., first_seed + seeds - 1`` are run.
        first_seed: the first seed.
        n_tasks, steps_per_task, batch_size: stream length and budget.
        width, depth: hidden width and number of hidden layers.
        n_train: training images per task (``None`` = the whole training split).
        init: initialization of the ReLU nets (``"orthogonal"``, ``"kaiming"``, ``"default"``).
        probe_size: inputs in the fixed probe set (eNTK, layer Jacobians).
        weight_decay: AdamW's decay (``adamw``), default 1e-2.
        l2_strength: ``l2`` coefficient, default 1e-4.
        l2_init_strength: ``l2-init`` coefficient, default 1e-2.
        sp_shrink, sp_perturb: Shrink & Perturb factors, defaults 0.4 and 0.1.
        redo_tau: ReDo's dormancy threshold, default 0.1.
        spectral_strength: spectral regularization coefficient, default 1e-4.
        device: torch device string. dtype: ``"float32"`` or ``"float64"``.
        orthogonal: how the AEI methods (``aei-adam``, ``aei-adamo``) keep their hidden weights
            orthogonal: ``"newton-schulz"`` (one retraction after each step; ``None`` means this
            for them) or ``"cayley"`` (the exact parametrization that made the shipped AEI
            results before issue 13). Other methods reject a value other than ``None``.
    """

    benchmark: str
    method: str
    iso_strength: Optional[float] = None
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
    weight_decay: float = 1e-2
    l2_strength: float = 1e-4
    l2_init_strength: float = 1e-2
    sp_shrink: float = 0.4
    sp_perturb: float = 0.1
    redo_tau: float = 0.1
    spectral_strength: float = 1e-4
    device: str = "cpu"
    dtype: str = "float32"
    orthogonal: Optional[str] = None

    def __post_init__(self):
        check_choice("benchmark", self.benchmark, BENCHMARKS)
        check_choice("method", self.method, tuple(METHODS))
        if self.iso_strength is None:
            object.__setattr__(self, "iso_strength", DEFAULT_ISO_STRENGTH if self.method in ISO_METHODS else 0.0)
        iso = check_nonnegative("iso_strength", self.iso_strength)
        if iso != 0.0 and self.method not in ISO_METHODS:
            raise ValueError(f"iso_strength must be 0 or None for method {self.method!r} (it is used by {ISO_METHODS}), got {iso}")
        object.__setattr__(self, "iso_strength", iso)
        object.__setattr__(self, "lr", check_positive("lr", self.lr))
        if self.lr > MAX_LR:
            raise ValueError(f"lr must be in (0, {MAX_LR:g}] (Adam moves every weight by about lr per step), got {self.lr}")
        check_int("first_seed", self.first_seed, minimum=0)
        for name in ("seeds", "n_tasks", "steps_per_task", "batch_size", "width", "depth", "probe_size"):
            check_int(name, getattr(self, name), minimum=1, maximum=LIMITS[name])
        if self.n_train is not None:
            check_int("n_train", self.n_train, minimum=1, maximum=LIMITS["n_train"])
        check_choice("init", self.init, ("orthogonal", "kaiming", "default"))
        for name in ("weight_decay", "l2_strength", "l2_init_strength", "sp_perturb", "redo_tau", "spectral_strength"):
            object.__setattr__(self, name, check_nonnegative(name, getattr(self, name)))
        object.__setattr__(self, "sp_shrink", check_probability("sp_shrink", self.sp_shrink))
        if not isinstance(self.device, str):
            raise TypeError(f"device must be a str such as 'cpu' or 'cuda', got {type(self.device).__name__}")
        check_choice("dtype", self.dtype, tuple(_DTYPES))
        if self.method in AEI_METHODS:
            choice = "newton-schulz" if self.orthogonal is None else self.orthogonal
            object.__setattr__(self, "orthogonal", check_choice("orthogonal", choice, ORTHOGONAL_METHODS))
        elif self.orthogonal is not None:
            raise ValueError(f"orthogonal must be None for method {self.method!r} (it is used by {AEI_METHODS}), got {self.orthogonal!r}")

    @property
    def seed_list(self) -> List[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, floats in repr) of every field.

        Note (cache keys across issue 13): ``orthogonal`` is left out when it is ``None`` (the
        non-AEI methods) or ``"cayley"``, so those configs keep the keys, and the cached results,
        they had before the field existed (the AEI methods were Cayley then); a Newton–Schulz AEI
        config gets a new key.
        """
        fields = dataclasses.asdict(self)
        if fields["orthogonal"] in (None, "cayley"):
            del fields["orthogonal"]
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def cache_key(cfg: Config) -> str:
    """SHA-256 of the canonical JSON of ``cfg`` and the library version."""
    return hashlib.sha256((cfg.to_json() + "|" + __version__).encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$ISOPLAST_CACHE`` or ``~/.cache/isoplast``."""
    return Path(os.environ.get("ISOPLAST_CACHE", Path.home() / ".cache" / "isoplast"))


def with_diverged_column(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``diverged`` column: result files written before it existed lack it, and
    a missing column means "not diverged" (such runs were finite, or they crashed).

    Example:
        >>> with_diverged_column(pd.DataFrame({"task": [0, 1]})).diverged.tolist()
        [False, False]
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas.DataFrame, got {type(df).__name__}")
    return df if "diverged" in df.columns else df.assign(diverged=False)


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
        "the task data": (n_seeds * n_train * in_dim * b * 3, ("n_train",)),
    }


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


def check_config(cfg: Config, *, seed_batch: Optional[int] = None) -> None:
    """Check, before any work, that ``cfg`` can run on this machine (:func:`run` calls it).

    Checks that the device exists, that ``n_train`` is at most the number of training images
    of the benchmark's data set, that the method accepts the config (e.g. the GroupSort nets of
    ``aei-*`` need an even width), and that the memory of ``seed_batch`` stacked seeds (default
    all) fits in the memory available on the device. No data is loaded or downloaded.

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
    make_method(cfg.method).check_config(cfg)
    n_seeds = cfg.seeds if seed_batch is None else min(cfg.seeds, check_int("seed_batch", seed_batch, minimum=1))
    available = _available_memory(device)
    terms = _memory_terms(cfg, n_seeds)
    need = sum(b for b, _ in terms.values())
    if available is not None and need > available:
        what, (_, fields) = max(terms.items(), key=lambda item: item[1][0])
        fields = {f: getattr(cfg, f) for f in fields} | {"seeds": cfg.seeds}
        raise ConfigError(fields, f"needs about {need / 1e9:.3g} GB of memory (mostly {what}, {n_seeds} seeds stacked), more than "
                                  f"the {available / 1e9:.3g} GB available on {device}; allowed: smaller sizes")  # fmt: skip


def _write_entry(path: Path, df: pd.DataFrame) -> None:
    """Write a cache CSV atomically, then its SHA-256 sidecar."""
    data = df.to_csv(index=False).encode()
    _files.atomic_write(path, lambda h: h.write(data))
    _files.write_checksum(path, data)


def _progress_enabled(progress: Optional[bool]) -> bool:
    if progress is not None:
        return bool(progress)
    return os.environ.get("ISOPLAST_PROGRESS", "1") != "0"


def _load_entry(path: Path, n_rows: int) -> Optional[pd.DataFrame]:
    """A cached CSV of ``n_rows`` rows, verified against its checksum (``None``: recompute it)."""
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
        if _files.verify_checksum(path, data) is False:
            raise ValueError(f"its content does not match its checksum {_files.checksum_path(path).name}: edited or damaged")
        df = with_diverged_column(pd.read_csv(io.BytesIO(data)))
        if tuple(df.columns) != RESULT_COLUMNS:
            raise ValueError(f"columns {tuple(df.columns)} != {RESULT_COLUMNS}")
        if len(df) != n_rows:
            raise ValueError(f"{len(df)} rows, expected {n_rows}")
        return df
    except Exception as err:  # unreadable / wrong schema / edited: recompute
        warnings.warn(f"corrupt cache entry {path} ({err}); recomputing", RuntimeWarning, stacklevel=3)
        path.unlink(missing_ok=True)
        _files.checksum_path(path).unlink(missing_ok=True)
        return None


def _load_checkpoint(path: Path, key: str) -> Optional[dict]:
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict) or ckpt.get("schema") != _SCHEMA or ckpt.get("key") != key:
            raise ValueError("wrong schema or key")
        return ckpt
    except Exception as err:
        warnings.warn(f"corrupt checkpoint {path} ({err}); restarting this config", RuntimeWarning, stacklevel=3)
        path.unlink(missing_ok=True)
        return None


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
    row = dict(zip(CONFIG_COLUMNS, (cfg.benchmark, cfg.method, cfg.iso_strength, cfg.lr, seed, task)))
    return {**row, **dict.fromkeys(METRIC_COLUMNS, math.nan), "diverged": True}


@torch.no_grad()
def _evaluate(stack: StackedModel, x: torch.Tensor, y: torch.Tensor):
    """Per-seed accuracy and loss, ``x`` ``(S, N, D)``."""
    logits = stack(x)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
    acc = (logits.argmax(-1) == y).double().mean(1)
    return acc, loss


def _measure(stack: StackedModel, k: int, x: torch.Tensor, probe: torch.Tensor) -> Dict[str, float]:
    """Diagnostics of seed number ``k`` on its task inputs ``x`` ``(N, D)`` and probe ``(P, D)``."""
    model = stack.model_for_seed(k).eval()
    feats = hidden_features(model, x)[-1]
    with torch.no_grad():
        weight_norm = math.sqrt(sum(float((p.double() ** 2).sum()) for p in model.parameters()))
    row = {
        "dormant_0.025": float(dormant_fraction(model, x, tau=0.025)),
        "dormant_0.1": float(dormant_fraction(model, x, tau=0.1)),
        "dead": float(dead_fraction(model, x)),
        "feature_erank": float(effective_rank(feats)),
        "weight_norm": weight_norm,
    }
    row["jac_sv_mean"], row["jac_sv_std"], row["jac_sv_ratio"] = _jacobian_spread(model, probe)
    # a fixed generator: the summary's random directions never touch torch's global RNG
    summary = ntk_summary(empirical_ntk(model, probe), generator=torch.Generator().manual_seed(0))
    row["ntk_cond"] = float(summary["condition_number"])
    return row


def _train_seed_batch(cfg: Config, seeds: List[int], ckpt_path: Optional[Path], key: str, progress: bool, callback) -> pd.DataFrame:
    device, dtype = torch.device(cfg.device), _DTYPES[cfg.dtype]
    _, source_name = parse_benchmark(cfg.benchmark)
    source = load_source(source_name)
    streams = [make_stream(cfg.benchmark, seed=s, n_tasks=cfg.n_tasks, n_train=cfg.n_train, source=source) for s in seeds]
    method = make_method(cfg.method)
    n_classes = source.n_classes
    stack = StackedModel.build(lambda g: method.build_model(source.in_dim, n_classes, cfg, g), seeds, device=device, dtype=dtype)
    method.setup(stack, cfg)
    opt = method.make_optimizer(stack, cfg)
    rows: List[dict] = []
    start = 0
    ckpt = _load_checkpoint(ckpt_path, key) if ckpt_path is not None else None
    if ckpt is not None:
        stack.load_state(_to_device(ckpt["stack"], device))
        opt.load_state_dict(ckpt["opt"])
        method.load_state_dict(_to_device(ckpt["method"], device))
        rows, start = [{"diverged": False, **r} for r in ckpt["rows"]], ckpt["next_task"]
    diverged = {k for k, s in enumerate(seeds) if any(r["seed"] == s and r["diverged"] for r in rows)}

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.n_tasks * cfg.steps_per_task, initial=start * cfg.steps_per_task, disable=not progress,
               desc=f"{cfg.benchmark} {cfg.method} seeds {seeds[0]}-{seeds[-1]}", leave=False)  # fmt: skip
    S = len(seeds)
    ar = torch.arange(S, device=device)[:, None]
    try:
        for t in range(start, cfg.n_tasks):
            if len(diverged) == len(seeds):  # every seed diverged: the remaining tasks are recorded, not trained
                rows.extend(_diverged_row(cfg, s, u) for s in seeds for u in range(t, cfg.n_tasks))
                break
            tasks = [st.task(t) for st in streams]
            X = torch.stack([tk.x_train for tk in tasks]).to(device=device, dtype=dtype)  # (S, N, D)
            Y = torch.stack([tk.y_train for tk in tasks]).to(device)  # (S, N)
            idx = torch.stack([tk.batch_indices(cfg.steps_per_task, cfg.batch_size) for tk in tasks]).to(device)  # (S, T, B)
            ctx = HookContext(task=t, step=0, x_task=X)
            if t > 0:
                method.at_task_boundary(stack, opt, cfg, ctx)
            acc_sum = torch.zeros(S, dtype=torch.float64, device=device)
            loss_sum = torch.zeros(S, dtype=torch.float64, device=device)
            for i in range(cfg.steps_per_task):
                xb, yb = X[ar, idx[:, i]], Y[ar, idx[:, i]]  # (S, B, D), (S, B)
                logits = stack(xb)  # (S, B, O)
                per_seed = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none").view(S, -1).mean(1)
                total = per_seed.sum()
                extra = method.penalty(stack, cfg)
                if extra is not None:
                    total = total + extra
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                ctx.step = i
                method.after_step(stack, opt, cfg, ctx)
                with torch.no_grad():
                    acc_sum += (logits.argmax(-1) == yb).double().mean(1)
                    loss_sum += per_seed.detach().double()
                bar.update(1)
            acc, loss = _evaluate(stack, X, Y)
            if tasks[0].x_test is not None:
                Xt = torch.stack([tk.x_test for tk in tasks]).to(device=device, dtype=dtype)
                Yt = torch.stack([tk.y_test for tk in tasks]).to(device)
                test_acc, _ = _evaluate(stack, Xt, Yt)
            diverged.update(_newly_diverged(stack, loss_sum, loss))
            for k, s in enumerate(seeds):
                if k in diverged:
                    rows.append(_diverged_row(cfg, s, t))
                    continue
                row = {"benchmark": cfg.benchmark, "method": cfg.method, "iso_strength": cfg.iso_strength, "lr": cfg.lr,
                       "seed": s, "task": t, "train_acc": float(acc[k]),
                       "train_acc_online": float(acc_sum[k]) / cfg.steps_per_task,
                       "test_acc": float(test_acc[k]) if tasks[0].x_test is not None else math.nan,
                       "loss": float(loss[k]), "loss_online": float(loss_sum[k]) / cfg.steps_per_task}  # fmt: skip
                row.update(_measure(stack, k, X[k], X[k, : cfg.probe_size]), diverged=False)
                rows.append(row)
            if ckpt_path is not None:
                state = {"schema": _SCHEMA, "key": key, "next_task": t + 1, "rows": rows,
                         "stack": _to_device(stack.state(), "cpu"), "opt": opt.state_dict(),
                         "method": _to_device(method.state_dict(), "cpu")}  # fmt: skip
                _files.atomic_write(ckpt_path, lambda h: torch.save(state, h))
            if callback is not None:
                callback(t, pd.DataFrame(rows, columns=RESULT_COLUMNS))
    finally:
        bar.close()
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def run(
    cfg: Config,
    *,
    cache_dir: Union[str, os.PathLike, None, bool] = None,
    progress: Optional[bool] = None,
    seed_batch: Optional[int] = None,
    callback: Optional[Callable[[int, pd.DataFrame], None]] = None,
) -> pd.DataFrame:
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

    Returns:
        A tidy ``pandas.DataFrame`` with :data:`RESULT_COLUMNS`, one row per seed x task, sorted
        by seed then task.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be an isoplast_lite.run.Config, got {type(cfg).__name__}")
    seeds = cfg.seed_list
    if seed_batch is None:
        seed_batch = len(seeds)
    seed_batch = check_int("seed_batch", seed_batch, minimum=1)
    show = _progress_enabled(progress)
    key = cache_key(cfg)
    folder: Optional[Path] = None
    if cache_dir is not False:
        folder = (default_cache_dir() if cache_dir is None else Path(cache_dir)) / key
        _files.clean_stale_temps(folder)  # leftovers of writes interrupted in earlier runs
        result = _load_entry(folder / "result.csv", cfg.seeds * cfg.n_tasks)
        if result is not None:
            return result
    check_config(cfg, seed_batch=seed_batch)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        _files.atomic_write(folder / "config.json", lambda h: h.write(cfg.to_json().encode()))
    parts = []
    for b in range(0, len(seeds), seed_batch):
        batch = seeds[b : b + seed_batch]
        part_path = None if folder is None else folder / f"seeds-{'-'.join(map(str, batch))}.csv"
        ckpt_path = None if folder is None else folder / f"seeds-{'-'.join(map(str, batch))}.ckpt"
        part = None if part_path is None else _load_entry(part_path, len(batch) * cfg.n_tasks)
        if part is None:
            part = _train_seed_batch(cfg, batch, ckpt_path, key, show, callback)
            if part_path is not None:
                _write_entry(part_path, part)
                ckpt_path.unlink(missing_ok=True)
        parts.append(part)
    df = pd.concat(parts, ignore_index=True).sort_values(["seed", "task"], kind="stable").reset_index(drop=True)
    df = df[list(RESULT_COLUMNS)]
    if folder is not None:
        _write_entry(folder / "result.csv", df)
    return df
