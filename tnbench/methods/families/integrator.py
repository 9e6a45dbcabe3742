"""The rank-adaptive integrator shared by `method=dlrt` and `method=tucker_adaptive`.

Both train layers held as a core C and orthonormal factors U_i (tnbench.layers.tucker), and
adapt each factored mode's rank while training. The integrator is a Lightning callback
working with whatever optimizer the pipeline built, so the pipeline does not know it is
special. Steps are grouped in windows of `adapt_every` optimizer steps:

1. K-step, at the first batch of a window: one extra forward/backward gives each factor's
   gradient G_i = dL/dU_i. A gradient step on the factor spans span([U_i, G_i]), and with
   K_i = U_i S_i^T one has dL/dU_i = (dL/dK_i) S_i^T, so for an invertible S_i (always so after
   a truncation) this is the span DLRT's K-step adds. Augment U_i <- orth([U_i, G_i]) to at
   most 2 r_i columns (capped by r_max and the mode size; see `augmented_rank`).
2. Project the core onto the augmented bases, C <- C x_i (U_i_new^T U_i) (a zero padding),
   and the optimizer's state of the core the same way (`project_state`).
3. S-steps: the ordinary training steps of the window; the pipeline's optimizer updates the
   core (and every parameter that is not a factor) with the bases fixed. Factors never get
   a `.grad` in these steps (requires_grad is off), so the optimizer leaves them alone.
4. Truncation, at the end of the window (and before every validation, so evaluated models
   are always truncated): SVD of each mode-i unfolding of the core, new rank = smallest j
   with ||d[j:]|| <= tau ||d||, clamped to [r_min, r_max]; U_i <- U_i P_i, C <- C x_i P_i^T,
   optimizer state likewise.

With adapt_every = 1 this is the augmented basis-update & Galerkin integrator of DLRT/TDLRT
(two gradient evaluations per step); larger windows trade basis updates for speed
(1 + 1/adapt_every evaluations per step). Parameters keep their identity when their shapes
change (`param.data = ...`), so the optimizer's param_groups stay valid.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tnbench.errors import ConfigError
from tnbench.functional.tucker import augment_basis, augmented_rank, multi_mode_product, truncation_bases
from tnbench.layers.tucker import TuckerLayer, set_param

# Optimizer state that holds squared gradients: projected with squared (elementwise) matrices
# so it stays non-negative; exact for the zero padding of an augmentation, an average for a
# truncation's rotation. Every other tensor of the parameter's shape (SGD momentum, Adam's
# first moment) is projected like the parameter itself.
SECOND_MOMENT_KEYS = ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum")


def cross_entropy_loss(pl_module: L.LightningModule, batch: Any) -> Tensor:
    x, y = batch
    return F.cross_entropy(pl_module(x), y)


@contextlib.contextmanager
def running_stats_kept(module: nn.Module) -> Iterator[None]:
    """Batch-norm running statistics are restored after the block: the K-step's extra forward
    pass must not count as a second look at the batch."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved):
                for k, v in buffers.items():
                    getattr(m, k).copy_(v)


def project_state(state: dict[str, Any], old_shape: torch.Size, matrices: dict[int, Tensor]) -> None:
    """Move one parameter's optimizer state along with the parameter: every state tensor of the
    parameter's old shape gets the same mode products (squared ones for second moments)."""
    for key, value in list(state.items()):
        if not torch.is_tensor(value) or value.dim() == 0 or value.shape != old_shape:
            continue
        mats = {a: (m * m if key in SECOND_MOMENT_KEYS else m).to(value.dtype) for a, m in matrices.items()}
        state[key] = multi_mode_product(value, mats).contiguous()


class RankAdaptiveIntegrator(L.Callback):
    """Augment -> train the core -> truncate, every `adapt_every` optimizer steps."""

    def __init__(self, layers: list[tuple[str, TuckerLayer]], tau: float, r_min: int, r_max: int,
                 adapt_every: int, tie: bool = False, history: list[dict[str, Any]] | None = None,
                 loss_fn: Callable[[L.LightningModule, Any], Tensor] = cross_entropy_loss,
                 caps: dict[str, tuple[dict[int, int], dict[int, int]]] | None = None) -> None:
        self.layers = layers
        # per layer name and factored axis, its own (truncation cap, augmentation cap) instead of
        # r_max for both (`method.rank_cap`: DLRT's official half of the smaller side, or a budget's
        # fraction of each full rank, augmenting to twice the cap)
        self.caps = caps or {}
        self.tau, self.r_min, self.r_max, self.adapt_every, self.tie = tau, r_min, r_max, adapt_every, tie
        self.history = history if history is not None else []
        self.loss_fn = loss_fn
        self.window_open = False
        self.steps_in_window = 0
        self.windows = 0

    # -- the integrator --------------------------------------------------------------------
    def factors(self) -> list[nn.Parameter]:
        return [layer.factor(m) for _, layer in self.layers for m in layer.modes]

    def basis_gradients(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any) -> list[Tensor | None]:
        params = self.factors()
        for p in params:
            p.requires_grad_(True)
        try:
            # the statistics go back only after the backward pass, which still needs them unchanged
            with running_stats_kept(pl_module):
                with trainer.precision_plugin.train_step_context():
                    loss = self.loss_fn(pl_module, batch)
                return list(torch.autograd.grad(loss, params, allow_unused=True))
        finally:
            for p in params:
                p.requires_grad_(False)

    def augment(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any) -> None:
        grads = iter(self.basis_gradients(trainer, pl_module, batch))
        for name, layer in self.layers:
            moves = {}
            for mode in layer.modes:
                limit = self.caps[name][1][layer.axis(mode)] if name in self.caps else self.r_max
                u, g = layer.factor(mode), next(grads)
                old = u.data
                columns = augmented_rank(old.shape[1], layer.mode_size(mode), limit)
                new = augment_basis(old, torch.zeros_like(old) if g is None else g.detach(), columns)
                moves[layer.axis(mode)] = (new.double().T @ old.double()).to(old.dtype)
                set_param(u, new)
            self.move_core(trainer, layer, moves)
        self.window_open, self.steps_in_window = True, 0

    def truncate(self, trainer: L.Trainer) -> None:
        for name, layer in self.layers:
            axes = [layer.axis(m) for m in layer.modes]
            sizes = {layer.axis(m): layer.mode_size(m) for m in layer.modes}
            cap = self.caps[name][0] if name in self.caps else self.r_max
            bases, _ = truncation_bases(layer.core.data, axes, self.tau, self.r_min, cap, sizes, self.tie)
            for mode in layer.modes:
                u = layer.factor(mode)
                set_param(u, u.data @ bases[layer.axis(mode)])
            self.move_core(trainer, layer, {a: p.T for a, p in bases.items()})
        self.window_open, self.steps_in_window = False, 0
        self.windows += 1

    @staticmethod
    def move_core(trainer: L.Trainer, layer: TuckerLayer, matrices: dict[int, Tensor]) -> None:
        """C <- C x_a M_a for the given axes, and the core's optimizer state with it."""
        core = layer.core
        old_shape = core.shape
        new = multi_mode_product(core.data, matrices).contiguous()
        for optimizer in trainer.optimizers:
            state = optimizer.state.get(core)
            if state:
                project_state(state, old_shape, matrices)
        set_param(core, new)

    # -- reporting -------------------------------------------------------------------------
    def layer_ranks(self, layer: TuckerLayer) -> list[int]:
        ranks = layer.ranks()
        return ranks[:1] if self.tie else ranks

    def snapshot(self, trainer: L.Trainer, epoch: int) -> dict[str, Any]:
        dense = sum(layer.dense_params() for _, layer in self.layers)
        comp = sum(layer.weight_params() for _, layer in self.layers)
        entry = {
            "epoch": epoch,
            "step": int(trainer.global_step),
            "ranks": {name: self.layer_ranks(layer) for name, layer in self.layers},
            "weight_params": comp,
            "compression_rate": 100.0 * (1.0 - comp / dense) if dense else 0.0,
        }
        self.history.append(entry)
        return entry

    # -- checkpoints: the layers take the saved shapes themselves (TuckerLayer), this keeps
    # -- the rank history going across a resumed fit ------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "windows": self.windows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history[:] = state.get("history", [])
        self.windows = int(state.get("windows", 0))

    # -- Lightning hooks -------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.world_size > 1:
            raise ConfigError("rank-adaptive methods change parameter shapes while training, which DDP cannot "
                              "follow; run them on one device (trainer.devices=1)")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for p in self.factors():
            p.requires_grad_(False)
        if not self.history:
            self.snapshot(trainer, 0)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if not self.window_open:
            self.augment(trainer, pl_module, batch)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.steps_in_window += 1
        if self.window_open and self.steps_in_window >= self.adapt_every:
            self.truncate(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.window_open:
            self.truncate(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.window_open:
            self.truncate(trainer)
        entry = self.snapshot(trainer, trainer.current_epoch + 1)
        stage = getattr(pl_module, "stage_name", "retrain")
        for name, layer in self.layers:
            modes = ["rank"] if self.tie else list(layer.modes)
            for mode, rank in zip(modes, self.layer_ranks(layer)):
                pl_module.log(f"{stage}/rank/{name}" + ("" if self.tie else f"/{mode}"), float(rank))
        pl_module.log(f"{stage}/layer_compression_rate", entry["compression_rate"])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.window_open:
            self.truncate(trainer)
