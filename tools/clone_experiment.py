"""The cloned-unit experiment (issue 23): do clones stay clones under Adam, AdamW, AdamO and the
isometry step alone, and what does the isometry gradient's off-diagonal term do to them?

    OMP_NUM_THREADS=1 .venv/bin/python tools/clone_experiment.py [--seeds 8] [--out isoplast_lite/data/clones]

``PAPER.md`` ("A second trap: cloned units") names cloned-unit manifolds as a trap of gradient
trajectories and says that the off-diagonal term of the isometry gradient,
``sum_{j != i} (w_i . w_j) w_j``, "pushes equal rows apart: a prediction to test". This tool
tests it. Per seed (our choices, not the paper's):

1. a ReLU MLP 64-64-64-10 (``relu_mlp``, orthogonal init) learns task 0 of permuted Digits (256
   images) with Adam (lr 1e-3, batch 32, 400 steps);
2. at the task boundary, ``K = 8`` units of each hidden layer, drawn among the units that fire on
   at least 5% of the probe, are **cloned** Net2Net-style: each gets a new copy (incoming row and
   bias copied, its outgoing weights split in halves between original and copy), so the layer is
   64 + 8 wide and the network's function is unchanged (checked: the largest change of a logit on
   the probe is recorded in the manifest). Two conditions: ``exact`` copies, and ``near`` copies
   (the copy's incoming row and bias perturbed by a relative 1e-4, inside the clone tolerance);
3. from the cloned network, each optimizer trains task 1 (fresh optimizer state) for up to
   ``STEPS[-1]`` steps: ``adam``, ``adamw`` (the ``adamw`` method's default decay), ``adamo``
   (lambda = the project's default, hidden weights), ``iso-only``: the isometry step alone on
   the hidden weights, ``W <- W - lr * lambda * grad R_iso(W)``, no task gradient, and
   ``iso-only-strong``: the same with the step ``ISO_STRONG = 1e-2`` (100 times larger, where the
   isometry step is strong; the step ``lambda = 0.1`` of Loshchilov & Hutter's reading diverges
   from these trained weights: a singular value above about 2.5 overshoots);
4. at the steps of ``STEPS`` every planted pair is measured on a probe of 256 task-1 inputs: the
   relative distances of the incoming weights (with bias) and of the activations, and whether it
   is still a clone (:func:`isoplast_lite.diagnostics.clone_pairs`' definition and tolerance);
   plus the number of clone pairs of the whole layer (:func:`isoplast_lite.diagnostics.clones`).

The prediction from the isometry gradient, exact for the difference of two rows
``delta = w_i - w_j`` (sum over all rows, ``G = W^T W``):
``grad_i - grad_j = 4 (G - I) delta``, so under the isometry step alone
``delta <- (I - 4 s (G - I)) delta`` with ``s = lr * lambda``: equal rows (``delta = 0``) stay
equal (the manifold is invariant), and a small ``delta`` grows along the directions where ``G``
has eigenvalues below 1 and shrinks where above. The off-diagonal term's share of it is
``(w_i . w_j) delta`` (pushes apart, at rate ``4 s w_i . w_j``) minus ``sum_{l != i, j}
(delta . w_l) w_l`` (pulls together along the other rows). The table records, at the clone,
the growth rate of ``|delta|`` per step and per unit of step size ``s`` from each term
(``rate_renormalize``, ``rate_decorrelate``: ``-<term_i - term_j, delta> / |delta|^2``, positive
pushes apart; the growth per step is ``s`` times it), and the growth the frozen-``G``
prediction ``|(I - 4 s (G_0 - I))^k delta_0| / |delta_0|`` gives (``predicted_growth``, with the
optimizer's ``s``: ``lr * lambda`` for ``iso-only``, ``ISO_STRONG`` for ``iso-only-strong``; NaN
for the optimizers with a task gradient) beside the measured one.

Measured (2026-12-04, 6 seeds, ``OMP_NUM_THREADS=1``; the shipped file): exact clones stay
clones for 1600 steps under every optimizer (all 96 planted pairs; the largest relative weight
distance 2e-6 under AdamO, 1e-7 under Adam and AdamW from rounding, exactly 0 under the isometry
step alone, which is symmetric in the rows). Near clones: after 1600 steps 84% [76, 92] are still
clones under Adam, 88% [77, 98] under AdamW, 69% [57, 80] under AdamO (share over seeds, 95%
t-interval), 100% under the isometry step at lr * lambda (measured growth of ``|delta|`` 1.037,
frozen-``G`` prediction 1.032); under the strong isometry step the pairs of the square layer
(72 x 72 after cloning) all separate (rows orthogonal by step 400) while those of the tall first
layer (72 x 64, where orthonormal columns allow equal rows) all stay, and the separated rows
keep equal activations: they part along input directions the layer never sees (the cloned
layer below feeds it duplicate coordinates). At the clone both terms of the isometry gradient
pull near rows *together* in the first layer (median rates -1.28 renormalizing, -0.40
decorrelating, per unit step) and the decorrelating term pushes apart in the second (+0.23).

Writes ``clone-experiment.csv.gz`` (one row per seed x condition x optimizer x step x layer x
pair) and ``manifest.json`` (command, settings, provenance, SHA-256, wall time).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "isoplast_lite" / "data" / "clones"
BENCHMARK = "permuted-digits"
WIDTH, DEPTH, N_TRAIN, BATCH, LR = 64, 2, 256, 32, 1e-3
STEPS_A = 400  # task 0
STEPS = (0, 1, 10, 100, 400, 1600)  # measured on task 1
K = 8  # units cloned per hidden layer
NEAR = 1e-4  # relative perturbation of a "near" copy
ALIVE = 0.05  # a unit may be cloned if it fires on at least this share of the probe
OPTIMIZERS = ("adam", "adamw", "adamo", "iso-only", "iso-only-strong")
ISO_STRONG = 1e-2  # the step of iso-only-strong: 100 times lr * lambda
CONDITIONS = ("exact", "near")
SALT = 31


def clone_units(model, layer: int, units, *, noise: float = 0.0, generator=None):
    """A copy of ``model`` with one new unit per index of ``units`` in hidden block ``layer``.

    The new unit ``width + m`` copies unit ``units[m]``'s incoming row and bias (perturbed by
    ``noise * |row| * xi / sqrt(d)``, ``xi`` standard normal, when ``noise > 0``); both units'
    outgoing columns become half of the original's, so for ``noise = 0`` the network computes
    the same function (Chen, Goodfellow & Shlens 2016, Net2WiderNet). Returns the new model.
    """
    import torch
    from torch import nn

    new = copy.deepcopy(model)
    lin, nxt = new[layer][0], (new[layer + 1][0] if isinstance(new[layer + 1], nn.Sequential) else new[layer + 1])
    idx = torch.as_tensor(list(units), dtype=torch.long)
    with torch.no_grad():
        rows = lin.weight[idx].clone()
        bias = lin.bias[idx].clone()
        if noise > 0:
            d = rows.shape[1] + 1
            full = torch.cat([rows, bias[:, None]], 1)
            xi = torch.randn(full.shape, generator=generator, dtype=full.dtype)
            full = full + noise * full.norm(dim=1, keepdim=True) * xi / math.sqrt(d)
            rows, bias = full[:, :-1], full[:, -1]
        wide = nn.Linear(lin.in_features, lin.out_features + len(idx), dtype=lin.weight.dtype)
        wide.weight.copy_(torch.cat([lin.weight, rows]))
        wide.bias.copy_(torch.cat([lin.bias, bias]))
        half = nxt.weight[:, idx] / 2
        out = nn.Linear(nxt.in_features + len(idx), nxt.out_features, dtype=nxt.weight.dtype)
        out.weight.copy_(torch.cat([nxt.weight, half], 1))
        out.weight[:, idx] = half
        out.bias.copy_(nxt.bias)
    new[layer][0] = wide
    if isinstance(new[layer + 1], nn.Sequential):
        new[layer + 1][0] = out
    else:
        new[layer + 1] = out
    return new


def hidden_weights(model):
    """The hidden blocks' weight matrices (the isometry step's parameters)."""
    return [block[0].weight for block in list(model)[:-1]]


def growth_rates(W, pairs):
    """Per pair ``(i, j)`` of rows of ``W``, the growth rate of ``|w_i - w_j|`` per step and per
    unit of step size that each term of the isometry gradient gives under ``W <- W - s grad
    R_iso``: ``-<term_i - term_j, delta> / |delta|^2`` for the renormalizing and the
    decorrelating terms (:func:`isoplast_lite.isometry.isometry_grad_terms`); positive pushes
    the rows apart. NaN for ``delta = 0``."""
    from isoplast_lite.isometry import isometry_grad_terms

    renorm, decor = isometry_grad_terms(W.detach().double())
    Wd = W.detach().double()
    out = []
    for i, j in pairs:
        delta = Wd[i] - Wd[j]
        nn2 = float(delta @ delta)
        if nn2 == 0:
            out.append((math.nan, math.nan))
            continue
        out.append((-float((renorm[i] - renorm[j]) @ delta) / nn2, -float((decor[i] - decor[j]) @ delta) / nn2))
    return out


def frozen_prediction(W0, pairs, step: float, ks):
    """``|(I - 4 step (G_0 - I))^k delta_0| / |delta_0|`` for each pair and each ``k`` of ``ks``
    (``G_0 = W0^T W0`` at the clone): the isometry step's growth of a row difference with ``G``
    frozen. NaN for ``delta_0 = 0``."""
    import torch

    W0 = W0.detach().double()
    G = W0.mT @ W0
    M = torch.eye(G.shape[0], dtype=G.dtype) - 4 * step * (G - torch.eye(G.shape[0], dtype=G.dtype))
    res = {}
    for i, j in pairs:
        d0 = W0[i] - W0[j]
        n0 = float(d0.norm())
        res[(i, j)] = {k: (float((torch.linalg.matrix_power(M, k) @ d0).norm()) / n0 if n0 > 0 else math.nan) for k in ks}
    return res


def run_seed(seed: int, source):
    """All rows of one seed, and the largest logit change the exact cloning made."""
    import torch
    import torch.nn.functional as F

    from isoplast_lite import AdamO, isometry_grad, relu_mlp
    from isoplast_lite.seeding import seeded_generator
    from isoplast_lite.diagnostics import clone_pairs, clones, firing_share
    from isoplast_lite.methods import DEFAULT_ISO_STRENGTH, make_method
    from isoplast_lite.optim import hidden_head_groups
    from isoplast_lite.tasks import make_stream

    lam = DEFAULT_ISO_STRENGTH
    wd = make_method("adamw").settings.weight_decay
    stream = make_stream(BENCHMARK, seed=seed, n_tasks=2, n_train=N_TRAIN, source=source)
    task_a, task_b = stream.task(0), stream.task(1)
    model = relu_mlp(stream.in_dim, WIDTH, DEPTH, stream.n_classes, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for idx in task_a.batch_indices(STEPS_A, BATCH):
        opt.zero_grad()
        F.cross_entropy(model(task_a.x_train[idx]), task_a.y_train[idx]).backward()
        opt.step()
    probe = task_b.x_train  # (256, 64)
    gen = seeded_generator(seed, 1, SALT)
    planted = {}
    cloned = {}
    for cond in CONDITIONS:
        net = model
        for layer in range(DEPTH):
            share = firing_share(net, probe)[layer]
            alive = torch.nonzero(share >= ALIVE).flatten()
            pick = alive[torch.randperm(len(alive), generator=gen)[:K]].sort().values
            width = net[layer][0].out_features
            planted[(cond, layer)] = [(int(u), width + m) for m, u in enumerate(pick)]
            net = clone_units(net, layer, pick.tolist(), noise=NEAR if cond == "near" else 0.0, generator=gen)
        cloned[cond] = net
    with torch.no_grad():
        logit_change = float((cloned["exact"](probe) - model(probe)).abs().max())
    rows = []
    for cond in CONDITIONS:
        for name in OPTIMIZERS:
            net = copy.deepcopy(cloned[cond])
            hidden = hidden_weights(net)
            head = list(net[-1].parameters())
            hidden_all = [p for block in list(net)[:-1] for p in block.parameters()]
            if name == "adam":
                opt = torch.optim.Adam(net.parameters(), lr=LR)
            elif name == "adamw":
                opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=wd)
            elif name == "adamo":
                opt = AdamO(hidden_head_groups(hidden_all, head, hidden_iso=lam), lr=LR, iso_strength=lam)
            else:
                opt = None
            W0 = [W.detach().clone() for W in hidden]
            iso_step = {"iso-only": LR * lam, "iso-only-strong": ISO_STRONG}.get(name)
            pred = {layer: frozen_prediction(W0[layer], planted[(cond, layer)], iso_step, STEPS) for layer in range(DEPTH)} if iso_step else None
            rates = {layer: growth_rates(W0[layer], planted[(cond, layer)]) for layer in range(DEPTH)}
            batches = task_b.batch_indices(max(STEPS), BATCH)
            step = 0
            for target in STEPS:
                while step < target:
                    if opt is None:
                        with torch.no_grad():
                            for W in hidden:
                                W.sub_(iso_step * isometry_grad(W))
                    else:
                        idx = batches[step]
                        opt.zero_grad()
                        F.cross_entropy(net(task_b.x_train[idx]), task_b.y_train[idx]).backward()
                        opt.step()
                    step += 1
                feats = None
                with torch.no_grad():
                    h = probe
                    feats = []
                    for block in list(net)[:-1]:
                        h = block(h)
                        feats.append(h)
                all_pairs = clones(net, probe)
                for layer in range(DEPTH):
                    lin = net[layer][0]
                    full = torch.cat([lin.weight, lin.bias[:, None]], 1).detach().double()
                    act = feats[layer].double()
                    kept = {tuple(p) for p in clone_pairs(full, act).tolist()}
                    for n, (i, j) in enumerate(planted[(cond, layer)]):
                        wi, wj, hi, hj = full[i], full[j], act[:, i], act[:, j]
                        w_rel = float((wi - wj).norm() / max(float(wi.norm()), float(wj.norm()), 1e-300))
                        hs = max(float(hi.norm()), float(hj.norm()))
                        h_rel = float((hi - hj).norm() / hs) if hs > 0 else 0.0
                        rows.append({
                            "seed": seed, "condition": cond, "optimizer": name, "step": target, "layer": layer, "pair": n,
                            "unit": i, "copy": j, "w_dist": w_rel, "h_dist": h_rel,
                            "w_diff_norm": float((hidden[layer][i] - hidden[layer][j]).detach().double().norm()),
                            "is_clone": (i, j) in kept, "layer_clone_pairs": int(len(all_pairs[layer])),
                            "rate_renormalize": rates[layer][n][0], "rate_decorrelate": rates[layer][n][1],
                            "predicted_growth": pred[layer][(i, j)][target] if pred else math.nan,
                        })  # fmt: skip
    return rows, logit_change


def summarize(df):
    """Per condition x optimizer x step: the share of planted pairs still clones (mean over seeds
    and its 95% t-interval, :func:`isoplast_lite.stats.mean_ci`, the seed the unit), the median
    relative weight distance, and for the near clones the median growth of ``|w_i - w_j|``
    since the clone (measured, and under ``iso-only`` the frozen-``G`` prediction)."""
    import pandas as pd

    from isoplast_lite.stats import mean_ci

    import numpy as np

    keys = ["seed", "condition", "optimizer", "layer", "pair"]
    base = df[df.step == 0].set_index(keys).w_diff_norm
    start = df.set_index(keys).index.map(base).to_numpy(float)
    df = df.assign(growth=np.where(start > 0, df.w_diff_norm.to_numpy(float) / np.where(start > 0, start, 1.0), np.nan))  # undefined for exact clones
    out = []
    for (cond, opt, step), g in df.groupby(["condition", "optimizer", "step"], sort=False):
        per_seed = g.groupby("seed").is_clone.mean()
        lo, mean, hi = mean_ci(per_seed)
        out.append({"condition": cond, "optimizer": opt, "step": step, "kept": mean, "kept_lo": lo, "kept_hi": hi,
                    "w_dist_median": float(g.w_dist.median()), "w_dist_max": float(g.w_dist.max()), "growth_median": float(g.growth.median()),
                    "predicted_growth_median": float(g.predicted_growth.median()),
                    "rate_decorrelate_median": float(g.rate_decorrelate.median()),
                    "rate_renormalize_median": float(g.rate_renormalize.median()), "n_seeds": int(g.seed.nunique())})  # fmt: skip
    return pd.DataFrame(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error(f"--seeds must be >= 2 (intervals over seeds), got {args.seeds}")

    import pandas as pd
    import torch

    from isoplast_lite.files import atomic_write, write_csv_gz
    from isoplast_lite.results import provenance, write_folder_checksums
    from isoplast_lite.tasks import load_source

    start = time.perf_counter()
    source = load_source("digits")
    rows, changes = [], []
    for seed in range(args.seeds):
        r, change = run_seed(seed, source)
        rows.extend(r)
        changes.append(change)
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv_gz(args.out / "clone-experiment.csv.gz", df, float_format="%.9g")
    manifest = {
        "clone-experiment": {
            "file": "clone-experiment.csv.gz",
            "command": f"python tools/clone_experiment.py --seeds {args.seeds}",  # run with OMP_NUM_THREADS=1 (provenance.threads)
            "settings": {"benchmark": BENCHMARK, "width": WIDTH, "depth": DEPTH, "n_train": N_TRAIN, "batch_size": BATCH, "lr": LR,
                         "steps_task0": STEPS_A, "steps_measured": list(STEPS), "units_cloned_per_layer": K, "near_noise": NEAR,
                         "alive_share": ALIVE, "optimizers": list(OPTIMIZERS), "seeds": args.seeds},  # fmt: skip
            "max_logit_change_exact_clone": max(changes),
            "provenance": provenance(threads=torch.get_num_threads()),
            "seconds": round(time.perf_counter() - start, 1),
        }
    }
    text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(args.out / "manifest.json", lambda h: h.write(text.encode()))
    write_folder_checksums(args.out)  # every file's SHA-256, checked on load
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summarize(df).round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
