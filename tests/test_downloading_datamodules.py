"""The downloading datasets (MNIST, Fashion-MNIST, CIFAR-10/100, SVHN) and Tiny ImageNet.

Nothing is downloaded: each test writes a tiny stand-in in the dataset's real on-disk layout (idx
files, CIFAR pickles, SVHN .mat files, Tiny ImageNet JPEG folders) and loads it through the module.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.engine.preset import load_preset
from datamodules import (
    DATAMODULES,
    CIFAR10DataModule,
    CIFAR100DataModule,
    DatasetNotFoundError,
    FashionMNISTDataModule,
    MNISTDataModule,
    SVHNDataModule,
    TinyImageNetDataModule,
    UnlearningDataModule,
)
from datamodules.base import check_forget_classes

TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


@dataclass
class StandIn:
    """What a builder wrote: all labels per split and one known sample (split, index, label, CHW image)."""

    train_labels: np.ndarray
    test_labels: np.ndarray
    sample: tuple[str, int, int, np.ndarray]


def _labels(num_classes: int, per_class: int) -> np.ndarray:
    return np.tile(np.arange(num_classes), per_class).astype(np.int64)


# -- stand-in builders ------------------------------------------------------------------------------------
def write_idx(root: Path, folder: str, per_class: int = 12, test_per_class: int = 2) -> StandIn:
    """MNIST-style idx files (big-endian; magic 2051 for images, 2049 for labels)."""
    raw = root / folder
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for prefix, n in (("train", per_class), ("t10k", test_per_class)):
        labels = _labels(10, n)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, len(labels), 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())
        written[prefix] = (images, labels)
    images, labels = written["train"]
    return StandIn(labels, written["t10k"][1], ("train", 13, int(labels[13]), images[13][None]))


def write_mnist(root: Path) -> StandIn:
    return write_idx(root, "MNIST/raw")


def write_fashion_mnist(root: Path) -> StandIn:
    return write_idx(root, "FashionMNIST/raw")


def _cifar_batch(rows: np.ndarray, labels: np.ndarray, label_key: str, bytes_keys: bool) -> dict:
    batch = {"data": rows, label_key: labels.tolist()}
    # the official files unpickle with bytes keys; a re-pickled copy may have str keys: both must load
    return {k.encode(): v for k, v in batch.items()} if bytes_keys else batch


def write_cifar(folder: Path, train_files: list[str], test_file: str, num_classes: int, label_key: str,
                bytes_keys: bool, per_class: int, test_per_class: int) -> StandIn:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_labels = _labels(num_classes, per_class)
    train_rows = rng.integers(0, 256, size=(len(train_labels), 3072), dtype=np.uint8)
    for name, rows, labels in zip(train_files, np.array_split(train_rows, len(train_files)),
                                  np.array_split(train_labels, len(train_files))):
        with (folder / name).open("wb") as f:
            pickle.dump(_cifar_batch(rows, labels, label_key, bytes_keys), f)
    test_labels = _labels(num_classes, test_per_class)
    test_rows = rng.integers(0, 256, size=(len(test_labels), 3072), dtype=np.uint8)
    with (folder / test_file).open("wb") as f:
        pickle.dump(_cifar_batch(test_rows, test_labels, label_key, bytes_keys), f)
    # a row is the red plane, then green, then blue, each 32x32 row-major
    return StandIn(train_labels, test_labels, ("test", 7, int(test_labels[7]), test_rows[7].reshape(3, 32, 32)))


def write_cifar10(root: Path) -> StandIn:
    return write_cifar(root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                       10, "labels", bytes_keys=True, per_class=12, test_per_class=2)


def write_cifar100(root: Path) -> StandIn:
    return write_cifar(root / "cifar-100-python", ["train"], "test", 100, "fine_labels", bytes_keys=False,
                       per_class=10, test_per_class=1)


def write_svhn(root: Path) -> StandIn:
    """train_32x32.mat / test_32x32.mat: X is (32, 32, 3, N), y (N, 1) in 1..10 with 10 for the digit 0."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for split, n in (("train", 12), ("test", 2)):
        labels = _labels(10, n)
        x = rng.integers(0, 256, size=(32, 32, 3, len(labels)), dtype=np.uint8)
        y = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
        savemat(str(root / f"{split}_32x32.mat"), {"X": x, "y": y})
        written[split] = (x, labels)
    x, labels = written["train"]
    # sample 20 is a digit 0, stored as label 10
    return StandIn(labels, written["test"][1], ("train", 20, 0, x[..., 20].transpose(2, 0, 1)))


def _colour(label: int, i: int) -> tuple[int, int, int]:
    return (40 + 60 * label, 200 - 10 * i, 90)


def write_tiny_imagenet(root: Path, wnids: tuple[str, ...] = ("n01443537", "n01629819", "n01641577"),
                        per_class: int = 10, val_per_class: int = 3) -> StandIn:
    """The extracted tiny-imagenet-200/ folder with a few solid-colour 64x64 JPEGs per class."""
    from PIL import Image

    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for label, wnid in enumerate(wnids):
        images = base / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (64, 64), _colour(label, i)).save(images / f"{wnid}_{i}.JPEG", quality=95)
    annotations, test_labels = [], []
    for j in range(val_per_class * len(wnids)):
        label = j % len(wnids)
        Image.new("RGB", (64, 64), _colour(label, j)).save(base / "val" / "images" / f"val_{j}.JPEG", quality=95)
        annotations.append(f"val_{j}.JPEG\t{wnids[label]}\t0\t0\t63\t63")
        test_labels.append(label)
    (base / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    train_labels = np.repeat(np.arange(len(wnids)), per_class)
    expected = np.broadcast_to(np.array(_colour(1, 4), dtype=np.uint8)[:, None, None], (3, 64, 64))
    # class-major order: sample per_class + 4 is image 4 of the second wnid
    return StandIn(train_labels, np.array(test_labels), ("train", per_class + 4, 1, expected))


# -- the six datasets --------------------------------------------------------------------------------------
@dataclass
class Case:
    cls: type[UnlearningDataModule]
    build: Callable[[Path], StandIn]
    missing: str  # the first path a missing copy is reported under, relative to the root
    forget: tuple[int, ...]
    pixel_tolerance: int = 0  # JPEG is lossy


CASES = {
    "mnist": Case(MNISTDataModule, write_mnist, "MNIST/raw/train-images-idx3-ubyte", (3,)),
    "fashion_mnist": Case(FashionMNISTDataModule, write_fashion_mnist,
                          "FashionMNIST/raw/train-images-idx3-ubyte", (0, 9)),
    "cifar10": Case(CIFAR10DataModule, write_cifar10, "cifar-10-batches-py/data_batch_1", (1,)),
    "cifar100": Case(CIFAR100DataModule, write_cifar100, "cifar-100-python/train", (10,)),
    "svhn": Case(SVHNDataModule, write_svhn, "train_32x32.mat", (0,)),
    "tiny_imagenet": Case(TinyImageNetDataModule, write_tiny_imagenet, "tiny-imagenet-200/wnids.txt", (1,),
                          pixel_tolerance=3),
}


def test_all_registered() -> None:
    for name, case in CASES.items():
        assert DATAMODULES[name] is case.cls


@pytest.mark.parametrize("name", CASES)
def test_missing_dataset_says_where_and_how(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    dm = case.cls(str(tmp_path), download=False)
    dm.prepare_data()  # download=False: nothing to do, and no network
    with pytest.raises(DatasetNotFoundError) as info:
        dm.setup()
    message = str(info.value)
    assert str(tmp_path / case.missing) in message
    assert name in message
    assert (TINY_URL if name == "tiny_imagenet" else "download: true") in message


@pytest.mark.parametrize("name", CASES)
def test_no_root_asks_for_one(name: str) -> None:
    with pytest.raises(DatasetNotFoundError, match="--data-root"):
        CASES[name].cls(None).setup()


@pytest.mark.parametrize("name", CASES)
def test_stand_in_loads(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    written = case.build(tmp_path)
    dm = case.cls(str(tmp_path), forget_classes=case.forget, val_fraction=0.2, seed=1)
    c, s = dm.in_channels, dm.image_size

    pool, test = dm.load()
    for arrays, labels in ((pool, written.train_labels), (test, written.test_labels)):
        assert arrays.images.dtype == torch.uint8 and arrays.labels.dtype == torch.int64
        assert tuple(arrays.images.shape) == (len(labels), c, s, s)
        assert arrays.labels.tolist() == labels.tolist()
    split, index, label, image = written.sample
    arrays = pool if split == "train" else test
    assert int(arrays.labels[index]) == label
    diff = (arrays.images[index].int() - torch.from_numpy(np.ascontiguousarray(image)).int()).abs().max()
    assert int(diff) <= case.pixel_tolerance

    dm.setup()
    idx = dm.split_indices()
    train_labels = written.train_labels
    assert len(idx["D"]) + len(idx["V"]) == len(train_labels)
    assert set(train_labels[idx["D_f"]]) == set(case.forget)
    assert np.array_equal(np.sort(idx["D_f"]), np.sort(idx["D"][np.isin(train_labels[idx["D"]], case.forget)]))
    assert not np.isin(train_labels[idx["D_r"]], case.forget).any()
    # T is the test files, in order; T_f their forget-class samples
    t_images, t_labels = dm.dataset("T").tensors()
    assert t_labels.tolist() == written.test_labels.tolist() and t_images.shape[1:] == (c, s, s)
    assert set(written.test_labels[idx["T_f"]]) == set(case.forget)
    assert dm.num_classes == {"cifar100": 100, "tiny_imagenet": 200}.get(name, 10)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn"])
def test_prepare_data_downloads_only_when_asked(name: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, bool]] = []
    cls = CASES[name].cls
    monkeypatch.setattr(cls, "download_split", lambda self, root, train: calls.append((root, train)))
    cls(str(tmp_path), download=False).prepare_data()
    assert calls == []
    cls(str(tmp_path), download=True).prepare_data()
    assert calls == [(str(tmp_path), True), (str(tmp_path), False)]
    with pytest.raises(DatasetNotFoundError, match="--data-root"):
        cls(None, download=True).prepare_data()


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn"])
def test_download_goes_through_torchvision(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    calls: list[dict] = []
    tv_name = {"mnist": "MNIST", "cifar10": "CIFAR10", "svhn": "SVHN"}[name]
    monkeypatch.setattr(torchvision.datasets, tv_name, lambda root, **kwargs: calls.append({"root": root, **kwargs}))
    CASES[name].cls(str(tmp_path), download=True).prepare_data()
    assert len(calls) == 2 and all(c["download"] is True and c["root"] == str(tmp_path) for c in calls)


def test_tiny_imagenet_rejects_unknown_val_class(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path)
    annotations = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + "val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match="n99999999"):
        TinyImageNetDataModule(str(tmp_path)).setup()


# -- presets ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_presets_parse(name: str) -> None:
    preset = load_preset(name)
    cls = DATAMODULES[preset.dataset]
    assert preset.dataset == name and preset.root == "data" and preset.download is False
    assert preset.unlearn_batch_size == 128 and len(preset.seeds) == 3
    assert set(preset.methods) == {"ft", "ga", "rl"}
    for fc in preset.forget_classes:
        check_forget_classes(fc, cls.num_classes)
    if name in {"mnist", "fashion_mnist"}:
        assert preset.model == "small_cnn" and preset.train.epochs == 20 and preset.train.lr == 0.05
    else:
        assert preset.model == "resnet18" and preset.train.epochs == 200 and preset.train.lr == 0.1
        assert preset.train.momentum == 0.9 and preset.train.weight_decay == 5e-4
    assert preset.train.batch_size == 128 and preset.train.scheduler == "cosine"
    assert preset.augment is (name in {"cifar10", "cifar100", "tiny_imagenet"})


def test_cifar_preset_forget_classes() -> None:
    assert load_preset("cifar10").forget_classes == ((1,), (3,), (5,))
    assert load_preset("cifar100").forget_classes == ((0,), (10,), (20,))


class _RunsCode:
    """A pickle payload that would create ``marker`` when unpickled by an unrestricted loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("numpy_module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_cifar_batches_need_only_numpys_array_constructors(numpy_module: str, tmp_path: Path) -> None:
    """Arrays pickled by numpy 1 or 2 (their constructors live in different modules) load; nothing else may."""
    from datamodules.torchvision_sets import read_cifar_batch

    rows = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    path = tmp_path / "batch"
    data = pickle.dumps({b"data": rows, b"labels": [1, 2]}, protocol=2)
    # the same pickle as the other numpy major version writes it: only the constructor's module differs
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        data = data.replace(f"c{module}\n".encode(), f"c{numpy_module}\n".encode())
    path.write_bytes(data)
    batch = read_cifar_batch(path)
    np.testing.assert_array_equal(batch[b"data"], rows)
    assert batch[b"labels"] == [1, 2]


def test_a_cifar_batch_that_would_run_code_is_refused_unrun(tmp_path: Path) -> None:
    from datamodules import UnsafeDatasetFileError

    marker = tmp_path / "ran"
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    with batch.open("wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _RunsCode(marker)}, f)
    dm = CIFAR10DataModule(str(tmp_path), forget_classes=[1], seed=0)
    with pytest.raises(UnsafeDatasetFileError, match=r"data_batch_3 is not a CIFAR batch: its pickle asks for "
                                                     r"pathlib\..*Path\.touch"):
        dm.load()
    assert not marker.exists()
