"""One registry type for methods, datasets, models and attack callbacks; errors a user can act on."""

from __future__ import annotations

import pytest
import torch

from attacks import AttackOptions, AttackOptionsError, CellContext, MetricCallback, Outputs, ScoreUndefined
from benchmark.core.errors import BenchError, UnknownNameError
from benchmark.core.registry import Registry
from benchmark.engine.callbacks import CALLBACKS, register_callback
from benchmark.engine.models import MODELS, register_model
from datamodules import DATAMODULES, register_datamodule
from methods import METHODS, register_method


def test_a_registry_refuses_a_taken_name_and_accepts_the_same_entry_again():
    registry = Registry("colour")
    registry.register("red", int)
    registry.register("red", int)  # the same definition, re-imported
    with pytest.raises(ValueError, match="'red' is defined twice: by builtins.int and by builtins.str"):
        registry.register("red", str)
    with pytest.raises(ValueError, match="identifier-like"):
        registry.register("not a name", str)


def test_an_unknown_name_lists_the_known_ones_close_matches_first():
    registry = Registry("colour")
    for name in ("yellow", "green", "blue"):
        registry.register(name, name)
    with pytest.raises(UnknownNameError) as info:
        registry.get("gren")
    assert str(info.value) == "unknown colour 'gren'. Did you mean green? Known colours: green, blue, yellow"
    assert isinstance(info.value, KeyError) and isinstance(info.value, BenchError)


@pytest.mark.parametrize("register, registry", [
    (register_method, METHODS), (register_datamodule, DATAMODULES),
    (lambda cls: register_callback("not_a_callback", cls), CALLBACKS),
    (lambda cls: register_model("not_a_model")(cls), MODELS),
], ids=["method", "dataset", "callback", "model"])
def test_every_registry_refuses_entries_of_the_wrong_type(register, registry):
    with pytest.raises(TypeError):
        register(42)  # not a class of the right base (nor, for models, callable)
    assert "not_a_callback" not in registry and "not_a_model" not in registry


def test_each_registry_has_the_built_in_entries():
    METHODS.get("ft")  # the built-in methods register on the first lookup
    assert {"ft", "trw", "retrain"} <= set(METHODS.names())
    assert {"digits", "mnist5k", "cifar10"} <= set(DATAMODULES)
    assert {"mlp", "small_cnn", "resnet18"} <= set(MODELS)
    assert {"accuracy", "mia_nn", "ulira"} <= set(CALLBACKS)


@pytest.mark.parametrize("field, value", [("nn_feature", "probs"), ("mia_signal", "loss"), ("neighbours", 0),
                                          ("neighbours", 2.5), ("per_example_variance", "yes")])
def test_attack_options_refuse_values_the_protocol_does_not_define(field, value):
    with pytest.raises(AttackOptionsError, match=repr(value).replace(".", r"\.")):  # the message quotes the value
        AttackOptions(**{field: value})


def _outputs(value: float) -> Outputs:
    logits = {s: torch.full((4, 3), value) for s in ("D_f", "D_r", "T_f", "T_r", "V")}
    return Outputs(logits=logits, labels={s: torch.zeros(4, dtype=torch.long) for s in logits})


class _Raising(MetricCallback):
    error: type[Exception] = ValueError

    def compute(self, outputs: Outputs) -> dict[str, float]:
        raise self.error("from compute")


class _Model:
    model = torch.nn.Identity()


def test_a_score_that_does_not_exist_becomes_a_diagnostic_and_a_bug_propagates():
    class Outputs_:
        def of(self, model, model_id, cached_key=None):
            return _outputs(0.0)

    context = CellContext(outputs=Outputs_(), oracle=_outputs(0.0), oracle_meta={})
    callback = type("Undefined", (_Raising,), {"error": ScoreUndefined})(context)
    callback.on_fit_end(None, _Model())
    assert context.diagnostics["errors"] == ["Undefined (method): from compute", "Undefined (oracle): from compute"]
    with pytest.raises(ValueError, match="from compute"):  # not a ScoreUndefined: a bug, never hidden in a row
        _Raising(CellContext(outputs=Outputs_(), oracle=_outputs(0.0), oracle_meta={})).on_fit_end(None, _Model())


def test_non_finite_outputs_leave_the_score_out_with_the_reason():
    class Diverged:
        def of(self, model, model_id, cached_key=None):
            return _outputs(float("nan"))

    class Scores(MetricCallback):
        def compute(self, outputs: Outputs) -> dict[str, float]:
            return {"score": 1.0}

    context = CellContext(outputs=Diverged(), oracle=_outputs(0.0), oracle_meta={})
    Scores(context).on_fit_end(None, _Model())
    assert context.method_metrics == {} and context.oracle_metrics == {"score": 1.0}
    assert "diverged" in context.diagnostics["errors"][0]


def test_a_library_bug_keeps_its_traceback_while_a_user_error_is_one_line(monkeypatch, capsys):
    import benchmark.cli as cli

    assert cli.main(["run", "--methods", "no_such_method"]) == 2
    assert "error: unknown method 'no_such_method'" in capsys.readouterr().err

    def broken():
        raise KeyError("a bug inside the library")

    monkeypatch.setattr(cli, "method_names", broken)
    with pytest.raises(KeyError, match="a bug inside the library"):
        cli.main(["list"])
