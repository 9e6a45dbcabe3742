"""Real Fashion-MNIST runs."""
from __future__ import annotations

import pytest

from tests.conftest import compose
from tnbench.pipeline.stages import run_pipeline


@pytest.mark.slow
def test_real_fashion_mnist_lenet5_svd(tmp_path, data_dir):
    """The issue's headline: > 85% pretrained on real Fashion-MNIST, then a cache hit."""
    base = [f"paths.results_dir={tmp_path}", f"paths.data_dir={data_dir}", "trainer.progress=false",
            "logger=none", "pipeline.pretrain_epochs=2", "pipeline.retrain_epochs=1"]
    cfg = compose(["dataset=fashion_mnist", "model=lenet5", "method=svd", "method.rank=8", *base])
    rec = run_pipeline(cfg, tmp_path / "r8")
    assert rec["status"] == "ok" and rec["num_train"] == 60000 and rec["num_test"] == 10000
    assert rec["acc_pretrain"] > 85.0
    assert rec["acc_retrained"] > 80.0
    cfg = compose(["dataset=fashion_mnist", "model=lenet5", "method=svd", "method.rank=4", *base,
                   "pipeline.retrain_epochs=0"])
    rec2 = run_pipeline(cfg, tmp_path / "r4")
    assert rec2["pretrain_cache_hit"] is True
    assert rec2["acc_pretrain"] == pytest.approx(rec["acc_pretrain"])
