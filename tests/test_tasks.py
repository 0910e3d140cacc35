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
    with pytest.raises(RuntimeError, match="SHA-256"):
        tasks.load_source("mnist", root=cache)
    assert not (cache / "mnist" / name).exists()
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
