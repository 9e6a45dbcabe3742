"""pretrain -> compress -> retrain -> record: the experiment every tnbench run performs."""
from __future__ import annotations

import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from tnbench.artifacts.spec import UnsupportedModel
from tnbench.artifacts.store import model_preset
from tnbench.artifacts.store import save as save_model
from tnbench.data import TensorData, load_section
from tnbench.data.module import InMemoryDataModule
from tnbench.errors import BAD_INPUT, CheckpointError, Diverged
from tnbench.methods import build_method
from tnbench.methods.base import compressible_layers
from tnbench.models import build_model
from tnbench.pipeline.budget import apply_budget
from tnbench.pipeline.cache import PretrainCache, load_checkpoint, load_into, save_checkpoint
from tnbench.pipeline.checks import check
from tnbench.pipeline.classifier import Classifier, stage_seed
from tnbench.pipeline.failpoints import failpoint
from tnbench.pipeline.identity import pretrain_identity, pretrain_key
from tnbench.pipeline.integrity import CheckpointSetAside, lightning_checkpoint_problem, remove_temps, set_aside
from tnbench.pipeline.metrics import compression_summary, count_params, count_weights
from tnbench.pipeline.progress import compress_progress
from tnbench.pipeline.resume import EpochCheckpoint, checkpoint_path, load_state, save_state
from tnbench.pipeline.selection import ModelSelection
from tnbench.pipeline.speed import measure_cost, speed_record
from tnbench.pipeline.trainer import finish_logger, history_rows, log_curve, make_logger, make_trainer
from tnbench.pipeline.twin import find_or_train, needs_twin, record_recovery
from tnbench.reporting.console import console, print_summary, stage_banner
from tnbench.reporting.records import write_record

log = logging.getLogger(__name__)


def is_rank_zero() -> bool:
    return getattr(rank_zero_only, "rank", 0) == 0


def load_dataset(cfg: DictConfig) -> TensorData:
    return load_section(cfg.dataset, cfg.seed)


@dataclass
class Run:
    """The state one pipeline run builds up; `record` is what gets written."""

    cfg: DictConfig
    run_dir: Path
    record: dict[str, Any] = field(default_factory=dict)
    logger: Any = None
    state: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # the network, compressed once the compress stage has run
    speed_dense: dict[str, Any] | None = None  # the dense model's measured speed (compress stage)

    @property
    def show(self) -> bool:
        """Whether this process shows progress lines (trainer.progress, rank zero)."""
        return bool(self.cfg.trainer.progress) and is_rank_zero()

    def save_state(self) -> None:
        if is_rank_zero():
            save_state(self.run_dir, self.state)

    def stage(self, name: str) -> None:
        self.record["stage"] = name
        if is_rank_zero():
            stage_banner(name)


def base_record(cfg: DictConfig) -> dict[str, Any]:
    return {
        "status": "running",
        "error": None,
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "method": cfg.method.name,
        "paper": cfg.method.get("paper") or "not given",  # a plugin method may name none
        "seed": cfg.seed,
        "experiment": cfg.get("experiment_name"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def evaluate(run: Run, module: Classifier, dm: InMemoryDataModule, stage: str) -> float:
    trainer = make_trainer(run.cfg, epochs=1, logger=run.logger, run_dir=run.run_dir)
    module.for_stage(stage)
    trainer.validate(module, datamodule=dm, verbose=False)
    return float(trainer.callback_metrics[f"{stage}/val_acc"])  # also when not logged (Classifier)


def fit(run: Run, module: Classifier, dm: InMemoryDataModule, stage: str, epochs: int, optim_cfg: Any,
        callbacks: list[Any] | None = None) -> list[float]:
    """Train for `epochs`, testing after each; returns the per-epoch test accuracies.

    Every epoch ends with a checkpoint; if one is left from a killed attempt, training
    resumes from it."""
    module.for_stage(stage, optim_cfg, epochs)
    module.history, module.curve = [], []
    ckpt = checkpoint_path(run.run_dir, stage)
    trainer = make_trainer(run.cfg, epochs=epochs, logger=run.logger, run_dir=run.run_dir,
                           callbacks=[*(callbacks or []), EpochCheckpoint(ckpt, stage)])
    resume = str(ckpt) if ckpt.exists() else None
    if resume:
        problem = lightning_checkpoint_problem(ckpt, set(module.state_dict()), stage)
        if problem is not None:
            if is_rank_zero():
                set_aside(ckpt, problem, f"{stage} starts from its first epoch")
            resume = None
    if resume:
        console.print(f"resuming {stage} from {ckpt}")
        run.record["resumed_stages"] = [*run.record.get("resumed_stages", []), stage]
    started = TrainingStarted()
    trainer.callbacks.append(started)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True)
    except Exception as e:
        if resume is None or started.started:
            raise
        # Lightning refused the checkpoint while restoring it (model, callbacks or optimizer
        # state may be half restored): set it aside and run the whole job again
        if is_rank_zero():
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            set_aside(ckpt, f"Lightning cannot resume from it: {why}", f"{stage} starts from its first epoch")
        raise CheckpointSetAside(str(ckpt)) from e
    return list(module.history)


class TrainingStarted(L.Callback):
    """Whether a fit got past restoring its checkpoint."""

    started = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = True


PRETRAIN_KEYS = ("pretrain_cache_hit", "pretrain_source", "pretrain_checkpoint", "pretrain_history",
                 "time_pretrain_s", "acc_pretrain")


def pretrain(run: Run, module: Classifier, dm: InMemoryDataModule) -> None:
    """Dense weights from, in order: a finished earlier attempt of this run, an explicit
    checkpoint, the pretrain cache, or training (then cached)."""
    cfg, rec = run.cfg, run.record
    run.stage("pretrain")
    done = run.state.get("pretrain")
    if done:  # an earlier attempt of this run got past pretraining: same weights, same numbers
        path = Path(done["weights"])
        # tnbench's own files carry a sidecar; a user's init checkpoint is never set aside
        own = str(path) != str(cfg.pipeline.init_checkpoint)
        cache = PretrainCache(Path(cfg.paths.cache_dir))
        if own and path.parent == cache.root and is_rank_zero():
            cache.tidy(path, enabled="ddp" not in str(cfg.trainer.strategy))
        try:
            blob = load_checkpoint(path, require_sidecar=own)
            load_into(module.model, blob, path)
            rec.update(done["record"])
            # the killed attempt's W&B rows are mostly lost: the stage's curve again, from its weights
            curve = (blob.get("meta") or {}).get("curve") if own else None
            log_curve(run.logger, "pretrain", curve or [{"epoch": 0, "val_acc": rec.get("acc_pretrain")}])
            return
        except CheckpointError as e:
            if own and path.exists() and path.parent == run.run_dir / "checkpoints" and is_rank_zero():
                set_aside(path, str(e).replace(f"checkpoint {path} ", ""), "pretraining again")
            else:  # a cache entry is checked (and set aside) under its lock, below
                log.warning("%s; pretraining again", e)
            run.state.pop("pretrain")
    t0 = time.perf_counter()
    rec["pretrain_cache_hit"] = False
    weights = None
    if cfg.pipeline.init_checkpoint:
        weights = Path(cfg.pipeline.init_checkpoint)
        load_into(module.model, load_checkpoint(weights), weights)
        rec["pretrain_source"] = str(weights)
    elif cfg.pipeline.pretrain_epochs > 0:
        cache = PretrainCache(Path(cfg.paths.cache_dir))
        key = pretrain_key(cfg)
        weights = cache.path(key, f"{cfg.model.name}_{cfg.dataset.name}") if cfg.pipeline.pretrain_cache \
            else run.run_dir / "checkpoints" / "pretrained.pt"
        # one process trains a shared entry while others wait for it (not under DDP, whose
        # ranks run this together and would wait on each other)
        with cache.lock(weights, enabled=cfg.pipeline.pretrain_cache and "ddp" not in str(cfg.trainer.strategy)):
            entry = cache.lookup(weights) if cfg.pipeline.pretrain_cache else None
            if entry is not None:
                load_into(module.model, entry, weights)
                rec["pretrain_cache_hit"] = True
                console.print(f"pretrained model from cache: {weights}")
                meta = entry.get("meta") or {}  # entries written before the curve was kept have none
                if "history" in meta:
                    rec["pretrain_history"] = meta["history"]
                    module.epochs_done["pretrain"] = len(meta["history"])
                # an entry from before the curve was kept has the test accuracies alone
                log_curve(run.logger, "pretrain", meta.get("curve") or history_rows(meta.get("history")))
            else:
                rec["pretrain_history"] = fit(run, module, dm, "pretrain", cfg.pipeline.pretrain_epochs,
                                              cfg.pipeline.pretrain_optimizer)
                if is_rank_zero():
                    save_checkpoint(weights, module.model.state_dict(), {"identity": pretrain_identity(cfg), "key": key,
                                                                         "history": rec["pretrain_history"],
                                                                         "curve": module.curve})
        rec["pretrain_checkpoint"] = str(weights)
    rec["time_pretrain_s"] = time.perf_counter() - t0
    rec["acc_pretrain"] = evaluate(run, module, dm, "pretrain")
    if weights is None:  # trained from scratch (pretrain_epochs=0): keep the initial weights
        weights = run.run_dir / "checkpoints" / "pretrained.pt"
        if is_rank_zero():
            save_checkpoint(weights, module.model.state_dict(), {})
    run.state["pretrain"] = {"weights": str(weights), "record": {k: rec[k] for k in PRETRAIN_KEYS if k in rec}}
    run.save_state()


def compress(run: Run, module: Classifier, dm: InMemoryDataModule, method: Any, input_shape: tuple[int, ...]) -> Any:
    """Compress the pretrained model in place; returns the method as used (its knob set by the
    budget, when there is one)."""
    cfg, rec = run.cfg, run.record
    run.stage("compress")
    model = module.model
    rec["params_dense"] = count_params(model)
    rec["weights_dense"] = count_weights(model)
    rec["flops_batch_size"] = min(cfg.dataset.eval_batch_size, rec["num_test"])  # the last batch may be smaller
    rec["flops_layers"] = {}
    run.speed_dense = measure_cost(rec, model, input_shape, "dense", speed=cfg.trainer.measure_speed,
                                   precision=cfg.trainer.precision, layers=[n for n, _ in compressible_layers(model)],
                                   show=run.show)
    t0 = time.perf_counter()
    with module.default_memory_format():  # what a method (a plugin's included) is handed
        torch.manual_seed(stage_seed(cfg.seed, "compress"))  # e.g. ADTN's random gates: the same on a cache hit
        method, budget = apply_budget(cfg, method, model, input_shape, rec["params_dense"], rec["flops_dense_b1"],
                                      show=run.show)
        if budget:
            budget["budget_search"]["time_s"] = time.perf_counter() - t0
            rec.update(budget)
        t0 = time.perf_counter()
        torch.manual_seed(stage_seed(cfg.seed, "compress"))  # the budget search may have drawn numbers
        with compress_progress(enabled=run.show):
            layers = [r.as_dict() for r in method.compress(model)]
        rec["time_compress_s"] = time.perf_counter() - t0
    for p in model.parameters():
        if not torch.isfinite(p).all():
            raise Diverged("compress", 0, "compression produced non-finite weights")
    rec["layers"] = layers
    rec.update(compression_summary(rec["params_dense"], count_params(model), layers, getattr(method, "count_rule", None),
                                   rec["weights_dense"]))
    measure_cost(rec, model, input_shape, "compressed", show=run.show)
    rec["acc_compressed"] = evaluate(run, module, dm, "compress")
    if budget:
        rec["budget_reached"] = budget_reached(rec)
    return method


def budget_reached(rec: dict[str, Any]) -> float:
    """The asked measure of the model as it is now (after retraining for adaptive methods)."""
    kind = rec["budget_kind"]
    return {"ratio": rec["compression_ratio"], "params": rec["params_compressed"],
            "flops": rec["flops_compressed_b1"]}[kind]


def fresh_module(cfg: DictConfig, data: TensorData) -> Classifier:
    """The job's dense model, freshly initialised from its seed, in its Lightning module."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(cfg.model.name, in_channels=data.in_channels, image_size=data.image_size,
                        num_classes=data.num_classes, **cfg.model.options)
    return Classifier(model, data.num_classes, channels_last=cfg.trainer.channels_last, seed=cfg.seed,
                      gradient_clip_val=cfg.trainer.gradient_clip_val,
                      bn_recalibration=cfg.pipeline.bn_recalibration)


def dense_twin(run: Run, dm: InMemoryDataModule, data: TensorData) -> dict[str, Any] | None:
    """For a run from scratch, its dense twin from the pretrain cache, trained first with
    `pipeline.dense_twin=train` (tnbench.pipeline.twin)."""
    cfg = run.cfg
    if not needs_twin(cfg):
        return None

    def train() -> tuple[dict[str, Any], list[float], list[dict[str, float]]]:
        run.stage("twin")
        module = fresh_module(cfg, data)  # where a pretraining would start
        dm.reseed(cfg.seed)
        history = fit(run, module, dm, "twin", cfg.pipeline.retrain_epochs, cfg.pipeline.retrain_optimizer)
        return module.model.state_dict(), history, module.curve

    return find_or_train(cfg, train)


def retrain(run: Run, module: Classifier, dm: InMemoryDataModule, method: Any, input_shape: tuple[int, ...],
            twin: dict[str, Any] | None = None) -> None:
    cfg, rec = run.cfg, run.record
    run.stage("retrain")
    L.seed_everything(cfg.seed + 1, workers=True, verbose=False)  # same retraining on a cache hit or not
    dm.reseed(cfg.seed + 1)
    t0 = time.perf_counter()
    accs: list[float] = []
    holdout = dm.holdout_dataloader()
    selector = ModelSelection(holdout, keep_best=cfg.pipeline.select == "best_val_loss") \
        if holdout is not None and cfg.pipeline.retrain_epochs > 0 else None
    if cfg.pipeline.retrain_epochs > 0:
        accs = fit(run, module, dm, "retrain", cfg.pipeline.retrain_epochs, cfg.pipeline.retrain_optimizer,
                   callbacks=[*method.callbacks(), *([selector] if selector else [])])
    rec["time_retrain_s"] = time.perf_counter() - t0
    rec["retrain_history"] = accs
    rec["acc_retrained"] = accs[-1] if accs else rec["acc_compressed"]
    rec["acc_retrained_best"] = max(accs) if accs else rec["acc_compressed"]
    selected = len(accs)
    if selector is not None:
        rec["val_history"] = selector.history
        if selector.keep_best:  # the run ends with (and describes) the selected model
            selected = selector.restore_best(module.model) or selected
    rec["selected_epoch"] = selected
    rec["acc_selected"] = accs[selected - 1] if selected else rec["acc_compressed"]
    record_recovery(rec, cfg, twin, accs)
    final = method.describe(module.model)
    if final is not None:  # the structure changed while training: report the final model
        rec["compression_at_compress"] = {k: rec[k] for k in ("params_compressed", "compression_ratio",
                                                              "compression_rate", "compression_rate_paper",
                                                              "ranks", "flops_compressed", "flops_compressed_b1", "budget_reached")
                                         if k in rec}
        layers = [r.as_dict() for r in final]
        rec["layers"] = layers
        rec.update(compression_summary(rec["params_dense"], count_params(module.model), layers, getattr(method, "count_rule", None),
                                       rec["weights_dense"]))
        measure_cost(rec, module.model, input_shape, "compressed", show=run.show)
        if "budget_kind" in rec:
            rec["budget_reached"] = budget_reached(rec)
    rec.update(method.extra_record())
    if cfg.trainer.measure_speed and run.speed_dense is not None:
        model = module.model
        compressed = measure_cost(rec, model, input_shape, "compressed", flops=False, speed=True,
                                  precision=cfg.trainer.precision, show=run.show)
        rec.update(speed_record(run.speed_dense, compressed, next(model.parameters()).device,
                                rec["flops_batch_size"], cfg.trainer.precision))


def keep_model(run: Run, model: Any, data: TensorData) -> None:
    """The compressed model in the run dir (model.safetensors + model.json: tnbench.load)."""
    cfg = run.cfg
    preset = model_preset(cfg.model, data.in_channels, data.image_size, data.num_classes)
    try:
        path = save_model(model, run.run_dir, preset, run_id=run.run_dir.name, method=cfg.method.name)
    except UnsupportedModel as e:  # a plugin's layer class: the record is what the run leaves
        log.warning("the compressed model is not saved: %s", e)
        return
    run.record["model_file"] = str(path)


def run_pipeline(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run one experiment and write its record; exceptions propagate after the record is written."""
    return execute(cfg, run_dir).record


def execute(cfg: DictConfig, run_dir: Path) -> Run:
    """`run_pipeline`, returning the whole Run (record and compressed model: tnbench.api)."""
    try:
        return attempt(cfg, run_dir)
    except CheckpointSetAside:  # set aside: this attempt starts that stage from scratch
        return attempt(cfg, run_dir)


def attempt(cfg: DictConfig, run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    if is_rank_zero():  # what writes a kill interrupted
        remove_temps(run_dir)
        remove_temps(run_dir / "checkpoints")
    run = Run(cfg, run_dir, base_record(cfg), state=load_state(run_dir))
    rec = run.record
    run.state["attempts"] = run.state.get("attempts", 0) + 1
    rec["attempt"] = run.state["attempts"]
    t_start = time.perf_counter()
    threads = torch.get_num_threads()
    try:
        check(cfg)
        if cfg.trainer.num_threads:
            torch.set_num_threads(cfg.trainer.num_threads)
        rec["torch_threads"] = torch.get_num_threads()
        method = build_method(cfg.method)
        run.stage("data")
        data = load_dataset(cfg)
        rec["num_train"], rec["num_test"] = len(data.train_y), len(data.test_y)
        module = fresh_module(cfg, data)
        run.model = module.model
        dm = InMemoryDataModule(data, batch_size=cfg.dataset.batch_size, eval_batch_size=cfg.dataset.eval_batch_size,
                                seed=cfg.seed, channels_last=cfg.trainer.channels_last)
        run.logger = make_logger(cfg, run_dir, rec, resume_id=run.state.get("wandb_run_id"))
        run.state["wandb_run_id"] = rec.get("wandb_run_id")
        run.save_state()
        pretrain(run, module, dm)
        input_shape = (data.in_channels, data.image_size, data.image_size)
        method = compress(run, module, dm, method, input_shape)
        failpoint("compress:done")
        twin = dense_twin(run, dm, data)
        retrain(run, module, dm, method, input_shape, twin)
        if is_rank_zero():
            keep_model(run, module.model, data)
        rec["status"] = "ok"
        rec.pop("stage", None)
        if not cfg.pipeline.keep_checkpoints and is_rank_zero():  # resuming is moot now
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    except Diverged as e:
        rec.update(status="diverged", error=str(e), diverged_stage=e.stage, diverged_step=e.step)
        raise
    except BaseException as e:
        rec["status"] = "failed"
        rec["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        if not isinstance(e, BAD_INPUT):
            rec["traceback"] = traceback.format_exc()
        raise
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests, notebooks) get theirs back
        rec["time_total_s"] = time.perf_counter() - t_start
        if is_rank_zero():
            write_record(run_dir, rec)
            finish_logger(run.logger, rec)
    if is_rank_zero():
        print_summary(rec, str(run_dir))
    return run
