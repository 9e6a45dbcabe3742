"""The pipeline end to end, in process: records, the pretrain cache, W&B offline files."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from conftest import QUICK, compose

from tnbench.errors import CheckpointError
from tnbench.pipeline.stages import run_pipeline
from tnbench.reporting.wandb_offline import read_run

REQUIRED = ["status", "dataset", "model", "method", "seed", "params_dense", "params_compressed",
            "compression_ratio", "compression_ratio_layers", "compression_rate", "acc_pretrain",
            "acc_compressed", "acc_retrained", "acc_retrained_best", "recovery_epochs", "norm_loss",
            "flops_dense", "flops_compressed", "ranks", "time_pretrain_s", "time_compress_s",
            "time_retrain_s", "pretrain_cache_hit", "config"]


def run(tmp_path: Path, *overrides: str, name: str = "run") -> dict:
    cfg = compose([*QUICK, f"paths.results_dir={tmp_path}", *overrides])
    run_pipeline(cfg, tmp_path / name)
    return json.loads((tmp_path / name / "record.json").read_text())


def test_svd_run_writes_complete_record_and_wandb_files(tmp_path):
    rec = run(tmp_path, "method=svd", "method.rank=4", "logger=wandb")
    assert rec["status"] == "ok", rec.get("error")
    missing = [k for k in REQUIRED if k not in rec]
    assert not missing
    assert (rec["dataset"], rec["model"], rec["method"]) == ("synthetic", "lenet5", "svd")
    assert rec["params_compressed"] < rec["params_dense"]
    assert rec["compression_ratio"] == pytest.approx(rec["params_dense"] / rec["params_compressed"])
    assert 0 < rec["compression_rate"] < 100
    assert rec["flops_compressed"] < rec["flops_dense"]
    assert set(rec["ranks"]) == {l["name"] for l in rec["layers"]}
    assert all(r == [4] for r in rec["ranks"].values())
    assert 0 < rec["norm_loss"]["mean"] < 1
    assert rec["acc_retrained_best"] >= rec["acc_retrained"]
    assert len(rec["retrain_history"]) == 1
    assert rec["config"]["method"]["rank"] == 4
    # the W&B offline run holds the same numbers, per stage, with group and tags for dashboards
    wb = read_run(next((tmp_path / "run" / "wandb").glob("offline-run-*")))
    assert wb["run"]["id"] == rec["wandb_run_id"]
    assert {"svd", "lenet5", "synthetic"} <= set(wb["run"]["tags"])
    assert wb["run"]["group"] == "lenet5-synthetic"
    assert wb["summary"]["acc_pretrain"] == pytest.approx(rec["acc_pretrain"])
    assert wb["summary"]["compression_ratio"] == pytest.approx(rec["compression_ratio"])
    logged = set().union(*wb["history"])
    assert {"pretrain/val_acc", "compress/val_acc", "retrain/val_acc", "retrain/train_loss_epoch"} <= logged
    assert wb["config"]["method"]["name"] == "svd"


def test_dense_baseline_recovers_trivially(tmp_path):
    rec = run(tmp_path, "method=none", "logger=none")
    assert rec["status"] == "ok"
    assert rec["recovery_epochs"] == 0
    assert rec["compression_ratio"] == 1.0
    assert rec["acc_compressed"] == pytest.approx(rec["acc_pretrain"])
    assert rec["layers"] == []


def test_pretrain_cache_is_reused_and_corrupt_entries_rebuilt(tmp_path):
    first = run(tmp_path, "method.rank=4", "logger=none", name="a")
    assert first["pretrain_cache_hit"] is False
    second = run(tmp_path, "method.rank=2", "logger=none", name="b")
    assert second["pretrain_cache_hit"] is True
    assert second["acc_pretrain"] == pytest.approx(first["acc_pretrain"])
    assert second["time_pretrain_s"] < first["time_pretrain_s"]
    ckpt = Path(first["pretrain_checkpoint"])
    assert ckpt == Path(second["pretrain_checkpoint"]) and ckpt.exists()
    # a changed pretrain setting is a different entry
    other = run(tmp_path, "method.rank=4", "logger=none", "seed=1", name="c")
    assert other["pretrain_cache_hit"] is False and other["pretrain_checkpoint"] != str(ckpt)
    # corrupt the entry: it is detected by checksum, rebuilt, never used
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    third = run(tmp_path, "method.rank=4", "logger=none", name="d")
    assert third["pretrain_cache_hit"] is False
    assert third["acc_pretrain"] == pytest.approx(first["acc_pretrain"])  # same seed, same model
    fourth = run(tmp_path, "method.rank=4", "logger=none", name="e")
    assert fourth["pretrain_cache_hit"] is True


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_init_checkpoint_never_unpickles_and_must_fit(tmp_path):
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(CheckpointError, match="cannot be loaded as weights"):
        run(tmp_path, "logger=none", f"pipeline.init_checkpoint={bad}")
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    assert rec["status"] == "failed" and "CheckpointError" in rec["error"]
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        run(tmp_path, "logger=none", f"pipeline.init_checkpoint={garbage}")
    other = tmp_path / "fc2.pt"
    from tnbench.models import build_model
    from tnbench.pipeline.cache import save_checkpoint

    save_checkpoint(other, build_model("fc2", in_channels=1, image_size=28, num_classes=10).state_dict(), {})
    with pytest.raises(CheckpointError, match="does not fit this model"):
        run(tmp_path, "logger=none", f"pipeline.init_checkpoint={other}")


def test_same_config_same_record(tmp_path):
    a = run(tmp_path / "x", "logger=none", "pipeline.pretrain_cache=false")
    b = run(tmp_path / "y", "logger=none", "pipeline.pretrain_cache=false")
    keys = ["acc_pretrain", "acc_compressed", "acc_retrained", "norm_loss", "params_compressed"]
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


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


def test_nan_loss_ends_run_as_diverged_with_stage_and_step(tmp_path):
    from tnbench.errors import Diverged

    with pytest.raises(Diverged):
        run(tmp_path, "logger=none", "pipeline.pretrain_optimizer.lr=1e8", "pipeline.pretrain_optimizer.momentum=0")
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    assert rec["status"] == "diverged"
    assert rec["diverged_stage"] == "pretrain" and rec["diverged_step"] >= 0
    assert "diverged in pretrain at step" in rec["error"]


def test_num_threads_applies_to_the_job_and_is_restored(tmp_path):

    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    rec = run(tmp_path, "method=none", f"trainer.num_threads={want}", "logger=none")
    assert rec["status"] == "ok" and rec["torch_threads"] == want
    assert torch.get_num_threads() == before


def test_gradient_clip_val_bounds_every_update(tmp_path):
    """trainer.gradient_clip_val clips the global gradient norm before each (manual) optimizer step."""
    from torch.nn.utils import parameters_to_vector

    from tnbench.data.module import InMemoryDataModule
    from tnbench.models import build_model
    from tnbench.pipeline.classifier import Classifier
    from tnbench.pipeline.stages import load_dataset
    from tnbench.pipeline.trainer import make_trainer

    opt = "pipeline.pretrain_optimizer"
    cfg = compose([*QUICK, "dataset.batch_size=1024", "trainer.limit_val_batches=0", f"{opt}.name=sgd",
                   f"{opt}.lr=1.0", f"{opt}.momentum=0", f"{opt}.weight_decay=0", f"{opt}.schedule=constant"])
    data = load_dataset(cfg)
    change = {}
    for clip in (None, 1e-3):
        torch.manual_seed(0)
        model = build_model("lenet5", in_channels=data.in_channels, image_size=data.image_size,
                            num_classes=data.num_classes)
        before = parameters_to_vector(model.parameters()).detach().clone()
        module = Classifier(model, data.num_classes, gradient_clip_val=clip).for_stage("pretrain", cfg.pipeline.pretrain_optimizer, 1)
        dm = InMemoryDataModule(data, batch_size=cfg.dataset.batch_size, eval_batch_size=cfg.dataset.eval_batch_size)
        make_trainer(cfg, epochs=1, logger=None, run_dir=tmp_path / str(clip)).fit(module, datamodule=dm)
        assert module.global_step == 1
        change[clip] = float((parameters_to_vector(model.parameters()).detach() - before).norm())
    assert change[None] > 0.01  # one SGD step at lr 1 with the raw gradient
    assert change[1e-3] == pytest.approx(1e-3, rel=1e-3)  # lr * clipped gradient norm


def test_learning_rate_follows_the_epoch_schedule(tmp_path):
    """Cosine over 3 epochs: each epoch trains at lr0 * (1 + cos(pi * e / 3)) / 2."""
    import math

    import lightning as L

    from tnbench.data.module import InMemoryDataModule
    from tnbench.models import build_model
    from tnbench.pipeline.classifier import Classifier
    from tnbench.pipeline.stages import load_dataset
    from tnbench.pipeline.trainer import make_trainer

    class Rates(L.Callback):
        def __init__(self):
            self.seen = {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.seen.setdefault(trainer.current_epoch, set()).add(trainer.optimizers[0].param_groups[0]["lr"])

    cfg = compose([*QUICK, "trainer.limit_val_batches=0", "pipeline.pretrain_optimizer.lr=0.1",
                   "pipeline.pretrain_optimizer.schedule=cosine"])
    data = load_dataset(cfg)
    model = build_model("lenet5", in_channels=data.in_channels, image_size=data.image_size, num_classes=data.num_classes)
    module = Classifier(model, data.num_classes).for_stage("pretrain", cfg.pipeline.pretrain_optimizer, 3)
    rates = Rates()
    make_trainer(cfg, epochs=3, logger=None, run_dir=tmp_path, callbacks=[rates]).fit(
        module, datamodule=InMemoryDataModule(data, batch_size=cfg.dataset.batch_size))
    assert sorted(rates.seen) == [0, 1, 2]
    for epoch, lrs in rates.seen.items():
        assert len(lrs) == 1 and lrs.pop() == pytest.approx(0.05 * (1 + math.cos(math.pi * epoch / 3)))
