"""Fixtures of the method tests: models to compress, and the checks that methods of one family
(tnbench.methods.families) share, run by each method's own test file."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import method_cfg, run_in_process
from tnbench.functional.brickwall import num_gates
from tnbench.methods import build_method
from tnbench.models import build_model


@pytest.fixture
def lenet() -> Callable[[], nn.Module]:
    """LeNet-5 for 1x28x28 inputs, the same weights on every call."""

    def build() -> nn.Module:
        torch.manual_seed(0)
        return build_model("lenet5", in_channels=1, image_size=28, num_classes=10)

    return build


@pytest.fixture
def check_fresh_init(lenet) -> Callable[[str], None]:
    """A tensorized method (tt, peps) with fresh nodes: partial norms reach the target norm,
    Gaussian nodes (the paper's or mean 0) are far off, and outputs say so."""

    def check(name: str) -> None:
        normed, plain = lenet(), lenet()
        for r in build_method(method_cfg(name, init="partial_norm")).compress(normed):
            if r.compressed:
                assert r.extra["norm"] == pytest.approx(r.extra["target_norm"], rel=1e-5)
                assert r.extra["target_norm"] == pytest.approx(math.sqrt(r.shape[0] / 3))  # match_dense
        for r in build_method(method_cfg(name, init="gaussian")).compress(plain):
            if r.compressed:  # Gaussian(0, 0.5) nodes: tens of times too large already at N = 3
                assert r.extra["norm"] > 10 * math.sqrt(r.shape[0] / 3)
        for r in build_method(method_cfg(name, init="gaussian", init_mean=1.0)).compress(lenet()):
            if r.compressed:  # the paper's Gaussian(1, 0.5): thousands of times
                assert r.extra["norm"] > 1000 * math.sqrt(r.shape[0] / 3)
        x = torch.randn(4, 1, 28, 28)
        assert normed(x).abs().max() < plain(x).abs().max()

    return check


@pytest.fixture
def check_gate_record(tmp_path: Path) -> Callable[[str], None]:
    """A real pipeline run of a brick-wall method (adtn: 16 numbers a gate, adqc: 6) whose record
    counts the gates, the fits and the compression."""

    def check(method: str) -> None:
        rec = run_in_process(tmp_path, "model=fc2", "model.options.hidden=64", f"method={method}", "logger=none",
                             "method.fit_steps=30", "method.depth=4")
        assert rec["status"] == "ok", rec.get("error")
        assert rec["paper"] == "arXiv:2305.06058"
        per_gate = 16 if method == "adtn" else 6
        # classifier.0: 784*64 = 50176 weights -> Q = 16; classifier.2: 64*10 = 640 -> Q = 10
        gen_params = [per_gate * num_gates(16, 4) + 1, per_gate * num_gates(10, 4) + 1]
        assert rec["params_compressed"] == 64 + 10 + sum(gen_params)
        assert rec["params_dense"] == 50176 + 640 + 64 + 10
        assert rec["layer_params_compressed"] == sum(gen_params)
        assert rec["compression_ratio_layers"] == pytest.approx((50176 + 640) / sum(gen_params))
        fits = rec["adtn_fit"]
        assert [f["qubits"] for f in fits] == [16, 10] and [f["params"] for f in fits] == gen_params
        for f, layer in zip(fits, rec["layers"]):
            assert f["final_distance"] <= f["initial_distance"]
            # a fit no closer than fit_max_distance (default 1) is dropped: the layer starts unfitted
            assert f["kept"] == (f["final_distance"] < 1.0)
            assert layer["norm_loss"] == pytest.approx(f["final_distance"] if f["kept"] else f["initial_distance"])
            assert f["curve"][0] == [0, f["initial_distance"]]
        assert math.isfinite(rec["acc_retrained"])

    return check


@pytest.fixture
def tau_budget_runs(tmp_path: Path) -> Callable[[str], dict[int, dict]]:
    """For a rank-adaptive method with method.budget_knob=tau: runs budget.ratio=4 and 8 on LeNet-5
    (synthetic data) and checks what both methods share: tau lands the model as compressed within
    5% of the asked ratio (its ranks are the first of the rank history), the record carries the
    asked ratio, the chosen tau, both sizes (`budget_reached` is the retrained model's) and a larger
    tau for the larger budget. Returns the records by ratio."""

    def run(method: str) -> dict[int, dict]:
        recs = {}
        for ratio in (4, 8):
            recs[ratio] = rec = run_in_process(tmp_path, "model=lenet5", f"method={method}", f"budget.ratio={ratio}",
                                               "method.budget_knob=tau", "logger=none", "dataset.train_size=512",
                                               "dataset.test_size=128", name=f"{method}-r{ratio}")
            assert rec["status"] == "ok", rec.get("error")
            at_compress = rec["compression_at_compress"]
            assert rec["budget_asked"] == ratio and set(rec["budget_knob"]) == {"tau"}
            assert rec["budget_search"]["within"] and rec["budget_search"]["sets"] == {"rank_init": "tau"}
            assert at_compress["budget_reached"] == pytest.approx(ratio, rel=0.05)
            assert at_compress["budget_reached"] == pytest.approx(at_compress["compression_ratio"])
            assert at_compress["ranks"] == rec["rank_history"][0]["ranks"]
            assert rec["budget_reached"] == pytest.approx(rec["compression_ratio"])  # the retrained model
            assert rec["ranks"] == rec["rank_history"][-1]["ranks"]
        assert recs[8]["budget_knob"]["tau"] > recs[4]["budget_knob"]["tau"]
        return recs

    return run


@pytest.fixture
def check_tau_budget_decomposes_once(tmp_path: Path, decompositions: dict[str, int]) -> Callable[[str, int], None]:
    """For a rank-adaptive method with method.budget_knob=tau on LeNet-5: the search reads each
    factored axis's spectrum and compress starts the layer from the same decomposition, so the run
    decomposes each (layer, axis) once (`axes` in all), and its layers are those of a run at the
    chosen tau (rank_init=tau) without a budget."""

    def check(method: str, axes: int) -> None:
        quick = ["logger=none", "model=lenet5", f"method={method}", "pipeline.retrain_epochs=0",
                 "trainer.measure_speed=false"]
        rec = run_in_process(tmp_path, *quick, "budget.ratio=3", "method.budget_knob=tau", name="budget")
        assert rec["status"] == "ok" and len(rec["budget_search"]["evaluations"]) > 3
        assert set(decompositions) <= {"svd", "eigh"} and sum(decompositions.values()) == axes
        plain = run_in_process(tmp_path, *quick, "method.rank_init=tau", f"method.tau={rec['budget_knob']['tau']}",
                               name="plain")
        assert plain["layers"] == rec["layers"] and plain["acc_compressed"] == rec["acc_compressed"]

    return check
