"""Every method's search space (methods/search.py), parametrised over the registry: declared on the class, keyed by
constructor arguments, the published values as the first trial, and every sampled value a method that constructs."""

from __future__ import annotations

import inspect
import math

import optuna
import pytest
from torch import nn

from methods import UnlearningMethod, get_method, method_names
from methods.base import BUILTIN_ORDER
from methods.search import Choice, Integer, LogUniform, Param, Uniform, published_values, sample

UNTUNED = {"original", "retrain"}  # nothing to tune / the training recipe itself
TRIALS = 12
NOT_SEARCHABLE = {"model", "num_classes", "forget_classes", "seed"}  # set by the cell, never by a study

optuna.logging.set_verbosity(optuna.logging.WARNING)


def construct(name: str, **hparams) -> UnlearningMethod:
    return get_method(name)(nn.Linear(1, 10), num_classes=10, forget_classes=(3,), seed=0, **hparams)


def constructor_defaults(cls: type) -> dict[str, inspect.Parameter]:
    """Every keyword the class's constructor chain accepts, each with its default from the most derived ``__init__``."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, UnlearningMethod)) or "__init__" not in klass.__dict__:
            continue
        for p in inspect.signature(klass.__dict__["__init__"]).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self":
                params.setdefault(p.name, p)
    return params


def test_every_builtin_method_is_registered():
    assert set(BUILTIN_ORDER) <= set(method_names())


@pytest.mark.parametrize("name", method_names())
def test_space_is_declared_on_the_class(name):
    cls = get_method(name)
    space = cls.search_space
    assert all(isinstance(p, Param) for p in space.values()), space
    assert len(space) <= 4, f"{name}: at most 4 searched parameters (the budget is per method)"
    if name not in BUILTIN_ORDER:
        return  # a plugin may declare any space, an empty one included
    # on the class itself, never inherited: salun and amun extend rl, rwft extends trw
    assert "search_space" in cls.__dict__, f"{name} must declare its own search_space"
    if name in UNTUNED:
        assert space == {}
    else:
        assert space, f"{name} declares no search space"


@pytest.mark.parametrize("name", method_names())
def test_keys_are_constructor_arguments_with_the_published_value_as_default(name):
    cls = get_method(name)
    accepted = constructor_defaults(cls)
    for key, param in cls.search_space.items():
        assert key in accepted and key not in NOT_SEARCHABLE, f"{name}: {key!r} is not a searchable argument"
        if name in BUILTIN_ORDER:  # the docstrings cite each default's source; the published value is that default
            assert accepted[key].default == param.published, (name, key, accepted[key].default, param.published)


@pytest.mark.parametrize("name", method_names())
def test_published_values_construct_the_method(name):
    space = get_method(name).search_space
    method = construct(name, **published_values(space))
    for key, value in published_values(space).items():
        assert method.hparams[key] == value


@pytest.mark.parametrize("name", [m for m in method_names() if get_method(m).search_space])
def test_sampled_values_construct_the_method(name):
    space = get_method(name).search_space
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(published_values(space))
    seen = []
    for number in range(TRIALS):
        trial = study.ask()
        hparams = sample(space, trial)
        if number == 0:
            assert hparams == published_values(space) == trial.params
        for key, value in hparams.items():
            assert space[key].contains(value), (name, key, value, space[key])
        method = construct(name, **hparams)
        assert all(method.hparams[key] == value for key, value in hparams.items())
        seen.append(hparams)
        study.tell(trial, 0.0)
    for key, param in space.items():  # the sampler actually explores: not every trial repeats the first
        if not isinstance(param, Choice):
            assert len({h[key] for h in seen}) > 1, (name, key)


@pytest.mark.parametrize("make", [
    lambda: LogUniform(1e-3, 1e-1, published=1.0),
    lambda: LogUniform(1e-3, 1e-1, published=1e-4),
    lambda: Uniform(0.0, 1.0, published=1.5),
    lambda: Integer(1, 10, published=0),
    lambda: Integer(1, 10, published=2.5),
    lambda: Choice(("a", "b"), published="c"),
    lambda: LogUniform(0.0, 1.0, published=0.5),
    lambda: LogUniform(-1.0, 1.0, published=0.5),
    lambda: LogUniform(1.0, 1.0, published=1.0),
    lambda: Uniform(1.0, 0.0, published=0.5),
    lambda: Integer(5, 5, published=5),
    lambda: Choice(("a",), published="a"),
])
def test_bad_params_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_params_contain_their_bounds_and_nothing_outside():
    lr = LogUniform(1e-3, 1e-1, published=1e-2)
    assert lr.contains(1e-3) and lr.contains(1e-1) and not lr.contains(0.2) and not lr.contains(math.nan)
    epochs = Integer(1, 10, published=5)
    assert epochs.contains(1) and epochs.contains(10) and not epochs.contains(True) and not epochs.contains(5.0)
    assert lr.describe() == {"type": "LogUniform", "low": 1e-3, "high": 1e-1, "published": 1e-2}
