import warnings

import pytest
import torch
from torch import nn

from benchmark.engine.cache import ModelCache, config_hash


def _trainer(calls):
    def train(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(len(calls))
        return {"train_time_s": 0.5}

    return train


def test_second_request_loads_and_changed_config_retrains(tmp_path):
    cache, calls = ModelCache(tmp_path), []
    config = {"role": "original", "seed": 0, "recipe": {"lr": 0.1}}
    first, meta = cache.get_or_train(config, lambda: nn.Linear(2, 2), _trainer(calls))
    again, meta_again = cache.get_or_train(dict(config), lambda: nn.Linear(2, 2), _trainer(calls))
    assert len(calls) == 1 and cache.loaded == [meta["key"]]
    torch.testing.assert_close(first.weight, again.weight)
    assert meta_again["train_time_s"] == 0.5
    changed = config | {"recipe": {"lr": 0.2}}
    cache.get_or_train(changed, lambda: nn.Linear(2, 2), _trainer(calls))
    assert len(calls) == 2 and config_hash(changed) != config_hash(config)


def test_corrupted_entry_is_rebuilt_with_a_warning(tmp_path):
    cache, calls = ModelCache(tmp_path), []
    config = {"role": "original", "seed": 1}
    _, meta = cache.get_or_train(config, lambda: nn.Linear(2, 2), _trainer(calls))
    weights = next(tmp_path.rglob(f"{meta['key']}.pt"))
    weights.write_bytes(weights.read_bytes()[:-10])  # a torn write
    with pytest.warns(UserWarning, match="checksum"):
        cache.get_or_train(config, lambda: nn.Linear(2, 2), _trainer(calls))
    assert len(calls) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.get_or_train(config, lambda: nn.Linear(2, 2), _trainer(calls))  # rebuilt entry is valid
    assert len(calls) == 2


def test_outputs_round_trip(tmp_path):
    cache = ModelCache(tmp_path)
    logits = {"D_f": torch.randn(4, 3)}
    assert cache.outputs("m", "s") is None
    cache.store_outputs("m", "s", logits)
    torch.testing.assert_close(cache.outputs("m", "s")["D_f"], logits["D_f"])
    assert cache.outputs("m", "other-split") is None
