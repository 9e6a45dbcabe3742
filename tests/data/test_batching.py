"""The in-memory loader and batched augmentation (tnbench.data.batching) on real tensors."""
from __future__ import annotations

import pytest
import torch

from tnbench.data import load_data
from tnbench.data.batching import InMemoryLoader, augment_batch, crop_batch, normalize


def _indexed_loader(n: int, **kwargs) -> InMemoryLoader:
    """A loader whose labels are the sample indices, so batches say which samples they hold."""
    x = torch.zeros((n, 1, 2, 2), dtype=torch.uint8)
    return InMemoryLoader(x, torch.arange(n), **kwargs)


def _seen(batches) -> torch.Tensor:
    return torch.cat([y for _, y in batches])


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
