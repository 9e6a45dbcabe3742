"""The Lightning DataModule (tnbench.data.module) under a real Lightning trainer."""
from __future__ import annotations

import lightning
import pytest
import torch

from tnbench.data import load_data
from tnbench.data.module import InMemoryDataModule
from tnbench.errors import ConfigError


def _seen(batches) -> torch.Tensor:
    return torch.cat([y for _, y in batches])


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


def test_validation_split_is_carved_from_the_training_set():
    opts = dict(train_size=300, test_size=50)
    whole = load_data("synthetic", "unused", seed=1, **opts)
    split = load_data("synthetic", "unused", seed=1, val_split=60, **opts)
    assert len(split.train_y) == 240 and len(split.val_y) == 60 and len(split.test_y) == 50
    # disjoint, and together the whole training set
    rows = {tuple(x.flatten().tolist()) for x in whole.train_x}
    got = [tuple(x.flatten().tolist()) for x in torch.cat([split.train_x, split.val_x])]
    assert len(set(got)) == len(got) == len(rows) and set(got) == rows
    assert torch.equal(split.test_x, whole.test_x)
    assert InMemoryDataModule(whole, 32).holdout_dataloader() is None
    assert sum(len(y) for _, y in InMemoryDataModule(split, 32).holdout_dataloader()) == 60
    with pytest.raises(ConfigError, match="dataset.val_split must be in"):
        load_data("synthetic", "unused", seed=1, val_split=300, **opts)
