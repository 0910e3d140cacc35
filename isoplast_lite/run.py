"""The seed-batched continual-learning runner: stage a task, train it, measure, checkpoint.

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
per setting). These rows are a tidy ``pandas.DataFrame`` (one row per seed x task), the ``.rows`` of
the :class:`RunResult` that :func:`run` returns.

The diagnostics of all seeds are computed at once on the stacked weights (one forward pass on
the task data gives the logits and the features; one batched singular value or eigenvalue
decomposition per quantity; :func:`isoplast_lite.measure.measure`), equal to the public
diagnostics on each seed's own model to float rounding (tests/test_stacked_measure.py).

Two more tidy tables come from the same measurement and are returned on request (the result's
``.layers`` and ``.spectra``): ``run(cfg, layers=True)`` reads the per-layer table (:data:`LAYER_COLUMNS`, one row per seed x
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

The configuration (:class:`Config`, :func:`check_config`, the limits and the memory estimate)
lives in :mod:`isoplast_lite.config`, the measurement in :mod:`isoplast_lite.measure`, the cache
in :mod:`isoplast_lite.cache`; this module is the loop, and re-exports their public names.

Threads: a run trains and measures under its configuration's ``threads`` torch threads (default
1; :func:`pinned_threads` sets them for the run and restores the caller's count afterwards), so
its rows are the same whatever ``OMP_NUM_THREADS``, ``torch.set_num_threads`` of the caller,
executor or worker (byte for byte on one machine; float32 training rounds differently under
another count, so the count is part of the configuration and of its cache key).

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
    >>> df = run(cfg, cache_dir=False, progress=False).rows
    >>> df.shape[0], sorted(df.seed.unique().tolist())
    (4, [0, 1])
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import pandas as pd
import torch
import torch.nn.functional as F

from . import cache, files
from .cache import cache_key, default_cache_dir
from ._validation import ConfigError, check_int
from .config import (  # re-exported: ``from isoplast_lite.run import Config, check_config`` keeps working
    DTYPES as _DTYPES,  # the training loop's name for it
    LIMITS,
    MAX_HOURS_ENV,
    MAX_LR,
    MAX_SECONDS,
    Config,
    check_config,
    estimate_seconds,
    time_limit,
)
from .engine import StackedModel
from .measure import NTK_METHOD, measure, stacked_blocks, stacked_forward
from .methods import Method, MethodError, StepContext, TaskContext, make_method
from .methods import call_hook as _hook  # the training loop's name for it
from .settings import settings_json
from .tasks import SOURCE_SIZES, load_source, make_stream, parse_benchmark

__all__ = [
    "Config", "run", "check_config", "ConfigError", "cache_key", "default_cache_dir", "with_diverged_column",
    "METRIC_COLUMNS", "RESULT_COLUMNS", "CONFIG_COLUMNS", "LAYER_COLUMNS", "LAYER_MEASURES", "LATER_LAYER_MEASURES", "SPECTRUM_COLUMNS",
    "LIMITS", "MAX_LR", "MAX_SECONDS", "MAX_HOURS_ENV", "MethodError", "RunResult", "NTK_METHOD", "load_cached_table",
    "estimate_seconds", "time_limit", "pinned_threads",
    # the loop's interface for stacked groups (:mod:`isoplast_lite.stacking` trains and stores through it)
    "train_seed_batch", "Table", "TABLES", "table_rows", "progress_enabled", "start_entry", "complete_entry",
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
    "null_share", "weight_null_share", "clone_pairs", "exact_clone_pairs", "clone_tol", "exact_clone_tol",
)  # fmt: skip
#: per-layer measures added after tables were shipped (issue 23: the null shares of
#: :func:`~isoplast_lite.diagnostics.layer_isometry`, the clone counts of
#: :func:`~isoplast_lite.diagnostics.clone_counts`): files written before lack them, and they stay
#: absent when read (not NaN, not zero)
LATER_LAYER_MEASURES = ("null_share", "weight_null_share", "clone_pairs", "exact_clone_pairs", "clone_tol", "exact_clone_tol")
LAYER_COLUMNS = CONFIG_COLUMNS + ("layer", "kind", "block") + LAYER_MEASURES
#: the eNTK spectrum table (``run(..., spectra=True)``): one row per seed x task x eigenvalue of
#: the probe's eNTK arranged as a ``(P*O, P*O)`` matrix, ``index`` 0 the largest (descending)
SPECTRUM_COLUMNS = CONFIG_COLUMNS + ("index", "eigenvalue")
_SCHEMA = 4  # checkpoints: 2 since method settings moved out of Config (issue 10), 3 with per-layer rows, 4 with eNTK spectra


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


def progress_enabled(progress: Optional[bool]) -> bool:
    """Whether a run shows its progress bar: ``progress`` when given, else the environment
    variable ``ISOPLAST_PROGRESS`` (``"0"`` turns it off; on by default).

    Example:
        >>> progress_enabled(False), progress_enabled(True)
        (False, True)
    """
    if progress is not None:
        return bool(progress)
    return os.environ.get("ISOPLAST_PROGRESS", "1") != "0"


def load_cached_table(path: Path, n_rows: int, columns: tuple = RESULT_COLUMNS) -> Optional[pd.DataFrame]:
    """A cached CSV of the runner's, of ``n_rows`` rows and ``columns`` (default the result rows, read
    through :func:`with_diverged_column`), verified against its checksum; ``None`` when it is
    missing, or corrupt (then removed, with a one-line warning): recompute it
    (:func:`isoplast_lite.cache.load_entry`).

    Example:
        >>> import tempfile
        >>> load_cached_table(Path(tempfile.mkdtemp()) / "result.csv", 4) is None  # no such entry
        True
    """
    return cache.load_entry(path, n_rows, columns, with_diverged_column if columns == RESULT_COLUMNS else None, stacklevel=4)


def _to_device(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


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


def member_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's mean cross-entropy ``(S,)`` of ``logits`` ``(S, N, O)`` against labels ``y``
    ``(S, N)``: ``logsumexp(z) - z_y`` (max-shifted), the value of ``F.cross_entropy`` per member.

    ``F.cross_entropy`` over the ``(S N, O)`` rows took 2.4x longer forward and backward at 64
    members of the book's net (its log-softmax over 10 classes per row is not vectorized); the
    two agree to float rounding.

    Example:
        >>> z, y = torch.randn(2, 5, 10, dtype=torch.float64), torch.randint(0, 10, (2, 5))
        >>> ref = F.cross_entropy(z.flatten(0, 1), y.flatten(), reduction="none").view(2, 5).mean(1)
        >>> torch.allclose(member_cross_entropy(z, y), ref)
        True
    """
    return (torch.logsumexp(logits, -1) - logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)).mean(1)


def _accuracy_and_loss(logits: torch.Tensor, y: torch.Tensor):
    """Per-seed accuracy and mean cross-entropy of ``logits`` ``(S, N, O)`` against ``y`` ``(S, N)``."""
    loss = member_cross_entropy(logits, y)
    acc = (logits.argmax(-1) == y).double().mean(1)
    return acc, loss


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
    S, N = data.y.shape
    # each step's minibatch of every member as one index_select over the members' rows: member k's
    # image j is row k * N + j (advanced indexing x[arange, idx] took 6x longer at 64 members)
    rows = (data.idx + N * torch.arange(S, device=data.x.device)[:, None, None]).transpose(0, 1).reshape(cfg.steps_per_task, -1)
    x_rows, y_rows = data.x.flatten(0, 1), data.y.flatten()
    acc_sum = torch.zeros(S, dtype=torch.float64, device=data.x.device)
    loss_sum = torch.zeros(S, dtype=torch.float64, device=data.x.device)
    for i in range(cfg.steps_per_task):
        xb = x_rows.index_select(0, rows[i]).view(S, -1, *data.x.shape[2:])  # (S, B, D)
        yb = y_rows.index_select(0, rows[i]).view(S, -1)  # (S, B)
        logits = stack(xb)  # (S, B, O)
        per_seed = member_cross_entropy(logits, yb)
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
    measured = measure(stack, data.x, live, cfg.probe_size, forward=forward)  # seed number -> (metrics, layer rows, eigenvalues)
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


@contextlib.contextmanager
def pinned_threads(threads: int):
    """Run the block with ``torch.set_num_threads(threads)``, then restore the caller's count.

    The runner trains and measures every run under its configuration's ``threads``
    (:class:`Config`), so the rows do not depend on the thread count of the process, the
    executor or the worker that runs it (float32 training rounds differently under another
    count). A count equal to the current one changes nothing.

    Example:
        >>> before = torch.get_num_threads()
        >>> with pinned_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    threads = check_int("threads", threads, minimum=1)
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def train_seed_batch(cfg: Config, seeds: List[int], ckpt_path: Optional[Path], key: str, progress: bool,
                     callback, member_cfgs: Optional[Sequence[Config]] = None) -> Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Train the stacked ``seeds`` of ``cfg`` task after task, resuming from ``ckpt_path``;
    returns the rows, the per-layer rows and the eNTK spectrum rows (the tables of
    :data:`TABLES`, in that order, unsorted: :func:`complete_entry` sorts them).

    The loop of :func:`run` (one call per seed batch) and of
    :func:`isoplast_lite.stacking.run_group` (one call per stacked group); nothing is read from
    or written to the cache entry here. Per task: stage the data, call the method's
    task-boundary hook, train, log the rows (:func:`_task_rows`), checkpoint, call ``callback``.

    Args:
        cfg: the configuration (of the first member, for a stacked group).
        seeds: the seed of each member, in order.
        ckpt_path: the checkpoint file, written after every task and resumed from (``None``:
            no checkpoint).
        key: the key the checkpoint must carry to be resumed (:func:`cache_key`, or a group's).
        progress: show a progress bar (:func:`progress_enabled`).
        callback: ``callback(task, rows_so_far)`` after each task, or ``None``.
        member_cfgs: for a stacked group (:mod:`isoplast_lite.stacking`), the configuration of
            each member, ``seeds[k]`` being member ``k``'s seed; they differ from ``cfg`` (the
            first) only in ``lr`` and in the settings the method reads per member, which the
            method is given (:meth:`isoplast_lite.methods.Method.stack_members`); each row
            carries its member's config.

    Example:
        >>> cfg = Config("random-label-digits", "adam", seeds=2, n_tasks=1, steps_per_task=2,
        ...              width=8, depth=1, n_train=16, probe_size=2)
        >>> rows, layer_rows, spectrum_rows = train_seed_batch(cfg, [0, 1], None, "", False, None)
        >>> [len(rows), len(layer_rows), len(spectrum_rows)] == list(table_rows(cfg, 2).values())
        True
    """
    with pinned_threads(cfg.threads):
        return _train_pinned(cfg, seeds, ckpt_path, key, progress, callback, member_cfgs)


def _train_pinned(cfg: Config, seeds: List[int], ckpt_path: Optional[Path], key: str, progress: bool,
                  callback, member_cfgs: Optional[Sequence[Config]] = None) -> Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """The body of :func:`train_seed_batch`, under the thread count it has pinned."""
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


class Table(NamedTuple):
    """One table of a run as its cache entry holds it (an entry of :data:`TABLES`)."""

    file: str  #: file stem in the entry (``<file>.csv``)
    columns: Tuple[str, ...]  #: its columns, in order
    order: Tuple[str, ...]  #: its rows sorted by these columns (stable)
    title: str  #: its name in messages


#: the tables of a run by name: ``"result"`` (the rows) first, then the ones :func:`run` returns
#: on request, named as the ``run`` argument that asks for them
TABLES = {
    "result": Table("result", RESULT_COLUMNS, ("seed", "task"), "rows"),
    "layers": Table("layers", LAYER_COLUMNS, ("seed", "task", "layer"), "per-layer table"),
    "spectra": Table("spectra", SPECTRUM_COLUMNS, ("seed", "task", "index"), "eNTK spectrum table"),
}  # fmt: skip


def table_rows(cfg: Config, n_seeds: int) -> Dict[str, int]:
    """Rows of each table of :data:`TABLES` for ``n_seeds`` seeds of ``cfg`` (what a cache entry
    must hold to be served).

    Example:
        >>> table_rows(Config("random-label-digits", "adam", n_tasks=3, depth=2, probe_size=4), 2)
        {'result': 6, 'layers': 18, 'spectra': 240}
    """
    per_task = {"result": 1, "layers": cfg.depth + 1, "spectra": _n_eigenvalues(cfg)}
    return {name: n_seeds * cfg.n_tasks * n for name, n in per_task.items()}


def start_entry(folder: Path, cfg: Config) -> None:
    """Create the cache entry ``folder`` of ``cfg`` with its ``config.json`` and ``key.json``
    (:func:`isoplast_lite.cache.key_parts`), written atomically; its tables come with
    :func:`complete_entry`."""
    folder.mkdir(parents=True, exist_ok=True)
    files.atomic_write(folder / "config.json", lambda h: h.write(cfg.to_json().encode()))
    files.atomic_write(folder / "key.json", lambda h: h.write(json.dumps(cache.key_parts(cfg), indent=1, sort_keys=True).encode()))


def complete_entry(tables: Dict[str, pd.DataFrame], folder: Optional[Path]) -> Dict[str, pd.DataFrame]:
    """The tables of :data:`TABLES` (``tables``: name -> rows in any order), each sorted by its
    ``order`` with its ``columns``; written to the cache entry ``folder`` (``None``: not
    written), ``result.csv`` last: its presence means the entry is complete.

    Example:
        >>> cfg = Config("random-label-digits", "adam", seeds=2, n_tasks=1, steps_per_task=2,
        ...              width=8, depth=1, n_train=16, probe_size=2)
        >>> trained = train_seed_batch(cfg, [1, 0], None, "", False, None)
        >>> complete_entry(dict(zip(TABLES, trained)), None)["result"].seed.tolist()
        [0, 1]
    """
    out = {t: tables[t].sort_values(list(spec.order), kind="stable").reset_index(drop=True)[list(spec.columns)]
           for t, spec in TABLES.items()}  # fmt: skip
    if folder is not None:
        for t in list(TABLES)[1:]:
            cache.write_entry(folder / f"{TABLES[t].file}.csv", out[t])
        cache.write_entry(folder / f"{TABLES['result'].file}.csv", out["result"])  # last: its presence means the entry is complete
    return out


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns, whatever it is asked: the result rows, and the per-layer and
    eNTK spectrum tables when asked for (``None`` when not: every run computes and caches all
    three, ``layers`` and ``spectra`` only say which ones to read back).

    Attributes:
        rows: :data:`RESULT_COLUMNS`, one row per seed x task, sorted by seed then task.
        layers: :data:`LAYER_COLUMNS` (``run(cfg, layers=True)``), one row per seed x task x
            block, sorted by seed, task, ``layer``; else ``None``.
        spectra: :data:`SPECTRUM_COLUMNS` (``run(cfg, spectra=True)``), one row per seed x task
            x eigenvalue, sorted by seed, task, ``index``; else ``None``.

    Example:
        >>> cfg = Config("random-label-digits", "adam", seeds=1, n_tasks=1, steps_per_task=2,
        ...              width=8, depth=1, n_train=16, probe_size=2)
        >>> result = run(cfg, cache_dir=False, progress=False, layers=True)
        >>> len(result.rows), len(result.layers), result.spectra is None
        (1, 2, True)
    """

    rows: pd.DataFrame
    layers: Optional[pd.DataFrame] = None
    spectra: Optional[pd.DataFrame] = None


def run(    cfg: Config,
    *,
    cache_dir: Union[str, os.PathLike, None, bool] = None,
    progress: Optional[bool] = None,
    seed_batch: Optional[int] = None,
    callback: Optional[Callable[[int, pd.DataFrame], None]] = None,
    layers: bool = False,
    spectra: bool = False,
) -> RunResult:
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
        A :class:`RunResult`: ``.rows``, a tidy ``pandas.DataFrame`` with :data:`RESULT_COLUMNS`,
        one row per seed x task, sorted by seed then task; ``.layers`` the per-layer table if
        ``layers`` (else ``None``); ``.spectra`` the spectrum table if ``spectra`` (else ``None``).
        One shape whatever is asked (``run(cfg).rows``, ``run(cfg, layers=True).layers``).

        ``.layers`` has :data:`LAYER_COLUMNS`, one row per seed x task x block (hidden blocks
        then the head): the scale and spread of ``log sigma`` of each block's Jacobian over the
        directions its active units span, and of its weight's singular values, on the probe
        (:func:`isoplast_lite.diagnostics.layer_isometry`; a diverged seed's rows are NaN).

        ``.spectra`` has :data:`SPECTRUM_COLUMNS`, one row per seed x task x eigenvalue,
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
    show = progress_enabled(progress)
    key = cache_key(cfg)
    n_rows = table_rows(cfg, cfg.seeds)
    folder: Optional[Path] = None
    if cache_dir is not False:
        folder = (default_cache_dir() if cache_dir is None else Path(cache_dir)) / key
        files.clean_stale_temps(folder)  # leftovers of writes interrupted in earlier runs
        result = load_cached_table(folder / "result.csv", n_rows["result"])
        if result is not None:
            extra = [load_cached_table(folder / f"{TABLES[t].file}.csv", n_rows[t], TABLES[t].columns) for t in wanted]
            if all(e is not None for e in extra):
                return RunResult(result, **dict(zip(wanted, extra)))
            missing = " or ".join(TABLES[t].title for t, e in zip(wanted, extra) if e is None)
            warnings.warn(f"cache entry {folder} has no {missing} (made before it existed); recomputing", RuntimeWarning, stacklevel=2)
            for stale in folder.glob("*.csv"):
                cache.remove_entry_file(stale)
    check_config(cfg, seed_batch=seed_batch)
    if folder is not None:
        start_entry(folder, cfg)
    parts: Dict[str, list] = {t: [] for t in TABLES}
    for b in range(0, len(seeds), seed_batch):
        batch = seeds[b : b + seed_batch]
        stem = f"seeds-{'-'.join(map(str, batch))}"
        n_part = table_rows(cfg, len(batch))
        table_files = {t: (f"{stem}.csv" if t == "result" else f"{stem}.{spec.file}.csv", spec.columns) for t, spec in TABLES.items()}
        got = {t: None for t in table_files}
        if folder is not None:
            got = {t: load_cached_table(folder / name, n_part[t], cols) for t, (name, cols) in table_files.items()}
        if any(part is None for part in got.values()):  # every table of a batch comes from one training
            trained = train_seed_batch(cfg, batch, None if folder is None else folder / f"{stem}.ckpt", key, show, callback)
            got = dict(zip(table_files, trained))
            if folder is not None:
                for t, (name, _) in table_files.items():
                    cache.write_entry(folder / name, got[t])
                cache.remove_entry_file(folder / f"{stem}.ckpt")
        for t in parts:
            parts[t].append(got[t])
    tables = complete_entry({t: pd.concat(parts[t], ignore_index=True) for t in parts}, folder)
    return RunResult(tables["result"], **{t: tables[t] for t in wanted})
