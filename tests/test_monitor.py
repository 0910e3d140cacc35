"""PlasticityMonitor (isoplast_lite.monitor) and adamo_param_groups, against independent computations."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from isoplast_lite import PlasticityMonitor, dormant_fraction, relu_mlp
from isoplast_lite.diagnostics import dead_fraction, dead_units, dormant_units, effective_rank, matrix_isometry
from isoplast_lite.monitor import PlasticityCallback, monitored_layers
from isoplast_lite.optim import AdamO, adamo_param_groups

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def _log_stats(W):
    """Independent: scale, spread (population), min, max of log svdvals of W as a (out, rest) matrix."""
    sv = torch.linalg.svdvals(W.detach().double().reshape(W.shape[0], -1))
    logs = sv.log()
    return float(logs.mean()), float(logs.std(correction=0)), float(sv.min()), float(sv.max())


def _check_weight_row(row, W):
    scale, spread, lo, hi = _log_stats(W)
    assert row["weight_scale"] == pytest.approx(scale, abs=1e-5)
    assert row["weight_spread"] == pytest.approx(spread, abs=1e-5)
    assert row["weight_sigma_min"] == pytest.approx(lo, rel=1e-5)
    assert row["weight_sigma_max"] == pytest.approx(hi, rel=1e-5)


def _one_record(model, probe, **kw):
    monitor = PlasticityMonitor(model, probe, **kw)
    monitor.record()
    return monitor.frame().set_index("layer")


def _perturb(model, gen, scale=0.5):
    """Move away from the orthogonal initialization so the singular values differ."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


# -- one test per layer kind: singular values vs torch.linalg.svdvals, dormancy vs dormant_fraction ----------


def test_linear_rows_match_svdvals_and_dormant_fraction(gen):
    model = _perturb(relu_mlp(6, 12, 2, 3, generator=gen), gen)
    x = torch.randn(40, 6, generator=gen)
    df = _one_record(model, x, tau=0.3)
    assert list(df.index) == ["0.0", "1.0", "2"] and set(df["kind"]) == {"linear"}
    for name, lin in (("0.0", model[0][0]), ("1.0", model[1][0]), ("2", model[2])):
        _check_weight_row(df.loc[name], lin.weight)
    expected = dormant_fraction(model, x, tau=0.3, per_layer=True)
    assert df.loc[["0.0", "1.0"], "dormant"].tolist() == pytest.approx(expected, abs=1e-6)
    assert df.loc[["0.0", "1.0"], "dead"].tolist() == pytest.approx(dead_fraction(model, x, per_layer=True), abs=1e-6)
    assert df.loc["0.0", "activation"] == "ReLU" and df.loc["2", "activation"] == "none"


def test_conv2d_rows_match_svdvals_and_dormant_fraction_on_patches(gen):
    conv = nn.Conv2d(2, 5, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 3))
    with torch.no_grad():
        conv.bias.sub_(0.4)  # some channels rarely fire
    x = torch.randn(16, 2, 4, 4, generator=gen)
    df = _one_record(model, x, tau=0.5)
    _check_weight_row(df.loc["0"], conv.weight)  # the kernel read as (out, in*k*k)
    assert df.loc["0", "kind"] == "conv2d" and df.loc["0", "shape"] == "5x18"
    # independent: a convolution is a linear layer on its patches, so the library's dormant_fraction
    # of an MLP whose first weight is the reshaped kernel, on the patches, is the monitor's per-channel value
    patches = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)  # (N*H*W, in*k*k)
    mlp = nn.Sequential(nn.Sequential(nn.Linear(18, 5), nn.ReLU()), nn.Linear(5, 1))
    with torch.no_grad():
        mlp[0][0].weight.copy_(conv.weight.reshape(5, -1))
        mlp[0][0].bias.copy_(conv.bias)
    assert df.loc["0", "dormant"] == pytest.approx(dormant_fraction(mlp, patches, tau=0.5), abs=1e-6)
    assert df.loc["0", "dead"] == pytest.approx(dead_fraction(mlp, patches), abs=1e-6)
    assert np.isnan(df.loc["0", "jac_scale"])  # a convolution's Jacobian is not measured


@pytest.mark.parametrize("packed", [True, False])
def test_attention_projection_rows_match_svdvals_and_dormant_fraction(gen, packed):
    E = 8
    torch.manual_seed(0)  # the module draws its weights from the global generator: not from the tests before it
    mha = nn.MultiheadAttention(E, 2, batch_first=True, kdim=None if packed else 6, vdim=None if packed else 6)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha
            self.head = nn.Linear(E, 2)

        def forward(self, q, kv):
            return self.head(self.attn(q, kv, kv, need_weights=False)[0].mean(1))

    model = Model()
    q = torch.randn(4, 5, E, generator=gen)
    kv = torch.randn(4, 5, E if packed else 6, generator=gen)
    df = _one_record(model, (q, kv), tau=0.6)
    weights = ([mha.in_proj_weight[i * E:(i + 1) * E] for i in range(3)] if packed
               else [mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight])
    inputs = [q, kv, kv]
    for i, p in enumerate("qkv"):
        row = df.loc[f"attn.{p}"]
        assert row["kind"] == f"attn_{p}"
        _check_weight_row(row, weights[i])
        assert row["jac_scale"] == row["weight_scale"]  # a projection is linear: J = W
        # independent: the projection as the hidden block (no activation) of a two-block model
        proj = nn.Linear(weights[i].shape[1], E)
        with torch.no_grad():
            proj.weight.copy_(weights[i])
            proj.bias.copy_(mha.in_proj_bias[i * E:(i + 1) * E])
        block_model = nn.Sequential(nn.Sequential(proj), nn.Linear(E, 1))
        tokens = inputs[i].reshape(-1, inputs[i].shape[-1])
        assert row["dormant"] == pytest.approx(dormant_fraction(block_model, tokens, tau=0.6), abs=1e-6)
    _check_weight_row(df.loc["attn.out_proj"], mha.out_proj.weight)
    with torch.no_grad():
        out = mha(q, kv, kv, need_weights=False)[0]
    assert df.loc["attn.out_proj", "feature_rank"] == pytest.approx(float(effective_rank(out.reshape(-1, E).double())), rel=1e-5)
    assert "attn.out_proj" in df.index and "attn.out_proj" not in PlasticityMonitor(model, (q, kv)).skipped


def test_transformer_encoder_layers_are_measured_in_eval_mode(gen):
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    model.eval()
    x = torch.randn(3, 5, 8, generator=gen)
    captured = {}
    hook = model.layers[1].linear1.register_forward_hook(lambda m, a, o: captured.update(inp=a[0].detach()))
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad():
        model(x)
    torch.backends.mha.set_fastpath_enabled(True)
    hook.remove()
    df = _one_record(model, x, tau=0.3)
    assert torch.backends.mha.get_fastpath_enabled() and not model.training
    row = df.loc["layers.1.linear1"]
    assert row["activation"] == "relu"
    lin = model.layers[1].linear1
    block_model = nn.Sequential(nn.Sequential(lin, nn.ReLU()), nn.Linear(16, 1))
    h = captured["inp"].reshape(-1, 8)
    assert row["dormant"] == pytest.approx(dormant_fraction(block_model, h, tau=0.3), abs=1e-6)
    # the Jacobian of (linear1, ReLU) over its active rows, by hand
    rows = h[:16]
    z = rows @ lin.weight.T + lin.bias
    logs = torch.cat([torch.linalg.svdvals(lin.weight.detach()[z[n] > 0].double()).log() for n in range(rows.shape[0])])
    assert row["jac_scale"] == pytest.approx(float(logs.mean()), abs=1e-5)
    assert row["jac_spread"] == pytest.approx(float(logs.std(correction=0)), abs=1e-5)
    assert {"layers.0.norm1", "layers.1.norm2"} <= set(PlasticityMonitor(model, x).skipped)


# -- behaviour of the monitor ---------------------------------------------------------------------------------


def test_cadence_tags_and_the_model_are_left_as_they_were(gen):
    model = relu_mlp(4, 8, 1, 2, generator=gen)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    monitor = PlasticityMonitor(model, torch.randn(10, 4, generator=gen), every=3)
    recorded = [monitor.step() for _ in range(7)]
    monitor.record(tag="task 1")
    df = monitor.frame()
    assert recorded == [False, False, True, False, False, True, False]
    assert df.drop_duplicates("record")["step"].tolist() == [3, 6, 7]
    assert df["tag"].tolist()[-2:] == ["task 1", "task 1"] and df["tag"].isna().sum() == 4
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_unknown_modules_are_skipped_by_name():
    model = nn.Sequential(nn.Embedding(10, 6), nn.GRU(6, 6, batch_first=True))
    layers, skipped = monitored_layers(model)
    assert layers == [] and skipped == {"0": "Embedding", "1": "GRU"}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.norm, self.fc = nn.Embedding(10, 6), nn.LayerNorm(6), nn.Linear(6, 2)

        def forward(self, t):
            return self.fc(self.norm(self.emb(t)).mean(1))

    monitor = PlasticityMonitor(Net(), torch.randint(0, 10, (4, 3), generator=torch.Generator().manual_seed(1)))
    monitor.record()
    assert monitor.skipped == {"emb": "Embedding", "norm": "LayerNorm"} and monitor.frame()["layer"].tolist() == ["fc"]


def test_csv_round_trip_and_never_replaces_a_folder(tmp_path, gen):
    monitor = PlasticityMonitor(relu_mlp(3, 5, 1, 2, generator=gen), torch.randn(6, 3, generator=gen))
    monitor.record(tag="a")
    monitor.to_csv(tmp_path / "m.csv")
    back = pd.read_csv(tmp_path / "m.csv", dtype={"layer": str})
    pd.testing.assert_frame_equal(back, monitor.frame(), check_dtype=False)
    (tmp_path / "dir").mkdir()
    with pytest.raises(ValueError, match="folder"):
        monitor.to_csv(tmp_path / "dir")


def test_lightning_style_callback_with_a_fake_trainer(gen):
    monitor = PlasticityMonitor(relu_mlp(3, 5, 1, 2, generator=gen), torch.randn(6, 3, generator=gen), every=2)
    callback = PlasticityCallback(monitor)

    class FakeTrainer:
        current_epoch = 0

    trainer = FakeTrainer()
    for epoch in range(2):
        trainer.current_epoch = epoch
        callback.on_train_epoch_start(trainer, None)  # any other hook is a no-op
        for i in range(3):
            callback.on_train_batch_end(trainer, None, None, None, i)
        callback.on_train_epoch_end(trainer, None)
    records = monitor.frame().drop_duplicates("record")
    assert records["step"].tolist() == [2, 3, 4, 6, 6]
    assert records["tag"].tolist()[1] == "epoch 0" and records["tag"].tolist()[4] == "epoch 1"
    with pytest.raises(AttributeError):
        callback.not_a_hook


def test_ntk_condition_number_matches_a_brute_force_kernel(gen):
    model = _perturb(relu_mlp(3, 6, 1, 2, generator=gen), gen, 0.3)
    x = torch.randn(10, 3, generator=gen)
    monitor = PlasticityMonitor(model, x, ntk=5)
    monitor.record()
    got = monitor.ntk_frame()["ntk_condition_number"].iloc[0]
    m64 = relu_mlp(3, 6, 1, 2).double()
    m64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    rows = []
    for n in range(5):
        for a in range(2):
            m64.zero_grad()
            m64(x[n:n + 1].double())[0, a].backward()
            rows.append(torch.cat([p.grad.reshape(-1) for p in m64.parameters()]))
    J = torch.stack(rows)
    eig = torch.linalg.eigvalsh(J @ J.T)
    assert got == pytest.approx(float(eig.max() / eig.min()), rel=1e-6)


def test_a_diverged_model_gives_nan_rows_not_an_error(gen):
    model = relu_mlp(3, 5, 1, 2, generator=gen)
    monitor = PlasticityMonitor(model, torch.randn(6, 3, generator=gen), ntk=3)
    with torch.no_grad():
        model[0][0].weight[0, 0] = math.nan
    monitor.record()
    assert monitor.frame()["weight_scale"].isna().all() and monitor.ntk_frame()["ntk_condition_number"].isna().all()


def test_bad_arguments_are_named():
    model = relu_mlp(3, 5, 1, 2)
    with pytest.raises(ValueError, match="every"):
        PlasticityMonitor(model, torch.randn(4, 3), every=0)
    with pytest.raises(TypeError, match="probe"):
        PlasticityMonitor(model, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="ntk=2 needs a probe of one floating-point"):
        PlasticityMonitor(nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 2)), torch.zeros(4, 2, dtype=torch.long), ntk=2)
    with pytest.raises(TypeError, match="tag"):
        PlasticityMonitor(model, torch.randn(4, 3)).record(tag=3)
    with pytest.raises(ValueError, match="ntk_frame needs"):
        PlasticityMonitor(model, torch.randn(4, 3)).ntk_frame()


def test_plot_draws_one_line_per_layer(gen):
    import matplotlib

    matplotlib.use("Agg")
    monitor = PlasticityMonitor(relu_mlp(3, 5, 1, 2, generator=gen), torch.randn(6, 3, generator=gen), every=1)
    for _ in range(3):
        monitor.step()
    fig = monitor.plot(["weight_spread", "dormant"])
    assert [len(ax.get_lines()) for ax in fig.axes[:2]] == [2, 2]
    with pytest.raises(ValueError, match="measures"):
        monitor.plot(["nope"])


# -- the public unit measures and matrix_isometry --------------------------------------------------------------


def test_unit_measures_agree_with_the_model_level_fractions(gen):
    model = _perturb(relu_mlp(4, 9, 2, 2, generator=gen), gen)
    x = torch.randn(30, 4, generator=gen)
    from isoplast_lite.diagnostics import hidden_features

    feats = hidden_features(model, x)
    assert [float(dormant_units(h, 0.2).double().mean()) for h in feats] == pytest.approx(dormant_fraction(model, x, 0.2, per_layer=True), abs=1e-6)
    assert [float(dead_units(h).double().mean()) for h in feats] == pytest.approx(dead_fraction(model, x, per_layer=True), abs=1e-6)


def test_matrix_isometry_drops_numerically_zero_singular_values(gen):
    U, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))
    W = U @ torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.5, 0.0], dtype=torch.float64)) @ U.T
    r = matrix_isometry(W)
    logs = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64).log()
    assert r["n"] == 4 and r["n_null"] == 1
    assert r["scale"] == pytest.approx(float(logs.mean()), abs=1e-6)
    assert r["spread"] == pytest.approx(float(logs.std(correction=0)), abs=1e-6)


# -- adamo_param_groups ------------------------------------------------------------------------------------------


def _names(model, params):
    ids = {id(p) for p in params}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def _check_partition(model, groups):
    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen)) and set(seen) == {id(p) for p in model.parameters()}


def test_adamo_groups_for_a_cnn():
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 10))
    groups = adamo_param_groups(cnn, iso_strength=0.1)
    _check_partition(cnn, groups)
    assert [g["iso_strength"] for g in groups] == [0.1, 0.0]
    assert _names(cnn, groups[0]["params"]) == ["0.weight", "3.weight", "6.weight"]
    assert "8.weight" in _names(cnn, groups[1]["params"])  # the head, as the book's MLPs
    assert "8.weight" in _names(cnn, adamo_param_groups(cnn, 0.1, head=None)[0]["params"])
    assert _names(cnn, adamo_param_groups(cnn, 0.1, head="6")[0]["params"]) == ["0.weight", "3.weight", "8.weight"]


def test_adamo_groups_for_a_transformer_encoder():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(12, 8)
            self.pos = nn.Parameter(torch.zeros(5, 8))
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = nn.Linear(8, 3)

        def forward(self, t):
            return self.head(self.encoder(self.embed(t) + self.pos).mean(1))

    net = Net()
    groups = adamo_param_groups(net, iso_strength=0.05)
    _check_partition(net, groups)
    iso = _names(net, groups[0]["params"])
    expected = sorted(f"encoder.layers.{i}.{n}" for i in range(2)
                      for n in ("self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight", "linear2.weight"))
    assert iso == expected
    plain = _names(net, groups[1]["params"])
    assert {"embed.weight", "pos", "head.weight", "head.bias", "encoder.layers.0.norm1.weight",
            "encoder.layers.0.self_attn.in_proj_bias"} <= set(plain)
    # the groups drive AdamO: one step on the plain group equals Adam's
    opt = AdamO(groups, lr=1e-2)
    ref = {n: p.detach().clone() for n, p in net.named_parameters()}
    t = torch.randint(0, 12, (4, 5), generator=torch.Generator().manual_seed(0))
    net(t).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    opt.step()
    for n in ("embed.weight", "head.weight"):
        adam_step = 1e-2 * grads[n] / (grads[n].abs() + 1e-8)  # Adam's first step: lr * g / (|g| + eps)
        torch.testing.assert_close(dict(net.named_parameters())[n].detach(), ref[n] - adam_step)


def test_adamo_groups_for_attention_with_separate_projections_and_tied_weights():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.attn = nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True)
            self.proj = nn.Linear(8, 8)
            self.out = nn.Linear(8, 10, bias=False)
            self.out.weight = self.embed.weight  # tied: stays plain

    net = Net()
    groups = adamo_param_groups(net, iso_strength=0.1, head=None)
    _check_partition(net, groups)
    assert _names(net, groups[0]["params"]) == ["attn.k_proj_weight", "attn.out_proj.weight", "attn.q_proj_weight",
                                                "attn.v_proj_weight", "proj.weight"]
    with pytest.raises(ValueError, match="head 'nope' is not a module"):
        adamo_param_groups(net, 0.1, head="nope")
    with pytest.raises(ValueError, match="iso_strength"):
        adamo_param_groups(net, -1.0)


def test_a_layer_the_probe_does_not_reach_gets_nan_rows_and_a_warning(gen):
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x):
            return self.used(x)

    monitor = PlasticityMonitor(Branchy(), torch.randn(5, 3, generator=gen))
    with pytest.warns(UserWarning, match="'unused'.*not called"):
        monitor.record()
    df = monitor.frame().set_index("layer")
    assert df.loc["unused", ["weight_scale", "dormant"]].isna().all() and df.loc["used", ["weight_scale", "dormant"]].notna().all()


def _lightning():
    """Lightning's package, ``lightning`` (requirements.txt installs it for the tests) or the older ``pytorch_lightning``."""
    for name in ("lightning", "pytorch_lightning"):
        try:
            return __import__(name)
        except ImportError:
            continue
    pytest.skip("Lightning is not installed (neither lightning nor pytorch_lightning): "
                "the callback's test with a real Trainer needs it; requirements.txt installs it")


@pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated")  # Lightning 2.6's pytree shim on torch 2.13, not ours
def test_callback_in_a_real_lightning_trainer_records_what_a_direct_record_does(gen):
    L = _lightning()
    model = relu_mlp(3, 6, 1, 2, generator=gen)
    x, y = torch.randn(12, 3, generator=gen), torch.randint(0, 2, (12,), generator=gen)
    probe = torch.randn(8, 3, generator=gen)
    monitor = PlasticityMonitor(model, probe, every=2)
    snapshots = {}  # optimizer step -> the weights after it, to replay each record directly

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def on_train_batch_end(self, outputs, batch, batch_idx):
            snapshots[self.trainer.global_step] = {k: v.clone() for k, v in self.net.state_dict().items()}

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.05)

    class Callback(PlasticityCallback, L.Callback):  # the docstring's mix: Lightning's base class, our hooks
        pass

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)  # 3 batches an epoch
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Callback(monitor)])
    trainer.fit(Module(), loader)
    got = monitor.frame()
    records = got.drop_duplicates("record")
    assert records["step"].tolist() == [2, 3, 4, 6, 6]
    assert records["tag"].fillna("-").tolist() == ["-", "epoch 0", "-", "-", "epoch 1"]
    assert sorted(snapshots) == [1, 2, 3, 4, 5, 6]
    first = next(iter(snapshots[2]))
    assert not torch.equal(snapshots[2][first], snapshots[6][first])  # training moved the weights
    replay_model = relu_mlp(3, 6, 1, 2)
    replay = PlasticityMonitor(replay_model, probe, every=2)
    for step in records["step"]:
        replay_model.load_state_dict(snapshots[step])
        replay.record()
    want = replay.frame()
    measures = [c for c in want.columns if c not in ("record", "step", "tag")]
    assert len(got) == len(want) == 5 * len(set(want["layer"]))
    pd.testing.assert_frame_equal(got[measures].reset_index(drop=True), want[measures].reset_index(drop=True),
                                  check_exact=False, rtol=1e-6, atol=1e-7)
