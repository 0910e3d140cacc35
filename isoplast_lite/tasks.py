"""Data sources and continual-learning task streams.

Sources (``SOURCES``):

* ``"digits"``: scikit-learn's ``load_digits`` (1797 real 8x8 handwritten digits shipped with
  scikit-learn, 64 features). Embedded, works offline. Fixed split: 1437 train / 360 test
  (a permutation drawn with seed 0).
* ``"mnist1d"``: MNIST-1D (Greydanus 2020), generated procedurally by the ``mnist1d`` package
  with its default arguments (``get_dataset_args()``, seed 42: 4000 train / 1000 test, 40
  features). Never downloaded.
* ``"mnist"``, ``"fashion-mnist"``: the IDX files, downloaded once into a cache folder
  (``ISOPLAST_DATA`` or ``~/.cache/isoplast/data``), SHA-256 verified, written atomically.
  Without a network a ``RuntimeError`` names the offline sources.
* ``"cifar10"``: CIFAR-10 (Krizhevsky 2009), 50000 train / 10000 test colour images of 32x32
  pixels, 10 classes. The archive ``cifar-10-python.tar.gz`` (from
  https://www.cs.toronto.edu/~kriz/, 170 MB; SHA-256 ``6d958be0...b5c001ce``, published MD5
  ``c58f30108f718f92721af3b95e74349a``) is downloaded once into the same cache folder,
  SHA-256 verified and written atomically like the IDX files. Only the six members
  ``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5`` and ``test_batch`` are read,
  straight from the archive into memory (nothing is extracted, so no member name can write
  outside the cache), and unpickled with an allow-list of globals (only what a numpy array
  needs). Each image is flattened to 3072 features in the file's channel-major order (1024 red,
  1024 green, 1024 blue values), scaled to ``[0, 1]`` and kept in float32 (the full training
  split is 600 MB). Needs a network for the one-time download.

Every source is standardized to zero mean and unit variance over all training pixels (one
scalar mean and standard deviation, so constant border pixels stay harmless; for CIFAR-10 too,
the same global statistics over all three channels, as for the grey-level MNIST images).

Streams (``STREAMS``), each deterministic given its ``seed``:

* ``"permuted"``: task ``t`` applies a fixed random permutation of the input features to every
  image; task 0 is the identity (the original images). Held-out accuracy on the permuted test
  split.
* ``"random-label"``: the same ``n_train`` images every task, with fresh uniformly random labels
  per task (memorization, Zhang et al. 2017). No held-out set: the measure is train accuracy.
* ``"label-shuffle"``: task ``t`` relabels every class through a fixed random permutation of
  the classes; task 0 is the identity. Held-out accuracy on the relabelled test split.

Within a task, minibatches come from epoch-wise reshuffles of the ``n_train`` images drawn with a
generator seeded by ``(seed, task)``, so data order depends only on the seed and the task index.

Example:
    >>> stream = make_stream("random-label-digits", seed=0, n_tasks=2, n_train=64)
    >>> task = stream.task(1)
    >>> tuple(task.x_train.shape), task.x_test is None
    ((64, 64), True)
    >>> task.batch_indices(steps=3, batch_size=8).shape
    torch.Size([3, 8])
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from . import files
from .seeding import seeded_generator
from ._validation import check_choice, check_int

__all__ = [
    "SOURCES",
    "OFFLINE_SOURCES",
    "SOURCE_SIZES",
    "STREAMS",
    "BENCHMARKS",
    "DataSource",
    "Task",
    "TaskStream",
    "load_source",
    "fetch_source",
    "load_idx",
    "parse_benchmark",
    "make_stream",
    "data_dir",
]

SOURCES = ("digits", "mnist1d", "mnist", "fashion-mnist", "cifar10")
OFFLINE_SOURCES = ("digits", "mnist1d")
STREAMS = ("random-label", "permuted", "label-shuffle")
BENCHMARKS = tuple(f"{stream}-{source}" for source in SOURCES for stream in STREAMS)
# (training images, input features, classes) of each source, known without loading it (the
# runner checks n_train and memory before any work; a test checks them against the loaders).
SOURCE_SIZES = {"digits": (1437, 64, 10), "mnist1d": (4000, 40, 10), "mnist": (60000, 784, 10),
                "fashion-mnist": (60000, 784, 10), "cifar10": (50000, 3072, 10)}  # fmt: skip

# Files of the IDX sources: (file name, SHA-256 of the gzip file as published).
# The hashes are those recorded by TFDS/Keras (MNIST) and Zalando Research (Fashion-MNIST).
_IDX_SOURCES: Dict[str, Dict[str, object]] = {
    "mnist": {
        "mirrors": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        "files": {
            "train_images": ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        },
    },
    "fashion-mnist": {
        "mirrors": (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        "files": {
            "train_images": ("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        },
    },
}

# Archive sources: one tar.gz file (name, SHA-256) and its mirrors. The authors' page gives only
# the MD5 of the CIFAR-10 archive (c58f30108f718f92721af3b95e74349a); the SHA-256 below is the
# one recorded for that same file by common data loaders, and is what the download checks.
_ARCHIVE_SOURCES: Dict[str, Dict[str, object]] = {
    "cifar10": {
        "mirrors": ("https://www.cs.toronto.edu/~kriz/",),
        "file": ("cifar-10-python.tar.gz", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    },
}
_CIFAR10_TRAIN = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST = "cifar-10-batches-py/test_batch"

# Distinct salts so that the draws of one (seed, task) never share a stream.
_SALT_SUBSET, _SALT_TASK, _SALT_BATCH = 1, 2, 3


def _generator(seed: int, task: int, salt: int) -> torch.Generator:
    """A CPU generator seeded by ``(seed, task, salt)`` (:func:`isoplast_lite.seeding.seeded_generator`)."""
    return seeded_generator(seed, task, salt)


@dataclass(frozen=True)
class DataSource:
    """A standardized classification data set.

    Attributes:
        name: one of ``SOURCES``.
        x_train: training inputs, shape ``(N, D)``, float32.
        y_train: training labels, shape ``(N,)``, int64 in ``[0, n_classes)``.
        x_test: held-out inputs, shape ``(M, D)``.
        y_test: held-out labels, shape ``(M,)``.
        n_classes: number of classes.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def in_dim(self) -> int:
        """Number of input features ``D``."""
        return int(self.x_train.shape[1])


def data_dir() -> Path:
    """The folder where downloaded data sets are kept (``ISOPLAST_DATA`` or ``~/.cache/isoplast/data``)."""
    return Path(os.environ.get("ISOPLAST_DATA", Path.home() / ".cache" / "isoplast" / "data"))


def _standardize(x_train: np.ndarray, x_test: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scale both splits by the scalar mean and std of all training values (float64 statistics).

    The arithmetic stays in the inputs' float type (float32 inputs are not copied to float64).
    """
    mean, std = float(x_train.mean(dtype=np.float64)), float(x_train.std(dtype=np.float64))
    to = lambda a: torch.from_numpy(((a - mean) / std).astype(np.float32))  # noqa: E731
    return to(x_train), to(x_test)


def _load_digits() -> DataSource:
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = data.data.astype(np.float64), data.target.astype(np.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).numpy()
    test, train = order[:360], order[360:]
    x_train, x_test = _standardize(x[train], x[test])
    return DataSource("digits", x_train, torch.from_numpy(y[train]), x_test, torch.from_numpy(y[test]), 10)


def _load_mnist1d() -> DataSource:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:  # pragma: no cover - mnist1d is in requirements.txt
        raise ImportError("the 'mnist1d' source needs the mnist1d package: pip install mnist1d") from err
    # make_dataset seeds numpy's *global* RNG (mnist1d.utils.set_seed); restore it afterwards
    # so loading data never changes anybody else's random stream.
    state = np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())  # default args, seed 42, no download
    finally:
        np.random.set_state(state)
    # The package already centres and scales the whole data set; standardize on train anyway.
    x_train, x_test = _standardize(np.asarray(data["x"], np.float64), np.asarray(data["x_test"], np.float64))
    y_train = torch.from_numpy(np.asarray(data["y"], np.int64))
    y_test = torch.from_numpy(np.asarray(data["y_test"], np.int64))
    return DataSource("mnist1d", x_train, y_train, x_test, y_test, 10)


def load_idx(path: "os.PathLike[str] | str") -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) of unsigned bytes into a numpy array.

    Args:
        path: the ``.idx`` or ``.gz`` file.

    Returns:
        A ``uint8`` array whose shape is the one stored in the header.

    Raises:
        ValueError: when the header is not an unsigned-byte IDX header or the payload size
            does not match it.

    Example:
        >>> import tempfile, struct, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.idx"
        >>> _ = p.write_bytes(struct.pack(">HBBI", 0, 8, 1, 3) + bytes([1, 2, 3]))
        >>> load_idx(p).tolist()
        [1, 2, 3]
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4:
        raise ValueError(f"path {str(path)!r} is not an IDX file: only {len(raw)} bytes")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim < 1:
        raise ValueError(f"path {str(path)!r} is not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    payload = raw[4 + 4 * ndim :]
    if len(payload) != int(np.prod(shape)):
        raise ValueError(f"path {str(path)!r}: header shape {shape} needs {int(np.prod(shape))} bytes, found {len(payload)}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _keep_aside(path: Path, dest: Path, why: str) -> Path:
    """Rename a file that failed verification to ``{dest}.failed-sha256`` and warn where and why."""
    aside = dest.with_name(dest.name + ".failed-sha256")
    os.replace(path, aside)
    warnings.warn(f"{why}; kept aside as {aside} (delete it when you no longer need it)", RuntimeWarning, stacklevel=4)
    return aside


def _fetch(name: str, file_name: str, sha256: str, mirrors: Tuple[str, ...], folder: Path, download: bool) -> Path:
    """Return the verified local copy of one file, downloading it once (atomically) if needed.

    A local copy or a download that fails its SHA-256 check is never deleted: it is renamed to
    ``{file_name}.failed-sha256`` (replacing an earlier one) with a warning saying where and why.
    Partial downloads of interrupted runs (``.{file_name}~...part``) are removed first.
    """
    dest = folder / file_name
    files.clean_stale_temps(folder, target=file_name)
    aside = None
    if dest.exists():
        got = _sha256(dest)
        if got == sha256:
            return dest
        aside = _keep_aside(dest, dest, f"{dest} failed its SHA-256 check (got {got}, expected {sha256}): a partial or damaged copy")
    if not download:
        if aside is not None:
            raise RuntimeError(f"{file_name} of {name!r} in {folder} failed its SHA-256 check (kept aside as {aside}) and download=False")
        raise RuntimeError(f"{file_name} of {name!r} is not in {folder} and download=False")
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in mirrors:
        url = mirror + file_name
        tmp = files.new_temp(dest, ".part")
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
            got = _sha256(tmp)
            if got != sha256:
                aside = _keep_aside(tmp, dest, f"the download of {url} failed its SHA-256 check (got {got}, expected {sha256})")
                errors.append(f"{url}: SHA-256 {got} != expected {sha256} (kept aside as {aside})")
                continue
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, OSError) as err:
            errors.append(f"{url}: {err}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError(
        f"could not download {file_name} of the {name!r} data set (no network?). Tried:\n  "
        + "\n  ".join(errors)
        + f"\nThe offline sources {OFFLINE_SOURCES} need no download; or place the verified file in {folder}."
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers, bytes, numbers and numpy arrays (no other globals)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _read_cifar_batch(archive: tarfile.TarFile, member_name: str, path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch member into memory: ``(data (N, 3072) uint8, labels (N,) int64)``."""
    try:
        member = archive.getmember(member_name)
    except KeyError:
        raise ValueError(f"path {str(path)!r} is not a CIFAR-10 archive: member {member_name!r} is missing") from None
    if not member.isfile():
        raise ValueError(f"path {str(path)!r}: member {member_name!r} is not a regular file")
    handle = archive.extractfile(member)
    if handle is None:  # pragma: no cover - a regular file always has a payload
        raise ValueError(f"path {str(path)!r}: member {member_name!r} cannot be read")
    with handle:
        batch = _ArrayUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"path {str(path)!r}: member {member_name!r} has no b'data' and b'labels' entries")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise ValueError(
            f"path {str(path)!r}: member {member_name!r} holds data {data.dtype} {data.shape} and labels "
            f"{labels.shape}; expected uint8 (N, 3072) and (N,)"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"path {str(path)!r}: member {member_name!r} has labels outside [0, 10)")
    return data, labels


def _load_cifar10(root: Optional[Path], download: bool) -> DataSource:
    name = "cifar10"
    spec = _ARCHIVE_SOURCES[name]
    file_name, sha = spec["file"]
    folder = (Path(root) if root is not None else data_dir()) / name
    path = _fetch(name, file_name, sha, tuple(spec["mirrors"]), folder, download)
    with tarfile.open(path, "r:gz") as archive:  # members are read into memory, never extracted
        train = [_read_cifar_batch(archive, member, path) for member in _CIFAR10_TRAIN]
        test_data, test_labels = _read_cifar_batch(archive, _CIFAR10_TEST, path)
    scale = lambda a: a.astype(np.float32) / np.float32(255.0)  # noqa: E731 - float32: 600 MB, not 1.2 GB
    x_train, x_test = _standardize(scale(np.concatenate([d for d, _ in train])), scale(test_data))
    y_train = torch.from_numpy(np.concatenate([labels for _, labels in train]))
    return DataSource(name, x_train, y_train, x_test, torch.from_numpy(test_labels), 10)


def _load_idx_source(name: str, root: Optional[Path], download: bool) -> DataSource:
    spec = _IDX_SOURCES[name]
    folder = (Path(root) if root is not None else data_dir()) / name
    arrays = {
        key: load_idx(_fetch(name, file_name, sha, tuple(spec["mirrors"]), folder, download))
        for key, (file_name, sha) in spec["files"].items()
    }
    flat = lambda a: a.reshape(a.shape[0], -1).astype(np.float64) / 255.0  # noqa: E731
    x_train, x_test = _standardize(flat(arrays["train_images"]), flat(arrays["test_images"]))
    y_train = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    y_test = torch.from_numpy(arrays["test_labels"].astype(np.int64))
    return DataSource(name, x_train, y_train, x_test, y_test, 10)


def fetch_source(name: str, *, root: "os.PathLike[str] | str | None" = None, download: bool = True) -> None:
    """Make sure the files of source ``name`` are on disk and verified, without loading them.

    Downloads what is missing (as :func:`load_source` would); does nothing for the offline
    sources. The command line calls it for every benchmark of a sweep before training starts.

    Raises:
        ValueError: unknown ``name``. RuntimeError: a download was needed and failed.
    """
    check_choice("name", name, SOURCES)
    folder = (Path(root) if root is not None else data_dir()) / name
    if name in _IDX_SOURCES:
        spec = _IDX_SOURCES[name]
        for file_name, sha in spec["files"].values():
            _fetch(name, file_name, sha, tuple(spec["mirrors"]), folder, download)
    elif name in _ARCHIVE_SOURCES:
        spec = _ARCHIVE_SOURCES[name]
        _fetch(name, *spec["file"], tuple(spec["mirrors"]), folder, download)


def load_source(name: str, *, root: "os.PathLike[str] | str | None" = None, download: bool = True) -> DataSource:
    """Load one of ``SOURCES`` as a standardized :class:`DataSource`.

    Args:
        name: ``"digits"``, ``"mnist1d"``, ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``.
        root: folder for downloaded files (default :func:`data_dir`); ignored offline sources.
        download: allow a download when the file is not cached yet.

    Returns:
        The data set, standardized with the training statistics.

    Raises:
        ValueError: unknown ``name``.
        RuntimeError: a download was needed and failed (the message names the offline sources).
        ValueError: a verified CIFAR-10 archive lacks a batch or holds malformed arrays.

    Example:
        >>> src = load_source("digits")
        >>> tuple(src.x_train.shape), tuple(src.x_test.shape), src.n_classes
        ((1437, 64), (360, 64), 10)
    """
    check_choice("name", name, SOURCES)
    if name == "digits":
        return _load_digits()
    if name == "mnist1d":
        return _load_mnist1d()
    if name == "cifar10":
        return _load_cifar10(None if root is None else Path(root), download)
    return _load_idx_source(name, None if root is None else Path(root), download)


@dataclass(frozen=True)
class Task:
    """One task of a stream: its training set and (where defined) its held-out set.

    Attributes:
        index: task number ``t`` (0-based).
        x_train: ``(n_train, D)`` inputs. y_train: ``(n_train,)`` labels.
        x_test, y_test: held-out inputs/labels, or ``None`` (random-label streams).
        seed: the stream seed (data order depends on ``(seed, index)`` only).
    """

    index: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: Optional[torch.Tensor]
    y_test: Optional[torch.Tensor]
    seed: int

    def batch_indices(self, steps: int, batch_size: int) -> torch.Tensor:
        """Minibatch indices for ``steps`` steps: epoch-wise reshuffles, seeded by ``(seed, task)``.

        Returns:
            An int64 tensor of shape ``(steps, batch_size)`` with entries in ``[0, n_train)``.
        """
        steps = check_int("steps", steps, minimum=1)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        n = int(self.x_train.shape[0])
        g = _generator(self.seed, self.index, _SALT_BATCH)
        need = steps * batch_size
        perms = [torch.randperm(n, generator=g) for _ in range(-(-need // n))]
        return torch.cat(perms)[:need].view(steps, batch_size)


@dataclass(frozen=True)
class TaskStream:
    """A continual stream of tasks over one data source (see the module docstring).

    Attributes:
        kind: one of ``STREAMS``. source: the :class:`DataSource`. seed: stream seed.
        n_tasks: number of tasks. n_train: training images per task. subset: the indices of the
        ``n_train`` training images used (the same for every task).
    """

    kind: str
    source: DataSource
    seed: int
    n_tasks: int
    n_train: int
    subset: torch.Tensor

    @property
    def in_dim(self) -> int:
        return self.source.in_dim

    @property
    def n_classes(self) -> int:
        return self.source.n_classes

    def task(self, t: int) -> Task:
        """Build task ``t`` (deterministic given the stream seed and ``t``)."""
        t = check_int("t", t, minimum=0)
        if t >= self.n_tasks:
            raise ValueError(f"t must be < n_tasks={self.n_tasks}, got {t}")
        src = self.source
        x, y = src.x_train[self.subset], src.y_train[self.subset]
        g = _generator(self.seed, t, _SALT_TASK)
        if self.kind == "random-label":
            y = torch.randint(0, src.n_classes, (self.n_train,), generator=g)
            return Task(t, x, y, None, None, self.seed)
        if self.kind == "permuted":
            perm = torch.arange(src.in_dim) if t == 0 else torch.randperm(src.in_dim, generator=g)
            return Task(t, x[:, perm], y, src.x_test[:, perm], src.y_test, self.seed)
        # label-shuffle
        relabel = torch.arange(src.n_classes) if t == 0 else torch.randperm(src.n_classes, generator=g)
        return Task(t, x, relabel[y], src.x_test, relabel[src.y_test], self.seed)


def parse_benchmark(benchmark: str) -> Tuple[str, str]:
    """Split a benchmark name such as ``"random-label-digits"`` into ``(stream, source)``.

    Example:
        >>> parse_benchmark("label-shuffle-fashion-mnist")
        ('label-shuffle', 'fashion-mnist')
    """
    check_choice("benchmark", benchmark, BENCHMARKS)
    for stream in STREAMS:
        if benchmark.startswith(stream + "-"):
            return stream, benchmark[len(stream) + 1 :]
    raise AssertionError("unreachable")  # pragma: no cover


def make_stream(
    benchmark: str,
    *,
    seed: int,
    n_tasks: int,
    n_train: Optional[int] = 512,
    source: Optional[DataSource] = None,
    root: "os.PathLike[str] | str | None" = None,
) -> TaskStream:
    """Build the task stream of ``benchmark`` for one seed.

    Args:
        benchmark: one of ``BENCHMARKS`` (``"{stream}-{source}"``).
        seed: stream seed: the ``n_train`` subset, the per-task permutations/labels and the
            minibatch order all derive from it.
        n_tasks: number of tasks.
        n_train: training images per task (a random subset of the source's training split,
            the same for all tasks); ``None`` uses the whole split.
        source: an already loaded :class:`DataSource` (avoids reloading); must match.
        root: download folder for the downloaded sources (IDX files, the CIFAR-10 archive).

    Returns:
        A :class:`TaskStream`.
    """
    kind, source_name = parse_benchmark(benchmark)
    seed = check_int("seed", seed, minimum=0)
    n_tasks = check_int("n_tasks", n_tasks, minimum=1)
    if source is None:
        source = load_source(source_name, root=root)
    elif source.name != source_name:
        raise ValueError(f"source must be the {source_name!r} data set for benchmark {benchmark!r}, got {source.name!r}")
    total = int(source.x_train.shape[0])
    if n_train is None:
        n_train = total
    n_train = check_int("n_train", n_train, minimum=1)
    if n_train > total:
        raise ValueError(f"n_train must be <= {total} (training images of {source_name!r}), got {n_train}")
    subset = torch.randperm(total, generator=_generator(seed, 0, _SALT_SUBSET))[:n_train]
    return TaskStream(kind, source, seed, n_tasks, n_train, subset)
