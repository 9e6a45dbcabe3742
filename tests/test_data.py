"""Tests of tnbench.data on real files (Debian's Fashion-MNIST) and real tensors; no mocks."""
from __future__ import annotations

import os

import lightning
import pytest
import torch

from tnbench.data import DATASETS, load_data
from tnbench.data.batching import InMemoryLoader, augment_batch, crop_batch, normalize
from tnbench.data.module import InMemoryDataModule
from tnbench.data.sets.vision import DEBIAN_FASHION_MNIST_DIR
from tnbench.errors import DataMissing, UnknownEntry

needs_fashion = pytest.mark.skipif(
    not os.path.isfile(os.path.join(DEBIAN_FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")),
    reason="Debian package dataset-fashion-mnist is not installed",
)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def fashion(fashion_dir):
    return load_data("fashion_mnist", fashion_dir)


def _indexed_loader(n: int, **kwargs) -> InMemoryLoader:
    """A loader whose labels are the sample indices, so batches say which samples they hold."""
    x = torch.zeros((n, 1, 2, 2), dtype=torch.uint8)
    return InMemoryLoader(x, torch.arange(n), **kwargs)


def _seen(batches) -> torch.Tensor:
    return torch.cat([y for _, y in batches])


@needs_fashion
def test_fashion_mnist_loads_from_debian_files(fashion, fashion_dir):
    assert os.path.isfile(os.path.join(fashion_dir, "FashionMNIST", "raw", "train-images-idx3-ubyte"))
    assert fashion.train_x.shape == (60000, 1, 28, 28) and fashion.train_x.dtype == torch.uint8
    assert fashion.test_x.shape == (10000, 1, 28, 28) and fashion.test_x.dtype == torch.uint8
    assert fashion.train_y.dtype == torch.int64 and fashion.train_y.shape == (60000,)
    assert fashion.num_classes == 10 and set(fashion.train_y.unique().tolist()) == set(range(10))
    assert (fashion.in_channels, fashion.image_size, fashion.augment) == (1, 28, False)


@needs_fashion
def test_subset_is_deterministic_and_sized(fashion_dir, fashion):
    a = load_data("fashion_mnist", fashion_dir, train_subset=1000, test_subset=300, seed=3)
    b = load_data("fashion_mnist", fashion_dir, train_subset=1000, test_subset=300, seed=3)
    c = load_data("fashion_mnist", fashion_dir, train_subset=1000, seed=4)
    assert a.train_x.shape == (1000, 1, 28, 28) and a.test_x.shape == (300, 1, 28, 28)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_y, c.train_y)
    assert c.test_x.shape[0] == 10000  # no test_subset: whole split
    assert load_data("fashion_mnist", fashion_dir, train_subset=0).train_x.shape[0] == 60000


def test_synthetic_is_deterministic_with_requested_shape():
    opts = dict(channels=2, image_size=12, num_classes=5, train_size=300, test_size=100)
    a = load_data("synthetic", "unused", seed=7, **opts)
    b = load_data("synthetic", "unused", seed=7, **opts)
    c = load_data("synthetic", "unused", seed=8, **opts)
    assert a.train_x.shape == (300, 2, 12, 12) and a.test_x.shape == (100, 2, 12, 12)
    assert a.train_x.dtype == torch.uint8 and a.train_y.dtype == torch.int64
    assert a.num_classes == 5 and int(a.train_y.max()) < 5 and len(a.mean) == len(a.std) == 2
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)


def test_synthetic_is_learnable_in_one_epoch():
    torch.manual_seed(0)
    d = load_data("synthetic", "unused", num_classes=10, train_size=2048, test_size=512)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for x, y in InMemoryLoader(d.train_x, d.train_y, 64, shuffle=True, mean=d.mean, std=d.std):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    x = normalize(d.test_x, d.mean, d.std)
    accuracy = (model(x).argmax(1) == d.test_y).float().mean().item()
    assert accuracy > 0.5  # chance is 0.1


def test_unknown_dataset_lists_allowed_names():
    with pytest.raises(UnknownEntry) as info:
        load_data("imagenet", "/nonexistent")
    msg = str(info.value)
    assert "\n" not in msg and "imagenet" in msg
    for name in ("mnist", "fashion_mnist", "cifar10", "cifar100", "synthetic"):
        assert name in msg and name in DATASETS


def test_real_dataset_rejects_options(tmp_path):
    with pytest.raises(ValueError, match="channels"):
        load_data("mnist", str(tmp_path), channels=3)


def test_missing_mnist_raises_data_missing(tmp_path):
    with pytest.raises(DataMissing) as info:
        load_data("mnist", str(tmp_path), download=False)
    msg = str(info.value)
    assert str(tmp_path) in msg and "\n" not in msg and "download" in msg


def test_missing_fashion_mnist_without_system_copy(tmp_path):
    from tnbench.data.sets.vision import _load_fashion_mnist

    with pytest.raises(DataMissing, match="FashionMNIST"):
        _load_fashion_mnist(str(tmp_path), False, system_dir=str(tmp_path / "nowhere"))


def test_loader_covers_each_sample_once_and_reshuffles():
    n, bs = 1000, 64
    loader = _indexed_loader(n, batch_size=bs, shuffle=True, seed=5)
    assert len(loader) == 16
    first = list(loader)
    second = _seen(loader)
    assert len(first) == 16 and all(len(y) == bs for _, y in first[:-1]) and len(first[-1][1]) == n - 15 * bs
    first = _seen(first)
    assert torch.equal(first.sort().values, torch.arange(n))
    assert torch.equal(second.sort().values, torch.arange(n))
    assert not torch.equal(first, second)
    again = _indexed_loader(n, batch_size=bs, shuffle=True, seed=5)
    assert torch.equal(_seen(again), first) and torch.equal(_seen(again), second)
    again.set_epoch(1)
    assert torch.equal(_seen(again), second)


def test_bare_iter_does_not_consume_an_epoch():
    loader = _indexed_loader(100, batch_size=10, shuffle=True)
    iter(loader)  # what Lightning does to check that a loader is iterable
    assert loader.epoch == 0
    assert torch.equal(_seen(loader), _seen(_indexed_loader(100, batch_size=10, shuffle=True)))


def test_epoch_fn_overrides_the_counter():
    loader = _indexed_loader(100, batch_size=10, shuffle=True, epoch_fn=lambda: 4)
    reference = _indexed_loader(100, batch_size=10, shuffle=True)
    reference.set_epoch(4)
    assert torch.equal(_seen(loader), _seen(reference)) and loader.epoch == 5


def test_unshuffled_loader_keeps_order_and_drop_last():
    assert torch.equal(_seen(_indexed_loader(50, batch_size=16)), torch.arange(50))
    loader = _indexed_loader(50, batch_size=16, drop_last=True)
    assert len(loader) == 3 and torch.equal(_seen(loader), torch.arange(48))


@pytest.mark.parametrize("n", [1001, 1000])
def test_two_ranks_partition_the_data(n):
    loader = _indexed_loader(n, batch_size=32, shuffle=True, seed=1)
    parts = [_seen(loader._iter_rank(epoch=3, rank=r, world_size=2)) for r in range(2)]
    assert len(parts[0]) + len(parts[1]) == n
    assert torch.equal(torch.cat(parts).sort().values, torch.arange(n))
    steps = [len(list(loader._iter_rank(3, r, 2))) for r in range(2)]
    assert steps[0] == steps[1] == loader._batches_per_rank(2)


def test_ranks_take_equal_steps_when_counts_straddle_a_batch():
    # 129 samples over 2 ranks at batch 64: 65 vs 64 samples would be 2 vs 1 steps, which
    # deadlocks DDP; both ranks take one step and the lone extra sample waits a turn.
    loader = _indexed_loader(129, batch_size=64, shuffle=True)
    steps = [len(list(loader._iter_rank(0, r, 2))) for r in range(2)]
    assert steps == [1, 1]


@needs_fashion
def test_normalize_standardizes_fashion_mnist(fashion):
    z = normalize(fashion.train_x, fashion.mean, fashion.std)
    assert z.dtype == torch.float32 and z.shape == fashion.train_x.shape
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01


def _reference_crop(x: torch.Tensor, top, left, padding: int) -> torch.Tensor:
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    h, w = x.shape[-2:]
    return torch.stack([padded[i, :, t : t + h, l : l + w] for i, (t, l) in enumerate(zip(top, left))])


def test_crop_batch_matches_per_sample_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn((16, 3, 8, 8), generator=g)
    top = torch.randint(0, 9, (16,), generator=g)
    left = torch.randint(0, 9, (16,), generator=g)
    assert torch.equal(crop_batch(x, top, left, 4), _reference_crop(x, top.tolist(), left.tolist(), 4))


def test_augment_batch_is_crop_and_flip():
    x = torch.randn((32, 3, 10, 10), generator=torch.Generator().manual_seed(1))
    assert torch.equal(augment_batch(x, padding=0, flip=False), x)
    out = augment_batch(x, generator=torch.Generator().manual_seed(2), padding=2)
    assert out.shape == x.shape
    flips = 0
    for i in range(len(x)):  # each output must be exactly one crop of its input, maybe mirrored
        crops = [
            c
            for t in range(5)
            for l in range(5)
            for c in (_reference_crop(x[i : i + 1], [t], [l], 2)[0],)
        ]
        plain = any(torch.equal(out[i], c) for c in crops)
        mirrored = any(torch.equal(out[i], c.flip(-1)) for c in crops)
        assert plain or mirrored
        flips += mirrored and not plain
    assert 0 < flips < len(x)
    same = augment_batch(x, generator=torch.Generator().manual_seed(2), padding=2)
    assert torch.equal(out, same)


def test_loader_normalizes_augments_and_channels_last():
    d = load_data("synthetic", "unused", train_size=256, test_size=64, augment=True)
    assert d.augment
    plain = InMemoryLoader(d.train_x, d.train_y, 256, mean=d.mean, std=d.std)
    x, _ = next(iter(plain))
    assert torch.allclose(x, normalize(d.train_x, d.mean, d.std), atol=1e-5)
    assert not x.is_contiguous(memory_format=torch.channels_last)
    aug = InMemoryLoader(d.train_x, d.train_y, 64, augment=True, mean=d.mean, std=d.std, channels_last=True)
    xa, _ = next(iter(aug))
    assert xa.shape == (64, 3, 32, 32) and xa.dtype == torch.float32
    assert xa.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(xa, x[:64])


class _Probe(lightning.LightningModule):
    """Tiny classifier that records which samples each training epoch starts with."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, num_classes))
        self.first_batches: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        if batch_idx == 0:
            self.first_batches.append(x.detach().clone())
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_datamodule_under_lightning_reshuffles_each_epoch():
    d = load_data("synthetic", "unused", channels=1, image_size=8, train_size=256, test_size=64)
    dm = InMemoryDataModule(d, batch_size=32, eval_batch_size=50, seed=0)
    model = _Probe(64, d.num_classes)
    trainer = lightning.Trainer(
        max_epochs=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    assert len(model.first_batches) == 3
    assert not torch.equal(model.first_batches[0], model.first_batches[1])
    assert not torch.equal(model.first_batches[1], model.first_batches[2])
    loader = dm.train_dataloader()
    assert loader is dm.train_dataloader() and len(loader) == 8
    for epoch, seen in enumerate(model.first_batches):  # the shuffle follows trainer.current_epoch
        assert torch.equal(seen, next(loader._iter_rank(epoch, 0, 1))[0])
    val = dm.val_dataloader()
    assert len(val) == 2 and torch.equal(_seen(val), d.test_y)
