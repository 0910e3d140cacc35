"""The measured results shipped with the package, and where they came from.

The book's chapters load precomputed runner output instead of re-training for minutes. Those files
travel *inside* the package (``isoplast_lite/data``, installed as package data), so a chapter
opened alone in Colab or Binder finds them after ``pip install isoplast_lite`` with no clone and no
network. Two groups:

* ``"book"``: the book-scale sweeps of chapters 6 and 8 (``data/book/*.csv.gz``), written by
  ``tools/precompute_book_results.py``;
* ``"long"``: the longer issue-budget runs (20 tasks x 800 steps, width 256) of chapter 8
  (``data/long/*.csv.gz``);
* ``"chain"``: the book-scale runs with per-layer tables of the chapter "Does isometry cause
  plasticity?" (``data/chain/``, written by ``tools/precompute_chain.py``; :func:`load_layers`);
* ``"retuned"``: chapter 8's streams under issue 24's tuning protocol (``data/retuned/``, written by
  ``tools/precompute_streams.py``): results, tuning runs (:func:`load_tuning`), the search log
  and the protocol table (:func:`load_table` with ``"search_file"`` / ``"protocol_file"``);
* ``"clones"``: the cloned-unit experiment of that chapter (``data/clones/``, written by
  ``tools/clone_experiment.py``; :func:`load_clones`);
* ``"interventions"``: the intervention runs of that chapter (``data/interventions/``, written by
  ``tools/intervention_runs.py``): per stream of chapter 8, the rows and per-layer tables of the
  arms that set the hidden weights' spectrum and of the controls (:func:`load`, :func:`load_layers`);
* ``"paper"``: the paper's stated setting (lr 1e-3, lambda 1e-3, 8 seeds) under both readings
  of AdamO (``data/paper/``, written by ``tools/precompute_paper_setting.py``): rows, per-layer
  tables, eNTK spectra and the hidden weights' singular values at the end of each stream
  (:func:`load_table`).

Each group has a ``manifest.json``: for every file its command, its SHA-256 (``"sha256"``: one
digest per file of the entry, checked on every load) and its **provenance** (torch
version, CPU capability, torch thread count, library version and date it was made with; see
:func:`provenance`). Float32 training is chaotic, so the same command on another CPU, thread count
or torch gives other numbers within the spread of the seeds: compare such numbers statistically
(:func:`isoplast_lite.stats.rerun_agreement`), never bit for bit.

Nothing shipped is trusted: a file whose bytes do not match the manifest's SHA-256, a manifest
entry naming a path outside its group's folder, an unreadable or truncated file, a missing
column, duplicated rows, a run with missing tasks or a method that is not registered is a one-line
:class:`CorruptResultsError` naming the file. After regenerating shipped files (the
``tools/precompute_*.py`` tools do it themselves, and after a merge) refresh every manifest's
checksums with the one command::

    python -m isoplast_lite.results --write-checksums

The few shipped files that are not a table of a manifest entry (``long/summary.csv``,
``streams/search.csv``, ``yourmodel/overhead.json``, ``portability.json``) are listed with their
command and SHA-256 in the data folder's own ``manifest.json`` (:data:`FILES`) and read with
:func:`load_file`, which checks the checksum first; ``--write-checksums`` refreshes them too.

``$ISOPLAST_RESULTS`` points the loaders at another folder holding ``book/``, ``long/``, ... and
that ``manifest.json`` (e.g. freshly regenerated files).

Example:
    >>> from isoplast_lite import results
    >>> sorted(results.manifest("book"))[:2]
    ['label-shuffle-digits', 'label-shuffle-mnist1d']
    >>> df = results.load("permuted-digits")
    >>> sorted(df.method.unique())[:3], sorted(df.iso_strength.dropna().unique().tolist())
    (['adam', 'adamo', 'adamw'], [0.1])
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path

import pandas as pd

__all__ = ["GROUPS", "FILES", "load_file", "write_file_checksum", "MissingResultsError", "CorruptResultsError", "write_checksums", "write_folder_checksums", "verify",
           "results_dir", "manifest", "load", "load_layers", "load_table", "load_tuning", "load_clones", "expand_settings",
           "provenance", "portability"]  # fmt: skip

#: the groups of shipped results (sub-folders of ``isoplast_lite/data``).
GROUPS = ("book", "long", "chain", "streams", "retuned", "clones", "interventions", "paper", "yourmodel")
_DATA = Path(__file__).resolve().parent / "data"
#: the manifest of the shipped files that are not a table of a group's entry: ``{path relative
#: to the data folder: {"command", "sha256"}}`` in ``data/manifest.json``
FILES = "manifest.json"


class MissingResultsError(FileNotFoundError):
    """A shipped result file is missing. In Jupyter it shows as one sentence, not a traceback."""

    def _render_traceback_(self):  # IPython calls this instead of printing the traceback
        return [f"{type(self).__name__}: {self}"]


class CorruptResultsError(ValueError):
    """A shipped result file fails its checks (checksum, format, columns, rows). One line in Jupyter."""

    def _render_traceback_(self):
        return [f"{type(self).__name__}: {self}"]


#: manifest keys that name a file, and the columns each kind of file must have (besides the
#: settings columns that :func:`expand_settings` adds)
_FILE_KEYS = ("file", "layers_file", "tuning_file", "spectra_file", "sv_file", "search_file", "protocol_file")


def _check_group(group: str) -> str:
    if group not in GROUPS:
        raise ValueError(f"group must be one of {list(GROUPS)}, got {group!r}")
    return group


def results_dir(group: str = "book") -> Path:
    """The folder of one group of shipped results (``$ISOPLAST_RESULTS/<group>`` if set).

    Raises:
        ValueError: ``group`` is not one of :data:`GROUPS`.
        MissingResultsError: the folder does not exist (a broken install, or a wrong
            ``$ISOPLAST_RESULTS``); the message says what to do.
    """
    _check_group(group)
    base = os.environ.get("ISOPLAST_RESULTS")
    folder = (Path(base) if base else _DATA) / group
    if not folder.is_dir():
        where = f"$ISOPLAST_RESULTS={base}" if base else "the installed isoplast_lite"
        raise MissingResultsError(
            f"{where} has no shipped results folder {group!r} ({folder}): reinstall the package with "
            "`pip install --force-reinstall isoplast_lite`, or unset ISOPLAST_RESULTS"
        )
    return folder


def manifest(group: str = "book") -> dict:
    """The manifest of a group: ``{name: {"file", "command", "provenance", ...}}``."""
    path = results_dir(group) / "manifest.json"
    if not path.is_file():
        raise MissingResultsError(f"{path} is missing: reinstall isoplast_lite, or regenerate the files "
                                  "with `python tools/precompute_book_results.py` in a clone")
    return json.loads(path.read_text(encoding="utf-8"))


def load(name: str, group: str = "book") -> pd.DataFrame:
    """Load one shipped result file as the runner's tidy DataFrame.

    Args:
        name: a key of :func:`manifest` (e.g. ``"random-label-digits"``, ``"lambda-sweep"``).
        group: ``"book"`` (chapter 6, book scale), ``"long"`` (the 20 x 800-step runs),
            ``"chain"`` (chapter 7), ``"interventions"`` (chapter 7: the arms that set the
            spectrum, on chapter 8's streams), ``"retuned"`` (chapter 8's results: six streams, every
            method tuned by issue 24's protocol), ``"streams"`` (the record of chapter 8's earlier
            protocol) or another key of :data:`GROUPS`.

    Returns:
        One row per benchmark x method x settings x seed x task: the runner's
        ``isoplast_lite.run.RESULT_COLUMNS`` plus one column per method setting
        (:func:`expand_settings`; e.g. ``iso_strength``, NaN for a method without it).

    Raises:
        TypeError: ``name`` is not a non-empty string.
        KeyError: ``name`` is not in the manifest (the message lists the names that are).
        MissingResultsError: the file listed in the manifest is missing.
    """
    return expand_settings(_float32_resolution(_read_checked(name, group, "file"), manifest(group)[name]))


def _float32_resolution(df: pd.DataFrame, entry: dict) -> pd.DataFrame:
    """Files made before issue 22 formed the eNTK in float32: their ``ntk_cond`` resolves only up to
    ``1 / ntk_resolution(1, M, float32)`` (about 5e4 for M = 160). Above it the number is
    round-off: ``ntk_resolved`` is 0.0 there ("beyond resolution"; a sentence that quotes
    such a kappa must say so). The number itself is kept as written, so the figures that take
    geometric means of it still draw (an ``inf`` has no mean); files with an ``ntk_resolved``
    column (float64 kernels, where the runner writes ``inf``) are returned unchanged."""
    if "ntk_resolved" in df.columns and df["ntk_resolved"].notna().any():
        return df
    import numpy as np
    import torch

    from .diagnostics import ntk_resolution
    from .tasks import SOURCE_SIZES, parse_benchmark

    config = entry.get("config") or {}
    probe = int(config.get("probe_size", 16))  # the runner's default probe size
    size = df["benchmark"].map(lambda b: probe * SOURCE_SIZES[parse_benchmark(b)[1]][2])
    limit = 1.0 / size.map(lambda m: ntk_resolution(1.0, int(m), torch.float32))  # the largest resolved kappa
    measured = df["ntk_cond"].notna()
    resolved = measured & (df["ntk_cond"] < limit)
    df = df.copy()
    df["ntk_resolved"] = np.where(measured, resolved.astype(float), np.nan)  # 1.0 / 0.0 / NaN, as the runner writes it
    return df


def _verified_csv(name: str, group: str, key: str, **read_csv) -> pd.DataFrame:
    """The table of manifest entry ``name`` under ``key``, read only after its SHA-256 matched
    the manifest's; a file that does not parse is one :class:`CorruptResultsError` line."""
    import gzip
    import io
    import zlib

    path = _shipped_file(name, group, key)
    data = path.read_bytes()
    recorded = manifest(group)[name].get("sha256", {})
    recorded = recorded.get(key) if isinstance(recorded, dict) else None
    if recorded is None:
        raise CorruptResultsError(f"shipped file {path}: no SHA-256 in its manifest (run `python -m isoplast_lite.results --write-checksums` after regenerating it)")
    if _sha256(data) != recorded:
        raise CorruptResultsError(f"shipped file {path}: its SHA-256 does not match its manifest (edited or damaged): reinstall isoplast_lite")
    try:
        df = pd.read_csv(io.BytesIO(data), compression="gzip" if path.name.endswith(".gz") else None, **read_csv)
    except (OSError, EOFError, ValueError, UnicodeDecodeError, zlib.error, gzip.BadGzipFile) as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise CorruptResultsError(f"shipped file {path}: unreadable ({type(err).__name__}: {first})") from None
    return df


#: the groups whose ``file`` / ``layers_file`` / ``tuning_file`` hold the runner's rows (checked
#: for columns, duplicates, tasks, methods); other tables are checked by their SHA-256 alone
_RUNNER_GROUPS = ("book", "long", "chain", "streams", "retuned", "interventions", "paper")


def _read_checked(name: str, group: str, key: str) -> pd.DataFrame:
    """The runner's table of manifest entry ``name`` under ``key``: checksum, then format and shape checked."""
    from .methods import METHODS
    from .run import CONFIG_COLUMNS, LAYER_COLUMNS, LATER_LAYER_MEASURES, RESULT_COLUMNS, with_diverged_column

    path = _shipped_file(name, group, key)
    df = _verified_csv(name, group, key)
    layers = key == "layers_file"
    if not layers:
        df = with_diverged_column(df)
    # the per-layer measures added later stay absent from files written before them (not NaN)
    required = tuple(c for c in LAYER_COLUMNS if c not in LATER_LAYER_MEASURES) if layers else RESULT_COLUMNS
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CorruptResultsError(f"shipped file {path}: missing columns {missing}")
    ident = list(CONFIG_COLUMNS) + (["layer"] if layers else [])
    dup = df.duplicated(ident)
    if dup.any():
        raise CorruptResultsError(f"shipped file {path}: {int(dup.sum())} duplicated rows (same {', '.join(ident)})")
    unknown = sorted(set(df["method"].astype(str)) - set(METHODS))
    if unknown:
        raise CorruptResultsError(f"shipped file {path}: unknown methods {unknown}; allowed: registered methods")
    runs = df.groupby(["benchmark", "method", "settings", "lr", "seed"], dropna=False)["task"]
    tasks = runs.nunique()
    # every run has tasks 0 to T-1 (each once: no duplicates above), and a file's runs all have
    # the same T (tuning runs are cut at their own budgets)
    if len(tasks) and (runs.min().ne(0).any() or (runs.max() + 1).ne(tasks).any() or (tasks.nunique() > 1 and key != "tuning_file")):
        raise CorruptResultsError(f"shipped file {path}: rows missing (the runs do not all have tasks 0 to {int(tasks.max()) - 1})")
    if not layers and not df["diverged"].isin([True, False]).all():
        raise CorruptResultsError(f"shipped file {path}: column diverged holds values other than True/False")
    return df


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _shipped_file(name: str, group: str, key: str) -> Path:
    """The file that manifest entry ``name`` of ``group`` lists under ``key``, checked."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    entries = manifest(group)
    if name not in entries:
        raise KeyError(f"no shipped result {name!r} in group {group!r}; available: {sorted(entries)}")
    if key not in entries[name]:
        what = {"layers_file": "per-layer table", "tuning_file": "tuning runs"}.get(key, key)
        raise KeyError(f"shipped result {name!r} of group {group!r} has no {what}")
    folder = results_dir(group).resolve()
    listed = entries[name][key]
    path = folder / listed if isinstance(listed, str) else None
    if path is None or not path.resolve().is_relative_to(folder) or path.resolve() == folder:
        raise CorruptResultsError(f"manifest {folder / 'manifest.json'}: entry {name!r} names {listed!r}, not a file in {folder}")
    if not path.is_file():
        raise MissingResultsError(f"{path} is missing: reinstall isoplast_lite")
    return path


def load_table(name: str, group: str, key: str, **read_csv) -> pd.DataFrame:
    """Load another table shipped beside result ``name``: the file its manifest entry lists under
    ``key`` (e.g. ``"spectra_file"`` or ``"sv_file"`` of the ``"paper"`` group), as it was
    written, after its SHA-256 matched the manifest's (``read_csv``: passed to ``pandas.read_csv``).

    Raises:
        KeyError: ``name`` is not in the manifest, or its entry lists no ``key``.
        MissingResultsError: the file is missing.
        CorruptResultsError: its checksum or format is wrong.
    """
    return _verified_csv(name, group, key, **read_csv)


def load_layers(name: str, group: str = "chain") -> pd.DataFrame:
    """Load the per-layer table shipped beside result ``name`` (``run(..., layers=True).layers``:
    one row per seed x task x block; ``isoplast_lite.run.LAYER_COLUMNS``), with
    one column per method setting (:func:`expand_settings`). A table written before a measure
    of ``isoplast_lite.run.LATER_LAYER_MEASURES`` existed (the null shares, the clone counts)
    lacks its column: it is absent, not filled with NaN or zeros.

    Raises:
        KeyError: ``name`` is not in the manifest, or has no per-layer table.
        MissingResultsError: the file listed in the manifest is missing.
    """
    return expand_settings(_read_checked(name, group, "layers_file"))


def expand_settings(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with one column per method setting, parsed from its ``settings`` column.

    The runner's rows carry each method's settings as canonical JSON (column ``settings``,
    :mod:`isoplast_lite.run`); this adds a column per setting name (``iso_strength``,
    ``shrink``, ...), NaN (or None) in the rows of methods without that setting. A setting
    whose name is already a column of ``df`` becomes ``settings.<name>``. A frame without a
    ``settings`` column (written before the column existed) is returned unchanged.

    Example:
        >>> df = pd.DataFrame({"method": ["adam", "adamo"], "settings": ["{}", '{"iso_strength":0.1}']})
        >>> expand_settings(df).iso_strength.tolist()
        [nan, 0.1]
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas.DataFrame, got {type(df).__name__}")
    if "settings" not in df.columns:
        return df
    parsed = {}
    for text in df["settings"].dropna().unique():
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            raise ValueError(f"column settings holds {text!r}, not the JSON of a method's settings") from None
        if not isinstance(value, dict):
            raise ValueError(f"column settings holds {text!r}, not a JSON object")
        parsed[text] = value
    names = list(dict.fromkeys(k for v in parsed.values() for k in v))
    out = df.copy()
    for name in names:
        column = name if name not in df.columns else f"settings.{name}"
        out[column] = df["settings"].map(lambda t, n=name: parsed.get(t, {}).get(n, float("nan")))
    return out


def portability() -> dict:
    """How far re-runs of shipped entries moved on other CPU kernels and thread counts (measured).

    Written by ``tools/measure_portability.py``: per setting (native or portable kernels,
    1 or 2 threads) and re-run entry, whether every comparison was consistent
    (:func:`isoplast_lite.stats.rerun_agreement`), whether it was bit-identical, and per metric
    the largest per-seed difference and the largest share of the statistical bound used.
    """
    return load_file("portability.json")


def provenance(threads: "int | None" = None) -> dict:
    """What a result is made with: torch, CPU capability, threads, library version, date.

    Args:
        threads: the torch thread count of the run (default: ``torch.get_num_threads()`` now).

    Returns:
        A JSON-ready dict with keys ``torch``, ``cpu_capability`` (PyTorch's kernel family,
        e.g. ``"AVX512"``, ``"AVX2"`` or ``"DEFAULT"``; ``$ATEN_CPU_CAPABILITY`` lowers it),
        ``threads``, ``isoplast_lite``, ``python``, ``machine`` and ``date`` (UTC, ISO 8601).

    Example:
        >>> sorted(provenance())
        ['cpu_capability', 'date', 'isoplast_lite', 'machine', 'python', 'threads', 'torch']
    """
    import torch

    from . import __version__

    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": int(torch.get_num_threads() if threads is None else threads),
        "isoplast_lite": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def load_tuning(name: str, group: str = "streams") -> pd.DataFrame:
    """Load the tuning runs shipped beside result ``name`` (``tools/precompute_streams.py``:
    every value of each method's grid, on the tuning seeds over the tuning horizon its manifest
    states), with one column per method setting (:func:`expand_settings`).

    Raises:
        KeyError: ``name`` is not in the manifest, or has no tuning runs.
        MissingResultsError: the file listed in the manifest is missing.
    """
    return expand_settings(_read_checked(name, group, "tuning_file"))




def load_clones(name: str = "clone-experiment") -> pd.DataFrame:
    """Load the cloned-unit experiment (``tools/clone_experiment.py``, group ``"clones"``): one
    row per seed x condition (``exact`` / ``near`` copies) x optimizer x step x hidden layer x
    planted pair, with the pair's relative weight and activation distances, whether it is still
    a clone, and the isometry gradient's growth rates and prediction (the tool's docstring).

    Raises:
        KeyError: ``name`` is not in the manifest.
        MissingResultsError: the file listed in the manifest is missing.
    """
    return _verified_csv(name, "clones", "file")


def _files_manifest(base: "Path | None" = None) -> dict:
    path = _base(base) / FILES
    if not path.is_file():
        raise MissingResultsError(f"{path} is missing: reinstall isoplast_lite")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CorruptResultsError(f"manifest {path}: unreadable ({type(err).__name__})") from None
    if not isinstance(entries, dict):
        raise CorruptResultsError(f"manifest {path}: not a JSON object")
    return entries


def _loose_file(name: str, base: "Path | None" = None) -> Path:
    """The shipped file ``name`` of :data:`FILES` (a path relative to the data folder), checked to be there."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    entries = _files_manifest(base)
    if name not in entries:
        raise KeyError(f"no shipped file {name!r} in {FILES}; available: {sorted(entries)}")
    folder = _base(base).resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder) or path == folder or name == FILES:
        raise CorruptResultsError(f"manifest {folder / FILES}: names {name!r}, not a file in {folder}")
    if not path.is_file():
        raise MissingResultsError(f"{path} is missing: reinstall isoplast_lite")
    return path


def load_file(name: str):
    """A shipped file that is not a table of a manifest entry, after its SHA-256 matched the one
    recorded in the data folder's ``manifest.json`` (:data:`FILES`): a ``pandas.DataFrame`` for
    ``.csv`` and ``.csv.gz``, the parsed JSON for ``.json``.

    Args:
        name: its path relative to the data folder, e.g. ``"streams/search.csv"``.

    Raises:
        KeyError: ``name`` is not listed (the message lists the files that are).
        MissingResultsError: the file is missing.
        CorruptResultsError: its bytes do not match the checksum, or it does not parse.

    Example:
        >>> sorted(load_file("portability.json"))[:1]
        ['entries']
        >>> list(load_file("long/summary.csv").columns[:2])
        ['benchmark', 'method']
    """
    import gzip
    import io
    import zlib

    path = _loose_file(name)
    data = path.read_bytes()
    recorded = _files_manifest()[name].get("sha256") if isinstance(_files_manifest()[name], dict) else None
    if not isinstance(recorded, str):
        raise CorruptResultsError(f"shipped file {path}: no SHA-256 in {_base(None) / FILES} (run `python -m isoplast_lite.results --write-checksums` after regenerating it)")
    if _sha256(data) != recorded:
        raise CorruptResultsError(f"shipped file {path}: its SHA-256 does not match {_base(None) / FILES} (edited or damaged): reinstall isoplast_lite")
    try:
        if name.endswith(".json"):
            return json.loads(data.decode("utf-8"))
        return pd.read_csv(io.BytesIO(data), compression="gzip" if name.endswith(".gz") else None)
    except (OSError, EOFError, ValueError, UnicodeDecodeError, zlib.error, gzip.BadGzipFile) as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise CorruptResultsError(f"shipped file {path}: unreadable ({type(err).__name__}: {first})") from None


def _write_file_checksums(base: Path, under: "str | None" = None) -> int:
    """:func:`write_file_checksum` of every file of :data:`FILES` (only those in folder ``under``, if given)."""
    if not (base / FILES).is_file():
        return 0
    names = [n for n in _files_manifest(base) if under is None or n.startswith(under + "/")]
    for name in names:
        write_file_checksum(name, base=base)
    return len(names)


def write_file_checksum(name: str, *, base: "os.PathLike[str] | str | None" = None) -> str:
    """Record in the data folder's ``manifest.json`` (:data:`FILES`) the SHA-256 of the listed
    file ``name`` as it is now (what the tools that write such a file call after writing it);
    returns the digest. Trusts the file: call it only on a file you made.

    Raises:
        KeyError: ``name`` is not listed in :data:`FILES` (list it there first, with its command).
    """
    from .files import atomic_write

    folder = _base(base)
    entries = _files_manifest(folder)
    digest = _sha256(_loose_file(name, folder).read_bytes())
    entries[name]["sha256"] = digest
    text = json.dumps(entries, indent=2) + "\n"
    atomic_write(folder / FILES, lambda h: h.write(text.encode()))
    return digest


def write_checksums(groups=None, *, base: "os.PathLike[str] | str | None" = None) -> dict:
    """Record in each manifest the SHA-256 of every file its entries name (``entry["sha256"]``).

    The one command to run after regenerating shipped files or merging branches that did:
    ``python -m isoplast_lite.results --write-checksums``. It trusts the files as they are, so
    run it only on files you made.

    Args:
        groups: names of :data:`GROUPS` (default all that exist).
        base: the data folder (default: ``$ISOPLAST_RESULTS`` or the package's).

    Returns:
        ``{group: number of files checksummed}`` (each group's files of :data:`FILES` included;
        without ``groups``, also ``{"manifest.json": n}``: every file :data:`FILES` lists).
    """
    top = groups is None
    groups = [g for g in GROUPS if (_base(base) / g / "manifest.json").is_file()] if groups is None else [_check_group(g) for g in groups]
    counts = {group: write_folder_checksums(_base(base) / group) for group in groups}
    if top:
        counts[FILES] = _write_file_checksums(_base(base))
    return counts


def write_folder_checksums(folder: "os.PathLike[str] | str") -> int:
    """:func:`write_checksums` of one folder holding a ``manifest.json`` (what the
    ``tools/precompute_*.py`` tools call after writing theirs); returns the files checksummed."""
    from .files import atomic_write

    folder = Path(folder).resolve()
    path = folder / "manifest.json"
    entries = json.loads(path.read_text(encoding="utf-8"))
    count = 0
    for name, entry in entries.items():
        sums = {}
        for key in _FILE_KEYS:
            if key in entry:
                target = (folder / entry[key]).resolve()
                if not target.is_relative_to(folder) or not target.is_file():
                    raise CorruptResultsError(f"manifest {path}: entry {name!r} names {entry[key]!r}, not a file in {folder}")
                sums[key] = _sha256(target.read_bytes())
                count += 1
        entry["sha256"] = sums
    text = json.dumps(entries, indent=2) + "\n"
    atomic_write(path, lambda h: h.write(text.encode()))
    return count + _write_file_checksums(folder.parent, under=folder.name)  # its files listed in the data folder's manifest


def verify(groups=None) -> int:
    """Load every shipped file of ``groups`` (default all) with every check; returns how many passed.

    Raises:
        CorruptResultsError: the first file that fails, named.
    """
    n = 0
    for name in _files_manifest():
        if groups is None or name.split("/")[0] in groups:
            load_file(name)
            n += 1
    for group in GROUPS if groups is None else groups:
        for name, entry in manifest(group).items():
            for key in _FILE_KEYS:
                if key in entry:
                    if group in _RUNNER_GROUPS and key in ("file", "layers_file", "tuning_file"):
                        _read_checked(name, group, key)
                    else:
                        _verified_csv(name, group, key)
                    n += 1
    return n


def _base(base) -> Path:
    if base is not None:
        return Path(base)
    env = os.environ.get("ISOPLAST_RESULTS")
    return Path(env) if env else _DATA


def _main(argv=None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m isoplast_lite.results", description="Checksums of the shipped result files.")
    p.add_argument("--write-checksums", action="store_true", help="record every shipped file's SHA-256 in its manifest")
    p.add_argument("--verify", action="store_true", help="load every shipped file with all checks")
    p.add_argument("--group", nargs="+", choices=GROUPS, default=None)
    args = p.parse_args(argv)
    if not (args.write_checksums or args.verify):
        p.error("give --write-checksums or --verify")
    try:
        if args.write_checksums:
            for group, n in write_checksums(args.group).items():
                print(f"{group}: {n} checksums written")
        if args.verify:
            print(f"{verify(args.group)} shipped files verified")
    except (CorruptResultsError, MissingResultsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
