"""The shipped runs of the paper's stated setting (isoplast_lite/data/paper, tools/precompute_paper_setting.py)."""

import json

import numpy as np
import pytest

from isoplast_lite import results

MANIFEST = results.manifest("paper")


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_every_arm_ran_the_papers_hyperparameters_on_every_seed_and_task(name):
    entry = MANIFEST[name]
    df = results.load(name, "paper")
    config = entry["config"]
    tasks = entry["reduced"]["tasks_done"] if entry.get("reduced") else config["n_tasks"]
    assert set(df.lr) == {1e-3}  # the paper's learning rate for Adam and AdamO
    adamo = df[df.method == "adamo"]
    assert set(adamo.iso_strength) == {1e-3} and set(adamo.iso_scaling) == {"lr", "schedule"}
    assert sorted(df.method.unique()) == ["adam", "adamo", "fresh"]
    counts = df.groupby(["method", "settings"]).apply(lambda g: (g.seed.nunique(), g.task.nunique()), include_groups=False)
    assert set(counts) == {(8, tasks)} and len(counts) == 4
    assert np.isfinite(df[entry["metric"]]).all()
    # the float64 eNTK: a condition number is a number exactly when it is resolved
    finite = np.isfinite(df.ntk_cond)
    assert (finite == df.ntk_resolved.astype(bool)).all()


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_singular_values_shipped_are_those_of_every_hidden_and_head_matrix(name):
    """Per trained arm and seed: one row per singular value of each weight matrix (min(out, in) of them)."""
    sv = results.load_table(name, "paper", "sv_file")
    config = MANIFEST[name]["config"]
    in_dim = {"digits": 64, "mnist1d": 40}[config["benchmark"].split("-")[-1]]  # the data sets' input sizes
    width, depth = config["width"], config["depth"]
    expected = [min(width, in_dim)] + [width] * (depth - 1) + [min(10, width)]
    assert set(sv.method) == {"adam", "adamo"}
    for (_, _, seed), g in sv.groupby(["method", "settings", "seed"]):
        assert g.groupby("layer").size().tolist() == expected
        assert (g.sigma >= 0).all() and g.kind.tolist().count("head") == expected[-1]
    assert {json.loads(s).get("iso_scaling", "") for s in sv.settings} == {"", "lr", "schedule"}
