"""The disk cache: hits, resuming after an interruption, corrupt entries, keys."""

import pandas as pd
import pytest

from isoplast_lite import files
from isoplast_lite import cache as cache_mod
from isoplast_lite import run as run_mod
from isoplast_lite.run import Config, cache_key, run

CFG = Config("permuted-digits", "adamo", seeds=2, n_tasks=3, steps_per_task=10, batch_size=8, width=16, depth=2, n_train=32, probe_size=4)


def _no_training(*args, **kwargs):
    raise AssertionError("the cache should have answered")


def test_rerun_returns_from_cache(tmp_path, monkeypatch):
    first = run(CFG, cache_dir=tmp_path, progress=False).rows
    monkeypatch.setattr(run_mod, "train_seed_batch", _no_training)
    second = run(CFG, cache_dir=tmp_path, progress=False).rows
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    assert (tmp_path / cache_key(CFG) / "result.csv").exists()
    assert not list((tmp_path / cache_key(CFG)).glob("*.ckpt"))  # checkpoints removed once done


def test_interrupted_run_resumes_and_equals_uninterrupted(tmp_path):
    reference = run(CFG, cache_dir=False, progress=False).rows

    def interrupt_after_task_1(task, rows):
        if task == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(CFG, cache_dir=tmp_path, progress=False, callback=interrupt_after_task_1)
    assert not (tmp_path / cache_key(CFG) / "result.csv").exists()
    trained = []
    resumed = run(CFG, cache_dir=tmp_path, progress=False, callback=lambda task, rows: trained.append(task)).rows
    assert trained == [2]  # tasks 0 and 1 were not redone
    pd.testing.assert_frame_equal(resumed, reference, check_exact=False, rtol=1e-6, atol=1e-9)


def test_seed_batches_resume_independently(tmp_path):
    calls = []

    def interrupt_in_second_batch(task, rows):
        calls.append((int(rows.seed.iloc[0]), task))
        if int(rows.seed.iloc[0]) == 1 and task == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(CFG, cache_dir=tmp_path, progress=False, seed_batch=1, callback=interrupt_in_second_batch)
    calls.clear()
    run(CFG, cache_dir=tmp_path, progress=False, seed_batch=1, callback=lambda t, rows: calls.append((int(rows.seed.iloc[0]), t)))
    assert calls == [(1, 1), (1, 2)]  # seed 0 finished before: loaded, not retrained


def test_corrupt_entries_are_recomputed_with_a_warning(tmp_path):
    good = run(CFG, cache_dir=tmp_path, progress=False).rows
    folder = tmp_path / cache_key(CFG)
    (folder / "result.csv").write_text("not,a\nresult,file\n")
    for part in folder.glob("seeds-*.csv"):
        part.write_bytes(b"\x00\xff garbage")
    with pytest.warns(RuntimeWarning, match="corrupt"):
        again = run(CFG, cache_dir=tmp_path, progress=False).rows
    pd.testing.assert_frame_equal(good, again, check_exact=False, rtol=1e-6, atol=1e-9)


def test_corrupt_checkpoint_restarts_with_a_warning(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(CFG, cache_dir=tmp_path, progress=False, callback=lambda t, rows: (_ for _ in ()).throw(KeyboardInterrupt))
    ckpt = next((tmp_path / cache_key(CFG)).glob("*.ckpt"))
    ckpt.write_bytes(b"truncated")
    trained = []
    with pytest.warns(RuntimeWarning, match="corrupt checkpoint"):
        df = run(CFG, cache_dir=tmp_path, progress=False, callback=lambda t, rows: trained.append(t)).rows
    assert trained == [0, 1, 2] and len(df) == 6


def test_cache_key_covers_config_and_version(monkeypatch):
    k = cache_key(CFG)
    assert cache_key(Config(**{**CFG.__dict__, "lr": 2e-3})) != k
    assert cache_key(CFG.replace(settings={"iso_strength": 0.2})) != k
    assert cache_key(Config(**CFG.__dict__)) == k
    monkeypatch.setattr(cache_mod, "__version__", "9.9.9")
    assert cache_key(CFG) != k


def test_cache_key_covers_the_library_code_and_the_methods_code(monkeypatch):
    from isoplast_lite import methods

    k = cache_key(CFG)
    parts = cache_mod.key_parts(CFG)
    assert parts["method"]["qualname"] == methods.method_class("adamo").__qualname__
    assert parts["code"] == cache_mod.code_hash() and len(parts["code"]) == 64
    monkeypatch.setattr(cache_mod, "code_hash", lambda: "0" * 64)  # an edit of the engine, runner, measurement...
    assert cache_key(CFG) != k
    monkeypatch.undo()
    assert cache_key(CFG) == k

    # a method re-registered under a known name at the same version gets another key
    original = methods.method_class("adam")
    adam_cfg = CFG.replace(method="adam")
    plain = cache_key(adam_cfg)

    class Impostor(original):
        def make_optimizer(self, stack, cfg):  # pragma: no cover - never trained here
            return super().make_optimizer(stack, cfg)

    Impostor.name, Impostor.version = original.name, original.version
    try:
        methods.register_method(Impostor, replace=True)
        assert cache_key(adam_cfg) != plain
    finally:
        methods.register_method(original, replace=True)
    assert cache_key(adam_cfg) == plain


def _interrupted_checkpoint(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(CFG, cache_dir=tmp_path, progress=False, callback=lambda t, rows: (_ for _ in ()).throw(KeyboardInterrupt))
    return next((tmp_path / cache_key(CFG)).glob("*.ckpt"))


class _Payload:
    """Pickles to a call of ``os.mkdir(marker)``: what a planted checkpoint would execute on load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def test_a_planted_checkpoint_is_never_executed_nor_resumed(tmp_path):
    import torch

    ckpt = _interrupted_checkpoint(tmp_path)
    marker = tmp_path / "payload-ran"
    good = torch.load(ckpt, weights_only=True)
    planted = {**good, "rows": _Payload(marker)}  # schema and key right: only the payload is foreign
    torch.save(planted, ckpt)
    files.write_checksum(ckpt, ckpt.read_bytes())  # whoever plants it can write the sidecar too
    trained = []
    with pytest.warns(RuntimeWarning, match="corrupt checkpoint"):
        df = run(CFG, cache_dir=tmp_path, progress=False, callback=lambda t, rows: trained.append(t)).rows
    assert not marker.exists()
    assert trained == [0, 1, 2] and len(df) == 6


def test_a_tampered_or_unverifiable_checkpoint_is_not_resumed(tmp_path):
    import torch

    reference = run(CFG, cache_dir=False, progress=False).rows
    ckpt = _interrupted_checkpoint(tmp_path)
    state = torch.load(ckpt, weights_only=True)
    state["stack"] = {k: v * 3 if torch.is_tensor(v) and v.is_floating_point() else v for k, v in state["stack"].items()}
    sidecar = files.checksum_path(ckpt).read_bytes()
    torch.save(state, ckpt)  # scaled weights, the old sidecar
    files.checksum_path(ckpt).write_bytes(sidecar)
    trained = []
    with pytest.warns(RuntimeWarning, match="does not match its checksum"):
        df = run(CFG, cache_dir=tmp_path, progress=False, callback=lambda t, rows: trained.append(t)).rows
    assert trained == [0, 1, 2]
    pd.testing.assert_frame_equal(df, reference, check_exact=False, rtol=1e-6, atol=1e-9)

    ckpt = _interrupted_checkpoint(tmp_path / "b")
    files.checksum_path(ckpt).unlink()  # a checkpoint without its checksum is not trusted
    trained.clear()
    with pytest.warns(RuntimeWarning, match="no checksum"):
        run(CFG, cache_dir=tmp_path / "b", progress=False, callback=lambda t, rows: trained.append(t))
    assert trained == [0, 1, 2]


def test_a_result_without_its_sidecar_is_recomputed(tmp_path, monkeypatch):
    good = run(CFG, cache_dir=tmp_path, progress=False).rows
    folder = tmp_path / cache_key(CFG)
    (folder / "result.csv.sha256").unlink()
    edited = good.assign(train_acc=good.train_acc * 0 + 0.5)
    (folder / "result.csv").write_text(edited.to_csv(index=False))
    trained = []
    with pytest.warns(RuntimeWarning, match="no checksum"):
        again = run(CFG, cache_dir=tmp_path, progress=False, callback=lambda t, rows: trained.append(t)).rows
    assert (again.train_acc != 0.5).any()
    pd.testing.assert_frame_equal(good, again, check_exact=False, rtol=1e-6, atol=1e-9)


def test_default_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ISOPLAST_CACHE", str(tmp_path / "c"))
    assert run_mod.default_cache_dir() == tmp_path / "c"


def test_interrupted_run_resumes_its_entk_spectra_and_the_rows_stay_as_before(tmp_path, monkeypatch):
    result = run(CFG, cache_dir=False, progress=False, spectra=True)
    reference, ref_spectra = result.rows, result.spectra
    assert reference.equals(run(CFG, cache_dir=False, progress=False).rows)  # asking for spectra changes nothing else

    def interrupt_after_task_1(task, rows):
        if task == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(CFG, cache_dir=tmp_path, progress=False, spectra=True, callback=interrupt_after_task_1)
    trained = []
    result = run(CFG, cache_dir=tmp_path, progress=False, spectra=True, callback=lambda task, rows: trained.append(task))
    resumed, spectra = result.rows, result.spectra
    assert trained == [2]  # the spectra of tasks 0 and 1 came from the checkpoint
    pd.testing.assert_frame_equal(resumed, reference, check_exact=False, rtol=1e-6, atol=1e-9)
    pd.testing.assert_frame_equal(spectra, ref_spectra, check_exact=False, rtol=1e-5, atol=1e-6)
    assert sorted(spectra.task.unique()) == [0, 1, 2]
    monkeypatch.setattr(run_mod, "train_seed_batch", _no_training)
    pd.testing.assert_frame_equal(run(CFG, cache_dir=tmp_path, progress=False, spectra=True).spectra, spectra)
