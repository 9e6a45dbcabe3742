"""Structured configs: the schema every YAML in conf/ is validated against.

Hydra merges each group's YAML onto the dataclass registered here, so a wrong type or an
unknown key fails at start-up. Value ranges (rank >= 1, epochs >= 0, ...) are checked by
`validate`, which runs before any work so nothing is half-done when input is bad.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """Bad user input; its message is one line naming the field and what is allowed."""


@dataclass
class DatasetConfig:
    name: str = MISSING
    data_dir: str = "${paths.data_dir}"
    download: bool = True
    train_subset: Optional[int] = None
    test_subset: Optional[int] = None
    augment: Optional[bool] = None  # None: the dataset's default (crop+flip for CIFAR)
    batch_size: int = 128
    eval_batch_size: int = 1024
    # synthetic only
    channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    train_size: int = 2048
    test_size: int = 512


@dataclass
class ModelConfig:
    name: str = MISSING
    options: dict[str, Any] = field(default_factory=dict)


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
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    method: MethodConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0
    experiment_name: Optional[str] = None
    run_id: str = ""  # set in conf/config.yaml: <dataset>-<model>-<method>-s<seed>-<hash>


def register_configs() -> None:
    """Put every schema into Hydra's ConfigStore; each YAML names its schema in `defaults`
    (`- /schema/dataset@_here_: base`).

    A method's schema is its class's `config_class`, so a new method registers itself."""
    from tnbench.methods import METHODS
    from tnbench.resume import register_resolvers

    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    # Schemas live in their own groups (schema/<axis>), so `dataset=` etc. list only real options.
    cs.store(group="schema/dataset", name="base", node=DatasetConfig)
    cs.store(group="schema/model", name="base", node=ModelConfig)
    cs.store(group="schema/trainer", name="base", node=TrainerConfig)
    cs.store(group="schema/logger", name="base", node=LoggerConfig)
    for name in METHODS.names():
        cs.store(group="schema/method", name=name, node=METHODS.get(name).config_class)
    register_launcher_defaults(cs)


def register_launcher_defaults(cs: ConfigStore) -> None:
    """`hydra/launcher=joblib` runs 2 jobs at a time: the plugin's own default (n_jobs=-1) starts
    one job per core, each with a multi-threaded torch. The plugin's entry is replaced in the
    ConfigStore after Hydra's one-time plugin scan (which re-runs each plugin's own `store`); a
    YAML of the same name in conf/ would trigger Hydra's deprecated automatic schema matching."""
    from hydra.core.plugins import Plugins

    try:
        from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
    except ImportError:  # the plugin is optional
        return
    Plugins.instance()  # the scan, now rather than later
    cs.store(group="hydra/launcher", name="joblib", node=JobLibLauncherConf(n_jobs=2), provider="tnbench")


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
