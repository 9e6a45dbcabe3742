"""Lightning plumbing built from config: one Trainer per stage, one logger per run.

W&B: each stage is plotted against its own axis (`<stage>/epoch`, `<stage>/step`, logged by
the Classifier and declared with `wandb.define_metric`), since every stage has a Trainer of
its own whose epoch and global step start again from 0.
"""
from __future__ import annotations

import logging
import os
import re
import time
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from tnbench.pipeline.progress import TrainingProgress

log = logging.getLogger(__name__)

# Accuracy comes from torchmetrics, which syncs its own state over DDP ranks; the per-epoch
# training loss is a per-rank indicator, not worth an all-reduce every step.
warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")

# One Trainer per stage would repeat Lightning's start-up notices (accelerator, tips) each time.
for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).setLevel(logging.WARNING)


STAGES = ("pretrain", "twin", "compress", "retrain")  # twin: a from-scratch run's dense twin
LOG_EVERY_N_STEPS = 50


class LogInterval(L.Callback):
    """Per-step curves every 50 steps, or once an epoch when an epoch is shorter (a small
    subset): Lightning warns, rightly, when the interval is longer than an epoch."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches = len(trainer.datamodule.train_dataloader()) if trainer.datamodule is not None else LOG_EVERY_N_STEPS
        limit = trainer.limit_train_batches
        batches = min(batches, int(limit)) if isinstance(limit, int) else int(batches * (limit or 1.0))
        trainer.log_every_n_steps = max(1, min(LOG_EVERY_N_STEPS, batches))


def make_trainer(cfg: DictConfig, epochs: int, logger: Any, run_dir: Path,
                 callbacks: list[Any] | None = None) -> L.Trainer:
    t = cfg.trainer
    cbs = [*(callbacks or []), LogInterval()]
    if t.progress:
        cbs.append(TrainingProgress())
    kwargs: dict[str, Any] = {}
    if t.limit_train_batches is not None:
        kwargs["limit_train_batches"] = t.limit_train_batches
    if t.limit_val_batches is not None:
        kwargs["limit_val_batches"] = t.limit_val_batches
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, num_nodes=t.num_nodes,
        precision=t.precision, max_epochs=epochs, logger=logger if logger is not None else False,
        callbacks=cbs, enable_progress_bar=t.progress, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=str(run_dir), deterministic=t.deterministic,
        log_every_n_steps=LOG_EVERY_N_STEPS, **kwargs,
    )


def run_name(cfg: DictConfig) -> str:
    return f"{cfg.method.name}-{cfg.model.name}-{cfg.dataset.name}-s{cfg.seed}"


def make_logger(cfg: DictConfig, run_dir: Path, record: dict[str, Any], resume_id: str | None = None) -> Any:
    """W&B (offline unless asked otherwise), CSV, or none. Group and tags let a dashboard
    compare methods and papers: group = experiment (or model-dataset), tags = method, model,
    dataset, paper. A run resumed after a kill logs into the same W&B run (`resume_id`)."""
    lg = cfg.logger
    if lg.name == "none":
        return None
    if lg.name == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
    record["wandb_dir"] = str(run_dir / "wandb")
    experiment = None
    if rank_zero_only.rank == 0:  # the W&B run lives on rank 0 only
        experiment = start_wandb_run(cfg, run_dir, resume_id)
        record["wandb_run_id"] = experiment.id
    return StageWandbLogger(project=cfg.logger.project, save_dir=str(run_dir), experiment=experiment)


def start_wandb_run(cfg: DictConfig, run_dir: Path, resume_id: str | None = None) -> Any:
    """The job's W&B run, started here rather than by Lightning's WandbLogger, which passes
    `anonymous=None` (W&B then warns that the setting has no effect) and plots every metric
    against its `trainer/global_step`. Quiet unless WANDB_QUIET / WANDB_SILENT say otherwise:
    three lines when it starts, no summary block at the end (the console summary has it)."""
    import wandb

    lg = cfg.logger
    tags = [cfg.method.name, cfg.model.name, cfg.dataset.name, *lg.tags]
    if cfg.method.get("paper"):
        tags.append(cfg.method.paper)
    quiet = {} if {"WANDB_QUIET", "WANDB_SILENT"} & set(os.environ) else {"quiet": True}
    kwargs = dict(
        # under a sweep agent the sweep's project is used (W&B warns about any other)
        project=None if os.environ.get("WANDB_SWEEP_ID") else lg.project,
        entity=lg.entity, name=run_name(cfg), tags=tags, dir=str(run_dir),
        group=lg.group or cfg.get("experiment_name") or f"{cfg.model.name}-{cfg.dataset.name}",
        mode=os.environ.get("WANDB_MODE", lg.mode), job_type="pipeline", settings=wandb.Settings(**quiet),
        config=OmegaConf.to_container(cfg, resolve=True),
        # a resumed run continues the same W&B run
        **({"id": resume_id, "resume": "allow"} if resume_id else {}),
    )
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    # After a kill, the dead attempt's W&B service can hold the run id for a few seconds
    # ("run ID ... is in use"): wait for it.
    for attempt in range(60):
        try:
            run = wandb.init(**kwargs)
            break
        except Exception as e:
            if "in use" not in str(e) or attempt == 59:
                raise
            time.sleep(1.0)
    define_stage_axes(run)
    return run


def define_stage_axes(run: Any) -> None:
    """Plot each stage's metrics against its own epoch (per-step metrics against its step), so
    every per-epoch curve runs left to right once."""
    for stage in STAGES:
        run.define_metric(f"{stage}/epoch")
        run.define_metric(f"{stage}/step")
        run.define_metric(f"{stage}/*", step_metric=f"{stage}/epoch", step_sync=True)
        run.define_metric(f"{stage}/train_loss_step", step_metric=f"{stage}/step", step_sync=True)


class StageWandbLogger(WandbLogger):
    """Lightning's W&B logger without the Trainer's own axes (`epoch`, `trainer/global_step`),
    which restart with every stage: rows carry their stage's axis instead (the Classifier)."""

    @rank_zero_only
    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        row = {k: v for k, v in metrics.items() if k != "epoch"}
        if row:
            self.experiment.log(row)

    @cached_property
    def earlier_epochs(self) -> dict[str, set[float]]:
        """Per stage, the epochs whose rows earlier attempts of this W&B run wrote: read from
        their local run files (`wandb/offline-run-*-<id>` or `run-*-<id>` beside this attempt's;
        W&B writes every row there before it uploads it, so online runs are covered too). A run
        killed with SIGKILL leaves little more than the file's header; one stopped by Ctrl-C or
        an error leaves its rows, which a resumed attempt must not log a second time. Empty for a
        first attempt and on DDP's other ranks; a file that cannot be read counts as empty."""
        from tnbench.reporting.wandb_offline import read_run

        run = self.experiment
        folder = getattr(run, "dir", None)  # the attempt's `files` folder (not on DDP's other ranks)
        if not isinstance(folder, str) or not isinstance(getattr(run, "id", None), str):
            return {}
        here = Path(folder).parent
        held: dict[str, set[float]] = {}
        for earlier in here.parent.glob(f"*run-*-{run.id}"):
            if earlier == here:
                continue
            try:
                history = read_run(earlier)["history"]
            except Exception:  # noqa: BLE001 - a file cut short by a kill: nothing known from it
                continue
            for row in history:
                for key, value in row.items():
                    name, _, axis = key.rpartition("/")
                    if axis == "epoch" and f"{name}/step" not in row:
                        held.setdefault(name, set()).add(float(value))
        return held


def logged_epochs(logger: Any, stage: str) -> set[float]:
    """The epochs of `stage` an earlier attempt of this W&B run logged (`earlier_epochs`); empty
    without a W&B logger."""
    return logger.earlier_epochs.get(stage, set()) if isinstance(logger, StageWandbLogger) else set()


def history_rows(accuracies: list[float] | None) -> list[dict[str, Any]]:
    """Per-epoch rows (`log_curve`) from a stage's test accuracies alone: a record's history, or
    a cache entry written before the whole curve was kept."""
    return [{"epoch": i + 1, "val_acc": acc} for i, acc in enumerate(accuracies or [])]


def log_curve(logger: Any, stage: str, rows: list[dict[str, Any]]) -> None:
    """Log per-epoch rows (`{"epoch": n, metric: value, ...}`) of a stage that did not run (or
    not wholly) in this job: the pretrain curve on a pretrain-cache hit, the epochs finished
    before a resume, a finished record's curves. Missing values (None) are left out, and so are
    epochs the W&B run already holds from an earlier attempt (`logged_epochs`)."""
    if logger is None:
        return
    held = logged_epochs(logger, stage)
    for row in rows:
        row = {f"{stage}/{k}": v for k, v in row.items() if v is not None}
        if set(row) - {f"{stage}/epoch"} and row.get(f"{stage}/epoch") not in held:
            logger.log_metrics(row)


def log_finished_record(cfg: DictConfig, run_dir: Path, record: dict[str, Any]) -> None:
    """A W&B run for a job whose record says it is done: a W&B sweep agent starts a run for every
    job and shows one that ends without it as crashed. The run gets the record's test-accuracy
    curves and its summary, like the run that made the record."""
    if cfg.logger.name != "wandb":
        return
    try:
        logger = StageWandbLogger(project=cfg.logger.project, save_dir=str(run_dir),
                                  experiment=start_wandb_run(cfg, run_dir))
    except Exception as e:  # the job is done all the same
        log.warning("could not start a W&B run for the finished record: %s", e)
        return
    log_curve(logger, "pretrain", history_rows(record.get("pretrain_history")))
    if record.get("acc_compressed") is not None:
        log_curve(logger, "compress", [{"epoch": 0, "val_acc": record["acc_compressed"]}])
    log_curve(logger, "retrain", history_rows(record.get("retrain_history")))
    finish_logger(logger, {**record, "status": record.get("status", "ok")})


def log_model_artifact(experiment: Any, rec: dict[str, Any]) -> None:
    """The saved compressed model (weights and architecture spec) as a W&B model artifact."""
    weights = rec.get("model_file")
    if not weights or rec.get("status") != "ok":
        return
    import wandb

    from tnbench.artifacts.store import SPEC_FILE

    name = "model-" + re.sub(r"[^A-Za-z0-9_.-]", "_", Path(weights).parent.name)
    artifact = wandb.Artifact(name, type="model", metadata={k: rec.get(k) for k in (
        "method", "model", "dataset", "compression_ratio", "acc_retrained", "flops_compressed")})
    artifact.add_file(str(weights))
    artifact.add_file(str(Path(weights).parent / SPEC_FILE))
    experiment.log_artifact(artifact)


def finish_logger(logger: Any, rec: dict[str, Any]) -> None:
    """Put the record's run-view fields (tnbench.reporting.schema) in the W&B summary and close
    the run, whatever happened."""
    if logger is None:
        return
    try:
        from tnbench.reporting.schema import RUN, view

        if isinstance(logger, WandbLogger):
            exp = logger.experiment
            summary = {f.name: f.value(rec) for f in view(RUN)}
            exp.summary.update({"status": rec["status"], **{k: v for k, v in summary.items() if v is not None}})
            log_model_artifact(exp, rec)
            exp.finish(exit_code=0 if rec["status"] == "ok" else 1)
        else:
            logger.finalize(rec["status"])
    except Exception as e:  # never let logging hide the run's own outcome
        log.warning("closing the logger failed: %s", e)
