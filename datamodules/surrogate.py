"""Surrogate out-of-distribution images: the data SCAR distils the original model on (methods/scar.py).

SCAR (Bonato, Cotogni, Sabetta, ECCV 2024, arXiv 2404.12922) keeps a model's accuracy without the retain set
by distilling the original model's outputs on images from outside the training distribution; the authors
use 10,000 ImageNet images. What matters is that the images carry natural-image structure (the paper's
ablation finds ImageNet, COCO and other natural photographs all work, Gaussian noise does not). This module
turns a source of photographs into a fixed tensor of surrogate images in a preset's own format:

- ``"sample_images"``: the two photographs scikit-learn ships inside its wheel (``china.jpg`` and
  ``flower.jpg``, :func:`sklearn.datasets.load_sample_images`), so the offline presets need no download;
- a directory path: every ``.jpg``/``.jpeg``/``.png`` file in it (for paper-scale presets: put e.g. the
  authors' 10k ImageNet sample there).

Each surrogate image is a random square crop of a random photograph (side drawn uniformly between
``min_side`` and ``max_side`` pixels, clipped to the photograph), flipped left-right with probability 1/2,
resized to the preset's image size (bilinear, antialiased), converted to the preset's channel count (ITU-R
BT.601 luma for one channel; colour photographs kept as RGB for three) and normalised with the preset's
mean and standard deviation, exactly as the datamodules normalise their own images. The crops depend only
on (source, count, format, seed). docs/protocol.md 1, "Surrogate images (SCAR)", describes the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.core.errors import ConfigError

SAMPLE_IMAGES = "sample_images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's "L" conversion


def load_photographs(source: str) -> list[Tensor]:
    """The photographs of ``source`` as float (3, H, W) tensors in [0, 1].

    Args:
        source: ``"sample_images"`` or a directory of image files.

    Raises:
        ConfigError: if the source is neither, or holds no image.
    """
    if source == SAMPLE_IMAGES:
        from sklearn.datasets import load_sample_images

        arrays = load_sample_images().images
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise ConfigError(f"surrogate source {source!r} is neither {SAMPLE_IMAGES!r} nor a directory of images")
        from PIL import Image

        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        arrays = [np.asarray(Image.open(p).convert("RGB")) for p in files]
        if not arrays:
            raise ConfigError(f"surrogate directory {source!r} holds no {'/'.join(IMAGE_SUFFIXES)} file")
    # a copy: PIL's and scikit-learn's arrays may be read-only, which torch warns about
    return [torch.from_numpy(np.array(a, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0 for a in arrays]


def to_channels(images: Tensor, channels: int) -> Tensor:
    """(N, 3, H, W) RGB images with ``channels`` channels: 3 unchanged, 1 as BT.601 luma."""
    if channels == 3:
        return images
    if channels == 1:
        return (images * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    raise ConfigError(f"surrogate images can be made with 1 or 3 channels, not {channels}")


def random_crops(photographs: Sequence[Tensor], count: int, image_size: int, *, min_side: int, max_side: int,
                 generator: torch.Generator) -> Tensor:
    """``count`` random square crops, randomly flipped, resized to ``image_size``: (count, 3, S, S) in [0, 1]."""
    crops = []
    for _ in range(count):
        photo = photographs[int(torch.randint(len(photographs), (1,), generator=generator))]
        h, w = photo.shape[-2:]
        high = min(max_side, h, w)
        side = int(torch.randint(min(min_side, high), high + 1, (1,), generator=generator))
        top = int(torch.randint(h - side + 1, (1,), generator=generator))
        left = int(torch.randint(w - side + 1, (1,), generator=generator))
        crop = photo[:, top:top + side, left:left + side]
        if bool(torch.rand((), generator=generator) < 0.5):
            crop = crop.flip(-1)
        crops.append(F.interpolate(crop[None], size=(image_size, image_size), mode="bilinear",
                                   antialias=True, align_corners=False)[0])
    return torch.stack(crops).clamp(0.0, 1.0)


def build_surrogate(source: str, *, count: int, in_channels: int, image_size: int, mean: Sequence[float],
                    std: Sequence[float], seed: int = 0, min_side: int = 32, max_side: int = 256) -> Tensor:
    """Surrogate images in a preset's format: (count, in_channels, image_size, image_size), normalised.

    Args:
        source: ``"sample_images"`` or a directory of image files (see the module docstring).
        count: how many surrogate images (>= 1).
        in_channels: the preset's channel count (1 or 3).
        image_size: the preset's image height (= width).
        mean: the preset's per-channel mean (as its datamodule normalises).
        std: the preset's per-channel standard deviation.
        seed: seed of the crops.
        min_side: smallest crop side, in photograph pixels.
        max_side: largest crop side, in photograph pixels (clipped to the photograph).

    >>> x = build_surrogate("sample_images", count=4, in_channels=1, image_size=8, mean=(0.3,), std=(0.38,))
    >>> tuple(x.shape)
    (4, 1, 8, 8)
    """
    if count < 1 or not 1 <= min_side <= max_side:
        raise ConfigError(f"surrogate images need count >= 1 and 1 <= min_side <= max_side, got count={count}, "
                          f"min_side={min_side}, max_side={max_side}")
    if len(mean) != in_channels or len(std) != in_channels:
        raise ConfigError(f"surrogate images: mean {tuple(mean)} and std {tuple(std)} must have {in_channels} entries")
    generator = torch.Generator().manual_seed(seed)
    crops = random_crops(load_photographs(source), count, image_size, min_side=min_side, max_side=max_side,
                         generator=generator)
    pixels = to_channels(crops, in_channels)
    return (pixels - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
