"""Hyperparameters stacked beside seeds: many configurations of one method trained as one model.

The runner (:func:`isoplast_lite.run.run`) stacks the ``S`` seeds of one configuration into one
:class:`~isoplast_lite.engine.StackedModel`. A sweep over ``G`` values of a method's
hyperparameters (a tuning grid) is ``G`` such runs of the same architecture, and they can share
one stacked model of ``G x S`` *members*: member ``m`` is one (configuration, seed) pair,
trained on the data stream of its seed and with its configuration's learning rate and settings,
exactly as in its own run. Small models waste most of a CPU's matrix throughput; ``G`` times
more members per step recover it (``benchmarks/stacked_hyperparameters.py``).

What may differ between the configurations of a group (:func:`plan`): the learning rate and the
settings the method reads per member (``Method.member_settings``: each one declared
``stackable`` and read in the method's hooks with ``self.member_values(name, like=p)``; the
learning rate with ``self.member_lr(cfg)``); everything else (benchmark, budget, architecture,
seeds, dtype, the other settings) must be equal. A method that declares no member settings, or
configurations that differ in anything else, are run one by one, and :func:`plan` says why.

Each member's rows equal those of its configuration's own run: to float64 rounding with
``dtype="float64"`` and statistically in float32, where batch shapes change the order of BLAS
reductions (``tests/test_stacking.py``, for every built-in method with member settings).
Divergence is detected per member, and a non-finite penalty counts only for the members whose
gradient it made non-finite.

Cache: each configuration's rows, per-layer rows and spectra go to *its own* cache entry, under
the key of an unstacked run (:func:`isoplast_lite.cache.cache_key`), so a later ``run(cfg)`` is a
cache hit and results are read back as always. While a group trains it checkpoints after every
task (data only, SHA-256 sidecar, :func:`isoplast_lite.cache.save_checkpoint`) in
``<cache>/stacked/<group key>/``; a killed group resumes there, a group whose membership changed
(some of its configurations finished elsewhere) restarts its unfinished members. A configuration's
entry is written only when the whole group has finished (``result.csv`` last): a partial result is
never served.

Example:
    >>> from isoplast_lite.run import Config
    >>> cfgs = [Config("random-label-digits", "l2", settings={"strength": v}, seeds=2, n_tasks=2,
    ...                steps_per_task=3, width=8, depth=1, n_train=16, probe_size=4) for v in (1e-4, 1e-3)]
    >>> [len(g.configs) for g in plan(cfgs)]
    [2]
    >>> tables = run_group(cfgs, cache_dir=False, progress=False)
    >>> [sorted(set(rows.settings)) for rows, _, _ in tables]
    [['{"strength":0.0001}'], ['{"strength":0.001}']]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import pandas as pd

from .methods import method_info
from .settings import settings_dict

__all__ = ["Group", "plan", "member_values", "run_group", "group_key", "max_members", "DEFAULT_MAX_MEMBERS"]

#: members of one stacked model at most (more are chunked into several models): beyond it the
#: step of the book's small nets is already matrix-bound (benchmarks/stacked_hyperparameters.py)
DEFAULT_MAX_MEMBERS = 64


@dataclasses.dataclass(frozen=True)
class Group:
    """Configurations trained together as one stacked model (``len(configs) == 1``: alone).

    Attributes:
        configs: the configurations, in the order given to :func:`plan`.
        indices: their positions in that list.
        reason: why a configuration runs alone (``""`` for a stacked group, or a single
            configuration with nothing to stack with).
    """

    configs: Tuple[object, ...]
    indices: Tuple[int, ...]
    reason: str = ""

    @property
    def n_members(self) -> int:
        return sum(c.seeds for c in self.configs)


def _fields(cfg, drop: Sequence[str]) -> str:
    """Canonical JSON of ``cfg`` (:meth:`~isoplast_lite.run.Config.to_json`) without ``lr`` and
    the settings named in ``drop``."""
    fields = json.loads(cfg.to_json())
    fields.pop("lr")
    fields["settings"] = {k: v for k, v in fields["settings"].items() if k not in drop}
    return json.dumps(fields, sort_keys=True)


def member_values(cfgs: Sequence) -> Dict[str, List[float]]:
    """Per member (each configuration's seeds in turn), ``lr`` and every setting that differs
    between the configurations: what :meth:`isoplast_lite.methods.Method.stack_members` takes.

    Example:
        >>> from isoplast_lite.run import Config
        >>> cfgs = [Config("random-label-digits", "adamo", seeds=2, lr=lr) for lr in (1e-3, 1e-2)]
        >>> member_values(cfgs)
        {'lr': [0.001, 0.001, 0.01, 0.01]}
    """
    values = {"lr": [c.lr for c in cfgs for _ in range(c.seeds)]}
    first = settings_dict(cfgs[0].settings)
    for name in first:
        if any(getattr(c.settings, name) != first[name] for c in cfgs):
            values[name] = [getattr(c.settings, name) for c in cfgs for _ in range(c.seeds)]
    return values


def plan(configs: Sequence, *, stack: bool = True, max_members_per_model: Optional[int] = None) -> List[Group]:
    """Split ``configs`` into groups trained as one stacked model each, in order of first appearance.

    Configurations are stacked when they differ only in ``lr`` and in the method's
    ``member_settings``; a group larger than ``max_members_per_model`` (default
    :func:`max_members`, from the memory estimate) is chunked into several, each of whole
    configurations. A configuration that runs alone although another differs from it only in
    hyperparameters gets the reason in :attr:`Group.reason`.

    Args:
        configs: :class:`~isoplast_lite.run.Config` objects (distinct: a sweep removes repeats).
        stack: ``False``: every configuration alone (reason ``"stacking turned off"``).
        max_members_per_model: at most this many members per stacked model.

    Example:
        >>> from isoplast_lite.run import Config
        >>> cfgs = [Config("random-label-digits", "target-spectrum", settings={"scale": s}) for s in (1.0, 2.0)]
        >>> [g.reason for g in plan(cfgs)][0]
        "target-spectrum: ['scale'] differ, and the method reads per member only ['lr'] (member_settings)"
    """
    configs = list(configs)
    if not stack:
        return [Group((c,), (i,), "stacking turned off") for i, c in enumerate(configs)]
    buckets: Dict[str, List[int]] = {}
    for i, cfg in enumerate(configs):
        buckets.setdefault(_fields(cfg, method_info(cfg.method).member_settings), []).append(i)
    loose: Dict[str, List[int]] = {}  # configurations that differ only in lr and settings (whatever the method reads)
    for i, cfg in enumerate(configs):
        loose.setdefault(_fields(cfg, tuple(settings_dict(cfg.settings))), []).append(i)
    groups: List[Group] = []
    for indices in buckets.values():
        cfgs = [configs[i] for i in indices]
        cap = max_members_per_model if max_members_per_model is not None else max_members(cfgs[0])
        chunk: List[int] = []
        for i in indices:
            if chunk and sum(configs[j].seeds for j in chunk) + configs[i].seeds > cap:
                groups.append(_group(configs, chunk, loose, cap))
                chunk = []
            chunk.append(i)
        groups.append(_group(configs, chunk, loose, cap))
    return sorted(groups, key=lambda g: g.indices[0])


def _group(configs, chunk: List[int], loose: Dict[str, List[int]], cap: int) -> Group:
    cfgs = tuple(configs[i] for i in chunk)
    reason = ""
    if len(chunk) == 1:
        cfg = cfgs[0]
        peers = [configs[j] for j in loose[_fields(cfg, tuple(settings_dict(cfg.settings)))] if j != chunk[0]]
        declared = method_info(cfg.method).member_settings
        differ = sorted({k for p in peers for k, v in settings_dict(p.settings).items() if v != getattr(cfg.settings, k) and k not in declared})
        if differ:
            reason = f"{cfg.method}: {differ} differ, and the method reads per member only {list(declared)} (member_settings)"
        elif peers and not declared:
            reason = f"{cfg.method}: the method declares no member settings (member_settings=())"
        elif peers and cfg.seeds >= cap:
            reason = f"{cfg.seeds} seeds fill a model of at most {cap} members"
    return Group(cfgs, tuple(chunk), reason)


def max_members(cfg) -> int:
    """How many members of ``cfg``'s architecture one stacked model may hold: the memory the
    runner's estimate says fits in the memory available (``check_config``'s), at most
    :data:`DEFAULT_MAX_MEMBERS`, at least ``cfg.seeds``."""
    import torch

    from . import config

    available = config.available_memory(torch.device(cfg.device))
    if available is None:
        return max(DEFAULT_MAX_MEMBERS, cfg.seeds)
    one, two = (sum(b for b, _ in config.memory_terms(cfg, n).values()) for n in (1, 2))
    per_member, fixed = two - one, 2 * one - two
    fits = int((available - fixed) // per_member) if per_member > 0 else DEFAULT_MAX_MEMBERS
    return max(cfg.seeds, min(DEFAULT_MAX_MEMBERS, fits))


def group_key(cfgs: Sequence, keys: Optional[Sequence[str]] = None) -> str:
    """SHA-256 of the group's member list: each configuration's cache key, in order (the name of
    the group's checkpoint folder; another membership gets another key). ``keys``: the
    configurations' cache keys, if already computed."""
    from .cache import cache_key

    keys = [cache_key(c) for c in cfgs] if keys is None else list(keys)
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()


def run_group(cfgs: Sequence, *, cache_dir: Union[str, os.PathLike, None, bool] = None, progress: Optional[bool] = None,
              callback=None) -> List[Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:  # fmt: skip
    """Train the configurations ``cfgs`` (one :class:`Group`) as one stacked model; write each one's
    cache entry; return ``(rows, layer rows, spectrum rows)`` per configuration, in order.

    A configuration whose entry is already in the cache is read from it and left out of the
    model. ``callback(task, rows_so_far)`` is called after each task with the rows of all members.

    Raises:
        ValueError: ``cfgs`` do not form a group (they differ in more than the method's member
            settings and ``lr``, or repeat a configuration).
        ConfigError: a configuration cannot run here (:func:`isoplast_lite.run.check_config`).
    """
    from . import cache, files
    from . import run as run_mod
    from .cache import cache_key, default_cache_dir

    cfgs = list(cfgs)
    if not cfgs:
        return []
    for i, cfg in enumerate(cfgs):
        if not isinstance(cfg, run_mod.Config):
            raise TypeError(f"cfgs[{i}] must be an isoplast_lite.run.Config, got {type(cfg).__name__}")
    groups = plan(cfgs, max_members_per_model=10**9)
    if len(groups) != 1:
        raise ValueError(f"cfgs must differ only in lr and their method's member_settings; they form {len(groups)} groups "
                         f"({groups[1].reason or 'other fields differ'}); allowed: one group of plan()")  # fmt: skip
    keys = [cache_key(c) if cache_dir is not False else c.to_json() for c in cfgs]
    if len(set(keys)) != len(keys):
        raise ValueError("cfgs repeat a configuration; allowed: distinct configurations")
    show = run_mod.progress_enabled(progress)
    folders: List[Optional[Path]] = [None] * len(cfgs)
    out: List[Optional[tuple]] = [None] * len(cfgs)
    root = None
    if cache_dir is not False:
        root = default_cache_dir() if cache_dir is None else Path(cache_dir)
        for i, cfg in enumerate(cfgs):
            folders[i] = root / keys[i]
            files.clean_stale_temps(folders[i])
            out[i] = _load_tables(cfg, folders[i])
    todo = [i for i in range(len(cfgs)) if out[i] is None]
    if not todo:
        return out
    members = [cfgs[i] for i in todo]
    for cfg in members:
        run_mod.check_config(cfg)
    if len(members) > 1:
        _check_memory(members)
    seeds = [s for c in members for s in c.seed_list]
    member_cfgs = [c for c in members for _ in range(c.seeds)]
    ckpt, key = None, group_key(members, [keys[i] for i in todo])
    if root is not None:
        (root / "stacked" / key).mkdir(parents=True, exist_ok=True)
        files.clean_stale_temps(root / "stacked" / key)
        ckpt = root / "stacked" / key / "group.ckpt"
    trained = run_mod.train_seed_batch(members[0], seeds, ckpt, key, show, callback, member_cfgs=member_cfgs)
    for i in todo:
        out[i] = _split(cfgs[i], trained, folders[i])
    if ckpt is not None:  # every member's entry is written: the group's checkpoint is done with
        cache.remove_entry_file(ckpt)
        try:
            ckpt.parent.rmdir()
        except OSError:
            pass
    return out


def _check_memory(members: Sequence) -> None:
    """A ``ConfigError`` when one stacked model of ``members`` needs more memory than is
    available (the runner's estimate for their total number of members)."""
    from . import run as run_mod

    run_mod.check_config(members[0].replace(seeds=sum(c.seeds for c in members)))


def _load_tables(cfg, folder: Path) -> Optional[tuple]:
    """The three tables of ``cfg``'s finished cache entry, or ``None``."""
    from . import run as run_mod

    n_rows = run_mod.table_rows(cfg, cfg.seeds)

    def read(name: str) -> Optional[pd.DataFrame]:
        spec = run_mod.TABLES[name]
        return run_mod.load_cached_table(folder / f"{spec.file}.csv", n_rows[name], spec.columns)

    result = read("result")  # without the rows the entry is not finished: the rest is not read
    if result is None:
        return None
    extra = [read(name) for name in list(run_mod.TABLES)[1:]]
    return None if any(e is None for e in extra) else (result, *extra)


def _split(cfg, trained: tuple, folder: Optional[Path]) -> tuple:
    """``cfg``'s rows of the group's tables, sorted and with the columns of its own run's
    entry, written to ``folder`` (``result.csv`` last, as :func:`isoplast_lite.run.run`)."""
    from . import run as run_mod
    from .settings import settings_json

    settings = settings_json(cfg.settings)
    mine = {name: df[(df["lr"] == cfg.lr) & (df["settings"] == settings)] for name, df in zip(run_mod.TABLES, trained)}
    if folder is not None:
        run_mod.start_entry(folder, cfg)
    tables = run_mod.complete_entry(mine, folder)
    return tables["result"], tables["layers"], tables["spectra"]
