"""The pipeline end to end, in process (tnbench.pipeline.stages): records, W&B offline files, determinism,
divergence, threads."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.conftest import read_record, run_in_process
from tnbench.methods.base import LayerReport, Method, kind_of, select_layers
from tnbench.reporting.wandb_offline import read_run

REQUIRED = ["status", "dataset", "model", "method", "seed", "params_dense", "params_compressed",
            "compression_ratio", "compression_ratio_layers", "compression_rate", "acc_pretrain",
            "acc_compressed", "acc_retrained", "acc_retrained_best", "recovery_epochs", "norm_loss",
            "flops_dense", "flops_compressed", "ranks", "time_pretrain_s", "time_compress_s",
            "time_retrain_s", "pretrain_cache_hit", "config"]


def finished_wandb_run(wandb_dir: Path, timeout: float = 120) -> dict[str, Any]:
    """The offline W&B run of a job run in this process. `finish()` returns once W&B's service has
    the records, which may still be writing the file on a loaded machine (a CLI job's exit waits
    for it), so this waits until the run and its summary are in the file."""
    deadline = time.monotonic() + timeout
    while True:
        wb = read_run(next(wandb_dir.glob("offline-run-*")))
        if (wb["run"] and wb["summary"]) or time.monotonic() > deadline:
            return wb
        time.sleep(0.5)


def test_svd_run_writes_complete_record_and_wandb_files(tmp_path):
    rec = run_in_process(tmp_path, "method=svd", "method.rank=4", "logger=wandb")
    assert rec["status"] == "ok", rec.get("error")
    missing = [k for k in REQUIRED if k not in rec]
    assert not missing
    assert (rec["dataset"], rec["model"], rec["method"]) == ("synthetic", "lenet5", "svd")
    assert rec["params_compressed"] < rec["params_dense"]
    assert rec["compression_ratio"] == pytest.approx(rec["params_dense"] / rec["params_compressed"])
    assert 0 < rec["compression_rate"] < 100
    assert rec["flops_compressed"] < rec["flops_dense"]
    # FLOPs per example at the evaluation batch and at batch 1, per compressible layer
    assert rec["flops_batch_size"] == min(rec["config"]["dataset"]["eval_batch_size"], rec["num_test"]) > 1
    assert set(rec["flops_layers"]) == {"features.0", "features.3", "classifier.0", "classifier.2", "classifier.4"}
    for name, f in rec["flops_layers"].items():
        assert set(f) == {"dense", "dense_b1", "compressed", "compressed_b1"}
        assert f["dense"] == f["dense_b1"] > 0  # a dense layer's work is per example
        assert (f["compressed"] < f["dense"]) == (name in rec["ranks"] and rec["ranks"][name] == [4])
    assert sum(f["compressed"] for f in rec["flops_layers"].values()) <= rec["flops_compressed"]
    assert rec["flops_dense_b1"] == rec["flops_dense"]
    assert set(rec["ranks"]) == {l["name"] for l in rec["layers"]}
    assert all(r == [4] for r in rec["ranks"].values())
    assert 0 < rec["norm_loss"]["mean"] < 1
    assert rec["acc_retrained_best"] >= rec["acc_retrained"]
    assert len(rec["retrain_history"]) == 1
    assert rec["config"]["method"]["rank"] == 4
    # the W&B offline run holds the same numbers, per stage, with group and tags for dashboards
    wb = finished_wandb_run(tmp_path / "run" / "wandb")
    assert wb["run"]["id"] == rec["wandb_run_id"]
    assert {"svd", "lenet5", "synthetic"} <= set(wb["run"]["tags"])
    assert wb["run"]["group"] == "lenet5-synthetic"
    assert wb["summary"]["acc_pretrain"] == pytest.approx(rec["acc_pretrain"])
    assert wb["summary"]["compression_ratio"] == pytest.approx(rec["compression_ratio"])
    logged = set().union(*wb["history"])
    assert {"pretrain/val_acc", "compress/val_acc", "retrain/val_acc", "retrain/train_loss_epoch"} <= logged
    assert wb["config"]["method"]["name"] == "svd"


def test_same_config_same_record(tmp_path):
    a = run_in_process(tmp_path / "x", "logger=none", "pipeline.pretrain_cache=false")
    b = run_in_process(tmp_path / "y", "logger=none", "pipeline.pretrain_cache=false")
    keys = ["acc_pretrain", "acc_compressed", "acc_retrained", "norm_loss", "params_compressed"]
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


def test_nan_loss_ends_run_as_diverged_with_stage_and_step(tmp_path):
    from tnbench.errors import Diverged

    with pytest.raises(Diverged):
        run_in_process(tmp_path, "logger=none", "pipeline.pretrain_optimizer.lr=1e8", "pipeline.pretrain_optimizer.momentum=0")
    rec = read_record(tmp_path / "run")
    assert rec["status"] == "diverged"
    assert rec["diverged_stage"] == "pretrain" and rec["diverged_step"] >= 0
    assert "diverged in pretrain at step" in rec["error"]


def test_num_threads_applies_to_the_job_and_is_restored(tmp_path):

    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    rec = run_in_process(tmp_path, "method=none", f"trainer.num_threads={want}", "logger=none")
    assert rec["status"] == "ok" and rec["torch_threads"] == want
    assert torch.get_num_threads() == before


class FlatMagnitude(Method):
    """A plugin-style method that reads each weight through `.view(-1)`, as torch.nn.utils.prune
    does (which fails on a channels-last weight), and zeroes its smaller half."""

    layouts: list[bool] = []  # per selected 4-d weight: contiguous when compress saw it

    @torch.no_grad()
    def compress(self, model: nn.Module) -> list[LayerReport]:
        reports = []
        for name, layer in select_layers(model, self.cfg.layers):
            if layer.weight.dim() == 4:
                FlatMagnitude.layouts.append(layer.weight.is_contiguous())
            flat = layer.weight.view(-1)
            flat[flat.abs() < flat.abs().median()] = 0.0
            reports.append(LayerReport(name, kind_of(layer), list(layer.weight.shape), [], flat.numel(),
                                       int((flat != 0).sum())))
        return reports


def test_a_method_compresses_the_model_in_the_default_memory_format(tmp_path):
    from tests.conftest import QUICK, compose
    from tnbench.methods.base import is_channels_last
    from tnbench.pipeline.stages import execute

    FlatMagnitude.layouts = []
    cfg = compose([*QUICK, f"paths.results_dir={tmp_path}", "logger=none", "method=none", "model=lenet5",
                   "trainer.channels_last=true", f"+method._target_={__name__}.FlatMagnitude",
                   "method.name=flat_magnitude", "method.layers=all_but_first_last", "pipeline.retrain_epochs=0"])
    run = execute(cfg, tmp_path / "run")
    assert run.record["status"] == "ok"
    assert FlatMagnitude.layouts == [True]  # LeNet-5's second conv, handed over contiguous
    conv = run.model.features[3].weight
    assert is_channels_last(run.model) and conv.is_contiguous(memory_format=torch.channels_last)  # trained as before
    layers = dict(run.model.named_modules())
    assert [r["weight_params_compressed"] for r in run.record["layers"]] == [
        int((layers[r["name"]].weight != 0).sum()) for r in run.record["layers"]]
    assert [r["name"] for r in run.record["layers"]] == ["features.3", "classifier.0", "classifier.2"]
