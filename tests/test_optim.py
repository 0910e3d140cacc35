"""Tests of AdamO against torch.optim.Adam/AdamW and a hand-written reference of PAPER.md."""

import copy

import pytest
import torch
from torch import nn

from isoplast_lite import AdamO, relu_mlp

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one thread is faster

STEPS = 25


def _data(gen, n=32, d_in=6, d_out=3):
    x = torch.randn(STEPS, n, d_in, generator=gen, dtype=torch.float64)
    y = torch.randn(STEPS, n, d_out, generator=gen, dtype=torch.float64)
    return x, y


def _train(model, opt, x, y, scheduler=None):
    for t in range(STEPS):
        opt.zero_grad()
        nn.functional.mse_loss(model(x[t]), y[t]).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def _model(seed=0):
    return relu_mlp(6, 16, 2, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _assert_same_params(a, b, atol=1e-12):
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q, atol=atol, rtol=0, msg=name)


def test_iso_strength_zero_equals_adam(gen):
    x, y = _data(gen)
    a, b = _model(), _model()
    _train(a, AdamO(a.parameters(), lr=1e-2, iso_strength=0.0), x, y)
    _train(b, torch.optim.Adam(b.parameters(), lr=1e-2), x, y)
    assert (a[0][0].weight - _model()[0][0].weight).abs().max() > 1e-2  # it trained
    _assert_same_params(a, b, atol=0)  # same operations in the same order: bitwise equal


def test_iso_strength_zero_with_weight_decay_equals_adamw(gen):
    x, y = _data(gen)
    a, b = _model(), _model()
    _train(a, AdamO(a.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3, iso_strength=0.0), x, y)
    _train(b, torch.optim.AdamW(b.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3), x, y)
    _assert_same_params(a, b, atol=0)


def _reference_adamo(params, grads_fn, steps, lr_at, lr, betas, eps, wd, lam, iso_lr):
    """Hand-written PAPER.md update, one tensor at a time, no library code."""
    b1, b2 = betas
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        grads = grads_fn(params, t - 1)
        eta = lr * lr_at(t - 1)
        eta_iso = eta if iso_lr is None else iso_lr
        new = []
        for i, (p, g) in enumerate(zip(params, grads)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat, vhat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            step = p - eta * mhat / (vhat.sqrt() + eps) - eta * wd * p
            if p.ndim >= 2:
                W = p.reshape(p.shape[0], -1)
                if W.shape[0] >= W.shape[1]:
                    grad_iso = 4 * W @ (W.T @ W - torch.eye(W.shape[1], dtype=W.dtype))
                else:
                    grad_iso = 4 * (W @ W.T - torch.eye(W.shape[0], dtype=W.dtype)) @ W
                step = step - eta_iso * lam * grad_iso.reshape(p.shape)
            new.append(step)
        params = new
    return params


SHAPES = [(7, 4), (3, 8), (5, 5), (4, 2, 3, 3), (6,)]


def _quadratic_grads(targets):
    """Gradient of sum ||p - target_t||^2 * 0.5 at step t: a deterministic task gradient."""
    return lambda params, t: [p - tgt[t] for p, tgt in zip(params, targets)]


@pytest.mark.parametrize("iso_lr", [None, 0.05])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_iso_step_equals_hand_written_update(gen, iso_lr, weight_decay):
    init = [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in SHAPES]
    targets = [torch.randn(STEPS, *s, generator=gen, dtype=torch.float64) for s in SHAPES]
    kw = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, wd=weight_decay, lam=0.5, iso_lr=iso_lr)
    expected = _reference_adamo(init, _quadratic_grads(targets), STEPS, lambda t: 1.0, **kw)

    params = [p.clone().requires_grad_() for p in init]
    opt = AdamO(params, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=weight_decay, iso_strength=0.5, iso_lr=iso_lr)
    for t in range(STEPS):
        for p, g in zip(params, _quadratic_grads(targets)([q.detach() for q in params], t)):
            p.grad = g.clone()
        opt.step()
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e, atol=1e-10, rtol=0)
    # the iso step changed the matrices (not an accidental no-op)
    plain = _reference_adamo(init, _quadratic_grads(targets), STEPS, lambda t: 1.0, **{**kw, "lam": 0.0})
    assert (plain[0] - expected[0]).abs().max() > 1e-3


def test_iso_lr_none_follows_scheduler_and_number_does_not(gen):
    init = [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in SHAPES[:2]]
    targets = [torch.randn(STEPS, *s, generator=gen, dtype=torch.float64) for s in SHAPES[:2]]
    factor = lambda t: 0.5 ** (t // 5)  # StepLR(step_size=5, gamma=0.5)
    for iso_lr in [None, 0.02]:
        expected = _reference_adamo(init, _quadratic_grads(targets), STEPS, factor, lr=0.02, betas=(0.9, 0.999),
                                    eps=1e-8, wd=0.0, lam=1.0, iso_lr=iso_lr)
        params = [p.clone().requires_grad_() for p in init]
        opt = AdamO(params, lr=0.02, iso_strength=1.0, iso_lr=iso_lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
        for t in range(STEPS):
            for p, g in zip(params, _quadratic_grads(targets)([q.detach() for q in params], t)):
                p.grad = g.clone()
            opt.step()
            sched.step()
        for p, e in zip(params, expected):
            torch.testing.assert_close(p.detach(), e, atol=1e-10, rtol=0)


def test_head_group_opt_out_and_vectors_never_regularized(gen):
    hidden0 = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    head0 = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    grads = torch.randn(STEPS, 2, 8, 8, generator=gen, dtype=torch.float64)
    hidden, head = hidden0.clone().requires_grad_(), head0.clone().requires_grad_()
    head_adam = head0.clone().requires_grad_()
    hidden_adam = hidden0.clone().requires_grad_()
    opt = AdamO([{"params": [hidden]}, {"params": [head], "iso_strength": 0.0}], lr=1e-2, iso_strength=0.5)
    ref = torch.optim.Adam([hidden_adam, head_adam], lr=1e-2)
    for t in range(STEPS):
        for p, q, g in [(hidden, hidden_adam, grads[t, 0, :, :6]), (head, head_adam, grads[t, 1, :3])]:
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(head, head_adam, atol=1e-12, rtol=0)  # head opted out: exactly Adam
    assert (hidden - hidden_adam).abs().max() > 1e-3  # the hidden matrix got the isometry step
    # a vector with zero task gradient does not move even with a huge iso_strength
    vec = torch.full((5,), 3.0, requires_grad=True)
    opt = AdamO([vec], lr=0.1, iso_strength=100.0)
    vec.grad = torch.zeros(5)
    opt.step()
    assert torch.equal(vec.detach(), torch.full((5,), 3.0))


def test_seed_dims_equals_independent_runs(gen):
    S = 3
    x, y = _data(gen)
    models = [_model(seed) for seed in range(S)]
    names = [n for n, _ in models[0].named_parameters()]
    stacked = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_() for n in names}
    opt = AdamO([{"params": list(stacked.values()), "seed_dims": 1}], lr=1e-2, weight_decay=0.1, iso_strength=0.3)

    def stacked_forward(inputs):  # (N, in) -> (S, N, out), same data for every seed
        h = inputs.expand(S, *inputs.shape)
        for i in range(2):
            w, bias = stacked[f"{i}.0.weight"], stacked[f"{i}.0.bias"]
            h = torch.relu(h @ w.mT + bias[:, None])
        return h @ stacked["2.weight"].mT + stacked["2.bias"][:, None]

    for t in range(STEPS):
        opt.zero_grad()
        out = stacked_forward(x[t])
        sum(nn.functional.mse_loss(out[s], y[t]) for s in range(S)).backward()
        opt.step()
    for s, model in enumerate(models):
        _train(model, AdamO(model.parameters(), lr=1e-2, weight_decay=0.1, iso_strength=0.3), x, y)
        for n, p in model.named_parameters():
            torch.testing.assert_close(stacked[n][s], p, atol=1e-12, rtol=0, msg=n)


def test_state_dict_round_trip_and_closure(gen):
    x, y = _data(gen)
    a = _model()
    opt_a = AdamO(a.parameters(), lr=1e-2, iso_strength=0.2)
    for t in range(5):
        opt_a.zero_grad()
        nn.functional.mse_loss(a(x[t]), y[t]).backward()
        opt_a.step()
    b = copy.deepcopy(a)
    opt_b = AdamO(b.parameters(), lr=0.5, iso_strength=0.0)  # different settings, overwritten by load
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert opt_b.param_groups[0]["iso_strength"] == 0.2 and opt_b.param_groups[0]["lr"] == 1e-2
    for model, opt in [(a, opt_a), (b, opt_b)]:
        for t in range(5, 10):
            def closure(model=model, opt=opt, t=t):
                opt.zero_grad()
                loss = nn.functional.mse_loss(model(x[t]), y[t])
                loss.backward()
                return loss
            returned = []
            loss = opt.step(lambda: returned.append(closure()) or returned[-1])
            assert loss is returned[0]  # step(closure) returns the closure's loss
    _assert_same_params(a, b, atol=0)
    assert int(opt_a.state[a[0][0].weight]["step"]) == 10


def test_single_step_by_hand():
    W = torch.tensor([[2.0, 0.0], [0.0, 0.5], [0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    opt = AdamO([W], lr=0.1, iso_strength=0.01)
    W.grad = torch.zeros_like(W)
    opt.step()
    # sigma -> sigma - 0.1 * 0.01 * 4 * sigma * (sigma^2 - 1)
    expected = torch.tensor([[2 - 0.004 * 2 * 3, 0.0], [0.0, 0.5 - 0.004 * 0.5 * (0.25 - 1)], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(W.detach(), expected)


def test_skips_parameters_without_grad(gen):
    p = torch.randn(3, 3, generator=gen, requires_grad=True)
    before = p.detach().clone()
    AdamO([p], iso_strength=1.0).step()
    assert torch.equal(p.detach(), before)
