"""Lightning plumbing built from config: one Trainer per stage, one logger per run."""
from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# Accuracy comes from torchmetrics, which syncs its own state over DDP ranks; the per-epoch
# training loss is a per-rank indicator, not worth an all-reduce every step.
warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")

# One Trainer per stage would repeat Lightning's start-up notices (accelerator, tips) each time.
for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def make_trainer(cfg: DictConfig, epochs: int, logger: Any, run_dir: Path,
                 callbacks: list[Any] | None = None) -> L.Trainer:
    t = cfg.trainer
    cbs = list(callbacks or [])
    if t.progress:
        cbs.append(RichProgressBar(leave=True))
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
        log_every_n_steps=50, **kwargs,
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
    from lightning.pytorch.loggers import WandbLogger

    tags = [cfg.method.name, cfg.model.name, cfg.dataset.name, *lg.tags]
    if cfg.method.get("paper"):
        tags.append(cfg.method.paper)
    group = lg.group or cfg.get("experiment_name") or f"{cfg.model.name}-{cfg.dataset.name}"
    logger = WandbLogger(
        project=lg.project, entity=lg.entity, name=run_name(cfg), group=group, tags=tags,
        save_dir=str(run_dir), mode=os.environ.get("WANDB_MODE", lg.mode), job_type="pipeline",
        config=OmegaConf.to_container(cfg, resolve=True),
        # a resumed run continues the same W&B run
        **({"id": resume_id, "resume": "allow"} if resume_id else {}),
    )
    record["wandb_dir"] = str(run_dir / "wandb")
    if rank_zero_only.rank == 0:
        # Starts the W&B run now, on rank 0 only. After a kill, the dead attempt's W&B service
        # can hold the run id for a few seconds ("run ID ... is in use"): wait for it.
        for attempt in range(60):
            try:
                record["wandb_run_id"] = logger.experiment.id
                break
            except Exception as e:
                if "in use" not in str(e) or attempt == 59:
                    raise
                time.sleep(1.0)
    return logger


def finish_logger(logger: Any, rec: dict[str, Any]) -> None:
    """Put the record's run-view fields (tnbench.reporting.schema) in the W&B summary and close
    the run, whatever happened."""
    if logger is None:
        return
    try:
        from lightning.pytorch.loggers import WandbLogger

        from tnbench.reporting.schema import RUN, view

        if isinstance(logger, WandbLogger):
            exp = logger.experiment
            summary = {f.name: f.value(rec) for f in view(RUN)}
            exp.summary.update({"status": rec["status"], **{k: v for k, v in summary.items() if v is not None}})
            exp.finish(exit_code=0 if rec["status"] == "ok" else 1)
        else:
            logger.finalize(rec["status"])
    except Exception as e:  # never let logging hide the run's own outcome
        log.warning("closing the logger failed: %s", e)
