"""Structured configs: the schema of the composed config, and the checks on its values.

Hydra validates the sections every run has (trainer, logger, pipeline, paths) against the
dataclasses here as it composes. `dataset`, `model` and `method` are open at that point: each
registry entry brings its own schema (a dataclass extending the base class here, e.g.
`SVDConfig(MethodConfig)`), applied by `typed` in the up-front check, so composing a config
(`--help`, `--cfg job`) never imports torch or a method. Value ranges the type system cannot
express are checked by `validate`, before any work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict
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
    # training examples held out (seeded) as a validation split, for `pipeline.select`; the
    # test split stays the test split. null/0: none (the papers mostly report the last epoch)
    val_split: Optional[int] = None
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
    # as in Lightning: an int is a number of batches, a float in (0, 1] a fraction of them
    limit_train_batches: Any = None
    limit_val_batches: Any = None
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
    # which retrain epoch's model the run ends with: `last`, or `best_val_loss` (the epoch of
    # lowest loss on the dataset's validation split, `dataset.val_split`; DLRT's protocol)
    select: str = "last"
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


def ranged(default: Any, **bounds: Any) -> Any:
    """A dataclass field whose value `check_ranges` checks: `ranged(1, ge=1)`, `ranged(0.5, gt=0, le=1)`,
    `ranged(None, ge=1, null=True)` (the bounds of `check_number`)."""
    return field(default=default, metadata={"range": bounds})


def check_ranges(node: Any, schema: type, group: str) -> None:
    """Every `ranged` field of `schema` in `node` (a typed config section) within its bounds."""
    for f in fields(schema) if is_dataclass(schema) else ():
        bounds = f.metadata.get("range")
        if bounds is not None:
            check_number(f"{group}.{f.name}", node[f.name], **bounds)


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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range_text(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    low, high = (ge, "[") if ge is not None else (gt, "("), (le, "]") if le is not None else (lt, ")")
    if low[0] is not None and high[0] is not None:
        return f"in {low[1]}{low[0]}, {high[0]}{high[1]}"
    if low[0] is not None:
        return f"{'>=' if ge is not None else '>'} {low[0]}"
    return f"{'<=' if le is not None else '<'} {high[0]}"


def check_number(key: str, value: Any, *, ge: float | None = None, gt: float | None = None,
                 le: float | None = None, lt: float | None = None, null: bool = False) -> None:
    """A finite number in the given range, or None with `null`; otherwise a ConfigError naming
    `key` and the allowed values. (Integer-ness is the schema's business.)"""
    if value is None and null:
        return
    ok = _is_number(value) and math.isfinite(value)
    ok = ok and (ge is None or value >= ge) and (gt is None or value > gt)
    ok = ok and (le is None or value <= le) and (lt is None or value < lt)
    if not ok:
        raise ConfigError(f"{key} must be {_range_text(ge, gt, le, lt)}{' or null' if null else ''}, got {value!r}")


def check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    _check(value in allowed, f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def check_path(key: str, value: Any, why: str = "") -> None:
    _check(isinstance(value, str) and value.strip() != "",
           f"{key} must name a directory, got {value!r}{why}")


def check_batches(key: str, value: Any) -> None:
    """Lightning's `limit_*_batches`: null (all), an int >= 1 (batches) or a float in (0, 1]
    (a fraction); 0 would train or test on nothing."""
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1) or \
        (isinstance(value, float) and 0.0 < value <= 1.0)
    _check(ok, f"{key} must be null (all), an integer >= 1 (batches) or a float in (0, 1] (a fraction), got {value!r}")


MAX_SEED = 2**32 - 2  # numpy's seeds end at 2**32 - 1, and retraining is seeded with seed + 1
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant", "step")
LOGGERS = ("wandb", "csv", "none")
SELECTIONS = ("last", "best_val_loss")
LOGGER_MODES = ("offline", "online", "disabled")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")


def validate(cfg: Any) -> None:
    """Range checks the type system cannot express, for every option of the root schema and the
    options every dataset and method shares; raise ConfigError on the first problem. A
    dataset's or method's own options are checked by its entry (the dataset's schema, the
    method's `validate`); settings that depend on the machine by `tnbench.pipeline.checks`."""
    _validate_pipeline(cfg.pipeline)
    _validate_dataset(cfg.dataset)
    _check(cfg.pipeline.select != "best_val_loss" or bool(cfg.dataset.get("val_split")),
           "pipeline.select=best_val_loss needs a validation split: set dataset.val_split (e.g. 10000)")
    _validate_method(cfg.method)
    _validate_trainer(cfg.trainer)
    check_choice("logger.name", cfg.logger.name, LOGGERS)
    check_choice("logger.mode", cfg.logger.mode, LOGGER_MODES)
    for key in ("results_dir", "data_dir", "cache_dir"):
        check_path(f"paths.{key}", cfg.paths[key])
    check_number("seed", cfg.seed, ge=0, le=MAX_SEED)


def _validate_pipeline(p: Any) -> None:
    _check(p.pretrain_epochs >= 0, f"pipeline.pretrain_epochs must be >= 0, got {p.pretrain_epochs}")
    _check(p.retrain_epochs >= 0, f"pipeline.retrain_epochs must be >= 0, got {p.retrain_epochs}")
    check_number("pipeline.recovery_tolerance", p.recovery_tolerance, ge=0)
    check_choice("pipeline.select", p.select, SELECTIONS)
    for key in ("pretrain_optimizer", "retrain_optimizer"):
        o, name = p[key], f"pipeline.{key}"
        check_choice(f"{name}.name", o.name, OPTIMIZERS)
        check_number(f"{name}.lr", o.lr, gt=0)
        check_number(f"{name}.momentum", o.momentum, ge=0, le=1)
        check_number(f"{name}.weight_decay", o.weight_decay, ge=0)
        check_choice(f"{name}.schedule", o.schedule, SCHEDULES)
        check_number(f"{name}.step_size", o.step_size, ge=1)
        check_number(f"{name}.gamma", o.gamma, gt=0, le=1)
    _check(p.init_checkpoint is None or str(p.init_checkpoint).strip() != "",
           "pipeline.init_checkpoint must be null or the path of a checkpoint, got ''")


def _validate_dataset(d: Any) -> None:
    check_path("dataset.data_dir", d.data_dir, " (it defaults to paths.data_dir; an empty one would unpack data "
                                               "into the current directory)")
    _check(d.batch_size >= 1, f"dataset.batch_size must be >= 1, got {d.batch_size}")
    check_number("dataset.eval_batch_size", d.eval_batch_size, ge=1)
    for key in ("train_subset", "test_subset", "val_split"):
        v = d[key]
        _check(v is None or v >= 0, f"dataset.{key} must be >= 0 or null, got {v}")


def _validate_method(m: Any) -> None:
    rank = m.get("rank")
    _check(rank is None or rank >= 1, f"method.rank must be >= 1, got {rank}")
    layers = m.get("layers")
    _check(not (isinstance(layers, (list, tuple, ListConfig)) and len(layers) == 0) or m.name == "none",
           "method.layers must be all, all_but_first_last or a non-empty list of layer names; got []")
    for key in m:  # the random seeds a method draws its initialization from
        if key == "seed" or str(key).endswith("_seed"):
            check_number(f"method.{key}", m[key], ge=0, le=MAX_SEED + 1)


def _validate_trainer(t: Any) -> None:
    _check(t.num_threads is None or t.num_threads >= 1,
           f"trainer.num_threads must be null or >= 1, got {t.num_threads}")
    _check(t.precision in PRECISIONS,
           f"trainer.precision must be one of 32-true, bf16-mixed, 16-mixed, bf16-true, 64-true; got {t.precision!r}")
    check_number("trainer.num_nodes", t.num_nodes, ge=1)
    check_batches("trainer.limit_train_batches", t.limit_train_batches)
    check_batches("trainer.limit_val_batches", t.limit_val_batches)
    check_number("trainer.gradient_clip_val", t.gradient_clip_val, ge=0, null=True)
    devices = t.devices
    ok = devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and (devices >= 1 or devices == -1))
    ok = ok or (isinstance(devices, (list, ListConfig)) and len(devices) > 0
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices))
    _check(ok, f"trainer.devices must be an integer >= 1, -1 (all), auto or a non-empty list of device indices; "
               f"got {devices!r}")
