"""Model selection on a validation split (tnbench.pipeline.selection), DLRT's protocol."""
from __future__ import annotations

import pytest

from tests.conftest import LENET_LAYERS, compose, raises_one_line, run_in_process
from tnbench.config import validate
from tnbench.pipeline.selection import best_epoch


def test_best_epoch_is_the_first_of_the_lowest_loss():
    assert best_epoch([]) is None
    assert best_epoch([{"loss": 2.0}, {"loss": 1.0}, {"loss": 1.5}, {"loss": 1.0}]) == 2


def test_best_val_loss_needs_a_validation_split():
    with raises_one_line("pipeline.select=best_val_loss needs a validation split: set dataset.val_split"):
        validate(compose(["pipeline.select=best_val_loss"]))
    with raises_one_line("pipeline.select must be one of last, best_val_loss"):
        validate(compose(["pipeline.select=first"]))


@pytest.mark.slow
def test_official_dlrt_run_ends_with_the_model_of_lowest_validation_loss(tmp_path):
    """From scratch with the official settings (start at the cap, random orthonormal factors):
    the validation split's loss after every epoch, the selected epoch is its minimum, and the
    run ends with that epoch's model (its ranks, its test accuracy)."""
    rec = run_in_process(tmp_path, "dataset=synthetic", "logger=none", "trainer.progress=false", "model=lenet5_dlrt",
                         "method=dlrt_official", f"method.layers=[{','.join(LENET_LAYERS)}]", "method.tau=0.3",
                         "dataset.train_size=640", "dataset.test_size=64", "dataset.val_split=128",
                         "pipeline.select=best_val_loss", "pipeline.pretrain_epochs=0", "pipeline.retrain_epochs=3",
                         "pipeline.retrain_optimizer.lr=0.2", "pipeline.retrain_optimizer.schedule=constant",
                         quick=False)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["num_train"] == 512
    assert rec["compression_at_compress"]["ranks"] == {"features.0": [10], "features.3": [25], "classifier.0": [250]}
    hist = rec["val_history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    selected = best_epoch(hist)
    assert rec["selected_epoch"] == selected
    assert rec["acc_selected"] == rec["retrain_history"][selected - 1]
    assert rec["ranks"] == rec["rank_history"][selected]["ranks"]
    for layer, cap in zip(LENET_LAYERS, (10, 25, 250)):
        assert 2 <= min(r[0] for r in [h["ranks"][layer] for h in rec["rank_history"]])
        assert max(h["ranks"][layer][0] for h in rec["rank_history"]) <= cap
