"""Structured configs: the schema of the composed config, and the checks on its values.

Hydra validates the sections every run has (trainer, logger, pipeline, paths) against the
dataclasses here as it composes. `dataset`, `model` and `method` are open at that point: each
registry entry brings its own schema (a dataclass extending the base class here, e.g.
`SVDConfig(MethodConfig)`), applied by `typed` in the up-front check, so composing a config
(`--help`, `--cfg job`) never imports torch or a method.

What a value may be is declared once, on its field: `ranged(8, ge=1)` (a number and its
bounds; `Optional` fields may also be null), `one_of("sgd", OPTIMIZERS)` (a choice), or
`checked(None, check_batches)` (a rule of its own). `check_fields` checks every declared field
of a section, nested sections included, before any work; tests/conformance/test_configs.py
fails for a numeric field of any schema that declares no range. Rules that tie several fields
together are each method's `validate`.
"""
from __future__ import annotations

import functools
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from tnbench.errors import ConfigError

MAX_SEED = 2**32 - 2  # numpy's seeds end at 2**32 - 1, and retraining is seeded with seed + 1
MAX_METHOD_SEED = 2**32 - 1  # a method's own seeds (its initializations) are used as given
MAX_THREADS = 1024  # beyond any node's cores; an absurd count aborts in libgomp, not in Python
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant", "step")
LOGGERS = ("wandb", "csv", "none")
SELECTIONS = ("last", "best_val_loss")
TWIN_MODES = ("cache", "train", "off")
LOGGER_MODES = ("offline", "online", "disabled")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")


def ranged(default: Any, **bounds: Any) -> Any:
    """A numeric field and its bounds (those of `check_number`): `ranged(1, ge=1)`,
    `ranged(0.5, gt=0, le=1)`; an `Optional` field may also be null."""
    return field(default=default, metadata={"range": bounds})


def one_of(default: Any, allowed: tuple[str, ...]) -> Any:
    """A field that takes one of `allowed`."""
    return field(default=default, metadata={"choices": tuple(allowed)})


def checked(default: Any, rule: Callable[[str, Any], None], factory: Callable[[], Any] | None = None) -> Any:
    """A field checked by `rule(key, value)`, which raises ConfigError; a mutable default
    (a list) comes from `factory`."""
    if factory is not None:
        return field(default_factory=factory, metadata={"check": rule})
    return field(default=default, metadata={"check": rule})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range_text(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    if ge is None and gt is None and le is None and lt is None:
        return "a finite number"
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
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def check_path(key: str, value: Any) -> None:
    """A non-empty path: an empty one means the current directory (data would be unpacked
    there, records written there)."""
    if not (isinstance(value, str) and value.strip() != ""):
        raise ConfigError(f"{key} must name a directory (an empty one means the current directory), got {value!r}")


def check_batches(key: str, value: Any, why: str = "") -> None:
    """Lightning's `limit_*_batches`: null (all), an int >= 1 (that many batches) or a float in
    (0, 1] (that fraction of them); 0 would train on nothing."""
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1) or \
        (isinstance(value, float) and 0.0 < value <= 1.0)
    if not ok:
        raise ConfigError(f"{key} must be null (all), an integer >= 1 (batches) or a float in (0, 1] (a fraction), "
                          f"got {value!r}{why}")


def check_eval_batches(key: str, value: Any) -> None:
    """`check_batches` for the test passes: every accuracy a run reports comes from Lightning's
    validation loop, so Lightning's 0 (no validation) would leave them unmeasured."""
    check_batches(key, value, " (0 would measure no accuracy)" if value == 0 else "")


def check_devices(key: str, devices: Any) -> None:
    ok = devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and (devices >= 1 or devices == -1))
    ok = ok or (isinstance(devices, (list, ListConfig)) and len(devices) > 0
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices))
    if not ok:
        raise ConfigError(f"{key} must be an integer >= 1, -1 (all), auto or a non-empty list of device indices; "
                          f"got {devices!r}")


def check_init_checkpoint(key: str, value: Any) -> None:
    if value is not None and str(value).strip() == "":
        raise ConfigError(f"{key} must be null or the path of a checkpoint, got ''")


@dataclass
class DatasetConfig:
    """Options every dataset has; a dataset with options of its own extends this class."""

    name: str = MISSING
    data_dir: str = checked("${paths.data_dir}", check_path)
    download: bool = True
    train_subset: Optional[int] = ranged(None, ge=0)  # a seeded random subset; null or 0: all
    test_subset: Optional[int] = ranged(None, ge=0)
    augment: Optional[bool] = None  # None: the dataset's default (crop+flip for CIFAR)
    # training examples held out (seeded) as a validation split, for `pipeline.select`; the
    # test split stays the test split. null/0: none (the papers mostly report the last epoch)
    val_split: Optional[int] = ranged(None, ge=0)
    batch_size: int = ranged(128, ge=1)
    eval_batch_size: int = ranged(1024, ge=1)


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
    rank: Optional[int] = ranged(None, ge=1)


@dataclass
class OptimizerConfig:
    name: str = one_of("sgd", OPTIMIZERS)
    lr: float = ranged(0.05, gt=0)
    momentum: float = ranged(0.9, ge=0, le=1)
    weight_decay: float = ranged(5e-4, ge=0)
    nesterov: bool = False
    schedule: str = one_of("cosine", SCHEDULES)
    step_size: int = ranged(30, ge=1)  # epochs per decay of the step schedule
    gamma: float = ranged(0.1, gt=0, le=1)


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"  # checked against this machine by tnbench.pipeline.checks
    devices: Any = checked(1, check_devices)
    strategy: str = "auto"
    num_nodes: int = ranged(1, ge=1)
    precision: str = one_of("32-true", PRECISIONS)
    channels_last: bool = True
    deterministic: bool = False
    # as in Lightning: an int is a number of batches, a float in (0, 1] a fraction of them.
    # The validation batches are also those of every accuracy measured (tnbench.pipeline.stages).
    limit_train_batches: Any = checked(None, check_batches)
    limit_val_batches: Any = checked(None, check_eval_batches)
    progress: bool = True
    gradient_clip_val: Optional[float] = ranged(None, ge=0)
    # torch intra-op threads for this job; null: torch's default (one per core). With parallel
    # jobs on one machine (hydra/launcher=joblib), cores / jobs avoids oversubscription.
    # (at most MAX_THREADS anywhere; up front, at most the CPUs of a machine that runs the job)
    num_threads: Optional[int] = ranged(None, ge=1, le=MAX_THREADS)
    # time the dense and the compressed model's inference (tnbench.pipeline.speed); on the run
    # key's list of settings that change no result (tnbench.pipeline.identity.NOT_RESULTS)
    measure_speed: bool = True


@dataclass
class LoggerConfig:
    name: str = one_of("wandb", LOGGERS)
    project: str = "tnbench"
    entity: Optional[str] = None
    mode: str = one_of("offline", LOGGER_MODES)  # WANDB_MODE in the environment wins
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    pretrain_epochs: int = ranged(3, ge=0)
    retrain_epochs: int = ranged(2, ge=0)
    recovery_tolerance: float = ranged(0.5, ge=0)  # percentage points below the pretrained accuracy
    pretrain_cache: bool = True
    init_checkpoint: Optional[str] = checked(None, check_init_checkpoint)  # a pretrained checkpoint to start from
    rerun: bool = False  # run again even if this run's record says ok (default: skip it)
    keep_checkpoints: bool = False  # keep the per-epoch training checkpoints of a finished run
    # which retrain epoch's model the run ends with: `last`, or `best_val_loss` (the epoch of
    # lowest loss on the dataset's validation split, `dataset.val_split`; DLRT's protocol)
    select: str = one_of("last", SELECTIONS)
    # runs from scratch (pretrain_epochs=0): recovery is measured against the dense twin (same
    # data, model, seed and budget) from the pretrain cache: cache | train (when missing) | off
    dense_twin: str = one_of("cache", TWIN_MODES)
    # before every evaluation, recompute BatchNorm statistics over the (unaugmented) training
    # split: compression changes what each BN layer sees, and running averages lag a short
    # retraining (cnn4, CP rank 8, 32 retraining steps: 9.4% with the averages, 80% recomputed)
    bn_recalibration: bool = False
    pretrain_optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    retrain_optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(lr=0.01, schedule="cosine")
    )


@dataclass
class BudgetConfig:
    """One size for every method (tnbench.pipeline.budget): at most one of `ratio` (dense /
    compressed parameters of the whole model), `params` (parameters after compression) or
    `flops` (FLOPs of one forward pass after compression). Each method with a size knob
    searches it, without training, until the compressed model is within `tolerance` of it."""

    ratio: Optional[float] = ranged(None, gt=1)
    params: Optional[int] = ranged(None, ge=1)
    flops: Optional[int] = ranged(None, ge=1)
    tolerance: float = ranged(0.05, gt=0, lt=1)  # relative: 0.05 is 4x asked -> 3.8x .. 4.2x reached


BUDGET_KINDS = ("ratio", "params", "flops")


def budget_kind(b: Any) -> str | None:
    """Which of budget.ratio / params / flops is set (None: no budget)."""
    kinds = [k for k in BUDGET_KINDS if b is not None and b.get(k) is not None]
    return kinds[0] if kinds else None


@dataclass
class PathsConfig:
    results_dir: str = checked("results", check_path)
    data_dir: str = checked("data", check_path)
    cache_dir: str = checked("${paths.results_dir}/cache", check_path)


@dataclass
class Config:
    dataset: Any = MISSING  # typed by the dataset's own schema (`typed`)
    model: Any = MISSING
    method: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    seed: int = ranged(0, ge=0, le=MAX_SEED)
    experiment_name: Optional[str] = None
    run_id: str = ""  # set in conf/config.yaml: <dataset>-<model>-<method>-s<seed>-<hash>


@functools.cache
def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)


def _section_class(hint: Any) -> type | None:
    """The dataclass a field holds (`OptimizerConfig`, or `Optional[...]` of one), if any."""
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and is_dataclass(candidate):
            return candidate
    return None


def declared(f: Any) -> bool:
    """Whether field `f` declares what values it takes (`ranged`, `one_of`, `checked`)."""
    return any(k in f.metadata for k in ("range", "choices", "check"))


def check_fields(node: Any, schema: type, prefix: str = "") -> None:
    """Every declared field of `schema` in `node` (a typed config section), and of the sections
    nested in it, within what it allows; the first that is not raises a ConfigError."""
    if not is_dataclass(schema):
        return
    hints = _hints(schema)
    for f in fields(schema):
        meta, inner = f.metadata, _section_class(hints[f.name])
        if f.name not in node or not (declared(f) or inner):
            continue
        key, value = f"{prefix}.{f.name}" if prefix else f.name, node[f.name]
        if "range" in meta:
            bounds = dict(meta["range"])
            bounds["null"] = bounds.get("null", False) or _optional(hints[f.name])
            check_number(key, value, **bounds)
        elif "choices" in meta:
            check_choice(key, value, meta["choices"])
        elif "check" in meta:
            meta["check"](key, value)
        if inner is not None and value is not None:
            check_fields(value, inner, key)


def check_ranges(node: Any, schema: type, group: str) -> None:
    """`check_fields` for a registry entry's section (`dataset`, `method`)."""
    check_fields(node, schema, group)


def option_names(schema: type) -> list[str]:
    return [f.name for f in fields(schema)] if is_dataclass(schema) else []


@functools.cache
def _template(schema: type) -> DictConfig:
    """`OmegaConf.structured(schema)`, built once per schema (a sweep types thousands of sections)."""
    return OmegaConf.structured(schema)


def typed(node: Any, schema: type, group: str) -> DictConfig:
    """`node` (a dataset/model/method section) checked against its entry's dataclass: unknown
    keys and wrong types become one-line ConfigErrors; missing keys take the defaults."""
    name = node.get("name") if isinstance(node, DictConfig) else None
    # `_target_` names the entry (tnbench.registry), it is not one of its options
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if target is not None:
        node = OmegaConf.masked_copy(node, [k for k in node if k != "_target_"])
    try:
        out = OmegaConf.merge(_template(schema), node)  # merge copies the template
        if target is not None:
            with open_dict(out):
                out["_target_"] = target
    except ConfigKeyError as e:
        raise ConfigError(f"{group}.{e.key} is not an option of {group}={name}; allowed: "
                          f"{', '.join(option_names(schema))}") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None) or "?"
        msg = (getattr(e, "msg", None) or str(e)).splitlines()[0]
        raise ConfigError(wrong_type(f"{group}.{key}", msg) or f"{group}.{key}: {msg}") from None
    assert isinstance(out, DictConfig)
    return out


_TYPES = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def wrong_type(key: str, message: str) -> str | None:
    """OmegaConf's refusal of a value for a typed field, as one line naming the field and the
    type it takes (None if `message` is not such a refusal)."""
    m = re.search(r"Value '(.*?)' (?:of type '\w+' )?could not be converted to (\w+)", message)
    if m:
        return f"{key} must be {_TYPES.get(m.group(2), m.group(2))}, got {m.group(1)!r}"
    m = re.search(r"Value '(.*)' is not a valid bool", message)
    if m:
        return f"{key} must be true or false, got {m.group(1)!r}"
    if "is not a ListConfig, list or tuple" in message:
        return f"{key} must be a list, e.g. {key}=[a,b]"
    m = re.search(r"Cannot convert '(\w+)' to string", message)
    if m:
        return f"{key} must be a string, got a {m.group(1)}"
    return None


def validate(cfg: Any) -> None:
    """What every option of the root schema may be (`check_fields`: trainer, logger, pipeline,
    paths, seed) and the rules no single field declares; raise ConfigError on the first
    problem. The `dataset` and `method` sections are checked against their entries' schemas
    (tnbench.pipeline.checks.resolve_entries); settings that depend on the machine by
    `tnbench.pipeline.checks`."""
    check_fields(cfg, Config)
    if cfg.pipeline.select == "best_val_loss" and not cfg.dataset.get("val_split"):
        raise ConfigError("pipeline.select=best_val_loss needs a validation split: set dataset.val_split (e.g. 10000)")
    layers = cfg.method.get("layers")
    if isinstance(layers, (list, tuple, ListConfig)) and len(layers) == 0 and cfg.method.name != "none":
        raise ConfigError("method.layers must be all, all_but_first_last or a non-empty list of layer names; got []")
    kinds = [k for k in BUDGET_KINDS if cfg.budget[k] is not None]
    if len(kinds) > 1:
        raise ConfigError(f"budget: set one of budget.ratio, budget.params or budget.flops, got "
                          f"{' and '.join(f'budget.{k}={cfg.budget[k]}' for k in kinds)}")
