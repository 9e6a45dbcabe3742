"""Surviving kills: per-run state on disk, epoch checkpoints, and deterministic run keys.

A run directory is named by a hash of everything that determines its result (not paths,
loggers or progress bars), so the same command finds the same directory again:
- its `record.json` says ok: the job is skipped (a re-launched multirun redoes only the rest);
- otherwise `state.json` holds the stages already finished and the W&B run id, and
  `checkpoints/<stage>-last.ckpt` the last finished epoch of the stage in progress, from
  which Lightning resumes (weights, optimizer, scheduler, epoch, test-accuracy history).
Shuffling, augmentation and dropout are seeded per epoch, so a resumed run computes the same
numbers as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from tnbench.records import write_json_atomic

STATE = "state.json"
FAULT_ENV = "TNBENCH_FAULT"  # test hook: "<stage>:epoch:<n>", "<stage>:step:<n>" or "compress:done"


def run_key(*parts: Any) -> str:
    """Short stable hash of config sections (DictConfigs or plain values)."""
    plain = [OmegaConf.to_container(p, resolve=True) if isinstance(p, DictConfig) else p for p in parts]
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:10]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("tnbench_key"):
        OmegaConf.register_new_resolver("tnbench_key", run_key)


def load_state(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / STATE).read_text())
    except (OSError, ValueError):
        return {}


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / STATE, state)


def checkpoint_path(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{stage}-last.ckpt"


def maybe_fault(point: str) -> None:
    """Kill this process with SIGKILL at a named point: how the tests simulate a crash."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


class EpochCheckpoint(L.Callback):
    """Saves the full training state after every epoch, atomically (temp file + rename)."""

    def __init__(self, path: Path, stage: str) -> None:
        self.path = Path(path)
        self.stage = stage

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier()
        maybe_fault(f"{self.stage}:epoch:{trainer.current_epoch + 1}")

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        maybe_fault(f"{self.stage}:step:{trainer.global_step}")
