"""Sweeps: many runner configurations, one job each, run here or on an existing engine.

:func:`run_sweep` runs a list of :class:`isoplast_lite.run.Config` and returns their results
concatenated in the order given (one tidy ``DataFrame``, the file ``sweep --out`` writes).
It never grows a scheduler of its own; ``executor`` says who runs the configurations:

=============  ============================================================================
executor       what runs each configuration
=============  ============================================================================
``"serial"``   this process, one after the other (the default; needs no engine)
``"local"``    one job per configuration through ``submitit``'s ``LocalExecutor``: a
               separate process on this machine, at most ``workers`` at a time
``"slurm"``    one job per configuration through ``submitit`` on a SLURM cluster (one job
               array, at most ``workers`` running at a time; partition, account, GPUs, CPUs,
               time limit and memory in ``slurm``)
=============  ============================================================================

Why submitit: the full-scale runs (8 seeds x 12 methods x lambdas on permuted MNIST or
random-label CIFAR-10) are done by academic groups, and academic clusters run SLURM. submitit
submits a picklable Python callable as a SLURM job (job arrays, requeue on preemption and
timeout, logs per job) with no service to start and nothing to install on the cluster but the
package; its ``LocalExecutor`` runs the very same jobs as processes on one machine, which is
how the tests exercise the distributed path. Ray would need a cluster started first (``ray
start``, or its cloud launcher) and adds nothing a per-configuration job needs.

The runner's disk cache is the single source of truth, whichever the executor:

- a configuration whose result is in the cache is served from it and never submitted;
- a job writes nothing but the cache (the runner checkpoints after every task, atomically),
  and returns nothing but the cache key; the results are read back from the cache;
- a job that dies (killed, out of memory, node failure, preempted) leaves no cache entry and
  is submitted again, up to ``max_retries`` times, resuming at the task where its checkpoint
  stopped; an exception raised by the configuration itself (a bug, bad data) is not retried;
- a sweep that is itself interrupted is simply run again: the finished configurations come
  from the cache, the others resume from their checkpoints.
- one failing configuration never sinks a sweep, in any executor: its exception (a method's
  hook names the method and the hook, :class:`isoplast_lite.run.MethodError`) or its job's death
  (a killed worker is named with its signal) is recorded as a :class:`Failure`, the others run,
  and the sweep returns their rows (``failures=[]``) or raises one :class:`SweepError` at the
  end; the command line writes every good row, prints a closing summary and exits 1.
- every run trains under its configuration's thread count (``Config.threads``, default 1;
  :func:`isoplast_lite.run.run` pins it), in this process or in a job, so a ``local`` sweep gives
  the rows of a ``serial`` one whatever the threads of the processes; SLURM jobs ask for that
  many CPUs unless ``cpus_per_job`` says otherwise; a SIGTERM or SIGINT to the sweep cancels its
  workers before it exits.

Hyperparameters stacked beside seeds (``stack=True``, the default; :mod:`isoplast_lite.stacking`):
configurations that differ only in ``lr`` and in settings their method reads per member
(``Method.member_settings``, e.g. AdamO's ``iso_strength``) are trained as *one* stacked model of
``G x S`` members (G configurations x S seeds), chunked when the runner's memory estimate says so,
in one process or one job; each configuration's rows still go to its own cache entry, under the
key of its unstacked run, and equal that run's (float64: to rounding; float32: statistically).
A group whose stacked training fails is run again one configuration at a time (with a warning);
``stack=False`` (command line ``sweep --no-stack``) runs every configuration alone; ``groups``
receives the plan, with the reason why a configuration that had peers runs alone.

So the cache folder must be one that every job can write: on a cluster, a shared file system
(``--cache-dir`` on it, or ``$ISOPLAST_CACHE``). The results do not depend on the executor: a
job computes exactly what :func:`isoplast_lite.run.run` computes in this process, given the
same torch build and device (the thread count is the configuration's).

Example:
    >>> from isoplast_lite.run import Config
    >>> cfgs = [Config("random-label-digits", m, seeds=1, n_tasks=1, steps_per_task=2, width=8,
    ...                depth=1, n_train=16, probe_size=4) for m in ("adam", "adamo")]
    >>> df = run_sweep(cfgs, cache_dir=False, progress=False)
    >>> df.method.tolist()
    ['adam', 'adamo']
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Union

import pandas as pd

from .signals import interrupt_on, signal_name
from ._validation import check_choice, check_int, check_positive
from . import stacking
from .run import Config, MethodError, cache_key, default_cache_dir, run

__all__ = ["EXECUTORS", "SLURM_OPTIONS", "run_sweep", "cached_result", "describe", "Failure", "SweepError"]

EXECUTORS = ("serial", "local", "slurm")
# keys of run_sweep(slurm=...) -> submitit's AutoExecutor parameter
SLURM_OPTIONS = {
    "partition": "slurm_partition",
    "account": "slurm_account",
    "gpus_per_job": "gpus_per_node",
    "cpus_per_job": "cpus_per_task",
    "time_min": "timeout_min",
    "mem_gb": "mem_gb",
}


@dataclasses.dataclass(frozen=True)
class Failure:
    """A configuration of a sweep that produced no result: its index in ``configs``, the
    configuration and the one-line reason (which method and hook raised what, or how its job died)."""

    index: int
    config: Config
    error: str

    def __str__(self) -> str:
        return f"{describe(self.config)}: {self.error}"


class SweepError(RuntimeError):
    """Some configurations of a sweep failed (``failures``); the others finished and are in the cache."""

    def __init__(self, failures: Sequence[Failure], n_configs: int):
        self.failures = list(failures)
        first = self.failures[0]
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        super().__init__(f"{len(self.failures)} of {n_configs} configurations failed; first: {first}{more}")


def _one_line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    return text if isinstance(err, MethodError) else f"{type(err).__name__}: {text}"


def describe(cfg: Config) -> str:
    """One line naming a configuration by its benchmark, method, settings and learning rate.

    Example:
        >>> describe(Config("random-label-digits", "adamo", settings={"iso_strength": 0.01}))
        'random-label-digits adamo iso_strength=0.01 iso_scaling=lr lr=0.001'
    """
    settings = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.method_settings.items())
    return " ".join(part for part in (cfg.benchmark, cfg.method, settings, f"lr={cfg.lr:g}") if part)


def cached_result(cfg: Config, cache_dir: Union[str, os.PathLike, None] = None) -> Optional[pd.DataFrame]:
    """The finished result of ``cfg`` in the cache, or ``None`` (never trains).

    Args:
        cfg: the configuration.
        cache_dir: the cache folder (``None``: :func:`isoplast_lite.run.default_cache_dir`).

    Returns:
        The rows that :func:`isoplast_lite.run.run` would return from the cache (its ``.rows``), or
        ``None`` when the entry is missing, unfinished, or fails its checksum.
    """
    from . import run as run_mod

    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be an isoplast_lite.run.Config, got {type(cfg).__name__}")
    folder = (default_cache_dir() if cache_dir is None else Path(cache_dir)) / cache_key(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a damaged entry is recomputed by its job
        return run_mod.load_cached_table(folder / "result.csv", cfg.seeds * cfg.n_tasks)


try:  # submitit is needed by the "local" and "slurm" executors only
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - submitit is in requirements.txt
    _Checkpointable = object


class _ConfigJob(_Checkpointable):
    """The callable a job runs: one configuration into the cache, returning its cache key.

    A ``submitit.helpers.Checkpointable``: on a SLURM timeout or preemption submitit requeues
    it with the same arguments, and the runner resumes from its own checkpoint.
    """

    def __call__(self, cfg: Config, cache_dir: str, seed_batch: Optional[int]) -> str:
        import submitit

        env = submitit.JobEnvironment()
        if env.cluster == "local":  # on SLURM, submitit's own SIGTERM handling (preemption) stays
            _record_kills(_kill_record_path(env.paths.folder, str(env.job_id)))
        run(cfg, cache_dir=cache_dir, progress=False, seed_batch=seed_batch)
        return cache_key(cfg)


class _GroupJob(_ConfigJob):
    """The callable a job of a stacked group runs: the group into the cache (one entry per
    configuration, :func:`isoplast_lite.stacking.run_group`), returning their cache keys."""

    def __call__(self, cfgs: Sequence[Config], cache_dir: str, seed_batch: Optional[int]) -> List[str]:
        import submitit

        env = submitit.JobEnvironment()
        if env.cluster == "local":
            _record_kills(_kill_record_path(env.paths.folder, str(env.job_id)))
        stacking.run_group(cfgs, cache_dir=cache_dir, progress=False)
        return [cache_key(c) for c in cfgs]


def _make_executor(executor: str, folder: Path, workers: int, slurm: Mapping[str, object], threads: Optional[int]):
    try:
        import submitit
    except ImportError:
        raise ValueError(f"executor={executor!r} needs the submitit package (pip install 'submitit>=1.5'); allowed without it: 'serial'") from None

    if executor == "local":
        ex = submitit.LocalExecutor(folder=str(folder / "%j"))
        # LocalExecutor kills a job after timeout_min (default 2 minutes): a day instead
        ex.update_parameters(timeout_min=int(slurm.get("time_min", 24 * 60)))
        return ex
    ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster="slurm")
    params = {SLURM_OPTIONS[k]: v for k, v in slurm.items() if v is not None}
    params.setdefault("timeout_min", 24 * 60)
    if threads is not None:
        params.setdefault("cpus_per_task", threads)
    ex.update_parameters(name="isoplast-sweep", slurm_array_parallelism=workers, nodes=1, tasks_per_node=1, **params)
    return ex


def _check_slurm(slurm: Optional[Mapping[str, object]]) -> Dict[str, object]:
    if slurm is None:
        return {}
    if not isinstance(slurm, Mapping):
        raise TypeError(f"slurm must be a mapping of {', '.join(SLURM_OPTIONS)} or None, got {type(slurm).__name__}")
    for key, value in slurm.items():
        check_choice("slurm key", key, tuple(SLURM_OPTIONS))
        if value is None:
            continue
        if key in ("partition", "account"):
            if not isinstance(value, str) or not value:
                raise ValueError(f"slurm[{key!r}] must be a non-empty str, got {value!r}")
        elif key == "gpus_per_job":
            check_int(f"slurm[{key!r}]", value, minimum=0)
        elif key == "mem_gb":
            check_positive(f"slurm[{key!r}]", value)
        else:
            check_int(f"slurm[{key!r}]", value, minimum=1)
    return dict(slurm)


def _died(job, executor: str) -> Optional[str]:
    """``None`` if ``job`` (done) raised an exception of its own (re-raised by the caller);
    otherwise why it died ("killed by signal 9", ...)."""
    if executor == "local" and not job.paths.result_pickle.exists():
        code = job._process.returncode if getattr(job, "_process", None) is not None else None
        if code is not None and code < 0:
            return f"its process was killed by {signal_name(-code)}"
        killed = _read_kill_record(job)
        if killed:
            return f"its worker was killed by {killed}"
        # the worker is a child of submitit's controller, which exits 0 whatever ended it: a
        # worker that left neither a result nor an exception was killed (SIGKILL, out of memory)
        return "its worker was killed (it ended without a result or an exception: SIGKILL or out of memory)"
    err = job.exception()  # waits a little for a shared file system to show the result
    from submitit.core.utils import FailedJobError

    if err is None or isinstance(err, FailedJobError):
        return None
    return str(err).splitlines()[0]


def run_sweep(
    configs: Sequence[Config],
    *,
    executor: str = "serial",
    cache_dir: Union[str, os.PathLike, None, bool] = None,
    seed_batch: Optional[int] = None,
    progress: Optional[bool] = None,
    workers: int = 2,
    threads: Optional[int] = None,
    jobs_dir: Union[str, os.PathLike, None] = None,
    max_retries: int = 2,
    slurm: Optional[Mapping[str, object]] = None,
    poll_seconds: float = 1.0,
    on_result: Optional[Callable[[int, Config, pd.DataFrame], None]] = None,
    failures: Optional[List[Failure]] = None,
    stack: bool = True,
    groups: Optional[list] = None,
) -> pd.DataFrame:
    """Run every configuration of ``configs`` (one job each) and return all their results.

    Args:
        configs: the configurations, in the order of the result.
        executor: one of :data:`EXECUTORS`: ``"serial"`` (this process), ``"local"``
            (``submitit`` jobs on this machine) or ``"slurm"`` (``submitit`` jobs on a SLURM
            cluster; the cache must then be on a file system the nodes share).
        cache_dir: the cache folder (``None``: :func:`isoplast_lite.run.default_cache_dir`);
            ``False`` (no cache) only with ``executor="serial"``.
        seed_batch: seeds stacked per batch, as in :func:`isoplast_lite.run.run`.
        progress: progress bars of the serial runs (jobs never show one).
        workers: at most this many jobs at once (local processes; SLURM array parallelism).
        threads: kept for callers that pinned it: when given, every configuration must have
            that many ``threads`` (a ``ValueError`` otherwise). The configuration decides
            (``Config.threads``; :func:`isoplast_lite.run.run` pins it in any executor); SLURM
            jobs ask for the largest count of their sweep as ``cpus_per_job`` unless set.
        jobs_dir: where submitit keeps each job's pickles and logs (default
            ``<cache_dir>/jobs``).
        max_retries: how many times a job that died is submitted again.
        slurm: SLURM settings, keys of :data:`SLURM_OPTIONS` (``partition``, ``account``,
            ``gpus_per_job``, ``cpus_per_job``, ``time_min``, ``mem_gb``); ``time_min`` is also
            the time limit of local jobs.
        poll_seconds: how often running jobs are checked.
        on_result: called as ``on_result(index, cfg, df)`` as soon as a configuration's result
            is available (from the cache first, then as jobs finish).
        failures: a list to which every configuration that fails is appended as a
            :class:`Failure` (then the sweep returns the rows of the others); ``None``: raise a
            :class:`SweepError` at the end. Either way one failure never stops the others.
        stack: train configurations that differ only in ``lr`` and their method's member
            settings as one stacked model (:func:`isoplast_lite.stacking.plan`; ``seed_batch``,
            if given, caps its members); ``False``: every configuration alone.
        groups: a list to which the plan of the configurations not in the cache is appended
            (one :class:`isoplast_lite.stacking.Group` per training: its configurations and,
            for one that runs alone although it had peers, why).

    Returns:
        The results of ``configs`` concatenated in their order (a tidy ``DataFrame`` with
        :data:`isoplast_lite.run.RESULT_COLUMNS`), equal to running them one by one.

    Raises:
        ValueError: a bad argument (naming it, its value and what is allowed).
        TypeError: an argument of the wrong kind.
        SweepError: (a ``RuntimeError``, only with ``failures=None``) configurations raised an
            exception, or their jobs died ``max_retries + 1`` times; the message says how many
            and names the first (method and hook, or how it died, and the log file).
    """
    configs = list(configs)
    for i, cfg in enumerate(configs):
        if not isinstance(cfg, Config):
            raise TypeError(f"configs[{i}] must be an isoplast_lite.run.Config, got {type(cfg).__name__}")
    check_choice("executor", executor, EXECUTORS)
    workers = check_int("workers", workers, minimum=1)
    max_retries = check_int("max_retries", max_retries, minimum=0)
    poll_seconds = check_positive("poll_seconds", poll_seconds)
    if threads is not None:
        threads = check_int("threads", threads, minimum=1)
        other = next((c for c in configs if c.threads != threads), None)
        if other is not None:
            raise ValueError(f"threads={threads}: configuration {describe(other)} has threads={other.threads}; the configuration decides "
                             f"its thread count (Config.threads); allowed: None, or the threads of every configuration")  # fmt: skip
    threads = max((c.threads for c in configs), default=1)  # SLURM: the CPUs a job asks for
    slurm = _check_slurm(slurm)
    if on_result is not None and not callable(on_result):
        raise TypeError(f"on_result must be callable or None, got {type(on_result).__name__}")

    if failures is not None and not isinstance(failures, list):
        raise TypeError(f"failures must be a list or None, got {type(failures).__name__}")
    if not isinstance(stack, bool):
        raise TypeError(f"stack must be True or False, got {stack!r}")
    if groups is not None and not isinstance(groups, list):
        raise TypeError(f"groups must be a list or None, got {type(groups).__name__}")
    if seed_batch is not None:
        seed_batch = check_int("seed_batch", seed_batch, minimum=1)
    results: Dict[int, pd.DataFrame] = {}
    failed: List[Failure] = []

    def fail(i: int, error: str) -> None:
        failed.append(Failure(i, configs[i], error))
        warnings.warn(f"configuration failed: {failed[-1]}", RuntimeWarning, stacklevel=3)

    def finish() -> pd.DataFrame:
        if failed and failures is None:
            raise SweepError(failed, len(configs))
        if failures is not None:
            failures.extend(sorted(failed, key=lambda f: f.index))
        return _collect(configs, results)

    def deliver(i: int, df: pd.DataFrame) -> None:
        results[i] = df
        if on_result is not None:
            on_result(i, configs[i], df)

    if executor == "serial":
        _serial(configs, cache_dir, progress, seed_batch, fail, deliver, stack, groups)
        return finish()

    if cache_dir is False:
        raise ValueError(f"cache_dir=False with executor={executor!r}: the jobs' results travel through the cache; allowed: a cache folder, or executor='serial'")
    cache = (default_cache_dir() if cache_dir is None else Path(cache_dir)).resolve()
    folder = cache / "jobs" if jobs_dir is None else Path(jobs_dir).resolve()

    # one job per distinct configuration (a repeated one is listed twice in the result)
    same: Dict[str, List[int]] = collections.defaultdict(list)
    for i, cfg in enumerate(configs):
        same[cache_key(cfg)].append(i)
    pending = []
    for indices in same.values():
        df = cached_result(configs[indices[0]], cache)
        if df is None:
            pending.append(indices)
        else:  # finished before: never recomputed, never submitted
            for i in indices:
                deliver(i, df)
    if not pending:
        return finish()
    # one job per unit: a stacked group (several configurations) or one configuration
    todo = collections.deque(_units(configs, pending, stack, seed_batch, groups))

    ex = _make_executor(executor, folder, workers, slurm, threads)
    # local: SIGTERM stops the sweep as Ctrl-C does, so that its workers are cancelled
    restore = interrupt_on([signal.SIGTERM]) if executor == "local" else None
    cap = workers if executor == "local" else math.inf  # SLURM: one array, the scheduler caps it
    attempts: Dict[int, int] = collections.Counter()
    running = {}
    try:
        while todo or running:
            batch = []
            while todo and len(running) + len(batch) < cap:
                batch.append(todo.popleft())
            if batch:
                if executor == "slurm":
                    with ex.batch():
                        jobs = [_submit(ex, configs, unit, str(cache), seed_batch) for unit in batch]
                else:
                    jobs = [_submit(ex, configs, unit, str(cache), seed_batch) for unit in batch]
                for unit, job in zip(batch, jobs):
                    running[unit[0][0]] = (unit, job)
                    attempts[unit[0][0]] += 1
            time.sleep(poll_seconds)
            for first, (unit, job) in list(running.items()):
                if not job.done():
                    continue
                del running[first]
                missing = []
                for ix in unit:
                    df = cached_result(configs[ix[0]], cache)
                    if df is None:
                        missing.append(ix)
                        continue
                    for i in ix:
                        deliver(i, df)
                if not missing:
                    continue
                cfg = configs[missing[0][0]]
                why = _died(job, executor)
                if why is None:
                    err = job.exception()
                    if len(unit) > 1:  # a stacked group failed: its configurations run one by one
                        warnings.warn(f"the stacked group of {len(unit)} configurations ({describe(configs[unit[0][0]])}, ...) failed "
                                      f"({_job_error(err)}); running them one by one", RuntimeWarning, stacklevel=2)  # fmt: skip
                        todo.extendleft([ix] for ix in reversed(missing))
                        continue
                    for ix in missing:
                        for i in ix:
                            fail(i, f"{_job_error(err)} (log: {job.paths.stderr})")
                    continue
                if attempts[first] > max_retries:
                    for ix in missing:
                        for i in ix:
                            fail(i, f"its job died {attempts[first]} times, last: {why} (log: {job.paths.stderr}); allowed: more max_retries")
                    continue
                warnings.warn(f"the job of {describe(cfg)} died ({why}); submitting it again (it resumes from its checkpoint)", RuntimeWarning, stacklevel=2)
                todo.appendleft(missing)
    finally:
        if executor == "local":  # jobs on this machine end with the sweep (a re-run resumes them)
            for _, job in running.values():
                job.cancel(check=False)
            for _, job in running.values():  # the controller stops its worker (SIGINT, then SIGKILL)
                _wait_process(job)
        if restore is not None:
            restore()
    return finish()


def _units(configs, pending: List[List[int]], stack: bool, seed_batch: Optional[int], groups: Optional[list]) -> List[List[List[int]]]:
    """The trainings of the distinct configurations ``pending`` (index lists of repeats): one
    unit per :class:`~isoplast_lite.stacking.Group` of :func:`~isoplast_lite.stacking.plan`,
    each a list of index lists; the plan is appended to ``groups``."""
    plan = stacking.plan([configs[ix[0]] for ix in pending], stack=stack, max_members_per_model=seed_batch)
    if groups is not None:
        groups.extend(dataclasses.replace(g, indices=tuple(pending[j][0] for j in g.indices)) for g in plan)
    return [[pending[j] for j in g.indices] for g in plan]


def _submit(ex, configs, unit, cache: str, seed_batch):
    if len(unit) == 1:
        return ex.submit(_ConfigJob(), configs[unit[0][0]], cache, seed_batch)
    return ex.submit(_GroupJob(), [configs[ix[0]] for ix in unit], cache, seed_batch)


def _serial(configs, cache_dir, progress, seed_batch, fail, deliver, stack: bool = True, groups: Optional[list] = None) -> None:
    same: Dict[str, List[int]] = collections.defaultdict(list)
    for i, cfg in enumerate(configs):
        same[cache_key(cfg)].append(i)
    pending = []
    for indices in same.values():
        df = None if cache_dir is False else cached_result(configs[indices[0]], cache_dir)
        if df is None:
            pending.append(indices)
        else:  # finished before: read, never recomputed
            for i in indices:
                deliver(i, df)
    for unit in _units(configs, pending, stack, seed_batch, groups):
        if len(unit) > 1:
            cfgs = [configs[ix[0]] for ix in unit]
            try:
                tables = stacking.run_group(cfgs, cache_dir=cache_dir, progress=progress)
            except Exception as err:  # noqa: BLE001 - the configurations run one by one instead (Ctrl-C still stops)
                warnings.warn(f"the stacked group of {len(cfgs)} configurations ({describe(cfgs[0])}, ...) failed "
                              f"({_one_line(err)}); running them one by one", RuntimeWarning, stacklevel=4)  # fmt: skip
            else:
                for ix, (df, _, _) in zip(unit, tables):
                    for i in ix:
                        deliver(i, df)
                continue
        for ix in unit:
            try:
                df = run(configs[ix[0]], cache_dir=cache_dir, progress=progress, seed_batch=seed_batch).rows
            except Exception as err:  # recorded; the next configuration runs (Ctrl-C still stops the sweep)
                for i in ix:
                    fail(i, _one_line(err))
                continue
            for i in ix:
                deliver(i, df)


def _kill_record_path(folder: "os.PathLike[str] | str", job_id: str) -> Path:
    return Path(folder) / f"{job_id}.killed"


def _record_kills(job_id_folder: Optional[Path]) -> None:
    """In a worker: write which catchable signal ended it (SIGTERM, SIGINT, SIGHUP) before it dies of it."""
    if job_id_folder is None:
        return

    def handler(signum, frame):
        try:
            job_id_folder.write_text(signal_name(signum))
        except OSError:
            pass
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def _read_kill_record(job) -> Optional[str]:
    try:
        return _kill_record_path(job.paths.folder, str(job.job_id)).read_text().strip() or None
    except OSError:
        return None


def _wait_process(job, seconds: float = 10.0) -> None:
    """Wait (at most ``seconds``) for a cancelled local job's controller to end."""
    process = getattr(job, "_process", None)
    if process is None:
        return
    try:
        process.wait(timeout=seconds)
    except Exception:  # noqa: BLE001 - a controller that will not end is left to the OS
        pass


def _job_error(err: Optional[BaseException]) -> str:
    """One line from a job's exception (submitit wraps the job's traceback in FailedJobError)."""
    if err is None:
        return "no result in the cache"
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    # the last line of the remote traceback is "ExcType: message"
    return lines[-1] if lines else type(err).__name__


def _collect(configs: Sequence[Config], results: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    from .run import RESULT_COLUMNS

    done = [results[i] for i in range(len(configs)) if i in results]
    if not done:
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    return pd.concat(done, ignore_index=True)
