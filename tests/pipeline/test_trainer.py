"""Trainers built from config (tnbench.pipeline.trainer): `limit_*_batches` as Lightning reads them."""
from __future__ import annotations

import pytest

from tests.conftest import QUICK, compose


@pytest.mark.parametrize("limit,steps", [("1", 1), ("3", 3), ("0.25", 2), ("1.0", 8), ("null", 8)])
def test_limit_train_batches_is_a_count_as_int_and_a_fraction_as_float(tmp_path, limit, steps):
    """1024 examples in batches of 128 are 8 batches: `1` is one batch (it used to mean all of
    them, typed float), `0.25` a quarter, `1.0` all."""
    from tnbench.data.module import InMemoryDataModule
    from tnbench.models import build_model
    from tnbench.pipeline.classifier import Classifier
    from tnbench.pipeline.stages import load_dataset
    from tnbench.pipeline.trainer import make_trainer

    cfg = compose([*QUICK, f"trainer.limit_train_batches={limit}", "trainer.limit_val_batches=1"])
    data = load_dataset(cfg)
    model = build_model("fc2", in_channels=data.in_channels, image_size=data.image_size, num_classes=data.num_classes)
    module = Classifier(model, data.num_classes).for_stage("pretrain", cfg.pipeline.pretrain_optimizer, 1)
    make_trainer(cfg, epochs=1, logger=None, run_dir=tmp_path).fit(
        module, datamodule=InMemoryDataModule(data, batch_size=cfg.dataset.batch_size))
    assert module.global_step == steps
