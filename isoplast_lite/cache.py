"""The runner's disk cache: keys, entries, checksums and resume checkpoints.

Nothing read back from the cache is trusted: every file has a SHA-256 sidecar written *after*
the file (``result.csv.sha256``, ``sha256sum -c`` format) and checked before the file is used;
a file without its sidecar counts as corrupt. A corrupt entry or checkpoint is recomputed with
a one-line ``RuntimeWarning``, never served and never executed.

**What a key covers** (:func:`key_parts`; :func:`cache_key` is the SHA-256 of their canonical
JSON):

- ``config``: :meth:`isoplast_lite.run.Config.to_json`, every run field, the method's name,
  ``version`` and settings (no other method's);
- ``library``: ``isoplast_lite.__version__``;
- ``method``: the method's identity: its module, qualified name and the SHA-256 of the source
  of every class of its method resolution order up to :class:`isoplast_lite.methods.Method`
  (the bytecode when the source is not available), so a method re-registered under a known
  name, or edited without a version bump, gets another key;
- ``code``: :func:`code_hash`, the SHA-256 of the source of the library modules that compute
  results (:data:`CODE_MODULES`: the engine, the runner, the measurement, the tasks, the
  methods and what they train with). Any edit of them, a comment included, changes every key.

**Checkpoints** are data only: a dict of tensors and plain Python values (numbers, strings,
lists, dicts) written with ``torch.save`` and read with ``torch.load(weights_only=True)``,
which refuses anything else (a pickled object that would run code on load), after the sidecar
checksum has matched.

Example:
    >>> import tempfile, warnings
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> save_checkpoint(folder / "c.ckpt", {"schema": 1, "key": "k", "w": torch.ones(2)})
    >>> load_checkpoint(folder / "c.ckpt", "k", schema=1)["w"].tolist()
    [1.0, 1.0]
    >>> (folder / "c.ckpt.sha256").unlink()  # no checksum: not resumed
    >>> with warnings.catch_warnings(record=True):
    ...     load_checkpoint(folder / "c.ckpt", "k", schema=1) is None
    True
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import pandas as pd
import torch

from . import __version__, files

__all__ = [
    "CODE_MODULES", "code_hash", "method_identity", "key_parts", "cache_key", "default_cache_dir",
    "write_entry", "load_entry", "save_checkpoint", "load_checkpoint", "remove_entry_file",
]  # fmt: skip

#: the library modules whose source is in every key: what computes a result row
CODE_MODULES = (
    "config", "diagnostics", "engine", "entk", "interventions", "isometry", "jacobians", "measure",
    "methods", "nn", "optim", "run", "seeding", "settings", "stacking", "tasks", "units",
)  # fmt: skip
_PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def code_hash() -> str:
    """SHA-256 of the source of :data:`CODE_MODULES` (line endings normalized), in that order.

    Example:
        >>> len(code_hash())
        64
    """
    h = hashlib.sha256()
    for name in CODE_MODULES:
        data = (_PACKAGE / f"{name}.py").read_bytes().replace(b"\r\n", b"\n")
        h.update(f"{name}.py {len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()


def _class_fingerprint(cls: type) -> str:
    """The source of ``cls``, or (when Python cannot find it) its functions' bytecode and constants."""
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        parts = []
        for attr, value in sorted(vars(cls).items()):
            code = getattr(getattr(value, "__func__", value), "__code__", None)
            parts.append(f"{attr}:{code.co_code.hex()}:{code.co_consts!r}" if code is not None else f"{attr}:{value!r}")
        return "\n".join(parts)


def method_identity(name: str) -> Dict[str, str]:
    """What identifies the code of registered method ``name``: ``module``, ``qualname`` and
    ``source`` (SHA-256 of the source of every class of its MRO below ``Method``).

    Example:
        >>> sorted(method_identity("adam"))
        ['module', 'qualname', 'source']
    """
    from .methods import Method, method_class

    cls = method_class(name)
    h = hashlib.sha256()
    for klass in cls.__mro__:
        if klass is Method or klass is object:
            break
        h.update(f"{klass.__module__}.{klass.__qualname__}\n{_class_fingerprint(klass)}\n".encode())
    return {"module": cls.__module__, "qualname": cls.__qualname__, "source": h.hexdigest()}


def key_parts(cfg) -> Dict[str, object]:
    """Everything a result's cache key covers (see the module docstring)."""
    return {"config": json.loads(cfg.to_json()), "library": __version__, "method": method_identity(cfg.method), "code": code_hash()}


def cache_key(cfg) -> str:
    """SHA-256 of the canonical JSON of :func:`key_parts` of ``cfg`` (an :class:`isoplast_lite.run.Config`)."""
    return hashlib.sha256(json.dumps(key_parts(cfg), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$ISOPLAST_CACHE`` or ``~/.cache/isoplast``."""
    return Path(os.environ.get("ISOPLAST_CACHE", Path.home() / ".cache" / "isoplast"))


def _write_verified(path: Path, data: bytes) -> None:
    """``data`` into ``path`` atomically, then its SHA-256 sidecar (so a sidecar never vouches for a partial file)."""
    files.atomic_write(path, lambda h: h.write(data))  # a full disk: a WriteError naming the file
    files.write_checksum(path, data)


def _read_verified(path: Path) -> bytes:
    """The bytes of ``path`` if they match its sidecar; ``ValueError`` otherwise (a missing sidecar included)."""
    data = path.read_bytes()
    ok = files.verify_checksum(path, data)
    if ok is None:
        raise ValueError(f"no checksum {files.checksum_path(path).name}: unverifiable")
    if not ok:
        raise ValueError(f"its content does not match its checksum {files.checksum_path(path).name}: edited or damaged")
    return data


def remove_entry_file(path: Path) -> None:
    """Remove a cache file and its sidecar (missing ones are fine)."""
    path.unlink(missing_ok=True)
    files.checksum_path(path).unlink(missing_ok=True)


def write_entry(path: Path, df: pd.DataFrame) -> None:
    """Write a cache CSV atomically, then its SHA-256 sidecar."""
    _write_verified(path, df.to_csv(index=False).encode())


def load_entry(path: Path, n_rows: int, columns: Sequence[str], normalize: Optional[Callable[[pd.DataFrame], pd.DataFrame]] = None,
               *, stacklevel: int = 3) -> Optional[pd.DataFrame]:  # fmt: skip
    """A cached CSV of ``n_rows`` rows and ``columns`` whose bytes match its sidecar, or ``None``
    (missing; or corrupt: then removed, with a one-line warning, so the caller recomputes it).
    ``normalize`` maps the frame read before the columns are checked (older files)."""
    if not path.exists():
        return None
    try:
        df = pd.read_csv(io.BytesIO(_read_verified(path)))
        if normalize is not None:
            df = normalize(df)
        if tuple(df.columns) != tuple(columns):
            raise ValueError(f"columns {tuple(df.columns)} != {tuple(columns)}")
        if len(df) != n_rows:
            raise ValueError(f"{len(df)} rows, expected {n_rows}")
        return df
    except Exception as err:  # unreadable / wrong schema / edited / unverifiable: recompute
        warnings.warn(f"corrupt cache entry {path} ({_one_line(err)}); recomputing", RuntimeWarning, stacklevel=stacklevel)
        remove_entry_file(path)
        return None


def save_checkpoint(path: Path, state: Dict[str, object]) -> None:
    """Write ``state`` (tensors and plain values only) atomically, then its SHA-256 sidecar."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _write_verified(path, buffer.getvalue())


def load_checkpoint(path: Path, key: str, *, schema: int, stacklevel: int = 3) -> Optional[dict]:
    """The checkpoint at ``path`` if its bytes match its sidecar and it holds data only
    (``torch.load(weights_only=True)``) of ``schema`` and ``key``; otherwise ``None`` (it is
    removed with a one-line warning and the run restarts: nothing in it is executed)."""
    if not path.exists():
        return None
    try:
        data = _read_verified(path)  # before any unpickling: an edited file is never parsed
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or ckpt.get("schema") != schema or ckpt.get("key") != key:
            raise ValueError("wrong schema or key")
        return ckpt
    except Exception as err:
        warnings.warn(f"corrupt checkpoint {path} ({_one_line(err)}); restarting this config", RuntimeWarning, stacklevel=stacklevel)
        remove_entry_file(path)
        return None


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
