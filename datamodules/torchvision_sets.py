"""Datasets that torchvision can download: MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 and SVHN.

Downloading goes through torchvision and happens only in :meth:`prepare_data` with ``download=True``.
Loading reads the files torchvision (or the official archive) leaves on disk directly, without
torchvision's md5 checks, so any copy with the official on-disk layout loads, including the small
stand-ins the tests write. Every dataset has its own test split, which serves as T.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from datamodules.base import DatasetNotFoundError, ImageArrays, UnlearningDataModule, UnsafeDatasetFileError


def missing_dataset_error(name: str, expected: str | Path | None, how_to_get: str) -> DatasetNotFoundError:
    """The one error every file-based dataset raises when its files are not on disk.

    Args:
        name: the dataset name as the presets spell it.
        expected: the path that was looked for, or None when no data root was given.
        how_to_get: what the user can do about it (download or where to place which archive).
    """
    if expected is None:
        where = (f"no data root was given; pass one with `bench run --preset {name} --data-root DIR` "
                 "or set `root:` in the preset")
    else:
        where = f"expected it at {expected}"
    return DatasetNotFoundError(f"dataset {name!r} not found: {where}. To get it: {how_to_get}")


def download_hint(name: str, place: str) -> str:
    """How to get a dataset torchvision can download (its ``how_to_get``); ``place`` says what to
    put where when downloading by hand."""
    return (f"either enable download: copy benchmark/presets/{name}.yaml, set `download: true` in the copy "
            f"and run `bench run --preset COPY.yaml --data-root DIR` (torchvision downloads into DIR); "
            f"or {place}")


class TorchvisionDataModule(UnlearningDataModule):
    """A dataset torchvision downloads; subclasses name the files and read them.

    ``folder`` is where the files live relative to the data root (as torchvision lays them out);
    ``train_files`` and ``test_files`` are read by :meth:`read_files`.
    """

    folder: ClassVar[str] = ""
    train_files: ClassVar[tuple[str, ...]]
    test_files: ClassVar[tuple[str, ...]]
    has_test_split: ClassVar[bool] = True

    # -- what subclasses provide ----------------------------------------------------------------------
    def download_split(self, root: str, train: bool) -> None:
        """Have torchvision download (and verify) one split into ``root``."""
        raise NotImplementedError

    def read_files(self, paths: list[Path]) -> ImageArrays:
        """Read one split from its files, in the order of ``train_files`` / ``test_files``."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path | None:
        return None if self.root is None else Path(self.root) / self.folder

    def prepare_data(self) -> None:
        if not self.download:
            return
        if self.root is None:
            raise missing_dataset_error(self.name, None, self.how_to_get)
        for train in (True, False):  # torchvision skips files that are already there and intact
            self.download_split(str(self.root), train)

    def load(self) -> tuple[ImageArrays, ImageArrays]:
        data_dir = self.data_dir
        if data_dir is None:
            raise missing_dataset_error(self.name, None, self.how_to_get)
        paths = {split: [data_dir / f for f in files]
                 for split, files in (("train", self.train_files), ("test", self.test_files))}
        missing = [p for ps in paths.values() for p in ps if not p.is_file()]
        if missing:
            raise missing_dataset_error(self.name, missing[0], self.how_to_get)
        return self.read_files(paths["train"]), self.read_files(paths["test"])


# -- MNIST family: idx files -----------------------------------------------------------------------------
class _IdxDataModule(TorchvisionDataModule):
    """MNIST and Fashion-MNIST: torchvision's ``<root>/<Class>/raw/`` idx files, 1x28x28."""

    tv_class: ClassVar[str]
    num_classes = 10
    in_channels = 1
    image_size = 28
    train_files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    test_files = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    def download_split(self, root: str, train: bool) -> None:
        import torchvision

        getattr(torchvision.datasets, self.tv_class)(root, train=train, download=True)

    def read_files(self, paths: list[Path]) -> ImageArrays:
        from torchvision.datasets.mnist import read_image_file, read_label_file

        images_path, labels_path = paths
        images = read_image_file(str(images_path)).unsqueeze(1)
        return ImageArrays(images.contiguous(), read_label_file(str(labels_path)).long())


class MNISTDataModule(_IdxDataModule):
    """MNIST: 60,000 training and 10,000 test images of handwritten digits."""

    name = "mnist"
    tv_class = "MNIST"
    folder = "MNIST/raw"
    mean = (0.1307,)
    std = (0.3081,)
    how_to_get = download_hint(
        "mnist", "gunzip the four official files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (https://ossci-datasets.s3.amazonaws.com/"
        "mnist/) into DIR/MNIST/raw/")


class FashionMNISTDataModule(_IdxDataModule):
    """Fashion-MNIST: 60,000 training and 10,000 test images of clothing, 10 classes."""

    name = "fashion_mnist"
    tv_class = "FashionMNIST"
    folder = "FashionMNIST/raw"
    mean = (0.2860,)
    std = (0.3530,)
    how_to_get = download_hint(
        "fashion_mnist", "gunzip the four official files train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
        "(http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/) into DIR/FashionMNIST/raw/")


# -- CIFAR: python pickles --------------------------------------------------------------------------------
# A CIFAR batch is a dict of bytes, lists and numpy arrays: rebuilding it needs numpy's array constructors and
# nothing else (module names of numpy 1 and 2; and ``_codecs.encode``, which protocol-2 pickles written by
# Python 3 use for bytes). Any other global in the file could run code, so none is loaded.
_ARRAY_GLOBALS = frozenset({(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                            for name in ("_reconstruct", "scalar")}
                           | {(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")}
                           | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def read_cifar_batch(path: Path) -> dict:
    """One CIFAR batch file, unpickled with only numpy's array constructors allowed.

    Raises:
        UnsafeDatasetFileError: the file names any other global (it is not a CIFAR batch, or was tampered with).
    """
    with path.open("rb") as f:
        try:
            # encoding='bytes' reads the Python 2 originals too
            return _ArraysOnlyUnpickler(f, encoding="bytes").load()
        except pickle.UnpicklingError as exc:
            raise UnsafeDatasetFileError(
                f"{path} is not a CIFAR batch: its pickle asks for {exc}, which a CIFAR batch never needs, so it "
                "was not loaded; replace it with the official file (torchvision's download or the archive from "
                "https://www.cs.toronto.edu/~kriz/cifar.html)") from None


def _entry(batch: dict, key: str) -> Any:
    """A value of a CIFAR batch dict, whose keys are bytes when unpickled with encoding='bytes'."""
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    raise KeyError(f"CIFAR batch has no {key!r} entry (keys: {sorted(map(str, batch))})")


class _CifarDataModule(TorchvisionDataModule):
    """CIFAR-10/100: pickled dicts of ``data`` (N, 3072) uint8 rows and a label list, 3x32x32."""

    tv_class: ClassVar[str]
    label_key: ClassVar[str]
    in_channels = 3
    image_size = 32

    def download_split(self, root: str, train: bool) -> None:
        import torchvision

        getattr(torchvision.datasets, self.tv_class)(root, train=train, download=True)

    def read_files(self, paths: list[Path]) -> ImageArrays:
        images, labels = [], []
        for path in paths:
            batch = read_cifar_batch(path)
            images.append(np.asarray(_entry(batch, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(_entry(batch, self.label_key), dtype=np.int64))
        return ImageArrays(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


class CIFAR10DataModule(_CifarDataModule):
    """CIFAR-10: 50,000 training and 10,000 test colour images, 10 classes (1 = automobile)."""

    name = "cifar10"
    num_classes = 10
    tv_class = "CIFAR10"
    label_key = "labels"
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    how_to_get = download_hint("cifar10", "extract the official archive https://www.cs.toronto.edu/~kriz/"
                                          "cifar-10-python.tar.gz in DIR (it unpacks to cifar-10-batches-py/)")


class CIFAR100DataModule(_CifarDataModule):
    """CIFAR-100: 50,000 training and 10,000 test colour images, 100 fine classes."""

    name = "cifar100"
    num_classes = 100
    tv_class = "CIFAR100"
    label_key = "fine_labels"
    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    how_to_get = download_hint("cifar100", "extract the official archive https://www.cs.toronto.edu/~kriz/"
                                           "cifar-100-python.tar.gz in DIR (it unpacks to cifar-100-python/)")


# -- SVHN: MATLAB files -----------------------------------------------------------------------------------
class SVHNDataModule(TorchvisionDataModule):
    """SVHN (cropped digits): 73,257 training and 26,032 test colour images; label 0 is digit 0."""

    name = "svhn"
    num_classes = 10
    in_channels = 3
    image_size = 32
    train_files = ("train_32x32.mat",)
    test_files = ("test_32x32.mat",)
    mean = (0.4377, 0.4438, 0.4728)
    std = (0.1980, 0.2010, 0.1970)
    how_to_get = download_hint("svhn", "put the official files train_32x32.mat and test_32x32.mat "
                                       "(http://ufldl.stanford.edu/housenumbers/) in DIR")

    def download_split(self, root: str, train: bool) -> None:
        import torchvision

        torchvision.datasets.SVHN(root, split="train" if train else "test", download=True)

    def read_files(self, paths: list[Path]) -> ImageArrays:
        from scipy.io import loadmat

        (path,) = paths
        mat = loadmat(str(path))
        images = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 2, 0, 1))  # HWCN -> NCHW
        # the official labels run 1..10 with 10 standing for the digit 0
        labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1) % 10
        return ImageArrays(torch.from_numpy(images), torch.from_numpy(labels))
