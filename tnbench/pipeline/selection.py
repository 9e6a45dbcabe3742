"""Model selection on a validation split carved from the training set (`dataset.val_split`).

DLRT's protocol: train, measure the loss on a held-out validation split after every epoch, and
report the test accuracy of the epoch with the lowest validation loss. `ModelSelection` measures
the validation split after each epoch's test pass and, with `pipeline.select=best_val_loss`,
keeps a copy of the best epoch's weights, which the pipeline loads back when training ends: the
model a run ends with (and reports ranks, size and FLOPs of) is then the selected one.
"""
from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from tnbench.data.batching import InMemoryLoader


@torch.no_grad()
def holdout_metrics(model: torch.nn.Module, loader: InMemoryLoader, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) of `model` on the validation split."""
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        n += int(y.numel())
    model.train(was_training)
    return loss_sum / max(n, 1), 100.0 * correct / max(n, 1)


def best_epoch(history: list[dict[str, float]]) -> int | None:
    """The 1-based epoch of lowest validation loss (the first of ties); None without history."""
    if not history:
        return None
    return min(range(len(history)), key=lambda i: history[i]["loss"]) + 1


class ModelSelection(L.Callback):
    """After each training epoch's test pass: the validation split's loss and accuracy
    (`history`), and with `keep_best` the weights of the epoch of lowest loss so far."""

    def __init__(self, loader: InMemoryLoader, keep_best: bool) -> None:
        self.loader = loader
        self.keep_best = keep_best
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        loss, acc = holdout_metrics(pl_module, self.loader, pl_module.device)
        self.history.append({"epoch": trainer.current_epoch + 1, "loss": loss, "acc": acc})
        stage = getattr(pl_module, "stage_name", "retrain")
        pl_module.log_dict({f"{stage}/holdout_loss": loss, f"{stage}/holdout_acc": acc})
        if self.keep_best and best_epoch(self.history) == len(self.history):
            model = getattr(pl_module, "model", pl_module)
            with torch.inference_mode(False):  # plain tensors, loadable after the fit
                self.best_state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}

    def restore_best(self, model: torch.nn.Module) -> int | None:
        """Load the selected epoch's weights into `model` (layers whose ranks changed since take
        the saved shapes, tnbench.layers.tucker); returns that epoch."""
        if self.best_state is not None:
            model.load_state_dict(copy.copy(self.best_state))
        return best_epoch(self.history)

    # resumed fits keep the history and the best weights (they are in the epoch checkpoint)
    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
        self.best_state = state.get("best_state")
