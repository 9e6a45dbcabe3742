"""`method=tucker_adaptive` (TDLRT): settings, and the rank history a real pipeline run records."""
from __future__ import annotations

import pytest

from tests.conftest import LENET_LAYERS, method_cfg, raises_one_line, run_in_process
from tnbench.methods import build_method
from tnbench.models import build_model


@pytest.mark.parametrize("name,kw,match", [
    ("tucker_adaptive", {"tau": 0.0}, "method.tau must be in"),
    ("tucker_adaptive", {"tau": 1.0}, "method.tau must be in"),
    ("tucker_adaptive", {"rank_init": 500}, "method.rank_init"),
    ("tucker_adaptive", {"rank_init": 1.5}, "method.rank_init"),
    ("tucker_adaptive", {"adapt_every": 0}, "method.adapt_every"),
    ("tucker_adaptive", {"adaptive_modes": ["out", "depth"]}, "method.adaptive_modes"),
])
def test_bad_settings_are_one_line_config_errors(name, kw, match):
    with raises_one_line(match):
        method = build_method(method_cfg(name, layers=LENET_LAYERS[1:], **kw))
        method.compress(build_model("lenet5_dlrt", in_channels=1, image_size=28, num_classes=10))


def test_pipeline_with_tucker_adaptive_records_rank_history(tmp_path):
    rec = run_in_process(tmp_path, "dataset=synthetic", "logger=none", "trainer.progress=false", "method=tucker_adaptive",
                         "model=lenet5_dlrt", "dataset.train_size=512", "dataset.test_size=128",
                         "pipeline.pretrain_epochs=1", "pipeline.retrain_epochs=2", "method.rank_init=8", "method.r_min=2",
                         "method.adapt_every=3", "method.tau=0.2", quick=False)
    assert rec["status"] == "ok", rec.get("error")
    hist = rec["rank_history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    assert set(hist[-1]["ranks"]) == {"features.3", "classifier.0"}
    assert rec["ranks"] == hist[-1]["ranks"]  # the record describes the model as retraining left it
    assert rec["compression_at_compress"]["ranks"] == hist[0]["ranks"]
    assert rec["compression_rate"] == pytest.approx(hist[-1]["compression_rate"])
    assert rec["paper"] == "arXiv:2305.19059"
    # TDLRT counts as we do (stored core and factors): the paper-rule fields repeat ours
    assert rec["count_rule"] == "stored" and rec["compression_rate_paper"] == pytest.approx(rec["compression_rate"])
