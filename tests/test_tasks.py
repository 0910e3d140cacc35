"""Tests of isoplast_lite.tasks: sources, IDX download/cache, streams."""

import gzip
import hashlib
import struct
import urllib.error

import numpy as np
import pytest
import torch

from isoplast_lite import tasks


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture()
def fake_mnist(tmp_path, monkeypatch):
    """Small IDX gzip files served through file:// URLs, with their true SHA-256."""
    rng = np.random.default_rng(0)
    server = tmp_path / "server"
    server.mkdir()
    arrays = {
        "train_images": rng.integers(0, 256, (20, 4, 3)),
        "train_labels": rng.integers(0, 10, (20,)),
        "test_images": rng.integers(0, 256, (6, 4, 3)),
        "test_labels": rng.integers(0, 10, (6,)),
    }
    files = {}
    for key, arr in arrays.items():
        name = f"{key}.gz"
        blob = gzip.compress(_idx_bytes(arr))
        (server / name).write_bytes(blob)
        files[key] = (name, hashlib.sha256(blob).hexdigest())
    spec = {"mirrors": ("file:///nonexistent-mirror/", server.as_uri() + "/"), "files": files}
    monkeypatch.setitem(tasks._IDX_SOURCES, "mnist", spec)
    return arrays, server, tmp_path / "cache"


def test_idx_roundtrip_matches_written_array(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "a.idx"
    p.write_bytes(_idx_bytes(arr))
    np.testing.assert_array_equal(tasks.load_idx(p), arr)
    p.write_bytes(_idx_bytes(arr)[:-1])
    with pytest.raises(ValueError, match="needs 24 bytes"):
        tasks.load_idx(p)


def test_mnist_download_verifies_and_caches(fake_mnist):
    arrays, server, cache = fake_mnist
    src = tasks.load_source("mnist", root=cache)
    assert src.x_train.shape == (20, 12) and src.x_test.shape == (6, 12)
    np.testing.assert_array_equal(src.y_train.numpy(), arrays["train_labels"])
    # standardized with the training statistics (scalar)
    raw = arrays["train_images"].reshape(20, -1) / 255.0
    expected = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(src.x_train.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert not list((cache / "mnist").glob("*.part"))
    # second load works without the server: files come from the cache
    for f in server.iterdir():
        f.unlink()
    again = tasks.load_source("mnist", root=cache)
    assert torch.equal(again.x_train, src.x_train)


def test_mnist_wrong_checksum_is_rejected_and_not_kept(fake_mnist, monkeypatch):
    _, _, cache = fake_mnist
    spec = dict(tasks._IDX_SOURCES["mnist"])
    files = dict(spec["files"])
    name, _ = files["train_images"]
    files["train_images"] = (name, "0" * 64)
    spec["files"] = files
    monkeypatch.setitem(tasks._IDX_SOURCES, "mnist", spec)
    with pytest.raises(RuntimeError, match="SHA-256"), pytest.warns(RuntimeWarning, match="kept aside as"):
        tasks.load_source("mnist", root=cache)
    assert not (cache / "mnist" / name).exists()
    assert (cache / "mnist" / f"{name}.failed-sha256").exists()  # kept aside, not deleted
    assert not list((cache / "mnist").glob(".*part"))


def test_offline_error_names_offline_sources(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tasks.urllib.request, "urlopen", refuse)
    with pytest.raises(RuntimeError, match="digits.*mnist1d"):
        tasks.load_source("fashion-mnist", root=tmp_path)


def test_digits_and_mnist1d_sources():
    d = tasks.load_source("digits")
    assert d.x_train.shape == (1437, 64) and d.x_test.shape == (360, 64)
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-3
    state = np.random.get_state()[1].copy()
    m = tasks.load_source("mnist1d")
    assert np.array_equal(np.random.get_state()[1], state), "mnist1d changed numpy's global RNG"
    assert m.x_train.shape == (4000, 40) and m.x_test.shape == (1000, 40)
    assert set(m.y_train.unique().tolist()) == set(range(10))


def test_streams_deterministic_and_defined():
    src = tasks.load_source("digits")
    a = tasks.make_stream("permuted-digits", seed=3, n_tasks=3, n_train=100, source=src)
    b = tasks.make_stream("permuted-digits", seed=3, n_tasks=3, n_train=100, source=src)
    c = tasks.make_stream("permuted-digits", seed=4, n_tasks=3, n_train=100, source=src)
    for t in range(3):
        assert torch.equal(a.task(t).x_train, b.task(t).x_train)
        assert torch.equal(a.task(t).batch_indices(5, 7), b.task(t).batch_indices(5, 7))
    assert torch.equal(a.task(0).x_train, src.x_train[a.subset])  # task 0 = identity
    assert not torch.equal(a.task(1).x_train, a.task(2).x_train)
    assert not torch.equal(a.task(1).x_train, c.task(1).x_train)
    # a permutation of the features: same multiset per row
    assert torch.equal(a.task(1).x_train.sort(1).values, a.task(0).x_train.sort(1).values)
    assert torch.equal(a.task(1).x_test.sort(1).values, src.x_test.sort(1).values)

    r = tasks.make_stream("random-label-digits", seed=0, n_tasks=3, n_train=200, source=src)
    t1, t2 = r.task(1), r.task(2)
    assert t1.x_test is None and torch.equal(t1.x_train, t2.x_train)
    assert (t1.y_train != t2.y_train).float().mean() > 0.7  # fresh labels (~90% differ)

    s = tasks.make_stream("label-shuffle-digits", seed=0, n_tasks=3, n_train=200, source=src)
    y0, y1 = s.task(0).y_train, s.task(1).y_train
    mapping = {int(a_): int(b_) for a_, b_ in zip(y0, y1)}
    assert len(set(mapping.values())) == len(mapping) == 10  # a bijection of classes
    assert all(mapping[int(a_)] == int(b_) for a_, b_ in zip(s.task(0).y_test, s.task(1).y_test))


def test_batch_indices_are_epochwise():
    src = tasks.load_source("digits")
    task = tasks.make_stream("random-label-digits", seed=1, n_tasks=1, n_train=40, source=src).task(0)
    idx = task.batch_indices(steps=10, batch_size=8)  # 80 = two epochs of 40
    assert sorted(idx.flatten()[:40].tolist()) == list(range(40))
    assert sorted(idx.flatten()[40:].tolist()) == list(range(40))


def test_bad_arguments():
    with pytest.raises(ValueError, match="benchmark"):
        tasks.make_stream("random-label-cifar", seed=0, n_tasks=1)
    with pytest.raises(ValueError, match="n_train"):
        tasks.make_stream("random-label-digits", seed=0, n_tasks=1, n_train=10**6)
    with pytest.raises(ValueError, match="name"):
        tasks.load_source("imagenet")
    with pytest.raises(TypeError, match="seed"):
        tasks.make_stream("random-label-digits", seed=0.5, n_tasks=1)


# --- CIFAR-10 (a tiny fake archive with the real member names and pickle structure) ---------

import io  # noqa: E402
import pickle  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402

_CIFAR_DIR = "cifar-10-batches-py"


def _add_member(archive, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def _cifar_archive(path, batches, extra=(), symlink_test=False):
    """Write a cifar-10-python.tar.gz: ``batches`` maps member base names to (data, labels)."""
    with tarfile.open(path, "w:gz") as archive:
        for base, (data, labels) in batches.items():
            if symlink_test and base == "test_batch":
                info = tarfile.TarInfo(f"{_CIFAR_DIR}/{base}")
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                archive.addfile(info)
                continue
            # The published batches are dicts with bytes keys; labels are a list of ints.
            blob = pickle.dumps({b"batch_label": base.encode(), b"labels": [int(v) for v in labels], b"data": data, b"filenames": [b"x.png"] * len(labels)}, protocol=4)
            _add_member(archive, f"{_CIFAR_DIR}/{base}", blob)
        for name, payload in extra:
            _add_member(archive, name, payload)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def fake_cifar(tmp_path, monkeypatch):
    """A fake CIFAR-10 archive (3 images per training batch, 4 test images) served by file://."""
    rng = np.random.default_rng(1)
    batches = {f"data_batch_{i}": (rng.integers(0, 256, (3, 3072), dtype=np.uint8), rng.integers(0, 10, 3)) for i in range(1, 6)}
    batches["test_batch"] = (rng.integers(0, 256, (4, 3072), dtype=np.uint8), rng.integers(0, 10, 4))
    server = tmp_path / "server"
    server.mkdir()
    sha = _cifar_archive(server / "cifar-10-python.tar.gz", batches)
    spec = {"mirrors": ("file:///nonexistent-mirror/", server.as_uri() + "/"), "file": ("cifar-10-python.tar.gz", sha)}
    monkeypatch.setitem(tasks._ARCHIVE_SOURCES, "cifar10", spec)
    return batches, server, tmp_path / "cache"


def test_cifar10_registered_as_downloaded_source():
    assert "cifar10" in tasks.SOURCES and "cifar10" not in tasks.OFFLINE_SOURCES
    for stream in ("random-label", "permuted", "label-shuffle"):
        assert tasks.parse_benchmark(f"{stream}-cifar10") == (stream, "cifar10")
    assert tasks._ARCHIVE_SOURCES["cifar10"]["file"] == (
        "cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    )


def test_cifar10_download_shapes_standardization_and_cache(fake_cifar, monkeypatch):
    batches, server, cache = fake_cifar
    src = tasks.load_source("cifar10", root=cache)
    assert src.name == "cifar10" and src.n_classes == 10 and src.in_dim == 3072
    assert src.x_train.shape == (15, 3072) and src.x_test.shape == (4, 3072)
    assert src.x_train.dtype == torch.float32 and src.y_train.dtype == torch.int64
    labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    np.testing.assert_array_equal(src.y_train.numpy(), labels)  # batches 1..5 in order
    np.testing.assert_array_equal(src.y_test.numpy(), batches["test_batch"][1])
    assert 0 <= int(src.y_train.min()) and int(src.y_train.max()) < 10
    # one scalar mean/std over all training values (all channels), applied to both splits
    raw = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]).astype(np.float64) / 255.0
    mean, std = raw.mean(), raw.std()
    np.testing.assert_allclose(src.x_train.numpy(), (raw - mean) / std, rtol=1e-5, atol=1e-5)
    raw_test = batches["test_batch"][0].astype(np.float64) / 255.0
    np.testing.assert_allclose(src.x_test.numpy(), (raw_test - mean) / std, rtol=1e-5, atol=1e-5)
    assert abs(float(src.x_train.double().mean())) < 1e-5 and abs(float(src.x_train.double().std(unbiased=False)) - 1) < 1e-5
    assert sorted(p.name for p in (cache / "cifar10").iterdir()) == ["cifar-10-python.tar.gz"]  # no .part, nothing extracted

    # the second load comes from the cache: no server file and any download attempt fails
    (server / "cifar-10-python.tar.gz").unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("downloaded although the archive is cached")

    monkeypatch.setattr(tasks.urllib.request, "urlopen", refuse)
    again = tasks.load_source("cifar10", root=cache)
    assert torch.equal(again.x_train, src.x_train) and torch.equal(again.y_test, src.y_test)
    # the streams work on it
    stream = tasks.make_stream("permuted-cifar10", seed=0, n_tasks=2, n_train=10, source=again)
    assert stream.task(1).x_train.shape == (10, 3072)


def test_cifar10_wrong_checksum_is_rejected_and_not_kept(fake_cifar, monkeypatch):
    _, _, cache = fake_cifar
    spec = dict(tasks._ARCHIVE_SOURCES["cifar10"])
    spec["file"] = ("cifar-10-python.tar.gz", "0" * 64)
    monkeypatch.setitem(tasks._ARCHIVE_SOURCES, "cifar10", spec)
    with pytest.raises(RuntimeError, match="SHA-256 [0-9a-f]{64} != expected 0{64}"), pytest.warns(RuntimeWarning, match="kept aside as"):
        tasks.load_source("cifar10", root=cache)
    assert not (cache / "cifar10" / "cifar-10-python.tar.gz").exists()
    assert not list((cache / "cifar10").glob(".*part"))


def test_cifar10_path_traversal_member_is_not_written(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    batches = {f"data_batch_{i}": (rng.integers(0, 256, (2, 3072), dtype=np.uint8), rng.integers(0, 10, 2)) for i in range(1, 6)}
    batches["test_batch"] = (rng.integers(0, 256, (2, 3072), dtype=np.uint8), rng.integers(0, 10, 2))
    server = tmp_path / "server"
    server.mkdir()
    evil = [("../../escaped.txt", b"owned"), (f"{_CIFAR_DIR}/../../../escaped2.txt", b"owned"), ("../escaped3.txt", b"owned")]
    sha = _cifar_archive(server / "cifar-10-python.tar.gz", batches, extra=evil)
    monkeypatch.setitem(tasks._ARCHIVE_SOURCES, "cifar10", {"mirrors": (server.as_uri() + "/",), "file": ("cifar-10-python.tar.gz", sha)})
    work = tmp_path / "a" / "b" / "cwd"  # a deep working directory: a relative escape would land inside tmp_path
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    cache = tmp_path / "cache"
    src = tasks.load_source("cifar10", root=cache)
    assert src.x_train.shape == (10, 3072)
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {"server/cifar-10-python.tar.gz", "cache/cifar10/cifar-10-python.tar.gz"}, written


def test_cifar10_rejects_symlink_member_and_missing_batch(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    batches = {f"data_batch_{i}": (rng.integers(0, 256, (2, 3072), dtype=np.uint8), rng.integers(0, 10, 2)) for i in range(1, 6)}
    batches["test_batch"] = batches["data_batch_1"]
    for case, kwargs, message in [
        ("symlink", {"symlink_test": True}, "test_batch' is not a regular file"),
        ("missing", {}, "data_batch_5' is missing"),
    ]:
        server = tmp_path / case
        server.mkdir()
        content = dict(batches)
        if case == "missing":
            del content["data_batch_5"]
        sha = _cifar_archive(server / "cifar-10-python.tar.gz", content, **kwargs)
        monkeypatch.setitem(tasks._ARCHIVE_SOURCES, "cifar10", {"mirrors": (server.as_uri() + "/",), "file": ("cifar-10-python.tar.gz", sha)})
        with pytest.raises(ValueError, match=message):
            tasks.load_source("cifar10", root=tmp_path / f"cache-{case}")


def test_cifar10_unpickler_refuses_foreign_globals(tmp_path, monkeypatch):
    class Evil:
        def __reduce__(self):
            return (print, ("unpickling ran code",))

    server = tmp_path / "server"
    server.mkdir()
    path = server / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        _add_member(archive, f"{_CIFAR_DIR}/data_batch_1", pickle.dumps({b"data": Evil(), b"labels": []}))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(tasks._ARCHIVE_SOURCES, "cifar10", {"mirrors": (server.as_uri() + "/",), "file": ("cifar-10-python.tar.gz", sha)})
    with pytest.raises(pickle.UnpicklingError, match="builtins.print is not allowed"):
        tasks.load_source("cifar10", root=tmp_path / "cache")


def test_cifar10_offline_error_names_offline_sources(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tasks.urllib.request, "urlopen", refuse)
    with pytest.raises(RuntimeError, match=r"cifar-10-python.tar.gz of the 'cifar10'.*\n.*cs.toronto.edu[\s\S]*\('digits', 'mnist1d'\)"):
        tasks.load_source("cifar10", root=tmp_path)
    assert not list(tmp_path.rglob("*.part"))


def test_cli_help_lists_cifar10_benchmarks():
    proc = subprocess.run([sys.executable, "-m", "isoplast_lite", "run", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = [line for line in proc.stdout.splitlines() if line.startswith("benchmarks:")]
    assert len(listed) == 1, proc.stdout
    for name in ("random-label-cifar10", "permuted-cifar10", "label-shuffle-cifar10"):
        assert name in listed[0][len("benchmarks:"):].replace(",", " ").split(), name


def test_runner_trains_on_cifar10_from_the_data_folder(fake_cifar, monkeypatch):
    from isoplast_lite.run import Config, run

    _, _, cache = fake_cifar
    monkeypatch.setenv("ISOPLAST_DATA", str(cache))
    cfg = Config("random-label-cifar10", "adamo", seeds=2, n_tasks=2, steps_per_task=3, batch_size=4, width=8, depth=2, n_train=12, probe_size=4)
    df = run(cfg, cache_dir=False, progress=False).rows
    assert df.shape[0] == 4 and df.train_acc.between(0, 1).all() and df.test_acc.isna().all()
    assert (cache / "cifar10" / "cifar-10-python.tar.gz").exists()  # downloaded into $ISOPLAST_DATA


class _Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2 did for the published CIFAR-10 batches: protocol 2, every
    ``str``/``bytes`` as BINSTRING, numpy globals under ``numpy.core.multiarray`` / ``numpy``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_binstring(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    def _save_global_py2(self, obj, name=None):
        name = name or obj.__qualname__
        module = "numpy.core.multiarray" if name == "_reconstruct" else "numpy"
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch[bytes] = _save_binstring
    dispatch[str] = _save_binstring
    dispatch[type] = _save_global_py2
    dispatch[type(len)] = _save_global_py2


def test_cifar10_reads_python2_style_batches(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump({b"batch_label": b"b", b"labels": [7, 0, 9], b"data": data})
    blob = buffer.getvalue()
    import pickletools

    globals_used = {arg for op, arg, _ in pickletools.genops(blob) if op.name == "GLOBAL"}
    assert globals_used == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    server = tmp_path / "server"
    server.mkdir()
    path = server / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for base in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            _add_member(archive, f"{_CIFAR_DIR}/{base}", blob)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(tasks._ARCHIVE_SOURCES, "cifar10", {"mirrors": (server.as_uri() + "/",), "file": ("cifar-10-python.tar.gz", sha)})
    src = tasks.load_source("cifar10", root=tmp_path / "cache")
    assert src.x_train.shape == (15, 3072) and src.y_test.tolist() == [7, 0, 9]
    raw = data.astype(np.float64) / 255.0
    np.testing.assert_allclose(src.x_test.numpy(), (raw - raw.mean()) / raw.std(), rtol=1e-5, atol=1e-5)
