"""Structured configs: the schema of the composed config, and the checks on its values.

Hydra validates the sections every run has (trainer, logger, pipeline, paths) against the
dataclasses here as it composes. `dataset`, `model` and `method` are open at that point: each
registry entry brings its own schema (a dataclass extending the base class here, e.g.
`SVDConfig(MethodConfig)`), applied by `typed` in the up-front check, so composing a config
(`--help`, `--cfg job`) never imports torch or a method. Value ranges the type system cannot
express are checked by `validate`, before any work.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from tnbench.errors import ConfigError


@dataclass
class DatasetConfig:
    """Options every dataset has; a dataset with options of its own extends this class."""

    name: str = MISSING
    data_dir: str = "${paths.data_dir}"
    download: bool = True
    train_subset: Optional[int] = None
    test_subset: Optional[int] = None
    augment: Optional[bool] = None  # None: the dataset's default (crop+flip for CIFAR)
    batch_size: int = 128
    eval_batch_size: int = 1024


@dataclass
class ModelConfig:
    name: str = MISSING
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodConfig:
    """Fields shared by every compression method; methods extend it."""

    name: str = MISSING
    paper: Optional[str] = None
    # which layers to compress: all | all_but_first_last | a list of module names
    layers: Any = "all_but_first_last"
    # the target rank, for methods that have one; shared so that a sweep such as
    # `-m method=none,svd method.rank=4,8` composes for every method (none ignores it)
    rank: Optional[int] = None


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "cosine"  # cosine | constant | step
    step_size: int = 30
    gamma: float = 0.1


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    channels_last: bool = True
    deterministic: bool = False
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None
    progress: bool = True
    gradient_clip_val: Optional[float] = None
    # torch intra-op threads for this job; null: torch's default (one per core). With parallel
    # jobs on one machine (hydra/launcher=joblib), cores / jobs avoids oversubscription.
    num_threads: Optional[int] = None


@dataclass
class LoggerConfig:
    name: str = "wandb"  # wandb | csv | none
    project: str = "tnbench"
    entity: Optional[str] = None
    mode: str = "offline"  # offline | online | disabled; WANDB_MODE in the environment wins
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    pretrain_epochs: int = 3
    retrain_epochs: int = 2
    recovery_tolerance: float = 0.5  # percentage points below the pretrained accuracy
    pretrain_cache: bool = True
    init_checkpoint: Optional[str] = None  # a pretrained checkpoint to start from instead
    rerun: bool = False  # run again even if this run's record says ok (default: skip it)
    keep_checkpoints: bool = False  # keep the per-epoch training checkpoints of a finished run
    pretrain_optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    retrain_optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(lr=0.01, schedule="cosine")
    )


@dataclass
class PathsConfig:
    results_dir: str = "results"
    data_dir: str = "data"
    cache_dir: str = "${paths.results_dir}/cache"


@dataclass
class Config:
    dataset: Any = MISSING  # typed by the dataset's own schema (`typed`)
    model: Any = MISSING
    method: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    experiment_name: Optional[str] = None
    run_id: str = ""  # set in conf/config.yaml: <dataset>-<model>-<method>-s<seed>-<hash>


def option_names(schema: type) -> list[str]:
    return [f.name for f in fields(schema)] if is_dataclass(schema) else []


def typed(node: Any, schema: type, group: str) -> DictConfig:
    """`node` (a dataset/model/method section) checked against its entry's dataclass: unknown
    keys and wrong types become one-line ConfigErrors; missing keys take the defaults."""
    name = node.get("name") if isinstance(node, DictConfig) else None
    # `_target_` names the entry (tnbench.registry), it is not one of its options
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if target is not None:
        node = OmegaConf.masked_copy(node, [k for k in node if k != "_target_"])
    try:
        out = OmegaConf.merge(OmegaConf.structured(schema), node)
        if target is not None:
            with open_dict(out):
                out["_target_"] = target
    except ConfigKeyError as e:
        raise ConfigError(f"{group}.{e.key} is not an option of {group}={name}; allowed: "
                          f"{', '.join(option_names(schema))}") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None) or "?"
        msg = (getattr(e, "msg", None) or str(e)).splitlines()[0]
        raise ConfigError(f"{group}.{key}: {msg}") from None
    assert isinstance(out, DictConfig)
    return out


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: Any) -> None:
    """Range checks the type system cannot express; raise ConfigError on the first problem."""
    p = cfg.pipeline
    _check(p.pretrain_epochs >= 0, f"pipeline.pretrain_epochs must be >= 0, got {p.pretrain_epochs}")
    _check(p.retrain_epochs >= 0, f"pipeline.retrain_epochs must be >= 0, got {p.retrain_epochs}")
    _check(p.recovery_tolerance >= 0, f"pipeline.recovery_tolerance must be >= 0, got {p.recovery_tolerance}")
    for key in ("pretrain_optimizer", "retrain_optimizer"):
        o = p[key]
        _check(o.name in ("sgd", "adam", "adamw"), f"pipeline.{key}.name must be one of sgd, adam, adamw; got {o.name!r}")
        _check(o.lr > 0, f"pipeline.{key}.lr must be > 0, got {o.lr}")
        _check(o.schedule in ("cosine", "constant", "step"), f"pipeline.{key}.schedule must be one of cosine, constant, step; got {o.schedule!r}")
    d = cfg.dataset
    _check(d.batch_size >= 1, f"dataset.batch_size must be >= 1, got {d.batch_size}")
    for key in ("train_subset", "test_subset"):
        v = d[key]
        _check(v is None or v >= 0, f"dataset.{key} must be >= 0 or null, got {v}")
    _check(cfg.logger.name in ("wandb", "csv", "none"), f"logger.name must be one of wandb, csv, none; got {cfg.logger.name!r}")
    _check(cfg.logger.mode in ("offline", "online", "disabled"), f"logger.mode must be one of offline, online, disabled; got {cfg.logger.mode!r}")
    _check(cfg.trainer.num_threads is None or cfg.trainer.num_threads >= 1,
           f"trainer.num_threads must be null or >= 1, got {cfg.trainer.num_threads}")
    _check(cfg.trainer.precision in ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true"),
           f"trainer.precision must be one of 32-true, bf16-mixed, 16-mixed, bf16-true, 64-true; got {cfg.trainer.precision!r}")
