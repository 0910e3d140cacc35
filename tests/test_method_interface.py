"""The method interface: declared settings, the public registry, the wider hooks, seed separability."""

import json
import math
import sys
import textwrap
from dataclasses import dataclass

import pandas as pd
import pytest
import torch

from isoplast_lite import methods
from isoplast_lite.__main__ import main
from isoplast_lite.methods import METHODS, Method, StackedModel, StepContext, make_method, register_method, unregister_method
from isoplast_lite.results import expand_settings
from isoplast_lite.run import RESULT_COLUMNS, Config, cache_key, run
from isoplast_lite.settings import SettingError, setting

TINY = dict(n_tasks=2, steps_per_task=6, batch_size=8, width=8, depth=2, n_train=32, probe_size=4)


# ---------------------------------------------------------------------------------- settings


def test_every_builtin_method_declares_valid_settings_with_meaning():
    for name, cls in METHODS.items():
        method = make_method(name)
        for f in method.settings.__dataclass_fields__.values():
            meta = f.metadata["isoplast_setting"]
            assert meta["help"].strip(), f"{name}.{f.name} has no meaning"


@pytest.mark.parametrize(
    "method,settings,pattern",
    [
        ("adamo", {"iso_strenght": 0.1}, r"method 'adamo': setting iso_strenght=0.1: unknown setting \(did you mean 'iso_strength'\?\); allowed: settings iso_strength, iso_scaling"),
        ("adamo", {"iso_strength": "big"}, r"method 'adamo': setting iso_strength='big': wrong type str; allowed: a number >= 0"),
        ("adamo", {"iso_strength": -1.0}, r"method 'adamo': setting iso_strength=-1.0: out of range; allowed: a number >= 0"),
        ("adamo", {"iso_scaling": "cosine"}, r"setting iso_scaling='cosine': not a valid choice; allowed: one of 'lr', 'schedule'"),
        ("shrink-perturb", {"shrink": 1.5}, r"method 'shrink-perturb': setting shrink=1.5: out of range; allowed: a number >= 0 and <= 1"),
        ("spectral", {"n_power_iter": 1.5}, r"setting n_power_iter=1.5: not an integer"),
        ("parseval", {"diagonal_layers": 1}, r"setting diagonal_layers=1: wrong type int; allowed: true or false"),
        ("adam", {"iso_strength": 0.1}, r"method 'adam': setting iso_strength=0.1: unknown setting; allowed: no settings"),
        ("l2", {"strength": math.nan}, r"setting strength=nan: not finite"),
    ],
)
def test_bad_settings_get_one_line_naming_method_setting_and_allowed(method, settings, pattern):
    with pytest.raises(SettingError, match=pattern) as info:
        Config("random-label-digits", method, settings=settings)
    assert "\n" not in str(info.value)


def test_settings_are_stored_validated_and_in_the_rows():
    cfg = Config("random-label-digits", "shrink-perturb", settings={"shrink": 1}, seeds=2, **TINY)
    assert cfg.settings.shrink == 1.0 and isinstance(cfg.settings.shrink, float) and cfg.settings.perturb == 0.1
    df = run(cfg, cache_dir=False, progress=False).rows
    assert tuple(df.columns) == RESULT_COLUMNS
    assert set(df.settings) == {'{"perturb":0.1,"shrink":1.0}'}
    wide = expand_settings(df)
    assert (wide.shrink == 1.0).all() and (wide.perturb == 0.1).all()


def test_rows_of_a_sweep_over_any_setting_can_be_told_apart(tmp_path):
    out = tmp_path / "s.csv"
    argv = ["sweep", "--benchmark", "random-label-digits", "--method", "redo", "adam", "--set", "tau=0.05,0.2", "--seeds", "1",
            "--tasks", "1", "--steps-per-task", "2", "--batch-size", "4", "--width", "8", "--depth", "1", "--n-train", "16",
            "--no-cache", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    df = expand_settings(pd.read_csv(out))
    assert sorted(map(str, df.drop_duplicates(["method", "settings"]).settings)) == ['{"reset_step":true,"tau":0.05}', '{"reset_step":true,"tau":0.2}', "{}"]
    assert sorted(df[df.method == "redo"].tau) == [0.05, 0.2]


def test_cache_key_covers_exactly_the_method_and_its_settings(monkeypatch):
    adam = Config("random-label-digits", "adam", **TINY)
    l2 = Config("random-label-digits", "l2", **TINY)
    adamo = Config("random-label-digits", "adamo", **TINY)
    keys = {c.method: cache_key(c) for c in (adam, l2, adamo)}
    assert cache_key(l2.replace(settings={"strength": 2e-4})) != keys["l2"]
    assert cache_key(l2.replace(settings={"strength": 1e-4})) == keys["l2"]  # the default, written out

    # a new setting of adamo (and a new method) changes adamo's keys and no other method's
    @dataclass(frozen=True)
    class Wider:
        iso_strength: float = setting(0.1, low=0, help="lambda")
        iso_scaling: str = setting("lr", choices=("lr", "schedule"), help="reading")
        new_knob: int = setting(3, low=0, help="a setting added later")

    monkeypatch.setattr(methods.AdamOMethod, "Settings", Wider)

    @register_method
    class Another(Method):
        name = "another-test-method"
        summary = "test"

    try:
        assert cache_key(Config("random-label-digits", "adam", **TINY)) == keys["adam"]
        assert cache_key(Config("random-label-digits", "l2", **TINY)) == keys["l2"]
        assert cache_key(Config("random-label-digits", "adamo", **TINY)) != keys["adamo"]
    finally:
        unregister_method("another-test-method")


def test_config_json_holds_only_the_chosen_methods_settings():
    fields = json.loads(Config("random-label-digits", "redo", **TINY).to_json())
    assert fields["settings"] == {"tau": 0.1, "reset_step": True} and fields["method_version"] == 2
    names = set(fields) - {"settings"}
    assert not names & {"iso_strength", "weight_decay", "l2_strength", "sp_shrink", "redo_tau", "orthogonal"}


# ------------------------------------------------------------------- a method of one's own


@register_method(replace=True)
class ChurnPenalty(Method):
    """A data-dependent method written in the test file: a C-CHAIN-style churn penalty.

    It keeps the parameters from before the previous step and penalizes how far the outputs on
    the current batch moved in that step (the hook sees the batch, the outputs and evaluates
    the stacked model at other parameters).
    """

    name = "churn-test"
    summary = "test: Adam + strength * ||f_theta(x) - f_theta_prev(x)||^2 on the batch"

    @dataclass(frozen=True)
    class Settings:
        strength: float = setting(0.5, low=0, help="coefficient of the churn penalty")

    def __init__(self, settings=None):
        super().__init__(settings)
        self.prev = self.current = None

    def penalty(self, stack, ctx):
        self.current = {n: p.detach().clone() for n, p in stack.params.items()}  # before this step
        if self.prev is None:
            return None
        with torch.no_grad():
            before = ctx.forward(params=self.prev)  # the stacked model at the previous parameters
        return self.settings.strength * (ctx.logits - before).square().mean(dim=(1, 2)).sum()

    def after_step(self, stack, opt, ctx):
        self.prev = self.current


def test_a_method_registered_outside_the_package_runs_through_run_with_two_seeds(tmp_path):
    assert "churn-test" in METHODS
    cfg = Config("random-label-digits", "churn-test", settings={"strength": 0.2}, seeds=2, **TINY)
    df = run(cfg, cache_dir=tmp_path, progress=False).rows
    assert len(df) == 4 and set(df.method) == {"churn-test"} and set(df.settings) == {'{"strength":0.2}'}
    assert df.train_acc.notna().all()
    assert run(cfg, cache_dir=tmp_path, progress=False).rows.equals(df)  # served from the cache
    # the penalty changes training (it is not a no-op): compare with strength 0
    free = run(cfg.replace(settings={"strength": 0.0}), cache_dir=False, progress=False).rows
    assert not free.loss.equals(df.loss)


def test_hooks_see_the_batch_outputs_and_other_parameters():
    cfg = Config("random-label-digits", "churn-test", seeds=2, **TINY)
    method = make_method("churn-test")
    stack = StackedModel.build(lambda g: method.build_model(64, 10, cfg, g), (0, 1))
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0))
    ctx = StepContext(cfg=cfg, task=0, step=0, stack=stack, x=x, y=torch.zeros(2, 5, dtype=torch.long), logits=stack(x))
    other = {n: p.detach() * 0.5 for n, p in stack.params.items()}
    got = ctx.forward(params=other)
    for k in range(2):  # against a standalone model holding seed k's halved weights
        model = stack.model_for_seed(k)
        model.load_state_dict({n: t[k] for n, t in other.items()})
        torch.testing.assert_close(got[k], model(x[k]), rtol=1e-5, atol=1e-6)
    partial = ctx.forward(params={"2.bias": other["2.bias"] + 1.0})  # one name: the others stay current
    torch.testing.assert_close(partial, stack(x) - stack.params["2.bias"].detach()[:, None] + other["2.bias"][:, None] + 1.0)
    with pytest.raises(KeyError, match="nonsense"):
        ctx.forward(params={"nonsense": other["2.bias"]})


def test_task_boundary_hook_sees_the_task(tmp_path):
    seen = []

    @register_method(replace=True)
    class Spy(Method):
        name = "spy-test"
        summary = "test"

        def at_task_boundary(self, stack, opt, ctx):
            seen.append((ctx.task, tuple(ctx.x.shape), tuple(ctx.y.shape), len(ctx.tasks), ctx.tasks[0].index, ctx.cfg.method))

    try:
        run(Config("permuted-digits", "spy-test", seeds=2, **{**TINY, "n_tasks": 3}), cache_dir=False, progress=False)
    finally:
        unregister_method("spy-test")
    assert seen == [(1, (2, 32, 64), (2, 32), 2, 1, "spy-test"), (2, (2, 32, 64), (2, 32), 2, 2, "spy-test")]


def test_registration_checks():
    with pytest.raises(TypeError, match="subclass"):
        register_method(object)

    class NoName(Method):
        summary = "x"

    with pytest.raises(ValueError, match="name must be set on the class"):
        register_method(NoName)

    class Taken(Method):
        name = "adam"

    with pytest.raises(ValueError, match="already registered"):
        register_method(Taken)

    class BadDefault(Method):
        name = "bad-default-test"

        @dataclass(frozen=True)
        class Settings:
            strength: float = setting(-1.0, low=0, help="negative default")

    with pytest.raises(SettingError, match="out of range"):
        register_method(BadDefault)
    assert "bad-default-test" not in METHODS
    with pytest.raises(ValueError, match="built-in"):
        unregister_method("adam")


def test_cli_imports_a_users_module_and_sets_its_settings(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_methods_mod.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from isoplast_lite.methods import Method, register_method
        from isoplast_lite.settings import setting

        @register_method(replace=True)
        class L1(Method):
            name = "l1-test"
            summary = "Adam + strength * sum |theta|"

            @dataclass(frozen=True)
            class Settings:
                strength: float = setting(1e-5, low=0, help="coefficient of the L1 penalty")

            def penalty(self, stack, ctx):
                return self.settings.strength * sum(p.abs().sum() for p in stack.params.values())
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "l1.csv"
    try:
        with pytest.raises(SystemExit):
            main(["run", "--import", "my_methods_mod", "--help"])
        assert "l1-test: Adam + strength * sum |theta|" in capsys.readouterr().out
        argv = ["run", "--import", "my_methods_mod", "--benchmark", "random-label-digits", "--method", "l1-test", "--set", "strength=1e-3",
                "--seeds", "1", "--tasks", "1", "--steps-per-task", "2", "--batch-size", "4", "--width", "8", "--depth", "1",
                "--n-train", "16", "--no-cache", "--no-progress", "--out", str(out)]  # fmt: skip
        assert main(argv) == 0
        assert set(pd.read_csv(out).settings) == {'{"strength":0.001}'}
        with pytest.raises(SystemExit) as info:
            i = argv.index("strength=1e-3")
            main([*argv[:i], "strength=-1", *argv[i + 1 :]])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--set strength=-1: method 'l1-test', setting 'strength': out of range; allowed: a number >= 0" in err
    finally:
        unregister_method("l1-test")
        sys.modules.pop("my_methods_mod", None)


@pytest.mark.parametrize(
    "argv_tail,message",
    [
        (["--method", "adam", "--set", "iso_strength=0.1"], "--set iso_strength=0.1: method 'adam', setting 'iso_strength': unknown setting; allowed: no settings"),
        (["--method", "adamo", "--set", "iso_strength=abc"], "--set iso_strength=abc: method 'adamo', setting 'iso_strength': not a number; allowed: a number >= 0"),
        (["--method", "adamo", "--set", "iso_strength"], "--set 'iso_strength': expected NAME=VALUE"),
        (["--method", "adamo", "--set", "redo.tau=0.1"], "method 'redo' is not the chosen method 'adamo'"),
    ],
)
def test_cli_bad_settings_are_one_line(argv_tail, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--benchmark", "random-label-digits", *argv_tail, "--no-cache"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and err.count("\n") == 1


def test_sweep_setting_grid_must_apply_to_a_chosen_method(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--benchmark", "random-label-digits", "--method", "adam", "l2", "--set", "tau=0.1", "--no-cache", "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "none of the chosen methods (adam, l2) has the setting 'tau'; it is a setting of redo" in err


# ------------------------------------------------------------- seed separability, every method


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_registered_method_keeps_stacked_seeds_apart(name):
    """2 stacked seeds give each seed what a 1-seed run of it gives (so a method coupling the
    seeds, e.g. through a global optimizer statistic, fails). float64 and a benchmark with a
    task boundary, so boundary hooks (resets, recycling) run too."""
    base = dict(seeds=2, n_tasks=2, steps_per_task=8, batch_size=8, width=8, depth=2, n_train=32, probe_size=4, dtype="float64")
    cfg = Config("permuted-digits", name, **base)
    both = run(cfg, cache_dir=False, progress=False).rows
    for seed in (0, 1):
        alone = run(cfg.replace(seeds=1, first_seed=seed), cache_dir=False, progress=False).rows
        mine = both[both.seed == seed].reset_index(drop=True)
        for col in ("train_acc", "loss", "loss_online", "weight_norm", "dead"):
            assert torch.allclose(torch.tensor(mine[col].to_numpy()), torch.tensor(alone[col].to_numpy()), rtol=1e-7, atol=1e-9), (name, seed, col)


# ------------------------------------------------------------------------ the fresh reference


def test_fresh_reinitializes_weights_and_optimizer_state_at_each_task():
    from isoplast_lite.methods import TaskContext, fresh_parameters

    cfg = Config("permuted-digits", "fresh", seeds=2, **TINY)
    method = make_method("fresh")
    stack = StackedModel.build(lambda g: method.build_model(64, 10, cfg, g), (0, 1))
    opt = method.make_optimizer(stack, cfg)
    stack(torch.randn(2, 4, 64)).square().sum().backward()
    opt.step()
    assert opt.state
    method.at_task_boundary(stack, opt, TaskContext(cfg=cfg, task=1, x=torch.zeros(2, 1, 64), y=torch.zeros(2, 1, dtype=torch.long)))
    expected = fresh_parameters(method, stack, cfg, 1, method._SALT)
    for n, p in stack.params.items():
        assert torch.equal(p.detach(), expected[n])
    assert not opt.state
    again = fresh_parameters(method, stack, cfg, 2, method._SALT)
    assert not torch.equal(again["0.0.weight"], expected["0.0.weight"])  # a new draw per task


# ------------------------------------------------------- Parseval regularization (Chung et al. 2024)


def test_parseval_penalty_diagonal_layers_and_width_scaling():
    from isoplast_lite.methods import DiagonalScale

    cfg = Config("random-label-digits", "parseval", settings={"strength": 0.3, "target_scale": 2.0}, width=16, depth=2, dtype="float64")
    method = make_method("parseval", cfg.settings)
    stack = StackedModel.build(lambda g: method.build_model(6, 3, cfg, g).double(), (0, 1), dtype=torch.float64)
    assert sum(isinstance(m, DiagonalScale) for m in stack.template.modules()) == 2 and stack._plan is not None
    with torch.no_grad():
        for p in stack.params.values():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2), dtype=p.dtype))
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    ctx = StepContext(cfg=cfg, task=0, step=0, stack=stack, x=x, y=torch.zeros(2, 5, dtype=torch.long), logits=stack(x))
    expected = 0.3 * (64 / 16) ** 2 * sum(
        float(torch.linalg.matrix_norm(W @ W.T - 2.0 * torch.eye(16, dtype=torch.float64)) ** 2)
        for n in ("0.0.weight", "1.0.weight") for W in stack.params[n].detach()
    )  # fmt: skip
    assert float(method.penalty(stack, ctx).detach()) == pytest.approx(expected, rel=1e-12)  # the head (2.weight) is free
    fast = stack.forward_all(x)
    stack._plan = None  # the diagonal layers' stacked_forward == vmap(functional_call)
    for a, b in zip(fast, stack.forward_all(x)):
        torch.testing.assert_close(a, b)
    plain = make_method("parseval", {"diagonal_layers": False}).build_model(6, 3, cfg, torch.Generator().manual_seed(0))
    assert not any(isinstance(m, DiagonalScale) for m in plain.modules())


def test_optimizer_parameter_order_does_not_depend_on_the_hash_seed():
    """Checkpoints map optimizer state to parameters by position: every method must build its
    optimizer's groups in the same order in every process (a set of names iterated in hash order
    once swapped the head's weight and bias state on resume)."""
    import subprocess

    code = textwrap.dedent('''
        import json, torch
        from isoplast_lite.methods import METHODS, make_method
        from isoplast_lite.engine import StackedModel
        from isoplast_lite.run import Config
        out = {}
        for name in METHODS:
            cfg = Config("random-label-digits", name, width=8, depth=2)
            m = make_method(name, cfg.settings)
            stack = StackedModel.build(lambda g: m.build_model(6, 3, cfg, g), (0, 1))
            m.setup(stack, cfg)
            opt = m.make_optimizer(stack, cfg)
            names = {id(p): n for n, p in stack.params.items()}
            out[name] = [[names[id(p)] for p in g["params"]] for g in opt.param_groups]
        print(json.dumps(out))
    ''')
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3", "4", "5")]  # fmt: skip
    assert all(r == runs[0] for r in runs)
