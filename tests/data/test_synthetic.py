"""`dataset=synthetic` (tnbench.data.sets.synthetic): deterministic, shaped as asked, learnable."""
from __future__ import annotations

import torch

from tnbench.data import load_data
from tnbench.data.batching import InMemoryLoader, normalize


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
