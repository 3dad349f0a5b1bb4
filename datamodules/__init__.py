"""LightningDataModules with the protocol's forget/retain splits, one module per dataset family."""

from __future__ import annotations

from benchmark.core.registry import Registry
from datamodules.base import (
    EVAL_SPLITS,
    DatasetNotFoundError,
    ImageArrays,
    MethodData,
    UnlearningDataModule,
    UnsafeDatasetFileError,
)
from datamodules.offline import DigitsDataModule, MNIST5kDataModule
from datamodules.tiny_imagenet import TinyImageNetDataModule
from datamodules.torchvision_sets import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    SVHNDataModule,
    TorchvisionDataModule,
)


def _check_datamodule(cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, UnlearningDataModule)):
        raise TypeError(f"{cls!r} is not a subclass of UnlearningDataModule")


DATAMODULES: Registry[type[UnlearningDataModule]] = Registry("dataset", check=_check_datamodule)


def register_datamodule(cls: type[UnlearningDataModule]) -> type[UnlearningDataModule]:
    """Add a dataset under ``cls.name``; a second class with the same name is an error."""
    _check_datamodule(cls)
    return DATAMODULES.register(cls.name, cls)


for _cls in (DigitsDataModule, MNIST5kDataModule, MNISTDataModule, FashionMNISTDataModule, CIFAR10DataModule,
             CIFAR100DataModule, SVHNDataModule, TinyImageNetDataModule):
    register_datamodule(_cls)


def get_datamodule_class(name: str) -> type[UnlearningDataModule]:
    """Look a dataset up by name; an unknown name lists the known ones, close matches first."""
    return DATAMODULES.get(name)


__all__ = [
    "DATAMODULES",
    "EVAL_SPLITS",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DatasetNotFoundError",
    "UnsafeDatasetFileError",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageArrays",
    "MNIST5kDataModule",
    "MNISTDataModule",
    "MethodData",
    "SVHNDataModule",
    "TinyImageNetDataModule",
    "TorchvisionDataModule",
    "UnlearningDataModule",
    "get_datamodule_class",
    "register_datamodule",
]
