"""Measured inference speed: medians of timed passes within a budget, the record's speed fields,
and the switch that turns it off without changing which run it is. No timed assertions."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import QUICK, compose, run_in_process
from tnbench.pipeline.speed import autocast_for, measure, speed_record, time_forward


def small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_timed_passes_stay_within_their_bounds_and_leave_the_mode_alone():
    model = small().train()
    calls = []
    model.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
    out = time_forward(model, (1, 8, 8), batch=5, budget_s=0.0, min_passes=3, max_passes=10, warmup=2)
    assert out["passes"] == 3 and calls == [5] * 5 and out["seconds"] > 0
    assert time_forward(model, (1, 8, 8), 2, budget_s=1e9, min_passes=1, max_passes=4, warmup=0)["passes"] == 4
    assert model.training


def test_channels_last_models_are_timed_on_channels_last_inputs():
    model = small().to(memory_format=torch.channels_last)
    seen = []
    model.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    time_forward(model, (1, 8, 8), 4, budget_s=0.0, min_passes=1, warmup=0)
    assert seen == [True]


def test_the_record_fields_are_ratios_of_the_two_measurements():
    dense = {"latency_ms": 2.0, "throughput": 1000.0, "passes": [5, 3]}
    fast = {"latency_ms": 0.5, "throughput": 3000.0, "passes": [9, 4]}
    rec = speed_record(dense, fast, "cpu", 256, "32-true")
    assert rec["speedup_measured"] == pytest.approx(3.0) and rec["speedup_latency"] == pytest.approx(4.0)
    assert rec["speed"]["threads"] == torch.get_num_threads() and rec["speed"]["batch_throughput"] == 256
    got = measure(small(), (1, 8, 8), 16, budget_s=0.0)
    assert set(got) == {"latency_ms", "throughput", "passes"} and got["throughput"] > 0


def test_autocast_follows_the_trainer_precision():
    cpu = torch.device("cpu")
    with autocast_for("bf16-mixed", cpu):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with autocast_for("32-true", cpu):
        assert not torch.is_autocast_enabled("cpu")


def test_every_record_has_measured_speed_and_turning_it_off_is_the_same_run(tmp_path):
    rec = run_in_process(tmp_path, "logger=none", "method.rank=4", name="on")
    assert rec["speedup_measured"] == pytest.approx(rec["throughput_compressed"] / rec["throughput_dense"])
    assert rec["speedup_latency"] == pytest.approx(rec["latency_dense_ms"] / rec["latency_compressed_ms"])
    speed = rec["speed"]
    assert speed["device"] == "cpu" and speed["threads"] == rec["torch_threads"]
    assert speed["batch_throughput"] == rec["flops_batch_size"] == min(rec["config"]["dataset"]["eval_batch_size"],
                                                                        rec["num_test"])
    assert all(n >= 3 for n in speed["passes_dense"] + speed["passes_compressed"])
    off = run_in_process(tmp_path, "logger=none", "method.rank=4", "trainer.measure_speed=false", name="off")
    assert "speedup_measured" not in off and "speed" not in off
    assert off["acc_retrained"] == rec["acc_retrained"]
    base = [*QUICK, "method.rank=4"]
    assert compose([*base, "trainer.measure_speed=false"]).run_id == compose(base).run_id
