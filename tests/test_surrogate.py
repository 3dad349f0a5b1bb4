"""Surrogate images (datamodules/surrogate.py): the preset's format, known pixel values, determinism, errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.core.errors import ConfigError
from datamodules.surrogate import LUMA, build_surrogate, load_photographs, to_channels


def test_the_bundled_photographs_load_offline_as_rgb_in_the_unit_range():
    photos = load_photographs("sample_images")
    assert [tuple(p.shape) for p in photos] == [(3, 427, 640), (3, 427, 640)]
    assert all(0.0 <= float(p.min()) and float(p.max()) <= 1.0 for p in photos)


def test_luma_of_pure_colours_by_hand():
    rgb = torch.eye(3).view(3, 3, 1, 1)  # a red, a green and a blue pixel
    torch.testing.assert_close(to_channels(rgb, 1).flatten(), torch.tensor(LUMA))
    assert to_channels(rgb, 3) is rgb
    with pytest.raises(ConfigError):
        to_channels(rgb, 2)


def test_a_constant_photograph_gives_its_normalised_luma_everywhere(tmp_path):
    Image.fromarray(np.full((50, 70, 3), (200, 100, 50), dtype=np.uint8)).save(tmp_path / "flat.png")
    x = build_surrogate(str(tmp_path), count=5, in_channels=1, image_size=8, mean=(0.3,), std=(0.38,),
                        min_side=10, max_side=40)
    luma = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    torch.testing.assert_close(x, torch.full((5, 1, 8, 8), (luma - 0.3) / 0.38), atol=1e-5, rtol=0)


def test_images_take_the_presets_format_and_normalisation():
    raw = build_surrogate("sample_images", count=6, in_channels=3, image_size=32, mean=(0.0,) * 3, std=(1.0,) * 3)
    assert raw.shape == (6, 3, 32, 32) and raw.dtype == torch.float32
    assert 0.0 <= float(raw.min()) and float(raw.max()) <= 1.0
    assert raw.std() > 0.05  # natural-image structure, not a flat field
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    normalised = build_surrogate("sample_images", count=6, in_channels=3, image_size=32, mean=mean, std=std)
    by_hand = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(normalised, by_hand)


def test_the_crops_depend_on_the_seed_only():
    def make(seed):
        return build_surrogate("sample_images", count=4, in_channels=1, image_size=8, mean=(0.3,), std=(0.38,),
                               seed=seed)

    assert torch.equal(make(0), make(0)) and not torch.equal(make(0), make(1))


@pytest.mark.parametrize("source", ["no_such_source", "EMPTY"])
def test_a_missing_or_empty_source_is_a_clear_error(source, tmp_path):
    with pytest.raises(ConfigError, match="surrogate"):
        build_surrogate(str(tmp_path) if source == "EMPTY" else source, count=2, in_channels=1, image_size=8,
                        mean=(0.3,), std=(0.38,))


@pytest.mark.parametrize("bad", [{"count": 0}, {"min_side": 0}, {"min_side": 50, "max_side": 40}, {"mean": (0.1, 0.2)}])
def test_bad_settings_are_refused(bad):
    kwargs = {"count": 2, "in_channels": 1, "image_size": 8, "mean": (0.3,), "std": (0.38,)} | bad
    with pytest.raises(ConfigError):
        build_surrogate("sample_images", **kwargs)
