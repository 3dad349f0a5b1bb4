"""Tiny ImageNet: 200 classes of 64x64 colour images, read from the official extracted folder.

Layout under the data root (as ``tiny-imagenet-200.zip`` unpacks)::

    tiny-imagenet-200/wnids.txt                       class ids, one per line; line order = class index
    tiny-imagenet-200/train/<wnid>/images/*.JPEG      500 training images per class
    tiny-imagenet-200/val/images/*.JPEG               50 validation images per class
    tiny-imagenet-200/val/val_annotations.txt         filename <TAB> wnid <TAB> bounding box

The official test set has no labels, so the labelled validation set serves as T. The suite cannot
download this dataset; ``download: true`` has no effect.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from benchmark.core.errors import ConfigError
from datamodules.base import ImageArrays, UnlearningDataModule
from datamodules.torchvision_sets import missing_dataset_error

ARCHIVE_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


class TinyImageNetDataModule(UnlearningDataModule):
    """Tiny ImageNet-200: 100,000 training and 10,000 validation (here: test) images, 3x64x64."""

    name = "tiny_imagenet"
    num_classes = 200
    in_channels = 3
    image_size = 64
    mean = (0.4802, 0.4481, 0.3975)
    std = (0.2770, 0.2691, 0.2821)
    has_test_split: ClassVar[bool] = True
    folder: ClassVar[str] = "tiny-imagenet-200"
    how_to_get = (f"this suite cannot download it (download: true has no effect); download {ARCHIVE_URL} "
                  "yourself and unzip it in the data root (it unpacks to tiny-imagenet-200/), then run "
                  "`bench run --preset tiny_imagenet --data-root DIR`")

    def load(self) -> tuple[ImageArrays, ImageArrays]:
        if self.root is None:
            raise missing_dataset_error(self.name, None, self.how_to_get)
        base = Path(self.root) / self.folder
        wnids_file, val_file = base / "wnids.txt", base / "val" / "val_annotations.txt"
        for needed in (wnids_file, base / "train", val_file):
            if not needed.exists():
                raise missing_dataset_error(self.name, needed, self.how_to_get)

        wnids = [line.strip() for line in wnids_file.read_text().splitlines() if line.strip()]
        if not wnids or len(wnids) > self.num_classes:  # fewer is fine: a stand-in with some classes
            raise ConfigError(f"{wnids_file} lists {len(wnids)} class ids; Tiny ImageNet has {self.num_classes}")
        index = {wnid: i for i, wnid in enumerate(wnids)}

        train_paths, train_labels = [], []
        for wnid, label in index.items():
            files = sorted((base / "train" / wnid / "images").glob("*.JPEG"))
            if not files:
                raise missing_dataset_error(self.name, base / "train" / wnid / "images", self.how_to_get)
            train_paths += files
            train_labels += [label] * len(files)

        test_paths, test_labels = [], []
        for line in val_file.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) < 2:
                continue  # blank trailing line
            filename, wnid = fields[0], fields[1]
            if wnid not in index:
                raise ConfigError(f"{val_file}: {filename} has class id {wnid!r}, which is not in {wnids_file}")
            test_paths.append(base / "val" / "images" / filename)
            test_labels.append(index[wnid])
        return self._read(train_paths, train_labels), self._read(test_paths, test_labels)

    def _read(self, paths: list[Path], labels: list[int]) -> ImageArrays:
        # JPEG decoding releases the GIL, so threads make reading 110,000 small files much faster
        with ThreadPoolExecutor(max_workers=8) as pool:
            arrays = list(pool.map(self._read_image, paths))
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return ImageArrays(images, torch.tensor(labels, dtype=torch.int64))

    def _read_image(self, path: Path) -> np.ndarray:
        if not path.is_file():
            raise missing_dataset_error(self.name, path, self.how_to_get)
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.uint8)  # a few official images are greyscale
        if array.shape[:2] != (self.image_size, self.image_size):
            raise ConfigError(f"{path} is {array.shape[1]}x{array.shape[0]}; Tiny ImageNet images are "
                             f"{self.image_size}x{self.image_size}")
        return array
