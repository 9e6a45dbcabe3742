"""Run metrics (tnbench.pipeline.metrics)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tnbench.pipeline.metrics import compression_summary, count_flops, record_flops, recovery_epochs


def test_recovery_epochs_definition():
    assert recovery_epochs(90.0, 89.6, [], 0.5) == 0
    assert recovery_epochs(90.0, 50.0, [80.0, 89.5, 91.0], 0.5) == 2
    assert recovery_epochs(90.0, 50.0, [80.0, 89.4], 0.5) is None


class Reconstructed(nn.Module):
    """x @ (A @ B): the weight is contracted from two cores on every forward, once per batch."""

    def __init__(self, n_in: int, rank: int, n_out: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(n_in, rank))
        self.b = nn.Parameter(torch.randn(rank, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ (self.a @ self.b)


def test_count_flops_per_example_and_per_layer_by_hand():
    # conv 1->6, 5x5, padding 2 on 28x28: 2 * 6 * 28 * 28 * 25 multiply-adds per example;
    # linear 6*28*28 -> 10: 2 * 4704 * 10; the factorized 10 -> 8 layer: 2*10*8 per example plus
    # the A @ B contraction, 2*10*3*8, shared by the batch
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Flatten(), nn.Linear(6 * 28 * 28, 10),
                          Reconstructed(10, 3, 8))
    conv, linear, shared = 2 * 6 * 28 * 28 * 25, 2 * 4704 * 10, 2 * 10 * 3 * 8
    one = count_flops(model, (1, 28, 28), 1, ["0", "2", "3"])
    assert one["layers"] == {"0": conv, "2": linear, "3": 2 * 10 * 8 + shared}
    assert one["total"] == conv + linear + 2 * 10 * 8 + shared
    batch = count_flops(model, (1, 28, 28), 16, ["0", "2", "3"])
    assert batch["layers"] == {"0": conv, "2": linear, "3": 2 * 10 * 8 + shared // 16}
    assert batch["total"] == conv + linear + 2 * 10 * 8 + shared // 16


def test_record_flops_fills_both_batches_per_layer():
    model = nn.Sequential(nn.Linear(12, 5), Reconstructed(5, 2, 4))
    rec: dict = {"flops_batch_size": 4}
    record_flops(rec, model, (12,), "dense", ["0", "1"])
    assert rec["flops_dense"] == 2 * 12 * 5 + 2 * 5 * 4 + 2 * 5 * 2 * 4 // 4
    assert rec["flops_dense_b1"] == 2 * 12 * 5 + 2 * 5 * 4 + 2 * 5 * 2 * 4
    record_flops(rec, model, (12,), "compressed")
    assert rec["flops_layers"]["1"] == {"dense": 60, "dense_b1": 120, "compressed": 60, "compressed_b1": 120}


def test_compression_summary_records_both_norm_loss_forms_and_correlation_loss():
    layers = [{"name": "a", "compressed": True, "weight_params_dense": 100, "weight_params_compressed": 40,
               "norm_loss": 0.2, "relative_error": 0.6, "ranks": [1], "extra": {"correlation_loss": 0.75}},
              {"name": "b", "compressed": True, "weight_params_dense": 100, "weight_params_compressed": 60,
               "norm_loss": 0.5, "relative_error": 0.87, "ranks": [2], "extra": {"correlation_loss": 0.5}}]
    s = compression_summary(300, 200, layers)
    assert s["norm_loss"] == {"layers": {"a": 0.2, "b": 0.5}, "mean": pytest.approx(0.35)}
    assert s["norm_loss_energy"]["layers"] == {"a": pytest.approx(0.36), "b": pytest.approx(0.75)}
    assert s["norm_loss_energy"]["mean"] == pytest.approx((0.36 + 0.75) / 2)
    assert s["correlation_loss"] == {"layers": {"a": 0.75, "b": 0.5}, "mean": pytest.approx(0.625)}
    # methods without a bipartition (no correlation_loss in their reports) record none
    assert "correlation_loss" not in compression_summary(300, 200, [{**l, "extra": {}} for l in layers])
