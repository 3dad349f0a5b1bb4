import json
import warnings

import pytest
import torch
from torch import nn

from benchmark.engine.cache import MissingCacheEntry, ModelCache, config_hash


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


ABOUT = {"role": "unlearned", "method": "ft", "index": 0, "preset": "digits", "seed": 0, "forget_classes": [3]}


def test_outputs_round_trip_with_their_labels_and_what_they_are(tmp_path):
    cache = ModelCache(tmp_path)
    entry = {"logits": {"D_f": torch.randn(4, 3)}, "labels": {"D_f": torch.tensor([0, 1, 2, 0])}}
    assert cache.outputs("m", "s") is None
    cache.store_outputs("m", "s", entry, about=ABOUT)
    again = cache.outputs("m", "s")
    torch.testing.assert_close(again["logits"]["D_f"], entry["logits"]["D_f"])
    torch.testing.assert_close(again["labels"]["D_f"], entry["labels"]["D_f"])
    assert cache.outputs("m", "other-split") is None
    (record,) = (tmp_path / "outputs").rglob("*.json")
    assert json.loads(record.read_text())["about"] == ABOUT


def test_outputs_entries_of_logits_alone_still_load(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store_outputs("m", "s", {"D_f": torch.ones(2, 2)})  # as written before labels were stored
    assert cache.outputs("m", "s")["logits"]["D_f"].sum() == 4


def test_a_read_only_cache_loads_what_it_has_and_names_what_it_lacks(tmp_path):
    writer, calls = ModelCache(tmp_path), []
    writer.get_or_train({"role": "original", "seed": 0}, lambda: nn.Linear(2, 2), _trainer(calls))
    writer.store_outputs("m", "s", {"logits": {"D_f": torch.zeros(1, 2)}, "labels": {"D_f": torch.zeros(1)}})
    reader = ModelCache(tmp_path, read_only=True)
    reader.get_or_train({"role": "original", "seed": 0}, lambda: nn.Linear(2, 2), _trainer(calls))
    assert reader.outputs_or_compute("m", "s", lambda: pytest.fail("computed"))["logits"]["D_f"].shape == (1, 2)
    with pytest.raises(MissingCacheEntry, match=r"no weights of the oracle model \(index 0, preset digits\)"):
        reader.get_or_train({"role": "retrained", "seed": 0}, lambda: nn.Linear(2, 2), _trainer(calls),
                            about={"role": "oracle", "index": 0, "preset": "digits"})
    with pytest.raises(MissingCacheEntry, match=r"no outputs of the unlearned model \(method ft, index 0.*"
                                                + str(tmp_path)):
        reader.outputs_or_compute("m", "other-split", lambda: pytest.fail("computed"), about=ABOUT)
    assert len(calls) == 1 and reader.trained == [] and reader.computed == []
    assert not (tmp_path / "locks").exists() or not any((tmp_path / "locks").rglob("*.lock"))
