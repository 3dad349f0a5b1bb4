import numpy as np
import pytest
import torch

from datamodules import DigitsDataModule, MethodData, MNIST5kDataModule, get_datamodule_class
from datamodules.base import crop_and_flip


@pytest.fixture(scope="module", params=[DigitsDataModule, MNIST5kDataModule], ids=["digits", "mnist5k"])
def dm(request):
    module = request.param(forget_classes=(3, 7), seed=0)
    module.setup()
    return module


def test_splits_are_disjoint_and_cover_the_pool(dm):
    idx = dm.split_indices()
    d, v = set(idx["D"]), set(idx["V"])
    assert not d & v
    assert set(idx["D_f"]) | set(idx["D_r"]) == d and not set(idx["D_f"]) & set(idx["D_r"])
    assert set(idx["T_f"]) | set(idx["T_r"]) == set(idx["T"]) and not set(idx["T_f"]) & set(idx["T_r"])
    # the test split was carved from the same pool: no image is in both the training pool and T
    pool_size = len(dm._train.labels)
    assert len(d) + len(v) + len(idx["T"]) == pool_size


def test_forget_splits_hold_exactly_the_forget_classes(dm):
    idx = dm.split_indices()
    train_labels, test_labels = dm._train.labels.numpy(), dm._test.labels.numpy()
    assert set(train_labels[idx["D_f"]]) == {3, 7}
    assert set(test_labels[idx["T_f"]]) == {3, 7}
    assert not {3, 7} & set(train_labels[idx["D_r"]]) and not {3, 7} & set(test_labels[idx["T_r"]])
    assert (train_labels[idx["D_f"]] == 3).sum() == (train_labels[idx["D"]] == 3).sum()


def test_splits_are_stratified(dm):
    idx = dm.split_indices()
    labels = dm._train.labels.numpy()
    whole = np.bincount(labels[idx["D"]], minlength=10) / len(idx["D"])
    val = np.bincount(labels[idx["V"]], minlength=10) / len(idx["V"])
    assert np.abs(whole - val).max() < 0.02


def test_splits_are_deterministic_per_seed():
    def indices(seed):
        module = DigitsDataModule(forget_classes=(3,), seed=seed)
        module.setup()
        return module.split_indices(), module.split_hash

    (a, hash_a), (b, hash_b), (c, hash_c) = indices(0), indices(0), indices(1)
    assert all(np.array_equal(a[k], b[k]) for k in a) and hash_a == hash_b
    assert not np.array_equal(a["D"], c["D"]) and hash_a != hash_c


def test_split_hash_depends_on_forget_classes(dm):
    other = dm.with_forget_classes((4,))
    assert other.split_hash != dm.split_hash and other.partition_hash == dm.partition_hash
    assert set(other._train.labels.numpy()[other.split_indices()["D_f"]]) == {4}


@pytest.mark.parametrize("bad, message", [((), "empty"), ((10,), "out of range"), ((-1,), "out of range"),
                                          (tuple(range(10)), "every class")])
def test_bad_forget_classes_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        DigitsDataModule(forget_classes=bad)


def test_unlearn_loader_gives_declared_kinds_side_by_side(dm):
    batch, _, _ = next(iter(dm.unlearn_dataloader({"retain", "forget"})))
    assert set(batch) == {"retain", "forget"}
    assert set(batch["forget"][1].tolist()) <= {3, 7}
    assert not {3, 7} & set(batch["retain"][1].tolist())
    only_forget, _, _ = next(iter(dm.unlearn_dataloader({"forget"})))
    assert set(only_forget) == {"forget"}


def test_method_data_enforces_declared_uses(dm):
    data = MethodData(dm, {"retain"})
    x, y = data.retain_tensors()
    assert len(x) == len(dm.split_indices()["D_r"])
    with pytest.raises(PermissionError, match="may not read forget data"):
        data.forget_tensors()
    with pytest.raises(PermissionError):
        data.forget_dataloader()


def test_eval_loaders_see_every_sample_once(dm):
    for name, loader in dm.eval_dataloaders().items():
        labels = torch.cat([y for _, y in loader])
        assert len(labels) == len(dm.split_indices()[name])


def test_images_are_normalised(dm):
    x, _ = dm.dataset("D").tensors()
    assert x.shape[1:] == (1, dm.image_size, dm.image_size)
    assert abs(float(x.mean())) < 0.2 and 0.7 < float(x.std()) < 1.3


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(KeyError, match="Did you mean digits"):
        get_datamodule_class("digit")


class _OldPerSample(torch.utils.data.Dataset):
    """A split fetched as before the batched fetch: one image normalised per ``__getitem__``, then ``default_collate``
    stacks the batch. Written out here, independent of ``TensorImageDataset``, as the reference."""

    def __init__(self, dm, split):
        arrays = dm._test if split.startswith("T") else dm._train
        self.images, self.labels = arrays.images, arrays.labels
        self.indices = dm.split_indices()[split]
        self.mean, self.std = torch.tensor(dm.mean).view(-1, 1, 1), torch.tensor(dm.std).view(-1, 1, 1)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        j = int(self.indices[i])
        x = self.images[j].float()
        if self.images.dtype == torch.uint8:
            x = x / 255.0
        return (x - self.mean) / self.std, self.labels[j]


@pytest.mark.parametrize("held", [True, False], ids=["held", "per-batch"])
def test_fast_batches_equal_the_old_per_sample_batches(dm, held):
    """Same order, values and dtypes as the old per-sample DataLoader, epoch after epoch, with the images held
    normalised or normalised per batch."""
    module = dm.with_forget_classes(dm.forget_classes)
    module._held = {} if held else {"train": None, "test": None}
    for split, stream, make in [("D_r", 1, module.retain_dataloader), ("D_f", 2, module.forget_dataloader)]:
        data = module.dataset(split)
        assert (data.normalised is not None) is held
        fast = module.loader(data, shuffle=True, batch_size=32, seed=5, stream=stream)

        def old_loader(split=split, stream=stream):
            return torch.utils.data.DataLoader(_OldPerSample(module, split), batch_size=32, shuffle=True,
                                               generator=torch.Generator().manual_seed(5 * 1009 + stream))

        old = old_loader()
        for _epoch in range(3):  # later epochs check that the generator is consumed alike
            fast_batches, old_batches = list(fast), list(old)
            assert len(fast_batches) == len(old_batches) == len(fast)
            for (x, y), (x_old, y_old) in zip(fast_batches, old_batches, strict=True):
                assert torch.equal(x, x_old) and torch.equal(y, y_old)
                assert x.dtype == x_old.dtype and y.dtype == y_old.dtype and x.is_contiguous()
        for (x, y), (x_old, y_old) in zip(make(batch_size=32, seed=5), old_loader(), strict=True):
            assert torch.equal(x, x_old) and torch.equal(y, y_old)  # the loaders the methods get are the same
    x, y = module.dataset("T_r").tensors()
    reference = _OldPerSample(module, "T_r")
    assert torch.equal(x, torch.stack([reference[i][0] for i in range(len(reference))]))
    assert torch.equal(y, torch.stack([reference[i][1] for i in range(len(reference))]))


def test_batch_crops_and_flips_equal_an_image_by_image_computation():
    """crop_and_flip on a batch against a loop over its images: pad each by 4 with zeros, slice the crop at the
    drawn offsets, flip it where drawn; the draws are rows, columns, then flips, from the given generator."""
    x = torch.randn(6, 3, 8, 8)
    got = crop_and_flip(x, torch.Generator().manual_seed(11))
    draws = torch.Generator().manual_seed(11)
    rows, cols = torch.randint(0, 9, (6,), generator=draws), torch.randint(0, 9, (6,), generator=draws)
    flips = torch.rand(6, generator=draws) < 0.5
    padded = torch.zeros(6, 3, 16, 16)
    padded[:, :, 4:12, 4:12] = x
    for n in range(6):
        crop = padded[n, :, rows[n]:rows[n] + 8, cols[n]:cols[n] + 8]
        assert torch.equal(got[n], crop.flip(-1) if flips[n] else crop), n
    assert flips.any() and not flips.all() and (rows != 4).any()  # the draws exercise flips and shifts


def test_augmented_loaders_draw_from_their_own_generator_only():
    """Two loaders of one seed give the same augmented batches whatever the global RNG does (so members of a group
    each see their own fit's batches); another seed gives other crops; the global RNG is never drawn from; labels
    and order are the plain loader's."""
    module = DigitsDataModule(forget_classes=(3,), augment=True)
    module.setup()
    plain = module.with_forget_classes((3,))
    plain.augment = False
    first, second = (module.loader("D_r", shuffle=True, batch_size=64, seed=5) for _ in range(2))
    other = module.loader("D_r", shuffle=True, batch_size=64, seed=6)
    unaugmented = plain.loader("D_r", shuffle=True, batch_size=64, seed=5)
    for _epoch in range(2):
        torch.manual_seed(0)
        before = torch.random.get_rng_state()
        a = list(first)
        assert torch.equal(torch.random.get_rng_state(), before)
        torch.manual_seed(123)
        b = list(second)
        p = list(unaugmented)
        for (xa, ya), (xb, yb), (_, yp) in zip(a, b, p, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ya, yp)
        assert not any(torch.equal(xa, xp) for (xa, _), (xp, _) in zip(a, p, strict=True))  # really augmented
    assert not torch.equal(next(iter(other))[0], next(iter(module.loader("D_r", shuffle=True, batch_size=64,
                                                                          seed=5)))[0])


def test_wrapped_datasets_keep_their_samples(dm):
    """Wrappers: ``Subset`` forwards the batched fetch (read back by ``default_collate``), ``ConcatDataset`` fetches
    sample by sample; both give what indexing the dataset gives, and a sample is a copy, not a view of held data."""
    data = dm.dataset("D_r")
    (x, y), = torch.utils.data.DataLoader(torch.utils.data.Subset(data, [4, 1, 7]), batch_size=3)
    assert torch.equal(x, torch.stack([data[i][0] for i in (4, 1, 7)])) and y.tolist() == [
        int(data[i][1]) for i in (4, 1, 7)]
    both = torch.utils.data.ConcatDataset([data, dm.dataset("D_f")])
    (x, _), = dm.loader(both, shuffle=False, batch_size=len(both))
    assert torch.equal(x, torch.cat([data.tensors()[0], dm.dataset("D_f").tensors()[0]]))
    sample, _ = data[0]
    sample += 1.0
    assert not torch.equal(data[0][0], sample)


def test_in_memory_loaders_fetch_in_this_process():
    """Workers only serve loaders that fetch per sample (wrapped datasets); a batch of in-memory data is one gather
    here, and one crop of the batch when augmented."""
    module = DigitsDataModule(forget_classes=(3,), num_workers=2, augment=True)
    module.setup()
    assert module.loader("D_r", shuffle=False).num_workers == 0
    assert module.loader("D_r", shuffle=True).num_workers == 0  # augmented: crops drawn here, by the loader's own
    wrapped = torch.utils.data.ConcatDataset([module.dataset("D_r"), module.dataset("D_f")])
    assert module.loader(wrapped, shuffle=True).num_workers == 2
