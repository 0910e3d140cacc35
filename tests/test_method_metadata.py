"""A method's metadata lives on its class: figures and tools read family, colour and tuning grid
from the registry, so a method registered from a user module needs no edit elsewhere."""

from __future__ import annotations

import json
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from isoplast_lite import plots, results  # noqa: E402
from isoplast_lite.methods import METHODS, Method, method_info, register_method, unregister_method  # noqa: E402
from isoplast_lite.settings import SettingError, setting, setting_specs  # noqa: E402
from tools_loader import load_tool  # noqa: E402

STREAMS_TOOL = load_tool("precompute_streams")


@pytest.fixture
def user_method():
    """A method as a user module would write it: its metadata declared on the class."""

    @register_method
    class Damped(Method):
        name = "test-damped"
        summary = "Adam + strength * sum theta^4 (a test method)"
        family = "user methods"
        colour = "yellow"
        tuning = ("strength", (1e-6, 1e-5))
        cost = 1.1
        compared = True

        @dataclass(frozen=True)
        class Settings:
            strength: float = setting(1e-5, low=0, stackable=True, help="coefficient of sum theta^4")
            fourth: bool = setting(True, help="a flag that is not stackable")

        def penalty(self, stack, ctx):
            return self.settings.strength * sum(p.pow(4).sum() for p in stack.params.values())

    yield Damped
    unregister_method("test-damped")


def test_a_user_method_appears_in_a_figure_legend_and_in_the_tuning_grids(user_method):
    info = method_info("test-damped")
    assert (info.family, info.colour, info.tuning, info.cost, info.compared, info.stackable) == (
        "user methods", "yellow", ("strength", (1e-6, 1e-5)), 1.1, True, ("strength",))  # fmt: skip
    rows = [dict(method=m, seed=s, task=t, train_acc=0.5 + 0.1 * t) for m in ("adam", "adamo", "test-damped") for s in range(2) for t in range(3)]
    fig = plots.small_multiples(pd.DataFrame(rows), "train_acc")
    legend = fig.legends[0]
    colours = {t.get_text(): matplotlib.colors.to_hex(h.get_color()) for t, h in zip(legend.get_texts(), legend.legend_handles)}
    plt.close(fig)
    assert colours["test-damped"] == plots.OKABE_ITO["yellow"].lower()  # its declared colour, not a hashed one
    assert [ax.get_title() for ax in fig.axes] == ["user methods"]  # its own panel
    assert STREAMS_TOOL.GRIDS["test-damped"] == ("strength", (1e-6, 1e-5))
    tuned = [(m, v) for m, v, _ in STREAMS_TOOL.tuning_configs("random-label-digits") if m == "test-damped"]
    assert tuned == [("test-damped", 1e-6), ("test-damped", 1e-5)]
    assert "test-damped" in [c.method for c in STREAMS_TOOL.result_configs("random-label-digits", {m: {} for m in STREAMS_TOOL.GRIDS})]
    unregister_method("test-damped")
    assert "test-damped" not in STREAMS_TOOL.GRIDS and plots.family("test-damped") == "other"


def test_metadata_is_checked_at_registration():
    def make(**attrs):
        @dataclass(frozen=True)
        class Settings:
            strength: float = setting(1.0, low=0, help="a strength")

        return type("Bad", (Method,), {"name": "test-bad", "summary": "bad", "Settings": Settings, **attrs})

    with pytest.raises(SettingError, match="strength"):
        register_method(make(tuning=("strength", (1.0, -1.0))))  # a value out of range
    with pytest.raises(SettingError, match="unknown setting"):
        register_method(make(tuning=("strenght", (1.0,))))
    with pytest.raises(TypeError, match="tuning"):
        register_method(make(tuning=("strength", [1.0])))
    with pytest.raises(ValueError, match="cost"):
        register_method(make(cost=0))
    with pytest.raises(TypeError, match="family"):
        register_method(make(family=None))
    with pytest.raises(TypeError, match="compared"):
        register_method(make(compared=1))
    with pytest.raises(TypeError, match="stackable"):
        setting(1.0, help="x", stackable="yes")
    assert "test-bad" not in METHODS


def test_metadata_is_not_inherited():
    @register_method
    class Child(METHODS["adamo"]):
        name = "test-child"
        summary = "a subclass of adamo is another method"

    try:
        info = method_info("test-child")
        assert (info.family, info.colour, info.tuning, info.compared) == ("other", None, None, False)
    finally:
        unregister_method("test-child")


@pytest.mark.parametrize("stream", list(results.manifest("streams")))
def test_the_shipped_tuning_grids_and_method_order_come_out_of_the_metadata(stream):
    """The registry gives the shipped manifest's grids and untuned list, in the same order and
    with the same JSON text, and the shipped files' method order (what the tool writes)."""
    entry = results.manifest("streams")[stream]
    grids = {m: {"setting": name, "values": list(values)} for m, (name, values) in STREAMS_TOOL.grids().items()}
    assert json.dumps(grids, indent=2) == json.dumps(entry["grids"], indent=2)
    assert list(STREAMS_TOOL.untuned()) == entry["untuned"]
    folder = results.results_dir("streams")
    shipped = pd.read_csv(folder / entry["file"], usecols=["method"])
    assert list(dict.fromkeys(shipped.method)) == [*STREAMS_TOOL.untuned(), *STREAMS_TOOL.grids()]
    tuning = pd.read_csv(folder / entry["tuning_file"], usecols=["method"])
    assert list(dict.fromkeys(tuning.method)) == list(STREAMS_TOOL.grids())


def test_every_builtin_setting_declares_whether_it_can_be_stacked():
    """Stackable: numbers that only scale per-seed terms; never a choice, a flag or a loop count."""
    from isoplast_lite.methods import BUILTIN_METHODS

    assert BUILTIN_METHODS and set(BUILTIN_METHODS) <= set(METHODS)
    for name in BUILTIN_METHODS:  # not METHODS: other tests register methods of their own
        cls = METHODS[name]
        for spec in setting_specs(cls.Settings):
            if spec.type in (bool, str) or spec.name == "n_power_iter":
                assert not spec.stackable, (name, spec.name)
            else:
                assert spec.stackable, (name, spec.name)
