"""Tests of AdamO against torch.optim.Adam/AdamW and a hand-written reference of PAPER.md."""

import copy
import math

import pytest
import torch
from torch import nn

from isoplast_lite import AdamO, isometry_penalty, relu_mlp
from isoplast_lite.optim import adamo_update_

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


@pytest.mark.parametrize("fused", [False, None])
def test_iso_strength_zero_equals_adam(gen, fused):
    x, y = _data(gen)
    a, b = _model(), _model()
    _train(a, AdamO(a.parameters(), lr=1e-2, iso_strength=0.0, fused=fused), x, y)
    # the reference path is torch's single-tensor Adam, the fused path torch's fused kernel
    _train(b, torch.optim.Adam(b.parameters(), lr=1e-2, fused=fused is None), x, y)
    assert (a[0][0].weight - _model()[0][0].weight).abs().max() > 1e-2  # it trained
    _assert_same_params(a, b, atol=0)  # same operations in the same order: bitwise equal


@pytest.mark.parametrize("fused", [False, None])
def test_iso_strength_zero_with_weight_decay_equals_adamw(gen, fused):
    x, y = _data(gen)
    a, b = _model(), _model()
    _train(a, AdamO(a.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3, iso_strength=0.0, fused=fused), x, y)
    _train(b, torch.optim.AdamW(b.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.3, fused=fused is None), x, y)
    _assert_same_params(a, b, atol=0)


def _reference_adamo(params, grads_fn, steps, lr_at, lr, betas, eps, wd, lam, iso_lr):
    """Hand-written PAPER.md update, one tensor at a time, no library code: the amortized rule
    below with k = 1 (the isometry step at every step) is exactly that update."""
    return _reference_adamo_every(params, grads_fn, steps, lr_at, lr, betas, eps, wd, lam, iso_lr, k=1)


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


# ------------------------------------------------------------------ amortized mode (iso_every)


def _frozen_exact_step(p, g, m, v, t, lr, b1, b2, eps, wd, lam, seed_dims):
    """The exact-mode update op for op, as the code was before iso_every existed (bitwise oracle)."""
    decay = 1.0 - lr * wd
    new = None
    if lam != 0.0 and p.ndim - seed_dims >= 2:
        W = p.reshape(*p.shape[: seed_dims + 1], -1)
        tall = W.shape[-2] >= W.shape[-1]
        G = W.mT @ W if tall else W @ W.mT
        G.diagonal(dim1=-2, dim2=-1).sub_(1.0)
        mm = torch.addmm if W.ndim == 2 else torch.baddbmm
        new = (mm(W, W, G, beta=decay, alpha=-4.0 * (lr * lam)) if tall else mm(W, G, W, beta=decay, alpha=-4.0 * (lr * lam))).view(p.shape)
    elif wd != 0.0:
        p.mul_(decay)
    m.lerp_(g, 1.0 - b1)
    v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
    step_size = lr / (1.0 - b1**t)
    denom = (v.sqrt() / (1.0 - b2**t) ** 0.5).add_(eps)
    if new is None:
        p.addcdiv_(m, denom, value=-step_size)
    else:
        p.copy_(new.addcdiv_(m, denom, value=-step_size))


@pytest.mark.parametrize("shape,seed_dims", [((7, 4), 0), ((3, 8), 0), ((4, 2, 3, 3), 0), ((6,), 0), ((3, 5, 4), 1), ((3, 4, 6), 1)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_iso_every_one_is_bitwise_the_exact_update(gen, shape, seed_dims, weight_decay):
    """The reference path (fused=False), op for op the update as it was before iso_every existed."""
    p0 = torch.randn(shape, generator=gen)
    grads = torch.randn(STEPS, *shape, generator=gen)
    kw = dict(lr=1e-2, weight_decay=weight_decay, iso_strength=0.3, seed_dims=seed_dims)
    ps = [p0.clone().requires_grad_() for _ in range(3)]
    opts = [AdamO([ps[0]], fused=False, **kw), AdamO([ps[1]], iso_every=1, fused=False, **kw)]  # default and explicit
    p_fn, m, v = p0.clone(), torch.zeros(shape), torch.zeros(shape)  # the pure function, no iso_every
    p_ref, m_ref, v_ref = p0.clone(), torch.zeros(shape), torch.zeros(shape)
    for t in range(STEPS):
        for p, opt in zip(ps, opts):
            p.grad = grads[t].clone()
            opt.step()
        adamo_update_(p_fn, grads[t], m, v, t + 1, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8,
                      weight_decay=weight_decay, iso_strength=0.3, iso_lr=None, seed_dims=seed_dims)
        _frozen_exact_step(p_ref, grads[t], m_ref, v_ref, t + 1, 1e-2, 0.9, 0.999, 1e-8, weight_decay, 0.3, seed_dims)
    for q in [ps[0].detach(), ps[1].detach(), p_fn]:
        assert torch.equal(q, p_ref)
    assert not torch.equal(p_ref, p0)


def _reference_adamo_every(params, grads_fn, steps, lr_at, lr, betas, eps, wd, lam, iso_lr, k, seed_dims=0, iso_scaling="lr"):
    """Hand-written amortized rule: on steps t % k == 0 subtract k * eta_iso * lam * grad R(theta_t).

    eta_iso: iso_lr, or the current lr (iso_scaling "lr", PyTorch's AdamW reading); or
    (iso_lr or 1) times the schedule multiplier lr_t / lr_0 (iso_scaling "schedule",
    Loshchilov & Hutter's reading)."""
    b1, b2 = betas
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        grads = grads_fn(params, t - 1)
        eta = lr * lr_at(t - 1)
        if iso_scaling == "schedule":
            eta_iso = (1.0 if iso_lr is None else iso_lr) * lr_at(t - 1)
        else:
            eta_iso = eta if iso_lr is None else iso_lr
        new = []
        for i, (p, g) in enumerate(zip(params, grads)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat, vhat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            step = p - eta * mhat / (vhat.sqrt() + eps) - eta * wd * p
            if t % k == 0 and p.ndim - seed_dims >= 2:
                copies = p.reshape(-1, *p.shape[seed_dims:]) if seed_dims else p[None]
                grad_iso = []
                for c in copies:  # each copy on its own
                    W = c.reshape(c.shape[0], -1)
                    if W.shape[0] >= W.shape[1]:
                        gi = 4 * W @ (W.T @ W - torch.eye(W.shape[1], dtype=W.dtype))
                    else:
                        gi = 4 * (W @ W.T - torch.eye(W.shape[0], dtype=W.dtype)) @ W
                    grad_iso.append(gi.reshape(c.shape))
                step = step - k * eta_iso * lam * torch.stack(grad_iso).reshape(p.shape)
            new.append(step)
        params = new
    return params


def _run_adamo(init, grads_fn, steps, scheduler_fn=None, **kw):
    params = [p.clone().requires_grad_() for p in init]
    opt = AdamO(params, **kw)
    sched = scheduler_fn(opt) if scheduler_fn else None
    for t in range(steps):
        for p, g in zip(params, grads_fn([q.detach() for q in params], t)):
            p.grad = g.clone()
        opt.step()
        if sched is not None:
            sched.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("k", [2, 3, 7])
@pytest.mark.parametrize("iso_lr,weight_decay", [(None, 0.0), (None, 0.1), (0.01, 0.1)])
def test_iso_every_equals_hand_written_amortized_update(gen, k, iso_lr, weight_decay):
    # SHAPES: tall, wide, square, conv kernel, vector; k * eta_iso * lam small enough to stay stable
    init = [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in SHAPES]
    targets = [torch.randn(STEPS, *s, generator=gen, dtype=torch.float64) for s in SHAPES]
    kw = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, wd=weight_decay, lam=0.2, iso_lr=iso_lr)
    expected = _reference_adamo_every(init, _quadratic_grads(targets), STEPS, lambda t: 1.0, k=k, **kw)
    got = _run_adamo(init, _quadratic_grads(targets), STEPS, lr=0.01, betas=(0.9, 0.99), eps=1e-8,
                     weight_decay=weight_decay, iso_strength=0.2, iso_lr=iso_lr, iso_every=k)
    for p, e in zip(got, expected):
        assert e.abs().max() < 10  # a bounded trajectory, so atol means something
        torch.testing.assert_close(p, e, atol=1e-10, rtol=0)
    # it is a different rule from the exact one (the test can tell the two apart) ...
    exact = _reference_adamo(init, _quadratic_grads(targets), STEPS, lambda t: 1.0, **kw)
    assert (exact[0] - expected[0]).abs().max() > 1e-6
    # ... and the hand-written oracle with k = 1 is the exact rule
    for a, b in zip(_reference_adamo_every(init, _quadratic_grads(targets), STEPS, lambda t: 1.0, k=1, **kw), exact):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_iso_every_applies_only_on_multiples_of_k(gen):
    W0 = torch.randn(6, 4, generator=gen, dtype=torch.float64) / 6**0.5
    W = W0.clone().requires_grad_()
    opt = AdamO([W], lr=0.1, iso_strength=0.2, iso_every=3)
    for t in range(1, 10):
        before = W.detach().clone()
        W.grad = torch.zeros_like(W)  # zero task gradient: only the isometry step can move W
        opt.step()
        if t % 3:
            assert torch.equal(W.detach(), before)
        else:
            Wb = before
            expected = Wb - 3 * 0.1 * 0.2 * 4 * Wb @ (Wb.T @ Wb - torch.eye(4, dtype=torch.float64))
            torch.testing.assert_close(W.detach(), expected, atol=1e-12, rtol=0)
            assert (W.detach() - before).abs().max() > 1e-3  # and it did move


@pytest.mark.parametrize("k", [2, 4])
def test_iso_every_with_seed_dims_equals_hand_written_and_independent_runs(gen, k):
    S = 3
    shapes = [(S, 7, 4), (S, 3, 8), (S, 4, 2, 3, 3), (S, 6)]  # tall, wide, conv, bias
    init = [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in shapes]
    targets = [torch.randn(STEPS, *s, generator=gen, dtype=torch.float64) for s in shapes]
    kw = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, iso_strength=0.5, iso_every=k)
    stacked = _run_adamo(init, _quadratic_grads(targets), STEPS, seed_dims=1, **kw)
    expected = _reference_adamo_every(init, _quadratic_grads(targets), STEPS, lambda t: 1.0, lr=0.01, betas=(0.9, 0.99),
                                      eps=1e-8, wd=0.1, lam=0.5, iso_lr=None, k=k, seed_dims=1)
    for p, e in zip(stacked, expected):
        torch.testing.assert_close(p, e, atol=1e-10, rtol=0)
    for s in range(S):  # and each copy equals its own AdamO run
        single = _run_adamo([p[s] for p in init], _quadratic_grads([tg[:, s] for tg in targets]), STEPS, **kw)
        for p, q in zip(stacked, single):
            torch.testing.assert_close(p[s], q, atol=1e-12, rtol=0)


@pytest.mark.parametrize("iso_lr", [None, 0.02])
def test_iso_every_with_scheduler_uses_lr_at_the_applied_step(gen, iso_lr):
    init = [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in SHAPES[:4]]
    targets = [torch.randn(STEPS, *s, generator=gen, dtype=torch.float64) for s in SHAPES[:4]]
    factor = lambda t: 0.5 ** (t // 5)  # StepLR(step_size=5, gamma=0.5): jumps inside k=3 windows
    k = 3
    expected = _reference_adamo_every(init, _quadratic_grads(targets), STEPS, factor, lr=0.02, betas=(0.9, 0.999),
                                      eps=1e-8, wd=0.0, lam=1.0, iso_lr=iso_lr, k=k)
    got = _run_adamo(init, _quadratic_grads(targets), STEPS, lr=0.02, iso_strength=1.0, iso_lr=iso_lr, iso_every=k,
                     scheduler_fn=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5))
    for p, e in zip(got, expected):
        torch.testing.assert_close(p, e, atol=1e-10, rtol=0)
    if iso_lr is None:  # the schedule matters: constant-lr reference differs
        flat = _reference_adamo_every(init, _quadratic_grads(targets), STEPS, lambda t: 1.0, lr=0.02, betas=(0.9, 0.999),
                                      eps=1e-8, wd=0.0, lam=1.0, iso_lr=None, k=k)
        assert (flat[0] - expected[0]).abs().max() > 1e-4


def test_iso_every_state_dict_round_trip_mid_window(gen):
    x, y = _data(gen)
    a, ref = _model(), _model()
    opt_a = AdamO(a.parameters(), lr=1e-2, iso_strength=0.2, iso_every=3)
    opt_ref = AdamO(ref.parameters(), lr=1e-2, iso_strength=0.2, iso_every=3)

    def train(model, opt, ts):
        for t in ts:
            opt.zero_grad()
            nn.functional.mse_loss(model(x[t]), y[t]).backward()
            opt.step()

    train(a, opt_a, range(5))  # stop after step 5: mid-window (next iso step at 6)
    train(ref, opt_ref, range(12))
    b = copy.deepcopy(a)
    opt_b = AdamO(b.parameters(), lr=0.5, iso_strength=0.0)  # iso_every=1 here, overwritten by load
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert opt_b.param_groups[0]["iso_every"] == 3
    train(b, opt_b, range(5, 12))
    _assert_same_params(b, ref, atol=0)
    # a state dict saved before iso_every existed loads as the exact mode
    old = copy.deepcopy(opt_a.state_dict())
    del old["param_groups"][0]["iso_every"]
    opt_c = AdamO(copy.deepcopy(a).parameters(), lr=1e-2, iso_every=5)
    opt_c.load_state_dict(old)
    assert opt_c.param_groups[0]["iso_every"] == 1


@pytest.mark.parametrize("bad", [0, -1])
def test_iso_every_rejects_values_below_one(bad):
    P = nn.Parameter(torch.ones(3, 3))
    with pytest.raises(ValueError, match="iso_every"):
        AdamO([P], iso_every=bad)
    with pytest.raises(ValueError, match="iso_every"):
        AdamO([{"params": [P], "iso_every": bad}])


@pytest.mark.parametrize("bad", [1.5, "2", True, 2.0, None])
def test_iso_every_rejects_non_integers(bad):
    P = nn.Parameter(torch.ones(3, 3))
    with pytest.raises(TypeError, match="iso_every"):
        AdamO([P], iso_every=bad)
    with pytest.raises(TypeError, match="iso_every"):
        AdamO([{"params": [P], "iso_every": bad}])


def test_iso_every_tracks_the_exact_isometry_flow_when_lr_lambda_is_small(gen):
    # zero task gradient: only the isometry flow moves W (the Adam term is 0 / (0 + eps) = 0)
    W0 = torch.randn(32, 16, generator=gen, dtype=torch.float64) / 32**0.5  # sigma in ~[0.3, 1.7]
    N, k = 400, 4

    def penalties(lr, lam, k):
        W = W0.clone().requires_grad_()
        opt = AdamO([W], lr=lr, iso_strength=lam, iso_every=k)
        out = []
        for t in range(1, N + 1):
            W.grad = torch.zeros_like(W)
            opt.step()
            if t % k == 0:
                out.append(float(isometry_penalty(W.detach())))
        return torch.tensor(out)

    for lr, lam in [(1e-2, 0.1), (1e-2, 0.05)]:  # lr * lambda = 1e-3, 5e-4; k * lr * lambda * 4(3 sigma^2 - 1) < 0.04
        exact = penalties(lr, lam, 1)[k - 1 :: k]  # the exact trajectory at the same steps
        amortized = penalties(lr, lam, k)
        start = float(isometry_penalty(W0))
        assert exact[-1] < 0.5 * start  # the flow made real progress toward an isometry
        rel = ((amortized - exact).abs() / exact).max()
        assert rel < 0.03, f"lr*lambda={lr * lam}: max relative gap {rel:.4f}"
    # and the gap is controlled by k * lr * lambda: a much larger k drifts further from the flow
    far = penalties(1e-2, 0.1, 64)
    exact = penalties(1e-2, 0.1, 1)[63::64]
    assert ((far - exact).abs() / exact).max() > rel


@pytest.mark.parametrize("iso_lr", [None, 0.3])
@pytest.mark.parametrize("scheduled", [False, True])
def test_schedule_multiplier_reading_equals_hand_written_update(gen, iso_lr, scheduled):
    """iso_scaling="schedule" (Loshchilov & Hutter): the isometry step is (iso_lr or 1) times the
    schedule multiplier lr_t / lr_0, never times lr itself; on tall, wide, square, conv and vector
    parameters, with weight decay and a StepLR schedule."""
    init = [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in SHAPES]
    targets = [torch.randn(STEPS, *s, generator=gen, dtype=torch.float64) for s in SHAPES]
    factor = (lambda t: 0.5 ** (t // 5)) if scheduled else (lambda t: 1.0)
    kw = dict(lr=0.02, betas=(0.9, 0.99), eps=1e-8, wd=0.1, lam=0.05, iso_lr=iso_lr)
    expected = _reference_adamo_every(init, _quadratic_grads(targets), STEPS, factor, k=1, iso_scaling="schedule", **kw)
    got = _run_adamo(init, _quadratic_grads(targets), STEPS,
                     (lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.5)) if scheduled else None,
                     lr=0.02, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, iso_strength=0.05, iso_lr=iso_lr,
                     iso_scaling="schedule")  # fmt: skip
    for p, e in zip(got, expected):
        torch.testing.assert_close(p, e, atol=1e-10, rtol=0)
    # the readings differ (by the factor lr when iso_lr is None; by the schedule otherwise) and
    # coincide only for a fixed iso_lr under a constant lr
    lr_reading = _reference_adamo_every(init, _quadratic_grads(targets), STEPS, factor, k=1, **kw)
    gap = (lr_reading[0] - expected[0]).abs().max()
    assert gap > 1e-3 if (iso_lr is None or scheduled) else gap == 0


def test_default_reading_is_unchanged_and_bad_scaling_is_refused(gen):
    init = [torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for s in SHAPES]
    targets = [torch.randn(STEPS, *s, generator=gen, dtype=torch.float64) for s in SHAPES]
    base = _run_adamo(init, _quadratic_grads(targets), STEPS, lr=0.01, iso_strength=0.5)
    explicit = _run_adamo(init, _quadratic_grads(targets), STEPS, lr=0.01, iso_strength=0.5, iso_scaling="lr")
    for a, b in zip(base, explicit):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="iso_scaling must be one of"):
        AdamO([torch.zeros(2, 2, requires_grad=True)], iso_scaling="loshchilov")


def test_paper_setting_half_life_under_both_readings():
    """At the paper's stated lr 1e-3 and lambda 1e-3 (PAPER.md), R_iso halves in ln2 / (16 lambda) ~ 43
    steps under Loshchilov & Hutter's reading, and barely moves under PyTorch's (half-life
    ln2 / (16 lr lambda) ~ 43 000 steps: > 99% left after 200 steps)."""
    import math

    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(32, 32, generator=g, dtype=torch.float64))
    s = 1 + 0.05 * (2 * torch.rand(32, generator=g, dtype=torch.float64) - 1)
    halves = {}
    for scaling in ("schedule", "lr"):
        W = (q * s).clone().requires_grad_(True)
        W.grad = torch.zeros_like(W)  # no task gradient: only the isometry step
        opt = AdamO([W], lr=1e-3, iso_strength=1e-3, iso_scaling=scaling)
        r0 = isometry_penalty(W.detach()).item()
        for t in range(1, 201):
            opt.step()
            if isometry_penalty(W.detach()).item() <= r0 / 2:
                halves[scaling] = t
                break
        else:
            halves[scaling] = isometry_penalty(W.detach()).item() / r0  # fraction left after 200 steps
    predicted = math.log(2) / (16 * 1e-3)  # 43.3
    assert abs(halves["schedule"] - predicted) <= 0.1 * predicted, halves
    assert halves["lr"] > 0.99, halves  # not halved: > 99% of R_iso left after 200 steps


# ------------------------------------------------------------------ the fused path against the reference


def _stacked_problem(gen, S=3):
    """Seed-stacked parameters of every kind (tall, wide, square, conv, vectors) and their targets."""
    shapes = {"tall": (S, 12, 5), "wide": (S, 4, 9), "square": (S, 7, 7), "conv": (S, 6, 2, 3, 3), "bias": (S, 7),
              "head": (S, 3, 7), "head_bias": (S, 3)}  # fmt: skip
    init = {n: 0.6 * torch.randn(shape, generator=gen, dtype=torch.float64) for n, shape in shapes.items()}
    targets = {n: torch.randn(shape, generator=gen, dtype=torch.float64) for n, shape in shapes.items()}
    noise = {n: 0.3 * torch.randn(STEPS, *shape, generator=gen, dtype=torch.float64) for n, shape in shapes.items()}
    return init, targets, noise


def _run_stacked(problem, steps, opt=None, params=None, scheduler=None, start=0, head_iso=0.05, **kw):
    """AdamO on the stacked problem: a hidden group (lambda = iso_strength) and a head group with its
    own lambda and iso_lr, both seed_dims=1; 'wide' has no gradient on every fourth step, so the
    parameters of a group reach different step counts. Returns (params, opt, scheduler)."""
    init, targets, noise = problem
    if params is None:
        params = {n: v.clone().requires_grad_() for n, v in init.items()}
        hidden = [params[n] for n in ("tall", "wide", "square", "conv", "bias")]
        head = [params["head"], params["head_bias"]]
        opt = AdamO([{"params": hidden}, {"params": head, "iso_strength": head_iso, "iso_lr": 0.02}], seed_dims=1, **kw)
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.7)
    for t in range(start, start + steps):
        for n, p in params.items():  # the gradient of 1/2 |p - target|^2, plus noise
            p.grad = None if (n == "wide" and t % 4 == 1) else p.detach() - targets[n] + noise[n][t]
        opt.step()
        scheduler.step()
    return params, opt, scheduler


def _assert_same_run(a, b, atol, rtol):
    (pa, oa, _), (pb, ob, _) = a, b
    for n in pa:
        torch.testing.assert_close(pa[n].detach(), pb[n].detach(), atol=atol, rtol=rtol, msg=n)
        sa, sb = oa.state[pa[n]], ob.state[pb[n]]
        assert sa["step"].dtype == sb["step"].dtype == torch.float32 and sa["step"].item() == sb["step"].item(), n
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(sa[key], sb[key], atol=atol, rtol=rtol, msg=f"{n} {key}")


@pytest.fixture
def count_fused_calls(monkeypatch):
    """Counts the calls of the fused AdamW kernel AdamO makes."""
    import isoplast_lite.optim as optim

    calls = []
    real = optim._fused_adamw

    def counted(*args, **kwargs):
        calls.append(kwargs["fused"])
        return real(*args, **kwargs)

    monkeypatch.setattr(optim, "_fused_adamw", counted)
    return calls


# float64 rounding: the two paths order the same floating-point operations differently
ROUNDING = dict(atol=1e-13, rtol=1e-12)


@pytest.mark.parametrize("iso_scaling", ["lr", "schedule"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("iso_every", [1, 3])
def test_fused_step_equals_reference_step(gen, count_fused_calls, iso_scaling, weight_decay, iso_every):
    problem = _stacked_problem(gen)
    lam = 0.3 if iso_scaling == "lr" else 0.3 * 0.05  # the same step lr * lambda under both readings (stable)
    kw = dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay, iso_strength=lam, iso_every=iso_every,
              iso_scaling=iso_scaling)  # fmt: skip
    reference = _run_stacked(problem, STEPS, fused=False, **kw)
    assert count_fused_calls == []
    fused = _run_stacked(problem, STEPS, **kw)  # fused=None: the fused path on CPU
    assert count_fused_calls == [True] * (2 * STEPS)  # one kernel call per group and step
    _assert_same_run(fused, reference, **ROUNDING)
    assert fused[1].state[fused[0]["wide"]]["step"].item() == STEPS - 6  # skipped steps are not counted
    # the isometry step mattered (a test that could fail): without it the run is elsewhere
    plain = _run_stacked(problem, STEPS, head_iso=0.0, **{**kw, "iso_strength": 0.0})
    assert (plain[0]["square"] - fused[0]["square"]).abs().max() > 1e-3
    assert (plain[0]["head"] - fused[0]["head"]).abs().max() > 1e-3


def test_fused_step_with_iso_every_skips_the_isometry_between_multiples(gen):
    problem = _stacked_problem(gen)
    kw = dict(lr=0.05, iso_strength=0.3, iso_every=3)
    fused = _run_stacked(problem, 2, **kw)  # steps 1 and 2: no isometry step yet
    plain = _run_stacked(problem, 2, head_iso=0.0, **{**kw, "iso_strength": 0.0})
    for n in fused[0]:
        assert torch.equal(fused[0][n], plain[0][n]), n
    _run_stacked(problem, 1, *fused[1:2], params=fused[0], scheduler=fused[2], start=2)
    _run_stacked(problem, 1, *plain[1:2], params=plain[0], scheduler=plain[2], start=2)
    assert not torch.equal(fused[0]["square"], plain[0]["square"])  # step 3: the amortized step


@pytest.mark.parametrize("load_into", ["fused", "reference"])
def test_fused_state_dict_round_trip(gen, load_into):
    """A run saved mid-window (iso_every=3, after step 7) and resumed equals the uninterrupted run,
    on the same path bitwise and on the other path to rounding; state dicts load across paths."""
    problem = _stacked_problem(gen)
    kw = dict(lr=0.05, weight_decay=0.1, iso_strength=0.3, iso_every=3)
    whole = _run_stacked(problem, 15, **kw)
    first = _run_stacked(problem, 7, **kw)
    resumed = _run_stacked(problem, 0, **{**kw, "lr": 0.5, "iso_every": 1})  # settings overwritten by the load
    for n in first[0]:
        resumed[0][n].data.copy_(first[0][n].detach())
    resumed[1].load_state_dict(copy.deepcopy(first[1].state_dict()))
    resumed[2].load_state_dict(first[2].state_dict())
    assert resumed[1].param_groups[0]["iso_every"] == 3 and resumed[1].param_groups[1]["iso_lr"] == 0.02
    if load_into == "reference":
        for group in resumed[1].param_groups:
            group["fused"] = False
    _run_stacked(problem, 8, resumed[1], params=resumed[0], scheduler=resumed[2], start=7)
    _assert_same_run(resumed, whole, **(dict(atol=0, rtol=0) if load_into == "fused" else ROUNDING))


def test_fused_loads_a_reference_state_dict(gen):
    problem = _stacked_problem(gen)
    kw = dict(lr=0.05, iso_strength=0.3, iso_every=2)
    whole = _run_stacked(problem, 12, fused=False, **kw)
    first = _run_stacked(problem, 5, fused=False, **kw)
    resumed = _run_stacked(problem, 0, **kw)
    for n in first[0]:
        resumed[0][n].data.copy_(first[0][n].detach())
    state = copy.deepcopy(first[1].state_dict())
    for group in state["param_groups"]:
        del group["fused"]  # as saved before the fused path existed
    resumed[1].load_state_dict(state)
    resumed[2].load_state_dict(first[2].state_dict())
    assert all(group["fused"] is None for group in resumed[1].param_groups)
    _run_stacked(problem, 7, resumed[1], params=resumed[0], scheduler=resumed[2], start=5)
    _assert_same_run(resumed, whole, **ROUNDING)


def test_fused_argument_is_checked():
    with pytest.raises(TypeError, match="fused"):
        AdamO([nn.Parameter(torch.ones(3, 3))], fused="yes")
    with pytest.raises(ValueError, match="fused=True.*meta"):
        AdamO([nn.Parameter(torch.ones(3, 3, device="meta"))], fused=True)
    opt = AdamO([nn.Parameter(torch.ones(3, 3, device="meta"))])  # fused=None: the reference path there
    assert opt.param_groups[0]["fused"] is None


# ---------------------------------------------------------------- stability of the isometry step (issue 22)


def _scalar_iteration_diverges(c: float, sigma0: float = 1.01, steps: int = 200) -> bool:
    """The singular-value map sigma <- sigma - 4c(sigma^3 - sigma), iterated in float64: does |sigma - 1| grow?"""
    sigma = sigma0
    for _ in range(steps):
        sigma = sigma - 4.0 * c * (sigma**3 - sigma)
        if not math.isfinite(sigma) or abs(sigma - 1.0) > 10.0:
            return True
    return abs(sigma - 1.0) > abs(sigma0 - 1.0)


@pytest.mark.parametrize("reading, lr, strength, accepted", [
    ("schedule", 1e-3, 0.2, True),    # s = 1: 8 * 1 * 0.2 = 1.6
    ("schedule", 1e-3, 0.3, False),   # 8 * 1 * 0.3 = 2.4
    ("lr", 1e-3, 0.3, True),          # s = lr: 2.4e-3
    ("lr", 0.5, 0.6, False),          # 8 * 0.5 * 0.6 = 2.4
])  # fmt: skip
def test_adamo_refuses_an_isometry_step_that_cannot_converge(reading, lr, strength, accepted):
    """AdamO accepts exactly the settings whose isometry step converges to sigma = 1, checked
    against the scalar map the step applies to each singular value (an independent iteration)."""
    from isoplast_lite.optim import iso_stability_product

    w = torch.nn.Parameter(torch.eye(3))
    s = 1.0 if reading == "schedule" else lr
    assert _scalar_iteration_diverges(s * strength) == (not accepted)
    if accepted:
        opt = AdamO([w], lr=lr, iso_strength=strength, iso_scaling=reading)
        assert iso_stability_product(opt.param_groups[0]) == pytest.approx(8 * s * strength)
        return
    with pytest.raises(ValueError) as err:
        AdamO([w], lr=lr, iso_strength=strength, iso_scaling=reading)
    message = str(err.value)
    assert f"iso_scaling={reading!r}" in message and "8 * s * lambda" in message
    assert f"{8 * s * strength:g}" in message


def test_adamo_stability_checked_when_a_scheduler_raises_the_step():
    """Under Loshchilov & Hutter's reading the step follows the schedule multiplier: a scheduler
    that raises lr past the limit is refused at the next step, and a stable one trains on."""
    w = torch.nn.Parameter(torch.eye(3) * 1.1)
    opt = AdamO([w], lr=1e-3, iso_strength=0.2, iso_scaling="schedule")  # 8 * 1 * 0.2 = 1.6
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 if t < 2 else 2.0)  # then 3.2
    for _ in range(2):
        w.grad = torch.zeros_like(w)
        opt.step()
        sched.step()
    w.grad = torch.zeros_like(w)
    with pytest.raises(ValueError, match=r"iso_scaling='schedule'.*8 \* s \* lambda = 8 \* 2 \* 0.2"):
        opt.step()
    # PyTorch's reading at the same lr schedule stays far below the limit
    v = torch.nn.Parameter(torch.eye(3) * 1.1)
    opt = AdamO([v], lr=1e-3, iso_strength=0.2, iso_scaling="lr")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 if t < 2 else 2.0)
    for _ in range(4):
        v.grad = torch.zeros_like(v)
        opt.step()
        sched.step()
    assert torch.isfinite(v).all()
