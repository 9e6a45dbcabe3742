"""Runs from scratch measure recovery against their dense twin (tnbench.pipeline.twin)."""
from __future__ import annotations

import pytest

from tests.conftest import run_in_process
from tnbench.pipeline.metrics import recovery_epochs

SCRATCH = ("dataset=synthetic", "logger=none", "trainer.progress=false", "dataset.train_size=2048",
           "dataset.test_size=128", "pipeline.pretrain_epochs=0", "pipeline.retrain_epochs=2", "pipeline.retrain_optimizer.lr=0.05", "method=svd",
           "method.rank=2")


@pytest.mark.slow
def test_from_scratch_recovery_is_counted_against_the_dense_twin(tmp_path):
    # without the twin in the cache: no reference, and the record says why
    rec = run_in_process(tmp_path, *SCRATCH, name="none-yet", quick=False)
    assert rec["status"] == "ok" and rec["acc_pretrain"] < 30  # a random model
    assert rec["recovery_epochs"] is None and rec["recovery_reference"] is None
    assert "dense twin" in rec["recovery_note"] and "pipeline.dense_twin=train" in rec["recovery_note"]

    # trained into the pretrain cache: the twin is a dense pretraining of the same budget
    rec = run_in_process(tmp_path, *SCRATCH, "pipeline.dense_twin=train", name="trained", quick=False)
    assert rec["recovery_reference"] == "dense twin" and "cache" in rec["dense_twin_checkpoint"]
    twin = rec["acc_dense_twin"]
    assert twin > 25  # well above chance: the dense model learns the synthetic task
    assert rec["recovery_epochs"] == recovery_epochs(twin, rec["acc_compressed"], rec["retrain_history"], 0.5)
    assert rec["recovery_epochs"] != recovery_epochs(rec["acc_pretrain"], rec["acc_compressed"],
                                                     rec["retrain_history"], 0.5)  # the random model's would be 0

    # the dense run with that budget as a pretraining is the same model: same cache entry
    dense = run_in_process(tmp_path, "dataset=synthetic", "logger=none", "trainer.progress=false",
                           "dataset.train_size=2048", "dataset.test_size=128", "pipeline.pretrain_epochs=2",
                           "pipeline.pretrain_optimizer.lr=0.05",
                           "pipeline.retrain_epochs=0", "method=none", name="dense", quick=False)
    assert dense["pretrain_cache_hit"] and dense["pretrain_checkpoint"] == rec["dense_twin_checkpoint"]
    assert dense["acc_pretrain"] == pytest.approx(twin)
    # another method with the same budget finds the twin in the cache (default dense_twin=cache)
    other = run_in_process(tmp_path, *SCRATCH[:-1], "method.rank=4", name="other", quick=False)
    assert other["acc_dense_twin"] == twin and other["recovery_reference"] == "dense twin"
