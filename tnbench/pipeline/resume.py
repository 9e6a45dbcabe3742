"""Surviving kills: per-run state on disk and epoch checkpoints.

A run directory is named by a hash of everything that determines its result
(tnbench.pipeline.identity), so the same command finds the same directory again:
- its `record.json` says ok: the job is skipped (a re-launched multirun redoes only the rest);
- otherwise `state.json` holds the stages already finished and the W&B run id, and
  `checkpoints/<stage>-last.ckpt` the last finished epoch of the stage in progress, from
  which Lightning resumes (weights, optimizer, scheduler, epoch, test-accuracy history).
Shuffling, augmentation and dropout are seeded per epoch, so a resumed run computes the same
numbers as an uninterrupted one.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L

from tnbench.pipeline.failpoints import failpoint
from tnbench.pipeline.integrity import read_json, state_problem
from tnbench.pipeline.trainer import log_curve
from tnbench.reporting.records import write_json_atomic

STATE = "state.json"


@contextmanager
def run_lock(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """An exclusive lock on a run directory while a job works in it."""
    if not enabled:
        yield
        return
    import fcntl

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_state(run_dir: Path) -> dict[str, Any]:
    """The state an earlier attempt left; {} if none, or if it does not verify (it is set aside
    and the run starts over: tnbench.pipeline.integrity)."""
    state = read_json(Path(run_dir) / STATE, state_problem, "the run starts from its first stage")
    return state if state is not None else {}


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / STATE, state)


def checkpoint_path(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{stage}-last.ckpt"


class EpochCheckpoint(L.Callback):
    """Saves the full training state after every epoch, atomically (temp file + rename). A fit
    resumed from it logs its finished epochs' rows again (the Classifier's `curve`, restored
    with the checkpoint): the W&B rows of a killed attempt are mostly lost with it."""

    def __init__(self, path: Path, stage: str) -> None:
        self.path = Path(path)
        self.stage = stage

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is not None:
            log_curve(trainer.logger, self.stage, getattr(pl_module, "curve", []))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # the whole training state, to resume from
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier()
        failpoint(f"{self.stage}:epoch:{trainer.current_epoch + 1}")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        failpoint(f"{self.stage}:step:{trainer.global_step}")
