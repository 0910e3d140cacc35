"""isoplast_lite.beyond_mlp (chapter 9's models, stream and monitored loop) and its shipped runs."""

import dataclasses

import pandas as pd
import pytest
import torch

from isoplast_lite.beyond_mlp import (METHODS, RunSpec, continual_run, digits_images, load_shipped, random_label_sequences,
                                      small_cnn, small_transformer)
from isoplast_lite.monitor import monitored_layers
from isoplast_lite.results import manifest

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sequence_stream_keeps_inputs_and_draws_new_labels():
    a, b = random_label_sequences(3, 3, n_train=64), random_label_sequences(3, 3, n_train=64)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))  # deterministic
    assert torch.equal(a[0][0], a[2][0]) and not torch.equal(a[0][1], a[1][1])
    assert int(a[0][0].max()) < 16 and set(a[1][1].tolist()) <= set(range(10))


def test_digits_images_are_the_random_label_stream_reshaped():
    from isoplast_lite.tasks import make_stream

    (x, y), = digits_images(1, 1, n_train=32)
    task = make_stream("random-label-digits", seed=1, n_tasks=1, n_train=32).task(0)
    assert torch.equal(x.reshape(32, 64), task.x_train) and torch.equal(y, task.y_train)


def test_fresh_restarts_and_the_others_keep_one_model():
    spec = RunSpec("transformer", n_tasks=2, steps_per_task=3, batch_size=8, n_train=16, every=2, probe=8)
    rows = {m: continual_run(spec, m, 0) for m in METHODS}
    for method, (acc, layers) in rows.items():
        assert acc.task.tolist() == [0, 1] and (acc.method == method).all()
        assert set(layers.task) == {0, 1} and set(layers.layer) == {l.name for l in monitored_layers(small_transformer())[0]}
    # the same seed and task-0 initialization: the first task is identical for fresh and adam
    pd.testing.assert_series_equal(rows["adam"][0].train_acc.iloc[:1], rows["fresh"][0].train_acc.iloc[:1])
    # a fresh network's monitor restarts its step count at each task; adam's does not
    steps = {m: rows[m][1].groupby("task").step.max().tolist() for m in ("adam", "fresh")}
    assert steps == {"adam": [3, 6], "fresh": [3, 3]}
    with pytest.raises(ValueError, match="method"):
        continual_run(spec, "sgd", 0)


def test_the_shipped_runs_are_complete_and_match_their_manifest():
    for name in ("cnn", "transformer"):
        entry = manifest("yourmodel")[name]
        spec = RunSpec(**entry["config"])
        acc, layers = load_shipped(name)
        assert dataclasses.asdict(spec) == entry["config"] and entry["seeds"] >= 2
        full = pd.MultiIndex.from_product([entry["methods"], range(entry["seeds"]), range(spec.n_tasks)])
        assert acc.set_index(["method", "seed", "task"]).index.sort_values().equals(full.sort_values())
        model = small_cnn() if name == "cnn" else small_transformer()
        assert set(layers.layer) == {l.name for l in monitored_layers(model)[0]}
        ends = layers[layers.tag.str.startswith("task", na=False)]
        assert len(ends) == len(acc) * layers.layer.nunique()  # one end-of-task record per run, task and layer
        assert acc.train_acc.between(0, 1).all() and layers.dormant.between(0, 1).all()


def test_the_lambda_protocol_log_supports_its_choice_and_the_shipped_runs_use_it():
    """The protocol table follows from the search log (recomputed here from the raw rows), its
    choice is the best score, an edge choice says why it stopped, and the shipped runs use it."""
    from isoplast_lite.optim import ISO_STABILITY_LIMIT
    from isoplast_lite.results import load_table

    entry = manifest("yourmodel")["lambda-search"]
    runs = load_table("lambda-search", "yourmodel", "file")
    protocol = load_table("lambda-search", "yourmodel", "protocol_file", keep_default_na=False)
    assert set(runs.seed) == set(entry["seeds"]) and not set(entry["seeds"]) & set(range(manifest("yourmodel")["cnn"]["seeds"]))
    for name in ("cnn", "transformer"):
        mine, rows = runs[runs.model == name], protocol[protocol.model == name]
        n_tasks = entry["configs"][name]["n_tasks"]
        last = mine[mine.task >= n_tasks - max(1, round(0.2 * n_tasks))]
        for r in rows.itertuples():
            one = last[(last.method == r.method) & (last.iso_strength == r.iso_strength)]
            assert sorted(one.seed.unique()) == sorted(entry["seeds"]) and len(one.task.unique()) == n_tasks // 5
            assert r.score == pytest.approx(one.groupby("seed").train_acc.mean().mean(), abs=1e-6)
        adamo = rows[rows.method == "adamo"].sort_values("iso_strength")
        assert len(adamo) >= 4 and adamo.chosen.sum() == 1
        pick = adamo[adamo.chosen].iloc[0]
        assert pick.score == adamo.score.max()
        interior = adamo.iso_strength.iloc[0] < pick.iso_strength < adamo.iso_strength.iloc[-1]
        assert (pick.why == "interior") == interior and pick.why
        assert 8 * entry["configs"][name]["lr"] * adamo.iso_strength.max() <= ISO_STABILITY_LIMIT
        assert manifest("yourmodel")[name]["config"]["iso_strength"] == pick.iso_strength


def test_precompute_tool_refuses_set_with_tune_lambda(tmp_path, capsys):
    """--set would be silently ignored by the lambda protocol: refused before any training."""
    from tools_loader import load_tool

    tool = load_tool("precompute_your_model")
    with pytest.raises(SystemExit) as exc:
        tool.main(["--tune-lambda", "--set", "lr=0.1", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "not allowed with --tune-lambda" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
