import ast
import hashlib
import json
import pickle
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from benchmark.core import tensorfile
from benchmark.engine.cache import MissingCacheEntry, ModelCache, config_hash

ROOT = Path(__file__).resolve().parents[1]


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
    weights = next(tmp_path.rglob(f"{meta['key']}.safetensors"))
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
    again = ModelCache(tmp_path).outputs("m", "s")
    assert _same(again, entry)
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


# -- the file format: safetensors, nothing pickled -------------------------------------------------------

def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def _same(a, b) -> bool:
    """Equal trees: same types, keys in order, and tensors with the same dtype, shape and bits (NaN, -0.0)."""
    if isinstance(a, torch.Tensor):
        same_kind = isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        return same_kind and torch.equal(_bits(a), _bits(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _net() -> nn.Module:
    """Conv weights kept channels_last (as some models now do), a BatchNorm with its int64 counter."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 3, 5, 5))
    return net.to(memory_format=torch.channels_last)


def _train_net(model):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].num_batches_tracked += 17
    return {"train_time_s": 0.1}


def test_a_state_dict_round_trips_bit_for_bit(tmp_path):
    trained, meta = ModelCache(tmp_path).get_or_train({"role": "original"}, _net, _train_net)
    saved = trained.state_dict()
    assert not saved["0.weight"].is_contiguous() and saved["1.num_batches_tracked"].dtype == torch.int64
    loaded, _ = ModelCache(tmp_path).get_or_train({"role": "original"}, _net, lambda m: pytest.fail("retrained"))
    assert _same(loaded.state_dict(), saved)
    (blob,) = (tmp_path / "models").rglob("*.safetensors")
    stored = tensorfile.loads(blob.read_bytes())  # the object itself, before load_state_dict copies it
    assert type(stored) is OrderedDict and stored._metadata == saved._metadata
    assert list(stored) == list(saved) and all(_same(stored[k], v.contiguous()) for k, v in saved.items())
    with safe_open(blob, framework="pt") as f:  # a plain state dict for any safetensors reader
        assert set(f.keys()) == set(saved)
    assert json.loads(blob.with_suffix(".json").read_text())["format"] == tensorfile.FORMAT


def test_any_tree_of_tensors_and_scalars_round_trips_exactly():
    base = torch.arange(10)
    tree = {"logits": {"D_f": torch.tensor([[float("nan"), -0.0], [1e-40, float("inf")]]), "T_f": None},
            "labels": {"D_f": base[:5], "D_r": base[5:]},  # views of one storage
            3: (torch.tensor(True), [torch.zeros(0, 2, dtype=torch.bfloat16), "text", 2.5, -7, False]),
            "odd": {"complex": torch.randn(2, 3, dtype=torch.complex64), "f8": torch.randn(4).to(torch.float8_e4m3fn),
                    "u16": torch.tensor([1, 65535], dtype=torch.uint16), "/": torch.ones(1), "": torch.ones(2)},
            "odd/": torch.ones(3)}  # spelt like the path of "odd" -> "" (names in the file stay unique)
    assert _same(tensorfile.loads(tensorfile.dumps(tree)), tree)
    assert _same(tensorfile.loads(tensorfile.dumps(torch.ones(2))), torch.ones(2))


@pytest.mark.parametrize("value, message", [
    (object(), "type 'object' at key path 'logits' -> 'D_f'"),
    ({(1, 2): torch.ones(1)}, r"key \(1, 2\)"),
    (torch.ones(2).to_sparse(), "sparse"),
    (torch.empty(2, device="meta"), "only dense tensors"),
])
def test_what_safetensors_cannot_keep_is_refused_when_written(tmp_path, value, message):
    cache = ModelCache(tmp_path)
    with pytest.raises(TypeError, match=message):
        cache.store_outputs("m", "s", {"logits": {"D_f": value}})
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_damaged_outputs_are_rebuilt_with_a_warning(tmp_path):
    cache, entry = ModelCache(tmp_path), {"logits": {"D_f": torch.randn(3, 2)}, "labels": {"D_f": torch.arange(3)}}
    cache.store_outputs("m", "s", entry)
    (blob,) = (tmp_path / "outputs").rglob("*.safetensors")
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    with pytest.warns(UserWarning, match="checksum"):
        assert _same(cache.outputs_or_compute("m", "s", lambda: entry), entry)
    assert cache.computed and _same(ModelCache(tmp_path).outputs("m", "s"), entry)


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fails the test if anything unpickles (torch.load, pickle.load/loads, an Unpickler)."""
    def refuse(*args, **kwargs):
        pytest.fail("something unpickled a cache entry")

    for owner, name in [(torch, "load"), (torch.serialization, "load"), (pickle, "load"), (pickle, "loads"),
                        (pickle, "Unpickler")]:
        monkeypatch.setattr(owner, name, refuse)


def _old_entry(cache: ModelCache, kind: str, config: dict, obj) -> Path:
    """An entry as written before safetensors: torch.save's pickle in <key>.pt, a record without a format."""
    key = config_hash(config)
    folder = cache.root / kind / key[:2]
    folder.mkdir(parents=True)
    torch.save(obj, folder / f"{key}.pt")
    sha = hashlib.sha256((folder / f"{key}.pt").read_bytes()).hexdigest()
    record = {"key": key, "config": config, "meta": {"train_time_s": 9.0}, "about": {}, "sha256": sha}
    (folder / f"{key}.json").write_text(json.dumps(record))
    return folder / f"{key}.pt"


def _warnings_of(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught]


def test_an_old_pickle_entry_is_rebuilt_with_one_warning_and_never_unpickled(tmp_path, no_unpickling):
    cache, calls, config = ModelCache(tmp_path), [], {"role": "original", "seed": 0}
    old = _old_entry(cache, "models", config, nn.Linear(2, 2).state_dict())
    assert not cache.has_model(config_hash(config))  # so stacked bank training rebuilds it with its group
    (model, meta), messages = _warnings_of(lambda: cache.get_or_train(config, lambda: nn.Linear(2, 2), _trainer(calls)))
    assert len(messages) == 1 and "old pickle entry" in messages[0] and len(calls) == 1
    assert meta["train_time_s"] == 0.5 and not old.exists() and cache.has_model(meta["key"])
    (_, again), messages = _warnings_of(lambda: cache.get_or_train(config, lambda: nn.Linear(2, 2), _trainer(calls)))
    assert messages == [] and len(calls) == 1 and again["train_time_s"] == 0.5


def test_old_pickle_outputs_are_missing_to_a_reader_and_recomputed_by_a_writer(tmp_path, no_unpickling):
    entry = {"logits": {"D_f": torch.randn(2, 2)}, "labels": {"D_f": torch.arange(2)}}
    _old_entry(ModelCache(tmp_path), "outputs", {"model": "m", "splits": "s"}, entry)
    reader = ModelCache(tmp_path, read_only=True)
    with pytest.warns(UserWarning, match="old pickle entry"), pytest.raises(MissingCacheEntry):
        reader.outputs_or_compute("m", "s", lambda: pytest.fail("computed"))
    with pytest.warns(UserWarning, match="old pickle entry"):
        assert _same(ModelCache(tmp_path).outputs_or_compute("m", "s", lambda: entry), entry)
    assert _same(reader.outputs("m", "s"), entry) and not any((tmp_path / "outputs").rglob("*.pt"))


def test_no_project_module_pickles():
    """Cache entries are safetensors: no module calls torch.save or torch.load, and pickle is imported only
    by the CIFAR reader (CIFAR's official batches are pickles, read from the user's --data-root)."""
    allowed_pickle = {ROOT / "datamodules" / "torchvision_sets.py"}
    banned_modules = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}
    folders = ("benchmark", "methods", "attacks", "datamodules")
    sources = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    assert len(sources) > 20
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute) and node.attr in {"save", "load"} \
                    and isinstance(node.value, ast.Name) and node.value.id == "torch":
                pytest.fail(f"{where}: torch.{node.attr} (cache entries are safetensors: benchmark.core.tensorfile)")
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if {n.split(".")[0] for n in names} & banned_modules and path not in allowed_pickle:
                    pytest.fail(f"{where}: imports {names}, a pickle-based serialiser")
                if isinstance(node, ast.ImportFrom) and node.module in {"torch", "torch.serialization"} \
                        and {a.name for a in node.names} & {"save", "load"}:
                    pytest.fail(f"{where}: imports torch's save/load")
