"""The seed-batched runner against a plain per-seed training loop, and its logged columns."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from isoplast_lite import AdamO, relu_mlp
from isoplast_lite.optim import hidden_head_groups
from isoplast_lite.run import RESULT_COLUMNS, Config, run
from isoplast_lite.tasks import load_source, make_stream

TINY = dict(seeds=2, n_tasks=2, steps_per_task=15, batch_size=8, width=16, depth=2, n_train=32, probe_size=4)


def _plain_loop(cfg: Config):
    """Reference: one model per seed, standard nn.Module training, AdamO with a head group."""
    source = load_source("digits")
    out = []
    for seed in cfg.seed_list:
        stream = make_stream(cfg.benchmark, seed=seed, n_tasks=cfg.n_tasks, n_train=cfg.n_train, source=source)
        model = relu_mlp(64, cfg.width, cfg.depth, 10, generator=torch.Generator().manual_seed(seed)).double()
        hidden = [p for block in list(model)[:-1] for p in block.parameters()]
        lam = cfg.settings.iso_strength
        opt = AdamO(hidden_head_groups(hidden, model[-1].parameters(), hidden_iso=lam), lr=cfg.lr, iso_strength=lam)
        for t in range(cfg.n_tasks):
            task = stream.task(t)
            x, y = task.x_train.double(), task.y_train
            online = []
            for idx in task.batch_indices(cfg.steps_per_task, cfg.batch_size):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                online.append(float(loss.detach()))
            with torch.no_grad():
                logits = model(x)
                norm = math.sqrt(sum(float((p**2).sum()) for p in model.parameters()))
            out.append(dict(seed=seed, task=t, loss=float(F.cross_entropy(logits, y)), loss_online=float(np.mean(online)),
                            train_acc=float((logits.argmax(1) == y).double().mean()), weight_norm=norm))  # fmt: skip
    return out


def test_batched_run_equals_plain_per_seed_loop():
    cfg = Config("random-label-digits", "adamo", settings={"iso_strength": 0.1}, lr=3e-3, dtype="float64", **TINY)
    df = run(cfg, cache_dir=False, progress=False).rows
    ref = _plain_loop(cfg)
    assert len(df) == len(ref) == 4
    for row, r in zip(df.to_dict("records"), ref):
        assert (row["seed"], row["task"]) == (r["seed"], r["task"])
        for key in ("loss", "loss_online", "train_acc", "weight_norm"):
            assert row[key] == pytest.approx(r[key], rel=1e-5, abs=1e-5), key


def test_columns_and_values_are_sane():
    df = run(Config("random-label-digits", "adam", **TINY), cache_dir=False, progress=False).rows
    assert tuple(df.columns) == RESULT_COLUMNS
    assert df[["seed", "task"]].values.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert df["test_acc"].isna().all()  # random labels: no held-out set
    for col in ("train_acc", "train_acc_online", "dormant_0.025", "dormant_0.1", "dead"):
        assert df[col].between(0, 1).all(), col
    assert (df["dormant_0.1"] >= df["dormant_0.025"]).all() and (df["dormant_0.025"] >= df["dead"]).all()
    assert (df["ntk_cond"] >= 1).all() and (df["jac_sv_ratio"] >= 1).all() and (df["feature_erank"] >= 1).all()
    perm = run(Config("permuted-digits", "adam", **TINY), cache_dir=False, progress=False).rows
    assert perm["test_acc"].between(0, 1).all()


def test_aei_net_is_isometric_in_hidden_layers():
    df = run(Config("random-label-digits", "aei-adam", **TINY), cache_dir=False, progress=False).rows
    assert (df["dead"] == 0).all()  # GroupSort has no dead units


def test_batched_aei_run_equals_plain_per_seed_loop_with_retract():
    """aei-adam in the runner == aei_mlp + Adam + nn.retract_ after each step, seed by seed."""
    from isoplast_lite import aei_mlp
    from isoplast_lite.nn import retract_

    cfg = Config("random-label-digits", "aei-adam", lr=3e-3, dtype="float64", **TINY)
    df = run(cfg, cache_dir=False, progress=False).rows
    source = load_source("digits")
    for seed in cfg.seed_list:
        stream = make_stream(cfg.benchmark, seed=seed, n_tasks=cfg.n_tasks, n_train=cfg.n_train, source=source)
        model = aei_mlp(64, cfg.width, cfg.depth, 10, generator=torch.Generator().manual_seed(seed)).double()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        for t in range(cfg.n_tasks):
            task = stream.task(t)
            x, y = task.x_train.double(), task.y_train
            for idx in task.batch_indices(cfg.steps_per_task, cfg.batch_size):
                opt.zero_grad()
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
                retract_(model)
            with torch.no_grad():
                loss = float(F.cross_entropy(model(x), y))
            row = df[(df.seed == seed) & (df.task == t)].iloc[0]
            assert row["loss"] == pytest.approx(loss, rel=1e-6, abs=1e-8)


def test_aei_orthogonal_is_a_setting_of_the_aei_methods_only():
    from isoplast_lite.run import cache_key
    from isoplast_lite.settings import SettingError

    cayley = Config("random-label-digits", "aei-adam", settings={"orthogonal": "cayley"}, **TINY)
    ns = Config("random-label-digits", "aei-adam", **TINY)
    assert ns.settings.orthogonal == "newton-schulz" and cayley.settings.orthogonal == "cayley"
    assert '"orthogonal":"cayley"' in cayley.to_json() and '"orthogonal":"newton-schulz"' in ns.to_json()
    assert cache_key(cayley) != cache_key(ns)
    with pytest.raises(SettingError, match="method 'adam': setting orthogonal='cayley': unknown setting"):
        Config("random-label-digits", "adam", settings={"orthogonal": "cayley"})
    with pytest.raises(SettingError, match="orthogonal='qr': not a valid choice; allowed: one of 'newton-schulz', 'cayley'"):
        Config("random-label-digits", "aei-adam", settings={"orthogonal": "qr"})


def test_config_validation():
    with pytest.raises(ValueError, match="method"):
        Config("random-label-digits", "sgd")
    with pytest.raises(ValueError, match="benchmark"):
        Config("random-label-cifar", "adam")
    with pytest.raises(ValueError, match="iso_strength"):
        Config("random-label-digits", "adam", settings={"iso_strength": 0.1})
    with pytest.raises(ValueError, match="lr"):
        Config("random-label-digits", "adam", lr=-1.0)
    with pytest.raises(TypeError, match="seeds"):
        Config("random-label-digits", "adam", seeds=2.5)
    assert Config("random-label-digits", "adamo").settings.iso_strength == 0.1
    assert Config("random-label-digits", "adam").method_settings == {}
    with pytest.raises(TypeError, match="cfg"):
        run({"benchmark": "random-label-digits"})


def test_per_layer_table_is_layer_isometry_of_each_seed_and_is_cached(tmp_path):
    from isoplast_lite.diagnostics import clone_counts, layer_isometry
    from isoplast_lite.run import LAYER_COLUMNS, LAYER_MEASURES

    cfg = Config("random-label-digits", "aei-adam", **TINY)
    result = run(cfg, cache_dir=tmp_path, progress=False, layers=True)
    df, layers = result.rows, result.layers
    assert tuple(layers.columns) == LAYER_COLUMNS and len(layers) == cfg.seeds * cfg.n_tasks * (cfg.depth + 1)
    hidden = layers[layers.kind == "hidden"]
    # the AEI net's hidden blocks stay isometric under the Newton-Schulz retraction
    assert hidden.spread.abs().max() < 1e-2 and hidden.scale.abs().max() < 1e-2, hidden[["scale", "spread"]].describe()
    result = run(cfg, cache_dir=tmp_path, progress=False, layers=True)
    again_df, again_layers = result.rows, result.layers
    pd.testing.assert_frame_equal(again_layers, layers)
    pd.testing.assert_frame_equal(again_df, df)
    # the table is layer_isometry of a standalone copy of each seed's final model on the probe
    relu = Config("permuted-digits", "adam", dtype="float64", **{**TINY, "n_tasks": 1})
    captured = {}
    from isoplast_lite import run as run_mod

    original = run_mod.measure

    def spy(stack, x, live, probe_size, **kw):  # the measurement of every live seed
        for k in live:
            captured[k] = (stack.model_for_seed(k), x[k, :probe_size].clone())
        return original(stack, x, live, probe_size, **kw)

    try:
        run_mod.measure = spy
        relu_layers = run(relu, cache_dir=False, progress=False, layers=True).layers
    finally:
        run_mod.measure = original
    assert sorted(captured) == [0, 1]
    for k, (model, probe) in captured.items():
        expected = pd.DataFrame([{**r, **c} for r, c in zip(layer_isometry(model, probe), clone_counts(model, probe))])
        got = relu_layers[relu_layers.seed == relu.seed_list[k]].reset_index(drop=True)
        np.testing.assert_allclose(got[list(LAYER_MEASURES)].to_numpy(float), expected[list(LAYER_MEASURES)].to_numpy(float), rtol=1e-9, equal_nan=True)


def test_an_entry_cached_without_the_layer_table_is_recomputed_when_it_is_asked_for(tmp_path):
    cfg = Config("random-label-digits", "adam", **{**TINY, "n_tasks": 1})
    df = run(cfg, cache_dir=tmp_path, progress=False).rows
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (entry / "layers.csv").unlink()
    assert run(cfg, cache_dir=tmp_path, progress=False).rows.equals(df)  # the rows alone are still served
    with pytest.warns(RuntimeWarning, match="no per-layer table"):
        result = run(cfg, cache_dir=tmp_path, progress=False, layers=True)
        again, layers = result.rows, result.layers
    assert len(layers) == cfg.seeds * (cfg.depth + 1) and (entry / "layers.csv").exists()


@pytest.mark.parametrize("method", ["adam", "aei-adam"])
def test_logged_ntk_cond_equals_the_per_example_ntk(method, monkeypatch):
    """The runner measures the eNTK layer-wise; its ntk_cond is the per-example method's (float64)."""
    import isoplast_lite.measure as measure_module

    cfg = Config("random-label-digits", method, dtype="float64", **{**TINY, "n_tasks": 1, "probe_size": 6})
    assert measure_module.NTK_METHOD == "layerwise"
    fast = run(cfg, cache_dir=False, progress=False).rows
    monkeypatch.setattr(measure_module, "NTK_METHOD", "jacobian")  # the per-example reference
    ref = run(cfg, cache_dir=False, progress=False).rows
    ntk = ["ntk_cond", "ntk_progress_mean", "ntk_progress_worst", "ntk_erank"]  # every measure of the eNTK
    trained = ["seed", "task", "train_acc", "train_acc_online", "test_acc", "loss", "loss_online"]
    pd.testing.assert_frame_equal(fast[trained], ref[trained], check_exact=True)  # same training
    others = [c for c in fast.columns if c not in ntk + trained and fast[c].dtype.kind == "f"]
    np.testing.assert_allclose(fast[others], ref[others], rtol=1e-9)  # the seed-batched and per-seed measurements
    for col in ntk:
        np.testing.assert_allclose(fast[col], ref[col], rtol=1e-6, err_msg=col)
    assert (ref.ntk_cond > 1).all()


def test_measured_feature_columns_are_the_public_diagnostics():
    """measure_seed computes the features once; its dormant/dead/rank values are the public
    functions', and so are those of measure's seed-batched path (float32 here)."""
    from isoplast_lite.diagnostics import dead_fraction, dormant_fraction, effective_rank, hidden_features
    from isoplast_lite.engine import StackedModel
    from isoplast_lite.methods import make_method
    from isoplast_lite.measure import measure, measure_seed, stacked_blocks

    cfg = Config("random-label-digits", "adam", width=16, depth=2)
    method = make_method("adam", None)
    stack = StackedModel.build(lambda g: method.build_model(64, 10, cfg, g), (0, 1))
    with torch.no_grad():
        for n, p in stack.params.items():  # biases pushed down: some dormant and dead units
            if n.endswith("bias"):
                p.sub_(torch.linspace(0, 3, p.shape[-1]))
    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(1))
    assert stacked_blocks(stack) is not None  # measure takes the seed-batched path
    batched = measure(stack, x.expand(2, -1, -1), [0, 1], 4)
    for k in range(2):
        row, *_ = measure_seed(stack, k, x, x[:4])
        model = stack.model_for_seed(k).eval()
        assert row["dormant_0.025"] == dormant_fraction(model, x, tau=0.025)
        assert row["dormant_0.1"] == dormant_fraction(model, x, tau=0.1)
        assert row["dead"] == dead_fraction(model, x) > 0
        assert row["feature_erank"] == float(effective_rank(hidden_features(model, x)[-1]))
        fast = batched[k][0]  # the seed-batched measurement the runner takes for these nets
        assert [fast[c] for c in ("dormant_0.025", "dormant_0.1", "dead")] == [row[c] for c in ("dormant_0.025", "dormant_0.1", "dead")]
        assert fast["feature_erank"] == pytest.approx(row["feature_erank"], rel=1e-5)


def test_spectrum_table_is_the_eigvalsh_of_the_per_example_entk_and_the_ntk_columns_summarize_it(monkeypatch):
    """run(cfg, spectra=True) logs the eigenvalues of the eNTK the runner already forms: they are
    torch.linalg.eigvalsh of empirical_ntk(method="jacobian") on the probe (float64), and the
    row's ntk_cond, ntk_progress_worst and ntk_erank are the formulas of ntk_summary applied to
    them; ntk_progress_mean agrees with its expectation given the spectrum."""
    import isoplast_lite.run as run_module
    from isoplast_lite.diagnostics import empirical_ntk
    from isoplast_lite.run import SPECTRUM_COLUMNS

    cfg = Config("random-label-digits", "adam", dtype="float64", **{**TINY, "probe_size": 6})
    captured = []  # (seed number, model, probe) of every measurement: tasks outer, seeds inner
    original = run_module.measure

    def spy(stack, x, live, probe_size, **kw):  # the measurement of every live seed
        captured.extend((k, stack.model_for_seed(k), x[k, :probe_size].clone()) for k in live)
        return original(stack, x, live, probe_size, **kw)

    monkeypatch.setattr(run_module, "measure", spy)
    result = run(cfg, cache_dir=False, progress=False, spectra=True)
    df, spectra = result.rows, result.spectra
    m = 6 * 10  # probe inputs x classes
    assert tuple(spectra.columns) == SPECTRUM_COLUMNS and len(spectra) == cfg.seeds * cfg.n_tasks * m
    assert tuple(df.columns) == RESULT_COLUMNS
    assert len(captured) == cfg.seeds * cfg.n_tasks
    rng = np.random.default_rng(0)
    for i, (k, model, probe) in enumerate(captured):
        seed, task = cfg.seed_list[k], i // cfg.seeds
        got = spectra[(spectra.seed == seed) & (spectra.task == task)]
        assert got["index"].tolist() == list(range(m))
        ev = got.eigenvalue.to_numpy()
        kernel = empirical_ntk(model, probe, method="jacobian")  # (P, P, O, O), float64
        reference = torch.linalg.eigvalsh(kernel.permute(0, 2, 1, 3).reshape(m, m)).flip(0).numpy()  # descending
        np.testing.assert_allclose(ev, reference, rtol=1e-8, atol=1e-10 * reference[0])
        row = df[(df.seed == seed) & (df.task == task)].iloc[0]
        assert ev.min() > 0
        kappa = ev.max() / ev.min()
        assert row.ntk_cond == pytest.approx(kappa, rel=1e-12)
        assert row.ntk_progress_worst == pytest.approx(4 * kappa / (1 + kappa) ** 2, rel=1e-12)  # Kantorovich
        p = ev / ev.sum()
        assert row.ntk_erank == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-10)  # Roy & Vetterli
        # rho(u) = (u'Θu)^2 / (|u|^2 |Θu|^2) over u ~ N(0, I): rotation invariance makes its law a
        # function of the eigenvalues (z = squared coordinates of u in Θ's eigenbasis); the
        # runner's mean over 256 directions lies within 4 of its standard errors of the expectation
        z = rng.standard_normal((20_000, m)) ** 2
        rho = (z @ ev) ** 2 / (z.sum(1) * (z @ ev**2))
        assert abs(row.ntk_progress_mean - rho.mean()) < 4 * rho.std() / math.sqrt(256) + 1e-3
        assert row.ntk_progress_worst <= row.ntk_progress_mean <= 1


def test_an_entry_cached_without_the_spectrum_table_is_recomputed_when_it_is_asked_for(tmp_path):
    import isoplast_lite.run as run_module
    from isoplast_lite.run import SPECTRUM_COLUMNS

    cfg = Config("random-label-digits", "adam", **{**TINY, "n_tasks": 1})
    result = run(cfg, cache_dir=tmp_path, progress=False, layers=True, spectra=True)
    df, layers, spectra = result.rows, result.layers, result.spectra
    assert tuple(spectra.columns) == SPECTRUM_COLUMNS and len(spectra) == cfg.seeds * cfg.probe_size * 10
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (entry / "spectra.csv").unlink()  # as an entry written before the table existed
    (entry / "spectra.csv.sha256").unlink()
    original = run_module.train_seed_batch
    try:
        run_module.train_seed_batch = lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed"))
        pd.testing.assert_frame_equal(run(cfg, cache_dir=tmp_path, progress=False).rows, df)  # the rows and the
        again_layers = run(cfg, cache_dir=tmp_path, progress=False, layers=True).layers  # layers are still served
        pd.testing.assert_frame_equal(again_layers, layers)
    finally:
        run_module.train_seed_batch = original
    with pytest.warns(RuntimeWarning, match="no eNTK spectrum table"):
        result = run(cfg, cache_dir=tmp_path, progress=False, spectra=True)
        again, again_spectra = result.rows, result.spectra
    pd.testing.assert_frame_equal(again_spectra, spectra)
    pd.testing.assert_frame_equal(again, df)
    assert (entry / "spectra.csv").exists()


def test_run_returns_one_result_object_whatever_is_asked(tmp_path):
    """run() returns a RunResult for every combination of layers / spectra, computed or served from
    the cache: the same rows each time, each asked-for table with its columns, the others None."""
    import itertools

    from isoplast_lite.run import LAYER_COLUMNS, SPECTRUM_COLUMNS, RunResult

    cfg = Config("random-label-digits", "adam", **{**TINY, "n_tasks": 1})
    first = run(cfg, cache_dir=False, progress=False)
    for cache_dir, (layers, spectra) in itertools.product((False, tmp_path), itertools.product((False, True), repeat=2)):
        result = run(cfg, cache_dir=cache_dir, progress=False, layers=layers, spectra=spectra)
        assert type(result) is RunResult
        pd.testing.assert_frame_equal(result.rows, first.rows)
        assert tuple(result.rows.columns) == RESULT_COLUMNS
        assert (result.layers is None) == (not layers) and (result.spectra is None) == (not spectra)
        if layers:
            assert tuple(result.layers.columns) == LAYER_COLUMNS and len(result.layers) == cfg.seeds * (cfg.depth + 1)
        if spectra:
            assert tuple(result.spectra.columns) == SPECTRUM_COLUMNS and len(result.spectra) == cfg.seeds * cfg.probe_size * 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.rows = None
