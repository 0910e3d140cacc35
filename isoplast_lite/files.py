"""File helpers: safe atomic writes, leftovers of interrupted writes, checksums (used by the
package and by the tools that write shipped files).

Rules every writer of the package follows (the runner's cache, the command line's CSV and
figure files, the data downloads):

* A write is atomic: the bytes go to a temporary file beside the target, then ``os.replace``.
* A symlink is written *through*: the file it points to is replaced, the link stays.
* A path that holds something other than a regular file (a folder, a device such as
  ``/dev/null``, a FIFO, a socket) is never replaced: :func:`atomic_write` raises instead.
* Temporary files are named ``.{target}~{host}~{pid}~{token}{suffix}``, so that a later start
  can tell a leftover of an interrupted write (its process is gone) from the file of a write
  still under way in another process: :func:`clean_stale_temps` removes only the former (or,
  for files from another machine or in an unknown format, those older than a day).
* A write that fails (a full disk, a quota, a read-only or failing file system) raises
  :class:`WriteError`, an ``OSError`` whose one-line message names the file and the reason;
  the target keeps what it held and no temporary file is left.
* A file can carry a SHA-256 sidecar ``{name}.sha256`` in ``sha256sum`` format
  (:func:`write_checksum`, :func:`verify_checksum`).

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> target = atomic_write(folder / "rows.csv", lambda handle: handle.write(b"task,acc"))
    >>> write_checksum(target, target.read_bytes())
    >>> verify_checksum(target, target.read_bytes()), verify_checksum(target, b"edited")
    (True, False)
    >>> sorted(p.name for p in folder.iterdir())
    ['rows.csv', 'rows.csv.sha256']
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import logging
import os
import re
import secrets
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

__all__ = [
    "atomic_write", "WriteError", "clean_stale_temps", "file_kind", "write_target", "check_writable_folder", "check_output_file", "new_temp",
    "sha256_bytes", "checksum_path", "write_checksum", "verify_checksum", "write_csv_gz",
]  # fmt: skip

_log = logging.getLogger("isoplast_lite")
_STALE_AGE = 24 * 3600.0  # seconds: a temporary file this old is a leftover whatever its origin
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
_TEMP = re.compile(r"^\..+~(?P<host>[A-Za-z0-9_-]+)~(?P<pid>\d+)~[0-9a-f]+\.(tmp|part)$")
_OLD_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp|part)$")  # tempfile.mkstemp names of earlier versions


#: what a failed write's errno means for the user, in words (others: the system's own text)
_WRITE_FAILURES = {
    errno.ENOSPC: "no space left on the device that holds it (the disk is full)",
    errno.EDQUOT: "the disk quota is exceeded on the device that holds it",
    errno.EFBIG: "the file would be larger than the file system allows",
    errno.EROFS: "the file system that holds it is read-only",
}


class WriteError(OSError):
    """A file could not be written: ``str()`` is one line naming the file and why (``errno``
    kept; ``filename`` the file; ``__cause__`` the original error)."""

    def __str__(self) -> str:
        return str(self.strerror)


def file_kind(mode: int) -> str:
    """What an ``os.stat`` mode is, in words for an error message (``"a folder"``, ``"a FIFO"``, ...).

    Example:
        >>> file_kind(os.stat(tempfile.gettempdir()).st_mode)
        'a folder'
    """
    for test, name in ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):  # fmt: skip
        if test(mode):
            return name
    return "not a regular file"


def write_target(path: "os.PathLike[str] | str") -> Path:
    """The file a write to ``path`` replaces: the final target of a symlink, else ``path``."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _probe_folder(folder: Path) -> Optional[str]:
    """Why no file can be created in the existing folder ``folder`` (``None`` if one can)."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".isoplast-probe-")
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def check_writable_folder(name: str, folder: "os.PathLike[str] | str", *, shown: Optional[str] = None) -> Path:
    """Check that ``folder`` is, or can be created as, a folder in which files can be written.

    Creates nothing (a probe file is created and removed at once in the nearest existing
    folder). Raises ``ValueError`` naming ``name``, the path (or ``shown``) and what is allowed.
    """
    folder = Path(folder)
    shown = shown or f"{name} {str(folder)!r}"
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    try:
        mode = os.stat(existing).st_mode
    except OSError as err:
        raise ValueError(f"{shown}: {str(existing)!r} cannot be accessed ({err.strerror}); allowed: a writable folder") from None
    if not stat.S_ISDIR(mode):
        raise ValueError(f"{shown}: {str(existing)!r} is {file_kind(mode)}, not a folder; allowed: a path in a writable folder")
    problem = _probe_folder(existing)
    if problem is not None:
        raise ValueError(f"{shown}: cannot create a file in {str(existing)!r} ({problem}); allowed: a path in a writable folder")
    return folder


def check_output_file(name: str, path: "os.PathLike[str] | str") -> Path:
    """Check, before any work, that a file can be written at ``path``; return the real target.

    Allowed: a regular file that may be overwritten, or a new path whose folder exists or can
    be created, and is writable. A symlink is followed (the file it points to will be
    replaced). Raises ``ValueError`` naming ``name``, the path and what is allowed.
    """
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise ValueError(f"{name} must be a file path, got {path!r}")
    target = write_target(path)
    shown = f"{name} {str(path)!r}" + (f" (a link to {str(target)!r})" if target != Path(path) else "")
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        st = None  # a path under a file: reported by the folder check below
    except OSError as err:
        raise ValueError(f"{shown} cannot be accessed ({err.strerror}); allowed: a writable file path") from None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{shown} is {file_kind(st.st_mode)}, which is never replaced; allowed: a regular file or a new file path")
        if not os.access(target, os.W_OK):
            raise ValueError(f"{shown} is a read-only file; allowed: a writable file or a new file path")
    check_writable_folder(name, target.parent, shown=shown)
    return target


def _temp_name(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.name}~{_HOST}~{os.getpid()}~{secrets.token_hex(4)}{suffix}")


def new_temp(target: Path, suffix: str = ".tmp") -> Path:
    """Create (exclusively, mode 0666 minus the umask) an empty temporary file beside ``target``."""
    while True:
        tmp = _temp_name(target, suffix)
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue


def atomic_write(path: "os.PathLike[str] | str", write: Callable[[object], None]) -> Path:
    """Write a file atomically through ``write(handle)`` (a binary handle); return the target.

    The target is ``path`` or, for a symlink, the file it points to. An existing target keeps
    its permission bits. Raises ``ValueError`` if the target exists and is not a regular file.
    """
    target = write_target(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{str(path)!r} is {file_kind(st.st_mode)}, which is never replaced; allowed: a regular file or a new file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = new_temp(target)
    except OSError as err:
        raise _write_error(path, target, st, err) from err
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.replace(tmp, target)
    except OSError as err:
        raise _write_error(path, target, st, err) from err
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return target


def _write_error(path, target: Path, st, err: OSError) -> WriteError:
    """The :class:`WriteError` of a failed write of ``path`` (``st``: the target's stat before, if it existed)."""
    if isinstance(err, WriteError):
        return err
    shown = repr(str(path)) + (f" (a link to {str(target)!r})" if target != Path(path) else "")
    reason = _WRITE_FAILURES.get(err.errno) or err.strerror or type(err).__name__
    kept = "it keeps its previous content" if st is not None else "nothing was written"
    return WriteError(err.errno, f"cannot write {shown}: {reason}; {kept}", str(target))


def _alive(pid: int) -> bool:
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would send CTRL_C_EVENT on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: the process exists (another user's)
        return True
    return True


def _is_stale(entry: Path, now: float) -> bool:
    match = _TEMP.match(entry.name)
    if match is None and not _OLD_TEMP.match(entry.name):
        return False
    try:
        age = now - entry.lstat().st_mtime
    except OSError:
        return False
    if match is not None and match["host"] == _HOST and int(match["pid"]) != os.getpid():
        return not _alive(int(match["pid"]))
    return age > _STALE_AGE


def clean_stale_temps(folder: "os.PathLike[str] | str", target: Optional[str] = None) -> int:
    """Remove the temporary files that interrupted writes left in ``folder``; return how many.

    A temporary file is stale when the process that wrote it (same machine) no longer runs, or,
    when that cannot be told (another machine, a name from an earlier version), when it is
    older than a day. With ``target``, only the temporary files of that file name are looked
    at. Each removal is logged (logger ``isoplast_lite``, level INFO).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    prefix = None if target is None else f".{target}"
    removed = 0
    now = time.time()
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(prefix or ".") or not _is_stale(entry, now):
            continue
        try:
            entry.unlink()
        except OSError:
            continue
        removed += 1
        _log.info("removed %s, left by an interrupted write", entry)
    return removed


def write_csv_gz(path: "os.PathLike[str] | str", df, float_format: Optional[str] = None) -> Path:
    """Write the ``pandas.DataFrame`` ``df`` as a gzip-compressed CSV (no index) at ``path``,
    atomically (:func:`atomic_write`); the shipped tables' one writer (``tools/``).

    The bytes depend only on ``df`` and ``float_format`` (``df.to_csv``'s, e.g. ``"%.9g"``;
    ``None``: pandas' shortest round-trip form): the gzip header holds no time stamp and no file
    name, so the same table gives the same file and the same checksum.

    Returns:
        The file written (the target of a symlink).

    Example:
        >>> import tempfile
        >>> import pandas as pd
        >>> folder = Path(tempfile.mkdtemp())
        >>> df = pd.DataFrame({"task": [0, 1], "acc": [0.5, 2 / 3]})
        >>> a = write_csv_gz(folder / "a.csv.gz", df, float_format="%.3g").read_bytes()
        >>> time.sleep(1.1)  # a later write gives the same bytes
        >>> a == write_csv_gz(folder / "b.csv.gz", df, float_format="%.3g").read_bytes()
        True
        >>> pd.read_csv(folder / "a.csv.gz").acc.tolist()
        [0.5, 0.667]
    """
    data = df.to_csv(index=False, float_format=float_format).encode()

    def write(handle):
        with gzip.GzipFile(fileobj=handle, mode="wb", mtime=0, filename="") as g:  # mtime=0, no name: reproducible bytes
            g.write(data)

    return atomic_write(path, write)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_checksum(path: Path, data: bytes) -> None:
    """Write the sidecar ``{path}.sha256`` (``sha256sum -c`` format) for the bytes ``data``."""
    line = f"{sha256_bytes(data)}  {path.name}\n".encode()
    atomic_write(checksum_path(path), lambda h: h.write(line))


def verify_checksum(path: Path, data: bytes) -> Optional[bool]:
    """``True``/``False``: whether ``data`` (the bytes of ``path``) match its sidecar; ``None``: no sidecar."""
    sidecar = checksum_path(path)
    try:
        recorded = sidecar.read_text().split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return False
    return bool(recorded) and recorded[0] == sha256_bytes(data)
