"""Everything that can be known wrong about a job before any work is done.

`check` runs in the up-front check of every job of a command (tnbench.pipeline.jobs) and again
at the start of each job (a job may run on another machine, e.g. under SLURM). It checks, in
order: names, types and ranges of every option (tnbench.config), the method's own settings
(`Method.validate`), the settings against the model's real layers (the model is built on the
`meta` device: shapes without values, so a ResNet-50 costs milliseconds and no memory;
`Method.check_model`; whether a budget is within reach, `tnbench.pipeline.budget.check_budget`),
and, where the job runs on this machine, the machine: the accelerator
and device count Lightning would pick (the job's own `Trainer` is built), thread counts,
files named by the config.

A sweep repeats most of this with the same sections, so `Checker` remembers the outcome per
distinct section: a 1,000-job grid over seeds and ranks builds each model once.
"""
from __future__ import annotations

import json
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from tnbench.config import ModelConfig, check_ranges, typed, validate
from tnbench.errors import ConfigError


def resolve_entries(cfg: DictConfig) -> DictConfig:
    """Type the `dataset`, `model` and `method` sections by their registry entries' own schemas
    (unknown keys and wrong types are ConfigErrors; omitted options take their defaults; ranged
    fields are checked), in place, and return `cfg`."""
    from tnbench.data import config_class
    from tnbench.methods import METHODS
    from tnbench.models import MODELS

    MODELS.resolve(cfg.model)  # an unknown name is a one-line error here
    dataset_schema, method_schema = config_class(cfg.dataset), METHODS.resolve(cfg.method).config_class
    with open_dict(cfg):
        cfg.dataset = typed(cfg.dataset, dataset_schema, "dataset")
        cfg.model = typed(cfg.model, ModelConfig, "model")
        cfg.method = typed(cfg.method, method_schema, "method")
    check_ranges(cfg.dataset, dataset_schema, "dataset")
    check_ranges(cfg.method, method_schema, "method")
    return cfg


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _key(*sections: Any) -> str:
    return json.dumps([OmegaConf.to_container(s, resolve=True) if isinstance(s, DictConfig) else s
                       for s in sections], sort_keys=True, default=str)


class Checker:
    """`check` for many jobs, each distinct model, method and trainer set-up checked once.
    `machine=False` leaves out what depends on the machine (jobs that run elsewhere)."""

    def __init__(self, machine: bool = True) -> None:
        self.machine = machine
        self._done: set[str] = set()
        self._typed: dict[str, tuple[DictConfig, DictConfig, DictConfig]] = {}

    def _once(self, key: str) -> bool:
        """True the first time `key` is seen."""
        if key in self._done:
            return False
        self._done.add(key)
        return True

    def check(self, cfg: DictConfig) -> DictConfig:
        """Raise the first problem of `cfg` as a ConfigError; return the typed config."""
        self.resolve_entries(cfg)
        validate(cfg)
        if self._once(_key("method", cfg.method)):
            from tnbench.methods import build_method

            build_method(cfg.method)
        self.check_data(cfg)
        self.check_model(cfg)
        if self.machine:
            self.check_machine(cfg)
        return cfg

    def resolve_entries(self, cfg: DictConfig) -> None:
        """`resolve_entries`, once per distinct dataset, model and method sections (the jobs of
        a sweep over seeds or training settings share them)."""
        key = _key(cfg.dataset, cfg.model, cfg.method)
        if key not in self._typed:
            resolve_entries(cfg)
            self._typed[key] = (cfg.dataset, cfg.model, cfg.method)
            return
        with open_dict(cfg):
            cfg.dataset, cfg.model, cfg.method = self._typed[key]

    def check_data(self, cfg: DictConfig) -> None:
        """A validation split must leave training examples (the count is known without loading)."""
        from tnbench.data import train_examples

        n, val = train_examples(cfg.dataset), cfg.dataset.get("val_split")
        if val and n is not None and val >= n:
            raise ConfigError(f"dataset.val_split must be in [1, {n - 1}] (training examples: {n}), got {val}")

    def check_model(self, cfg: DictConfig) -> None:
        """Build the model on the meta device and let the method check its settings against it."""
        from tnbench.data import geometry

        shape = geometry(cfg.dataset)
        if shape is None or not self._once(_key("model", cfg.model, shape, cfg.method, cfg.get("budget"))):
            return
        import torch

        from tnbench.methods import build_method
        from tnbench.models import build_model

        channels, size, classes = shape
        with torch.device("meta"):
            model = build_model(cfg.model.name, in_channels=channels, image_size=size, num_classes=classes,
                                **cfg.model.options)
        method = build_method(cfg.method)
        method.check_model(model)
        from tnbench.pipeline.budget import budget_kind, check_budget

        if budget_kind(cfg.get("budget")) is None:  # a budget sets the size itself
            method.check_saves(model)
        check_budget(cfg, model)

    def check_machine(self, cfg: DictConfig) -> None:
        """The accelerator, threads and files the job would use, on this machine."""
        t = cfg.trainer
        limit = cpus()
        for key, value in (("trainer.num_threads", t.num_threads), ("method.threads", cfg.method.get("threads"))):
            if value is not None and value > limit:
                raise ConfigError(f"{key} must be null or between 1 and {limit} (the CPUs this machine gives the "
                                  f"job), got {value}")
        init = cfg.pipeline.init_checkpoint
        if init and not os.path.isfile(init):
            raise ConfigError(f"pipeline.init_checkpoint={init} is not a file")
        if self._once(_key("trainer", t)):
            check_trainer(cfg)


def check_trainer(cfg: DictConfig) -> None:
    """Build the job's Lightning Trainer as a stage would: Lightning itself checks the
    accelerator, devices, strategy and precision against this machine. Its refusals (of
    several exception types) are about these settings alone, so they become ConfigErrors."""
    import tempfile

    t = cfg.trainer
    if t.accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={t.accelerator} but this machine has no GPU that torch can use; "
                              f"allowed here: cpu (trainer=cpu)")
        wanted, present = t.devices, torch.cuda.device_count()
        if isinstance(wanted, int) and wanted > present:
            raise ConfigError(f"trainer.devices={wanted} but this machine has {present} GPU(s); allowed: 1 to "
                              f"{present}, or -1 (all)")
    from tnbench.pipeline.trainer import make_trainer

    settings = ", ".join(f"trainer.{k}={t[k]}" for k in ("accelerator", "devices", "strategy", "precision", "num_nodes"))
    with tempfile.TemporaryDirectory() as scratch:
        try:
            make_trainer(cfg, epochs=1, logger=None, run_dir=scratch)
        except Exception as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"Lightning cannot run {settings} here: {why}") from None


def check(cfg: DictConfig) -> DictConfig:
    """Names, types and ranges of every option, each method's own settings, the settings
    against the model's layers and the machine; raises the first problem as a ConfigError.
    Returns the typed config (`resolve_entries`)."""
    return Checker(machine=True).check(cfg)
