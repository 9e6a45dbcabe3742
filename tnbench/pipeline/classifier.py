"""The LightningModule every stage trains: a classifier with a stage prefix on its metrics."""
from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from tnbench.errors import Diverged
from tnbench.pipeline.trainer import logged_epochs


def build_optimizer(params: Any, cfg: Any) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer name must be one of sgd, adam, adamw; got {cfg.name!r}")


def build_schedule(optimizer: torch.optim.Optimizer, cfg: Any, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def stage_seed(seed: int, stage: str, epoch: int = 0) -> int:
    """The seed of torch's global generator at the start of a stage's epoch (of `compress`: before
    the method runs), so each stage draws the same numbers however the run got there (a model
    from the cache or just trained, resumed or not, speed measured or not)."""
    offset = {"pretrain": 0, "twin": 0, "retrain": 100_000, "compress": 300_000}.get(stage, 200_000)
    return seed * 1_000_003 + offset + epoch


def recalibrate_bn(model: nn.Module, loader: Any) -> bool:
    """Recompute every BatchNorm layer's running statistics as the plain average over `loader`'s
    batches (torch's `update_bn`, which SWA uses), in no-grad train mode; the model's mode is
    kept. Whether there was a BatchNorm layer to recalibrate."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return False
    with torch.inference_mode(False), torch.no_grad():  # Lightning evaluates in inference mode
        torch.optim.swa_utils.update_bn(loader, model)
    return True


def to_channels_last(model: nn.Module) -> nn.Module:
    """`model` in channels-last memory format, its 1x1-kernel weights excepted: such a weight has
    the same memory in both formats but different strides ([16, 8, 1, 1]: (8, 1, 8, 8) against
    (8, 1, 1, 1)), and its gradient comes back with either, depending on the path and the thread
    count (a reshape of the factor gives the contiguous ones; a channels-last conv backward gives
    channels-last ones with 2 threads, contiguous ones with 1). Autograd accepts both (strides of
    size-1 dimensions do not count), but DDP compares them exactly with its bucket view's and
    warns. So such a weight keeps the contiguous strides (a view of the same memory, no copy) and
    its gradient is given the weight's strides as it arrives (`_same_strides`: a view again)."""
    model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        if p.dim() == 4 and p.shape[2:] == (1, 1) and p.is_contiguous():
            p.data = p.data.as_strided(p.shape, torch.empty(p.shape, device="meta").stride())
            if _RESTRIDED.get(id(p)) is not p:  # every stage calls this again on the same parameters
                p.register_hook(_same_strides(weakref.ref(p)))
                _RESTRIDED[id(p)] = p
    return model


# the parameters given the hook, by id (a WeakSet would compare tensors with ==)
_RESTRIDED: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()


def _same_strides(ref: weakref.ref[torch.Tensor]) -> Any:
    def hook(grad: torch.Tensor) -> torch.Tensor:
        p = ref()
        if p is None or grad.shape != p.shape or grad.stride() == p.stride() or not grad.is_contiguous():
            return grad
        return grad.as_strided(grad.shape, p.stride())  # 1x1 kernel, dense: the same memory order

    return hook


class Classifier(L.LightningModule):
    """Cross-entropy training of `model`; metrics are logged as `<stage>/<name>`.

    The optimizer settings and epoch count are per stage (pretrain and retrain differ), so
    the pipeline sets them with `for_stage` before each fit.

    Each stage has its own x-axis, logged with its metrics: `<stage>/epoch` (epochs of the
    stage done) on epoch rows and `<stage>/step` on per-step rows. The Trainer's own `epoch`
    and global step restart with every stage's Trainer, so curves plotted against them
    zigzag; tnbench.pipeline.trainer tells W&B to plot each stage against its own axis.
    """

    def __init__(self, model: nn.Module, num_classes: int, channels_last: bool = False, seed: int = 0,
                 gradient_clip_val: float | None = None, bn_recalibration: bool = False) -> None:
        super().__init__()
        # Manual optimization: the step below is forward, backward, (clip), step. Lightning's
        # automatic loop wraps each step in a closure and more hooks, ~0.5 ms a step: a LeNet-5
        # epoch on CPU went from 1.23x to 1.14x a bare PyTorch loop (results/bench/train_epoch.md).
        # The LR schedule is epoch-wise (on_train_epoch_start).
        self.automatic_optimization = False
        self.gradient_clip_val = gradient_clip_val
        self.bn_recalibration = bn_recalibration
        self.model = model
        self.seed = seed
        self.channels_last = channels_last
        self.stage_name = "pretrain"
        self.optim_cfg: Any = None
        self.epochs = 1
        self.history: list[float] = []  # test accuracy after each training epoch of a fit
        # the epoch-level numbers of each epoch of a fit (the pretrain cache and the epoch
        # checkpoints keep them, to log the curve again on a cache hit or after a resume)
        self.curve: list[dict[str, float]] = []
        self.epochs_done: dict[str, int] = {}  # per stage: where a test pass alone is plotted
        self._sums = torch.zeros(3)
        self._val_sums = torch.zeros(2)  # test loss * n, n
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        if channels_last:
            to_channels_last(self.model)

    def for_stage(self, stage: str, optim_cfg: Any = None, epochs: int = 1) -> Classifier:
        self.stage_name, self.optim_cfg, self.epochs = stage, optim_cfg, epochs
        if self.channels_last:  # also covers layers a method swapped in without replace_module
            to_channels_last(self.model)
        return self

    @contextmanager
    def default_memory_format(self) -> Iterator[nn.Module]:
        """The model in torch's default (contiguous) memory format while inside, then back to
        channels-last (layers swapped in meanwhile included) where the trainer uses it: a
        method's `compress` sees the layout torch's own functions assume (torch.nn.utils.prune
        flattens a weight with `.view(-1)`)."""
        if self.channels_last:
            self.model.to(memory_format=torch.contiguous_format)
        try:
            yield self.model
        finally:
            if self.channels_last:
                to_channels_last(self.model)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tnbench"] = {"stage": self.stage_name, "history": list(self.history), "curve": list(self.curve)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("tnbench", {})
        self.history = list(saved.get("history", []))
        self.curve = list(saved.get("curve", []))
        self.epochs_done[self.stage_name] = len(self.history)

    def running_metrics(self) -> tuple[float, float]:
        """Mean training loss and accuracy (%) of the epoch so far, on this rank (progress bar)."""
        loss_sum, correct, n = self._sums.tolist()
        return loss_sum / max(n, 1.0), 100.0 * correct / max(n, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        optimizer = self.optimizers()
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        # On CPU the check is free; on an accelerator it forces a sync, so it runs every 50 steps
        # there (and on the epoch mean below).
        if (loss.device.type == "cpu" or batch_idx % 50 == 0) and not torch.isfinite(loss):
            raise Diverged(self.stage_name, self.global_step, f"training loss became {float(loss.detach())}")
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm")
        optimizer.step()
        # Epoch sums as plain tensors: Lightning's self.log and torchmetrics cost ~1 ms a step,
        # 10% of a LeNet-5 step on CPU (results/bench/train_epoch.md). Logged per step only
        # every log_every_n_steps, for the curves.
        with torch.no_grad():
            n = y.new_tensor(y.numel())
            self._sums += torch.stack([loss.detach().float() * n, (logits.argmax(1) == y).sum().float(), n.float()])
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.log_dict({f"{self.stage_name}/train_loss_step": loss.detach(),
                           f"{self.stage_name}/step": float(self.global_step)}, on_step=True, on_epoch=False)
        return loss.detach()

    def on_train_epoch_start(self) -> None:
        # Dropout and any other in-model randomness restart from a per-epoch seed, so a run
        # resumed from an epoch checkpoint draws exactly what the uninterrupted run drew.
        # a dense twin (tnbench.pipeline.twin) is trained as a pretraining would be
        torch.manual_seed(stage_seed(self.seed, self.stage_name, self.current_epoch))
        self._sums = torch.zeros(3, device=self.device)  # loss * n, correct, n
        # The schedule is per epoch: bring it to this epoch. Counting from the epoch (rather
        # than stepping at each epoch's end) keeps a fit resumed from an epoch checkpoint,
        # saved before any end-of-epoch step, on exactly the uninterrupted run's rates.
        schedule = self.lr_schedulers()
        if schedule is not None:
            with warnings.catch_warnings():  # a resumed fit catches up before its first optimizer step
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step",
                                        category=UserWarning)
                while schedule.last_epoch < self.current_epoch:
                    schedule.step()

    def on_train_epoch_end(self) -> None:
        loss, acc = self._train_epoch_metrics()
        self.log_dict({f"{self.stage_name}/train_loss_epoch": loss, f"{self.stage_name}/train_acc": acc,
                       f"{self.stage_name}/epoch": float(self.current_epoch + 1)})
        if not torch.isfinite(loss):
            raise Diverged(self.stage_name, self.global_step, f"training loss became {float(loss.detach())}")

    def _train_epoch_metrics(self) -> tuple[torch.Tensor, torch.Tensor]:
        sums = self.trainer.strategy.reduce(self._sums, reduce_op="sum")  # over DDP ranks
        return sums[0] / sums[2].clamp(min=1), 100.0 * sums[1] / sums[2].clamp(min=1)

    def on_validation_start(self) -> None:
        if self.bn_recalibration and not self.trainer.sanity_checking:
            recalibrate_bn(self.model, self.trainer.datamodule.statistics_dataloader())

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(2, device=self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.val_acc.update(logits, y)
        # summed here rather than self.log'd, so the epoch's mean is at hand for the curve below
        self._val_sums += torch.stack([F.cross_entropy(logits.float(), y, reduction="sum"),
                                       y.new_tensor(y.numel(), dtype=torch.float32)])

    def on_validation_epoch_end(self) -> None:
        # torchmetrics syncs its state over DDP ranks in compute()
        acc = self.val_acc.compute() * 100.0
        self.val_acc.reset()
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        val_loss = sums[0] / sums[1].clamp(min=1)
        fitting = self.trainer.state.fn == "fit" and not self.trainer.sanity_checking
        epoch = self.current_epoch + 1 if fitting else self.epochs_done.get(self.stage_name, 0)
        # A test pass alone after the stage's epochs (the pretrained model's accuracy, after a fit
        # or a cache hit) tests what its last epoch tested: W&B got that row with the curve.
        # ... and one an interrupted attempt of this run already logged (a resume) is not logged again
        repeat = not fitting and (epoch > 0 or float(epoch) in logged_epochs(self.logger, self.stage_name))
        self.log_dict({f"{self.stage_name}/val_acc": acc, f"{self.stage_name}/val_loss": val_loss,
                       f"{self.stage_name}/epoch": float(epoch)},
                      logger=False if repeat else None)  # None, not True: Lightning warns on True without a logger
        if fitting:
            self.history.append(float(acc))
            self.epochs_done[self.stage_name] = epoch
            # the training sums are complete here (the test pass follows an epoch's last step)
            loss, train_acc = self._train_epoch_metrics()
            self.curve.append({"epoch": epoch, "train_loss_epoch": float(loss), "train_acc": float(train_acc),
                               "val_acc": float(acc), "val_loss": float(val_loss)})

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.parameters(), self.optim_cfg)
        schedule = build_schedule(optimizer, self.optim_cfg, self.epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}  # stepped in on_train_epoch_start
