import pytest

from benchmark.engine.preset import PresetError, load_preset, parse_preset, preset_names

GOOD = """\
dataset: digits
model: mlp
train: {epochs: 2, lr: 0.1}
forget_classes: [[3], [8]]
seeds: [0]
"""


@pytest.mark.parametrize("name", preset_names())
def test_packaged_presets_load(name):
    preset = load_preset(name)
    assert preset.name == name and preset.forget_classes and preset.seeds


def test_default_preset_is_offline():
    assert not load_preset("digits").download and "digits" in preset_names()


def test_good_preset_parses():
    preset = parse_preset(GOOD, source="x.yaml", name="x")
    assert preset.forget_classes == ((3,), (8,)) and preset.train.epochs == 2


@pytest.mark.parametrize("text, expected", [
    (GOOD + "epochz: 3\n", r"key 'epochz' \(line 6\).*unknown preset key"),
    (GOOD.replace("train: {epochs: 2, lr: 0.1}", "train: {epochs: 2, optimiser: sgd}"), r"key 'train' \(line 3\)"),
    (GOOD.replace("seeds: [0]\n", ""), "missing required key 'seeds'"),
    ("dataset: [unclosed\n", "not valid YAML"),
])
def test_malformed_presets_name_key_and_line(text, expected):
    with pytest.raises(PresetError, match=expected):
        parse_preset(text, source="x.yaml", name="x")


def test_unknown_preset_lists_known_ones():
    with pytest.raises(KeyError, match="Did you mean digits"):
        load_preset("digitz")
