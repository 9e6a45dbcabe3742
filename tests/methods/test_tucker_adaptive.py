"""`method=tucker_adaptive` (TDLRT): settings, and the rank history a real pipeline run records."""
from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import LENET_LAYERS, method_cfg, raises_one_line, run_in_process
from tnbench.functional.tucker import truncation_bases
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


def test_tau_start_keeps_the_ranks_the_integrators_truncation_keeps_of_each_weight():
    """`rank_init: tau` (what a budget sets) starts each factored mode where the integrator's own
    rule, run on the full weight as its core (the HOSVD's spectra), would truncate it."""
    torch.manual_seed(0)
    model = build_model("lenet5_dlrt", in_channels=1, image_size=28, num_classes=10)
    weights = {n: model.get_submodule(n).weight.detach().clone() for n in LENET_LAYERS}
    method = build_method(method_cfg("tucker_adaptive", layers=LENET_LAYERS, rank_init="tau", tau=0.3, r_min=2,
                                     r_max=40))
    hint = method.size_hint(model)
    reports = method.compress(model)
    assert hint == sum(p.numel() for p in model.parameters())
    for r in reports:
        w = weights[r.name]
        bases, _ = truncation_bases(w, [0, 1], 0.3, 2, 40, dict(enumerate(w.shape)))
        assert r.ranks == [bases[0].shape[1], bases[1].shape[1]], r.name
    assert reports[-1].ranks == [40, 40]  # classifier.0 (500 x 800) hits r_max


def test_budget_caps_every_mode_so_the_retrained_model_stays_within_it(tmp_path):
    """The default budget knob is the cap: one fraction `rank_cap` of every factored mode's size,
    where every mode starts (rank_init=cap) and under which the integrator truncates. A cap below
    r_min (7) wins over the floor, so 16x is within reach. At tau 1e-6 the truncation keeps what
    the augmentations add: only the caps keep the ranks from growing."""
    recs = {}
    for ratio in (4, 16):
        recs[ratio] = rec = run_in_process(tmp_path, "model=lenet5", "method=tucker_adaptive", f"budget.ratio={ratio}",
                                           "method.tau=1e-6", "method.adapt_every=1", "logger=none",
                                           "dataset.train_size=512", "dataset.test_size=128", name=f"r{ratio}")
        assert rec["status"] == "ok", rec.get("error")
        at_compress, start = rec["compression_at_compress"], rec["rank_history"][0]["ranks"]
        assert set(rec["budget_knob"]) == {"rank_cap"} and rec["budget_search"]["sets"] == {"rank_init": "cap"}
        assert rec["budget_search"]["within"] and at_compress["budget_reached"] == pytest.approx(ratio, rel=0.05)
        fraction = rec["budget_knob"]["rank_cap"]
        for layer in rec["layers"]:  # out and in modes start at their caps
            caps = [min(100, math.ceil(fraction * n)) for n in layer["shape"][:2]]
            if len(layer["shape"]) == 2:  # a Linear's r_out x r_in core holds rank min(r_out, r_in) at most
                caps = [min(caps)] * 2
            assert layer["extra"]["ranks_at_compress"] == caps == start[layer["name"]], layer["name"]
        for entry in rec["rank_history"][1:]:
            assert all(r <= s for name in start for r, s in zip(entry["ranks"][name], start[name])), entry
        # the caps hold the ranks (without them they grow at tau 1e-6: to 16/27/15 out of 2/9/6 at 4x)
        assert rec["ranks"] == start
        assert rec["budget_reached"] >= ratio * (1 - rec["budget_search"]["tolerance"])
    assert min(min(r) for r in recs[16]["ranks"].values()) < 7  # under the r_min floor


def test_budget_by_tau_lands_the_compressed_model_and_records_reached_after_retraining(tmp_path, tau_budget_runs):
    """With method.budget_knob=tau, budget.ratio=4 and 8 choose tau so that the model as compressed
    is within 5% of the asked ratio (tau_budget_runs); retraining moves the ranks. 16x is out of
    reach on LeNet-5: r_min 7 floors every rank (8.13x at most)."""
    recs = tau_budget_runs("tucker_adaptive")
    assert recs[4]["budget_reached"] > recs[4]["compression_at_compress"]["budget_reached"]  # ranks fell to r_min
    with raises_one_line(r"budget.ratio=16 is out of reach for method=tucker_adaptive: its most compressing setting "
                         r"\(tau=0.999\) gives 8.13x; allowed: budget.ratio <= 8.13"):
        run_in_process(tmp_path, "model=lenet5", "method=tucker_adaptive", "budget.ratio=16", "method.budget_knob=tau",
                       "logger=none", "dataset.train_size=512", "dataset.test_size=128", name="r16")


def test_a_tau_budget_decomposes_each_mode_once(check_tau_budget_decomposes_once):
    check_tau_budget_decomposes_once("tucker_adaptive", 6)  # out and in modes of the same three
