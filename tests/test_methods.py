"""Each method's defining property, checked against an independent computation."""

import pytest
import torch
import torch.nn as nn

from isoplast_lite import GroupSort, OrthogonalLinear, dormant_fraction, isometry_grad, relu_mlp
from isoplast_lite.methods import METHODS, ReDo, Spectral, StackedModel, StepContext, TaskContext, fresh_parameters, make_method
from isoplast_lite.run import Config

SEEDS = (0, 1)


def _setup(name, width=8, depth=2, **settings):
    cfg = Config("random-label-digits", name, settings=settings, seeds=len(SEEDS), width=width, depth=depth, dtype="float64")
    method = make_method(name, cfg.settings)
    stack = StackedModel.build(lambda g: method.build_model(6, 3, cfg, g), SEEDS, dtype=torch.float64)
    method.setup(stack, cfg)
    return cfg, method, stack


def _ctx(cfg, task=1, n=20, seed=0):
    x = torch.randn(len(SEEDS), n, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return TaskContext(cfg=cfg, task=task, x=x, y=torch.zeros(len(SEEDS), n, dtype=torch.long))


def _step(cfg, stack, n=5):
    x = torch.randn(len(SEEDS), n, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    return StepContext(cfg=cfg, task=0, step=0, stack=stack, x=x, y=torch.zeros(len(SEEDS), n, dtype=torch.long), logits=stack(x))


def test_unknown_method_names_the_registered_ones():
    with pytest.raises(ValueError, match="adamo"):
        make_method("adamx")


def test_stack_starts_like_per_seed_relu_mlp_and_forward_matches():
    cfg, method, stack = _setup("adam")
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    out = stack(x)
    for k, s in enumerate(SEEDS):
        ref = relu_mlp(6, 8, 2, 3, generator=torch.Generator().manual_seed(s)).double()  # built in float32, then cast
        for name, p in ref.named_parameters():
            assert torch.equal(stack.params[name][k], p.detach())
        torch.testing.assert_close(out[k], ref(x[k]))


def test_l2_is_squared_norm_with_gradient_2_lambda_theta():
    cfg, method, stack = _setup("l2", strength=0.3)
    pen = method.penalty(stack, _step(cfg, stack))
    expected = 0.3 * sum(float((p.detach() ** 2).sum()) for p in stack.params.values())
    assert float(pen.detach()) == pytest.approx(expected, rel=1e-12)
    pen.backward()
    for p in stack.params.values():
        torch.testing.assert_close(p.grad, 2 * 0.3 * p.detach())


def test_l2_init_is_squared_distance_to_initial_weights():
    cfg, method, stack = _setup("l2-init", strength=0.5)
    assert float(method.penalty(stack, _step(cfg, stack)).detach()) == 0.0
    theta0 = {n: p.detach().clone() for n, p in stack.params.items()}
    with torch.no_grad():
        for p in stack.params.values():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3), dtype=p.dtype))
    pen = method.penalty(stack, _step(cfg, stack))
    dist2 = sum(float(((p.detach() - theta0[n]) ** 2).sum()) for n, p in stack.params.items())
    assert float(pen.detach()) == pytest.approx(0.5 * dist2, rel=1e-12)  # squared, not the norm
    grads = torch.autograd.grad(pen, list(stack.params.values()))
    for g, (n, p) in zip(grads, stack.params.items()):
        torch.testing.assert_close(g, 2 * 0.5 * (p.detach() - theta0[n]))


def test_adamw_decays_decoupled_from_the_gradient():
    cfg, method, stack = _setup("adamw", weight_decay=0.1)
    opt = method.make_optimizer(stack, cfg)
    before = {n: p.detach().clone() for n, p in stack.params.items()}
    for p in stack.params.values():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in stack.params.items():
        torch.testing.assert_close(p.detach(), before[n] * (1 - cfg.lr * 0.1))


def test_shrink_perturb_uses_fresh_initializations():
    cfg, method, stack = _setup("shrink-perturb", width=6, shrink=0.5, perturb=0.25)
    w = "1.0.weight"  # a square hidden weight (6 x 6), orthogonal at init
    noises = []
    for task in (1, 2):
        before = {n: p.detach().clone() for n, p in stack.params.items()}
        method.at_task_boundary(stack, None, _ctx(cfg, task))
        noise = (stack.params[w].detach() - 0.5 * before[w]) / 0.25  # (S, 6, 6)
        for k in range(len(SEEDS)):  # the noise is a fresh *orthogonal* initialization
            torch.testing.assert_close(noise[k].T @ noise[k], torch.eye(6, dtype=torch.float64), atol=1e-6, rtol=0)
        noises.append(noise)
    assert not torch.allclose(noises[0], noises[1])  # fresh at every boundary
    assert not torch.allclose(noises[0][0], noises[0][1])  # and per seed
    init = StackedModel.build(lambda g: method.build_model(6, 3, cfg, g), SEEDS, dtype=torch.float64).params[w]
    assert not torch.allclose(noises[0], init)  # not the initial weights
    fresh = method.fresh_params(stack, cfg, 1)
    torch.testing.assert_close(noises[0], fresh[w])


def test_redo_resets_incoming_outgoing_and_exactly_their_optimizer_state():
    cfg, method, stack = _setup("redo", width=8, tau=0.1)
    with torch.no_grad():  # kill units 1 and 5 of layer 0 for seed 0, unit 2 of layer 1 for seed 1
        stack.params["0.0.weight"][0, [1, 5]] = 0.0
        stack.params["0.0.bias"][0, [1, 5]] = -1.0
        stack.params["1.0.weight"][1, 2] = 0.0
        stack.params["1.0.bias"][1, 2] = -1.0
    opt = method.make_optimizer(stack, cfg)
    ctx = _ctx(cfg, 1)
    loss = stack(ctx.x).pow(2).mean() + sum((p**2).sum() for p in stack.params.values())
    loss.backward()
    opt.step()
    tau = method.settings.tau
    masks = ReDo.dormant_masks(stack, ctx.x, tau)
    for k in range(len(SEEDS)):  # the masks agree with the core's dormant_fraction
        frac = dormant_fraction(stack.model_for_seed(k), ctx.x[k], tau=tau)
        assert frac == pytest.approx(float(torch.stack(masks)[:, k].float().mean()))
    assert masks[0][0, 1] and masks[0][0, 5] and masks[1][1, 2]
    before = {n: p.detach().clone() for n, p in stack.params.items()}
    state_before = {n: {k: v.clone() for k, v in opt.state[p].items()} for n, p in stack.params.items()}
    method.at_task_boundary(stack, opt, ctx)
    fresh = fresh_parameters(method, stack, cfg, 1, ReDo._SALT)
    for layer, (w_in, b_in, w_out) in enumerate([("0.0.weight", "0.0.bias", "1.0.weight"), ("1.0.weight", "1.0.bias", "2.weight")]):
        m = masks[layer]  # (S, width)
        for k in range(len(SEEDS)):
            d = m[k]
            torch.testing.assert_close(stack.params[w_in][k][d], fresh[w_in][k][d])  # re-initialized rows
            torch.testing.assert_close(stack.params[b_in][k][d], fresh[b_in][k][d])
            assert torch.equal(stack.params[w_out][k][:, d], torch.zeros_like(stack.params[w_out][k][:, d]))  # zeroed columns
            for key in ("exp_avg", "exp_avg_sq", "step"):  # EntryStepAdam: moments and step count
                s_in, s_out = opt.state[stack.params[w_in]][key][k], opt.state[stack.params[w_out]][key][k]
                assert torch.all(s_in[d] == 0) and torch.all(s_out[:, d] == 0)
                if layer == 0:  # (layer 1's rows also lose layer 0's dormant columns)
                    torch.testing.assert_close(s_in[~d], state_before[w_in][key][k][~d])  # the rest untouched
            if layer == 0:
                torch.testing.assert_close(stack.params[w_in][k][~d], before[w_in][k][~d])
    # seed 0's layer-0 units and seed 1's layer-1 unit: the only edits of layer-0 rows
    changed_rows0 = (stack.params["0.0.weight"] != before["0.0.weight"]).any(-1)
    assert torch.equal(changed_rows0, masks[0])


def test_spectral_power_iteration_and_pull_towards_one():
    cfg, method, stack = _setup("spectral", width=8, strength=1.0)
    name = "1.0.weight"
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # random matrices (a spectral gap) with sigma_max 3 and 0.3
        for k, target in enumerate((3.0, 0.3)):
            A = torch.randn(8, 8, generator=g, dtype=torch.float64)
            stack.params[name][k] = A * target / torch.linalg.matrix_norm(A, ord=2)
    W = stack.params[name].detach()
    u, v = Spectral.power_iteration(W, method.u[name], 200)
    sigma = torch.einsum("so,soi,si->s", u, W, v)
    torch.testing.assert_close(sigma, torch.linalg.matrix_norm(W, ord=2), rtol=1e-6, atol=1e-6)  # gap-limited convergence
    gaps = []
    opt = torch.optim.SGD(list(stack.params.values()), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        method.penalty(stack, _step(cfg, stack)).backward()
        opt.step()
        gaps.append((torch.linalg.matrix_norm(stack.params[name].detach(), ord=2) - 1).abs())
    assert torch.all(gaps[-1] < 0.5 * gaps[0])


def test_coupled_iso_is_lambda_sum_over_hidden_of_sigma_squared_minus_one_squared():
    cfg, method, stack = _setup("coupled-iso", width=8, iso_strength=0.2)
    with torch.no_grad():
        for p in stack.params.values():
            p.mul_(1.3)
    pen = float(method.penalty(stack, _step(cfg, stack)).detach())
    hidden = ["0.0.weight", "1.0.weight"]
    expected = 0.2 * sum(float(((torch.linalg.svdvals(stack.params[n][k].detach()) ** 2 - 1) ** 2).sum()) for n in hidden for k in range(2))
    assert pen == pytest.approx(expected, rel=1e-9)  # the head (2.weight) is not included


@pytest.mark.parametrize("name,iso_on", [("adamo", ["0.0.weight", "1.0.weight"]), ("aei-adamo", ["2.weight"])])
def test_adamo_isometry_step_only_where_documented(name, iso_on):
    cfg, method, stack = _setup(name, width=8, iso_strength=0.5)
    opt = method.make_optimizer(stack, cfg)
    with torch.no_grad():
        for p in stack.params.values():
            p.mul_(1.2)
    before = {n: p.detach().clone() for n, p in stack.params.items()}
    for p in stack.params.values():
        p.grad = torch.zeros_like(p)  # zero task gradient: the Adam step is exactly 0
    opt.step()
    for n, p in stack.params.items():
        if n in iso_on:
            expected = torch.stack([before[n][k] - cfg.lr * 0.5 * isometry_grad(before[n][k]) for k in range(2)])
            torch.testing.assert_close(p.detach(), expected)
            assert not torch.equal(p.detach(), before[n])
        else:
            torch.testing.assert_close(p.detach(), before[n], rtol=0, atol=0)


def test_architectures():
    _, _, ln = _setup("layernorm")
    assert any(isinstance(m, nn.LayerNorm) for m in ln.template.modules())
    _, _, aei = _setup("aei-adam")
    mods = list(aei.template.modules())
    assert any(isinstance(m, OrthogonalLinear) for m in mods) and any(isinstance(m, GroupSort) for m in mods)
    assert isinstance(aei.template[-1], nn.Linear)  # free head


@pytest.mark.parametrize("name", ["adam", "layernorm", "aei-adam"])
def test_batched_matmul_path_equals_vmap_path(name):
    cfg, method, stack = _setup(name)
    with torch.no_grad():  # non-trivial LayerNorm affine parameters
        for p in stack.params.values():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1), dtype=p.dtype))
    assert stack._plan is not None
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    fast = stack.forward_all(x)
    stack._plan = None  # force vmap(functional_call)
    slow = stack.forward_all(x)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b)
    _, _, cayley = _setup("aei-adam", orthogonal="cayley")
    assert cayley._plan is None  # the parametrized OrthogonalLinear goes through vmap


def test_aei_retraction_is_per_seed_retract_and_cayley_has_none():
    """The runner's batched retraction of stacked weights equals nn.retract_ on each seed's model."""
    from isoplast_lite.nn import retract_

    cfg, method, stack = _setup("aei-adam", width=8)
    assert stack.orthogonal_names == ["0.0.weight", "1.0.weight"]
    with torch.no_grad():
        for p in stack.params.values():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(4), dtype=p.dtype))
    eye = torch.eye(8, dtype=torch.float64)
    gap = lambda w: float((w.mT @ w - eye).abs().max())  # noqa: E731
    before = gap(stack.params["1.0.weight"].detach())
    models = [retract_(stack.model_for_seed(k)) for k in range(len(SEEDS))]
    method.after_step(stack, None, _step(cfg, stack))
    for k, model in enumerate(models):
        for name, p in model.named_parameters():
            torch.testing.assert_close(stack.params[name][k], p.detach(), rtol=0, atol=1e-14)
    assert gap(stack.params["1.0.weight"].detach()) < 0.1 * before  # quadratic: ~0.05 -> ~0.003
    cfg, method, cayley = _setup("aei-adam", orthogonal="cayley")
    assert cayley.orthogonal_names == [] and not any(n.endswith(".0.weight") for n in cayley.params)


@pytest.mark.parametrize("target", ["identity", "scaled", "spread"])
def test_adamo_target_step_is_the_gradient_of_the_distance_to_its_target_spectrum(target):
    cfg, method, stack = _setup("adamo-target", width=8, target=target, c=2.0, iso_strength=5.0)
    name = "1.0.weight"
    W0 = stack.params[name].detach().clone()
    T = method.targets[name]
    step = cfg.lr * 5.0
    method.after_step(stack, None, _step(cfg, stack))
    for k in range(len(SEEDS)):  # against autograd of ||W W^T - T||_F^2
        W = W0[k].clone().requires_grad_(True)
        ((W @ W.T - T) ** 2).sum().backward()
        torch.testing.assert_close(stack.params[name][k].detach(), W0[k] - step * W.grad)
    # iterated, the weight's singular values reach the target spectrum
    for _ in range(3000):
        method.after_step(stack, None, _step(cfg, stack))
    expected = torch.sqrt(torch.diagonal(T)).sort(descending=True).values
    for k in range(len(SEEDS)):
        torch.testing.assert_close(torch.linalg.svdvals(stack.params[name][k].detach()), expected, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_optimizer_runs_the_per_tensor_algorithm(name):
    """The methods' Adam/AdamW are fused (one pass per tensor): the per-tensor loop's parameters
    after 20 steps, to float64 rounding."""
    cfg = Config("random-label-digits", name, width=16, depth=2, seeds=2, dtype="float64")
    method = make_method(name, cfg.settings)
    stacks = [StackedModel.build(lambda g: method.build_model(64, 10, cfg, g), (0, 1), dtype=torch.float64) for _ in range(2)]
    fast = method.make_optimizer(stacks[0], cfg)
    assert fast.defaults["fused"] is True
    ref = type(fast)(list(stacks[1].params.values()), lr=cfg.lr, weight_decay=fast.defaults["weight_decay"], foreach=False)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 64, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (2, 8), generator=g)
    start = {n: p.detach().clone() for n, p in stacks[0].params.items()}
    for _ in range(20):
        for stack, opt in zip(stacks, (fast, ref)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(stack(x).flatten(0, 1), y.flatten()).backward()
            opt.step()
    for n in stacks[0].params:
        assert not torch.equal(stacks[0].params[n], start[n]), n  # it trained
        torch.testing.assert_close(stacks[0].params[n], stacks[1].params[n], rtol=1e-12, atol=1e-14)


def _adam_reference(p0, grads, lr=0.01, betas=(0.9, 0.999), eps=1e-8):
    """torch.optim.Adam (per-tensor loop) on a copy of ``p0`` fed ``grads``; the trajectory."""
    p = p0.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lr, betas=betas, eps=eps, foreach=False)
    out = []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        out.append(p.detach().clone())
    return out


def test_entry_step_adam_is_adam_without_restarts_and_a_fresh_adam_after_one():
    from isoplast_lite.optim import EntryStepAdam

    gen = torch.Generator().manual_seed(3)
    p0 = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    grads = [torch.randn(4, 5, generator=gen, dtype=torch.float64) for _ in range(9)]
    ref = _adam_reference(p0, grads)
    p = p0.clone().requires_grad_(True)
    opt = EntryStepAdam([p], lr=0.01)
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[1, 2] = mask[3, 0] = mask[0, 4] = True
    for i, g in enumerate(grads):
        if i == 4:
            opt.restart_entries(p, mask)
            restarted_from = p.detach().clone()
        p.grad = g.clone()
        opt.step()
        if i < 4:  # no restart yet: Adam exactly
            torch.testing.assert_close(p.detach(), ref[i], rtol=1e-12, atol=1e-14)
    # unrestarted entries: still Adam's trajectory; restarted ones: a fresh Adam started at step 4
    torch.testing.assert_close(p.detach()[~mask], ref[-1][~mask], rtol=1e-12, atol=1e-14)
    fresh = _adam_reference(restarted_from, grads[4:])
    torch.testing.assert_close(p.detach()[mask], fresh[-1][mask], rtol=1e-12, atol=1e-14)
    assert not torch.allclose(p.detach()[mask], ref[-1][mask])  # the restart changed them
    assert torch.equal(opt.state[p]["step"][mask], torch.full((3,), 5.0, dtype=torch.float64))
    assert torch.equal(opt.state[p]["step"][~mask], torch.full((17,), 9.0, dtype=torch.float64))


def test_redo_without_reset_step_keeps_the_fused_adam():
    cfg, method, stack = _setup("redo", width=8, reset_step=False)
    assert type(method.make_optimizer(stack, cfg)) is torch.optim.Adam
    cfg, method, stack = _setup("redo", width=8)
    assert type(method.make_optimizer(stack, cfg)).__name__ == "EntryStepAdam"


def test_shrink_perturb_step_is_decay_plus_each_seeds_own_gaussian_noise():
    from isoplast_lite.seeding import seeded_generator
    from isoplast_lite.methods import ShrinkPerturbStep

    cfg, method, stack = _setup("shrink-perturb-step", width=8, shrink=0.01, noise=0.05)
    names = list(stack.params)
    for task, step in ((0, 0), (0, 1), (3, 0)):
        before = {n: p.detach().clone() for n, p in stack.params.items()}
        ctx = _step(cfg, stack)
        ctx.task, ctx.step = task, step
        if step == 0:  # the generators the method re-seeds at each new task
            gens = [seeded_generator(s, task, ShrinkPerturbStep._SALT) for s in SEEDS]
        method.after_step(stack, None, ctx)
        for k in range(len(SEEDS)):  # one draw per seed and step, in parameter order
            sizes = [before[n][k].numel() for n in names]
            eps = torch.randn(sum(sizes), generator=gens[k], dtype=torch.float64).split(sizes)
            for n, e in zip(names, eps):
                expected = 0.99 * before[n][k] + 0.05 * e.view_as(before[n][k])
                torch.testing.assert_close(stack.params[n][k], expected, rtol=1e-12, atol=1e-14)
