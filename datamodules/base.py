"""The forget/retain splits every benchmark cell is built on (docs/protocol.md, section 1).

A dataset module only has to say how to load its images as tensors; this base class turns them into
the protocol's splits:

- D    the training split the original model is trained on (the pool minus V),
- V    a validation split carved from the pool with the split seed, for hyperparameter selection only,
- T    the test split (the dataset's own, or carved from the pool where it has none),
- D_f / D_r   the samples of D in / not in the forget classes, likewise T_f / T_r.

Splits are stratified and depend only on (dataset, split fractions, seed); the forget classes only
decide which samples of D and T count as forget samples, so one original model serves every forget
class of a seed.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import CombinedLoader
from sklearn.model_selection import train_test_split
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from benchmark.core.errors import BenchError, ConfigError

EVAL_SPLITS = ("D_f", "D_r", "T_f", "T_r", "V")
DATA_KINDS = frozenset({"retain", "forget"})


class DatasetNotFoundError(BenchError, FileNotFoundError):
    """A dataset is not on disk and downloading was not asked for; the message says how to get it."""


class UnsafeDatasetFileError(BenchError, ValueError):
    """A dataset file asks to run code its format never needs (a pickle naming other globals); not loaded."""


@dataclass(frozen=True)
class ImageArrays:
    """Images and labels of one dataset split, as loaded from disk.

    ``images`` is (N, C, H, W), either uint8 in [0, 255] or float in [0, 1]; ``labels`` is int64 (N,).
    """

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise ValueError(
                f"expected images (N, C, H, W) and labels (N,), got {tuple(self.images.shape)} "
                f"and {tuple(self.labels.shape)}"
            )


class TensorImageDataset(Dataset):
    """Indexed view of in-memory images, normalised on access (uint8 storage keeps big sets small).

    ``normalised``, when given, is all of ``images`` already normalised (the DataModule holds it for data
    that fits, :attr:`UnlearningDataModule.hold_bytes`): a batch is then one gather, with no per-batch
    conversion. Normalising is elementwise, so both ways give the same values bit for bit.
    """

    def __init__(self, images: Tensor, labels: Tensor, indices: np.ndarray, mean: Tensor, std: Tensor,
                 augment: bool = False, normalised: Tensor | None = None, augment_seed: int = 0) -> None:
        self.images, self.labels = images, labels
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.mean, self.std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
        self.augment = augment
        self.normalised = normalised
        # the crops and flips draw from this dataset's own generator, never the global RNG: models trained side by
        # side (a group, a vmap stack) each draw their own, exactly as in their own fits
        self.generator = torch.Generator().manual_seed(augment_seed % 2**63) if augment else None

    def __len__(self) -> int:
        return len(self.indices)

    def _images(self, rows: Tensor) -> Tensor:
        """Normalised images of ``rows`` (a 1-d index tensor into ``images``), always a new tensor."""
        if self.normalised is not None:
            return self.normalised.index_select(0, rows)  # index_select: a plain gather, faster than x[rows]
        return normalise(self.images.index_select(0, rows), self.mean, self.std)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        j = self.indices[i]
        x = self._images(j.view(1))
        if self.augment:
            x = crop_and_flip(x, self.generator)
        return x[0], self.labels[j]

    def __getitems__(self, positions: list[int]) -> Sequence[tuple[Tensor, Tensor]]:
        """A whole batch in one indexing operation instead of one per sample (DataLoader's batched fetch).

        Without augmentation the batch holds exactly the values the per-sample path gives; it still reads as
        a sequence of samples, so any wrapper (``Subset``, ``ConcatDataset``) or ``default_collate`` works on
        it, and :func:`collate_batch` takes the stacked tensors back without re-stacking them. Augmented, the
        whole batch is cropped and flipped at once, its offsets and flips drawn from the dataset's own generator.
        """
        j = self.indices.index_select(0, torch.as_tensor(positions, dtype=torch.long))
        x = self._images(j)
        if self.augment:
            x = crop_and_flip(x, self.generator)
        return SampleBatch(x, self.labels.index_select(0, j))

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All samples at once, normalised: the fast path for inference on small data."""
        return self._images(self.indices), self.labels.index_select(0, self.indices)


class SampleBatch(Sequence):
    """Samples fetched as one batch: reads as a sequence of ``(x, y)`` pairs, keeps the stacked tensors.

    The per-sample views are made only if something iterates the batch (a ``default_collate`` behind a
    wrapper); :func:`collate_batch` takes the stacked tensors directly.
    """

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y
        self._samples: list[tuple[Tensor, Tensor]] | None = None

    def _pairs(self) -> list[tuple[Tensor, Tensor]]:
        if self._samples is None:
            self._samples = list(zip(self.x.unbind(0), self.y.unbind(0), strict=True))
        return self._samples

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self._pairs()[i]


def collate_batch(samples: list) -> tuple[Tensor, Tensor]:
    """``default_collate`` that returns a :class:`SampleBatch`'s stacked tensors as they are (no copy)."""
    if isinstance(samples, SampleBatch):
        return samples.x, samples.y
    return default_collate(samples)


def normalise(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    return (x - mean) / std


# Named in the cache keys and run configurations of augmented presets (``augment: true``): models trained under
# another augmentation scheme are other models.
AUGMENTATION = "crop-pad4-hflip/per-loader-generator"


def augmentation_key(augment: bool) -> bool | str:
    """What a cache key records of a DataModule's augmentation: False, or the scheme's name."""
    return AUGMENTATION if augment else False


def crop_and_flip(x: Tensor, generator: torch.Generator, pad: int = 4) -> Tensor:
    """The standard CIFAR augmentation of a batch (N, C, H, W): each image a random H x W crop of itself
    zero-padded by ``pad``, then flipped left-right with probability 1/2; offsets and flips drawn from
    ``generator`` (rows, then columns, then flips, one call each)."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    cols = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    ys = rows[:, None] + torch.arange(h)  # (N, H)
    xs = cols[:, None] + torch.arange(w)  # (N, W)
    xs = torch.where(flips[:, None], xs.flip(-1), xs)  # a flip reads the crop's columns backwards
    # two gathers (rows, then columns): twice as fast as one four-index gather on CPU, the same values
    cropped_rows = padded.gather(2, ys[:, None, :, None].expand(n, c, h, w + 2 * pad))
    return cropped_rows.gather(3, xs[:, None, None, :].expand(n, c, h, w))


def hash_arrays(*parts: object) -> str:
    """A short, stable hash of index arrays and plain values."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
        else:
            digest.update(repr(part).encode())
        digest.update(b"|")
    return digest.hexdigest()[:16]


class UnlearningDataModule(L.LightningDataModule):
    """Base DataModule: deterministic stratified splits and the loaders a benchmark cell needs.

    Subclasses set the class attributes and implement :meth:`load`. Nothing heavy happens in
    ``__init__``; :meth:`prepare_data` downloads (only when ``download=True``) and :meth:`setup`
    loads and splits.

    Args:
        root: directory holding the dataset files (unused by datasets shipped with a package).
        forget_classes: the classes to unlearn.
        seed: split seed; the same seed always gives the same splits.
        batch_size: training batch size.
        eval_batch_size: batch size of the evaluation loaders.
        val_fraction: share of the training pool held out as V.
        test_fraction: share of the pool used as T when the dataset has no test split of its own.
        download: allow downloading in :meth:`prepare_data` (downloading presets only).
        augment: random crop and flip on training batches (paper-scale image presets).
        num_workers: DataLoader workers, for loaders that fetch sample by sample (wrappers); in-memory batches
            are one gather (augmented: one crop of the batch) and load in this process.
    """

    name: ClassVar[str]
    num_classes: ClassVar[int]
    in_channels: ClassVar[int]
    image_size: ClassVar[int]
    mean: ClassVar[tuple[float, ...]]
    std: ClassVar[tuple[float, ...]]
    has_test_split: ClassVar[bool] = True
    how_to_get: ClassVar[str] = ""
    # Data whose normalised float copy takes at most this many bytes is held normalised, once, so a batch is one
    # gather (the offline presets); larger data stays as loaded (uint8) and is normalised per batch.
    hold_bytes: ClassVar[int] = 64 * 2**20

    def __init__(self, root: str | None = None, *, forget_classes: Sequence[int] = (0,), seed: int = 0,
                 batch_size: int = 128, eval_batch_size: int = 1024, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, download: bool = False, augment: bool = False,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.root = root
        self.forget_classes = check_forget_classes(forget_classes, self.num_classes)
        self.seed = seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.download = download
        self.augment = augment
        self.num_workers = num_workers
        self._train: ImageArrays | None = None
        self._test: ImageArrays | None = None
        self._held: dict[str, Tensor | None] = {}  # "train" / "test": the normalised images, or None

    # -- loading ------------------------------------------------------------------------------------
    def load(self) -> tuple[ImageArrays, ImageArrays | None]:
        """Return (training pool, test split or None). Raise :class:`DatasetNotFoundError` if absent."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Download the dataset when asked; datasets that ship with a package have nothing to do."""

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        pool, test = self.load()
        labels = pool.labels.numpy()
        all_idx = np.arange(len(labels))
        if test is None:
            if self.has_test_split:
                raise ValueError(f"{self.name}: load() returned no test split")
            all_idx, test_idx = train_test_split(
                all_idx, test_size=self.test_fraction, stratify=labels, random_state=self.seed)
            test = ImageArrays(pool.images[test_idx], pool.labels[test_idx])
        train_idx, val_idx = train_test_split(
            all_idx, test_size=self.val_fraction, stratify=labels[all_idx], random_state=self.seed + 1)
        self._train, self._test = pool, test
        self.idx = {"D": np.sort(train_idx), "V": np.sort(val_idx), "T": np.arange(len(test.labels))}
        self.partition_hash = hash_arrays(self.name, len(labels), *self.idx.values())

    # -- the protocol's splits -----------------------------------------------------------------------
    def with_forget_classes(self, forget_classes: Sequence[int]) -> UnlearningDataModule:
        """The same loaded data and splits with other forget classes (no reloading)."""
        other = copy.copy(self)
        other.forget_classes = check_forget_classes(forget_classes, self.num_classes)
        return other

    @property
    def split_hash(self) -> str:
        """Identifies the splits and the forget classes: stored with every result row."""
        self._require_setup()
        return hash_arrays(self.partition_hash, self.forget_classes)

    def split_indices(self) -> dict[str, np.ndarray]:
        """Indices of every split: D, V, T into their arrays, and D_f, D_r, T_f, T_r."""
        self._require_setup()
        d, t = self.idx["D"], self.idx["T"]
        in_f_train = np.isin(self._train.labels.numpy()[d], self.forget_classes)
        in_f_test = np.isin(self._test.labels.numpy()[t], self.forget_classes)
        return {"D": d, "V": self.idx["V"], "T": t, "D_f": d[in_f_train], "D_r": d[~in_f_train],
                "T_f": t[in_f_test], "T_r": t[~in_f_test]}

    def manifest(self) -> dict[str, object]:
        """What a result row needs to identify its data: class ids, sizes and hashes."""
        sizes = {k: int(len(v)) for k, v in self.split_indices().items()}
        return {"dataset": self.name, "forget_classes": list(self.forget_classes), "seed": self.seed,
                "partition_hash": self.partition_hash, "split_hash": self.split_hash, "sizes": sizes}

    def dataset(self, split: str, augment: bool = False, augment_seed: int = 0) -> TensorImageDataset:
        idx = self.split_indices()[split]
        part = "test" if split.startswith("T") else "train"
        arrays = self._test if part == "test" else self._train
        mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        if part not in self._held:  # shared by every dataset of this DataModule and its with_forget_classes copies
            fits = arrays.images.numel() * 4 <= self.hold_bytes
            self._held[part] = normalise(arrays.images, mean.view(-1, 1, 1), std.view(-1, 1, 1)) if fits else None
        return TensorImageDataset(arrays.images, arrays.labels, idx, mean, std, augment=augment,
                                  normalised=self._held[part], augment_seed=augment_seed)

    # -- loaders --------------------------------------------------------------------------------------
    def loader(self, data: str | Dataset, shuffle: bool, batch_size: int | None = None, stream: int = 0,
               seed: int | None = None) -> DataLoader:
        """A loader over a named split (``"D_r"``, ...) or any dataset.

        A shuffled loader's order is fixed by (``seed``, ``stream``); ``seed`` defaults to the split seed.
        Pass a model's own seed so that models trained side by side do not share one batch order.
        """
        order_seed = (self.seed if seed is None else seed) * 1009 + stream
        if isinstance(data, str):  # the crops' generator: the loader's own, apart from its order's
            data = self.dataset(data, augment=self.augment and shuffle, augment_seed=order_seed * 2 + 1)
        generator = torch.Generator().manual_seed(order_seed % (2**63)) if shuffle else None
        # A batch of in-memory data is one gather (and, augmented, one crop of the batch) in this process: workers
        # would only add a copy between processes, and each would draw from its own copy of the crops' generator.
        batched = isinstance(data, TensorImageDataset)
        workers = 0 if batched else self.num_workers
        return DataLoader(data, batch_size=batch_size or (self.batch_size if shuffle else self.eval_batch_size),
                          shuffle=shuffle, generator=generator, num_workers=workers,
                          persistent_workers=workers > 0, collate_fn=collate_batch)

    def train_dataloader(self, batch_size: int | None = None, seed: int | None = None) -> DataLoader:
        """All of D: for the original model and the in-shadows."""
        return self.loader("D", shuffle=True, batch_size=batch_size, seed=seed)

    def retain_dataloader(self, shuffle: bool = True, batch_size: int | None = None,
                          seed: int | None = None) -> DataLoader:
        """D_r: for the oracle and the references."""
        return self.loader("D_r", shuffle=shuffle, batch_size=batch_size, stream=1, seed=seed)

    def forget_dataloader(self, shuffle: bool = True, batch_size: int | None = None,
                          seed: int | None = None) -> DataLoader:
        """D_f."""
        return self.loader("D_f", shuffle=shuffle, batch_size=batch_size, stream=2, seed=seed)

    def val_dataloader(self) -> DataLoader:
        return self.loader("V", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader("T", shuffle=False)

    def unlearn_dataloader(self, uses: Iterable[str], batch_size: int | None = None,
                           seed: int | None = None) -> CombinedLoader:
        """Retain and/or forget batches side by side: ``{"retain": (x, y), "forget": (x, y)}``.

        An epoch is one pass over the larger of the two; the smaller one cycles (Lightning's
        ``max_size_cycle``), so every step sees both kinds of data.
        """
        uses = check_uses(uses)
        loaders = {}
        if "retain" in uses:
            loaders["retain"] = self.retain_dataloader(batch_size=batch_size, seed=seed)
        if "forget" in uses:
            loaders["forget"] = self.forget_dataloader(batch_size=batch_size, seed=seed)
        return combine(loaders)

    def eval_dataloaders(self) -> dict[str, DataLoader]:
        """Unshuffled loaders of D_f, D_r, T_f, T_r and V: every sample exactly once."""
        return {name: self.loader(name, shuffle=False) for name in EVAL_SPLITS}

    def _require_setup(self) -> None:
        if self._train is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before the splits are used")


def combine(loaders: dict[str, DataLoader]) -> CombinedLoader:
    if not loaders:
        raise ConfigError("a method that uses no data has nothing to train on; give it zero epochs")
    return CombinedLoader(loaders, mode="max_size_cycle")


def check_forget_classes(forget_classes: Sequence[int], num_classes: int) -> tuple[int, ...]:
    classes = tuple(sorted({int(c) for c in forget_classes}))
    if not classes:
        raise ConfigError("forget classes are empty: name at least one class to unlearn")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ConfigError(f"forget classes {bad} are out of range: this dataset has classes 0..{num_classes - 1}")
    if len(classes) == num_classes:
        raise ConfigError("cannot forget every class: at least one class must be retained")
    return classes


def check_uses(uses: Iterable[str]) -> frozenset[str]:
    uses = frozenset(uses)
    unknown = uses - DATA_KINDS
    if unknown:
        raise ConfigError(f"unknown data kinds {sorted(unknown)}; a method may use {sorted(DATA_KINDS)}")
    return uses


class MethodData:
    """The part of a DataModule a method declared it uses; anything else raises PermissionError.

    This is how the runner enforces docs/protocol.md, section 1: a method sees only what it declares. Its shuffled
    loaders follow the method run's own ``seed``, so the runs on different in-shadows differ in batch
    order as independent runs would.
    """

    def __init__(self, datamodule: UnlearningDataModule, uses: Iterable[str], seed: int | None = None) -> None:
        self._dm = datamodule
        self.seed = seed
        self.uses = check_uses(uses)
        self.num_classes = datamodule.num_classes
        self.forget_classes = datamodule.forget_classes
        self.batch_size = datamodule.batch_size
        # the image format, for data a method builds itself (SCAR's surrogate images): no sample is read here
        self.in_channels, self.image_size = datamodule.in_channels, datamodule.image_size
        self.mean, self.std = tuple(datamodule.mean), tuple(datamodule.std)

    def _check(self, kind: str) -> None:
        if kind not in self.uses:
            raise PermissionError(f"this method declared uses={sorted(self.uses)}; it may not read {kind} data")

    def retain_dataloader(self, shuffle: bool = True, batch_size: int | None = None) -> DataLoader:
        self._check("retain")
        return self._dm.retain_dataloader(shuffle, batch_size, seed=self.seed)

    def forget_dataloader(self, shuffle: bool = True, batch_size: int | None = None) -> DataLoader:
        self._check("forget")
        return self._dm.forget_dataloader(shuffle, batch_size, seed=self.seed)

    def retain_tensors(self) -> tuple[Tensor, Tensor]:
        """All of D_r, normalised, without augmentation."""
        self._check("retain")
        return self._dm.dataset("D_r").tensors()

    def forget_tensors(self) -> tuple[Tensor, Tensor]:
        """All of D_f, normalised, without augmentation."""
        self._check("forget")
        return self._dm.dataset("D_f").tensors()

    def loader(self, dataset: Dataset, shuffle: bool = True, batch_size: int | None = None,
               stream: int = 3) -> DataLoader:
        """A seeded loader over a dataset the method built (relabelled forget samples, say)."""
        return self._dm.loader(dataset, shuffle=shuffle, batch_size=batch_size, stream=stream, seed=self.seed)

    def unlearn_dataloader(self, batch_size: int | None = None) -> CombinedLoader:
        """Retain and/or forget batches, as declared: ``{"retain": (x, y), "forget": (x, y)}``."""
        return self._dm.unlearn_dataloader(self.uses, batch_size, seed=self.seed)

    @staticmethod
    def combine(**loaders: DataLoader) -> CombinedLoader:
        return combine(loaders)
