"""`method=svd_truncation`: post-training bipartition truncation of conv kernels (arXiv 2403.14379).

Each selected conv kernel (OUT x IN x KH x KW) is unfolded along `method.cut` (see
tnbench.functional.bipartition for the seven cuts), SVD-truncated and stored

- factorized (`method.factorized=true`, default): LowRankConv2d for the OUT cut, else a
  BipartitionConv2d running the cut's exact conv chain; a layer whose factors would not be
  smaller than the kernel (e.g. the KH cut keeping all KH singular values), or that has no
  factorized form here (grouped, non-zero padding mode), keeps the truncated kernel dense and
  says so in its report note;
- or dense-reconstructed (`method.factorized=false`): the truncated kernel written back into
  the original Conv2d, for accuracy studies where only the truncation matters.

How much is cut, first match wins: `method.rank` (bipartition rank), `method.rel_error`
(smallest rank with ||W - W_trunc|| / ||W|| <= tolerance), else `method.norm_loss` (smallest
rank with 1 - ||W_trunc|| / ||W|| <= target; the paper's axis). Setting both rank and
rel_error is an error. Each layer's report (and the record) also carries the energy form of
the norm loss, 1 - ||W_trunc||^2 / ||W||^2, and the correlation loss, 1 - rank / (number of
singular values of the cut): definitions in tnbench.functional.approximation.

Layers (`method.layers`): all | all_but_first_last | a list of names (tnbench.methods.base
semantics), or the depth presets `shallow` / `deep`: the first / second half of the model's
convs (the shallow half takes the middle conv when their number is odd). The presets take
Linear layers only with `method.include_linear=true` (named layers are taken as named); a
matrix has a single bipartition (OUT | IN), used whatever the cut.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from tnbench.config import MethodConfig, one_of, ranged
from tnbench.errors import ConfigError
from tnbench.functional.approximation import rank_for_norm_loss, rank_for_rel_error, truncation_losses
from tnbench.functional.bipartition import CUTS, factorized_params, fold, matrix_shape, unfold
from tnbench.functional.lowrank import split_factors, svd
from tnbench.layers import LowRankLinear
from tnbench.layers.bipartition import factorizable, factorize_conv
from tnbench.methods import METHODS
from tnbench.methods.base import (
    Knob,
    LayerReport,
    Method,
    forget_weight_memo,
    replace_module,
    select_conv_layers,
    weight_memo,
)


def cached_svd(layer: nn.Module, cut: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD (float64: U, s, V^T) of the layer's weight unfolded along `cut` (a Linear: the
    matrix itself), computed once while the weight is unchanged: a budget's search sizes the
    layers from its singular values at many norm losses, and compress truncates the same SVD."""
    return weight_memo(layer, ("bipartition", cut), lambda w: svd(unfold(w, cut) if w.dim() == 4 else w))


def cached_spectrum(layer: nn.Module, cut: str) -> torch.Tensor:
    """The singular values of `cached_svd` (descending)."""
    return cached_svd(layer, cut)[1]


@dataclass
class TruncationConfig(MethodConfig):
    name: str = "svd_truncation"
    layers: Any = "all"
    cut: str = one_of("out", CUTS)
    norm_loss: Optional[float] = ranged(0.3, ge=0, lt=1)  # target 1 - ||W_trunc|| / ||W||, in [0, 1)
    rank: Optional[int] = ranged(None, ge=1)  # fixed bipartition rank; wins over norm_loss
    rel_error: Optional[float] = ranged(None, ge=0, lt=1)  # tolerance on ||W - W_trunc|| / ||W||; wins over norm_loss
    include_linear: bool = False
    factorized: bool = True


@METHODS.register("svd_truncation")
class SVDTruncation(Method):
    config_class = TruncationConfig
    # the size depends on the weights' values: `layer_size` reads their singular values
    knob = Knob("norm_loss", float, 0.0, 0.999, more_params=False, clears=("rank", "rel_error"),
                granularity="one rank step per layer")

    @classmethod
    def ignored(cls, cfg: Any) -> set[str]:
        """`rank` or `rel_error`, when set, wins over `norm_loss`."""
        wins = cfg.get("rank") is not None or cfg.get("rel_error") is not None
        return super().ignored(cfg) | ({"norm_loss"} if wins else set())

    def validate(self) -> None:
        c = self.cfg
        if c.rank is not None and c.rel_error is not None:
            raise ConfigError("method.rank and method.rel_error are both set; set one (or neither, to use norm_loss)")
        if c.rank is None and c.rel_error is None and c.norm_loss is None:
            raise ConfigError("set one of method.norm_loss (in [0, 1)), method.rank (>= 1) or method.rel_error")

    def target(self) -> tuple[str, float]:
        c = self.cfg
        if c.rank is not None:
            return "rank", c.rank
        if c.rel_error is not None:
            return "rel_error", c.rel_error
        return "norm_loss", c.norm_loss

    def choose_rank(self, s: torch.Tensor) -> int:
        kind, value = self.target()
        if kind == "rank":
            return min(int(value), s.numel())
        if kind == "rel_error":
            return rank_for_rel_error(s, value)
        return rank_for_norm_loss(s, value)

    def selected_layers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        return select_conv_layers(model, self.cfg.layers, self.cfg.include_linear)

    def check_model(self, model: nn.Module) -> None:
        """A fixed rank at or above every selected layer's full rank truncates nothing."""
        super().check_model(model)
        if self.cfg.rank is None:
            return
        full = {name: min(matrix_shape(tuple(layer.weight.shape), self.cfg.cut if isinstance(layer, nn.Conv2d)
                                       else "out")) for name, layer in self.selected_layers(model)}
        if full and all(self.cfg.rank >= r for r in full.values()):
            ranks = ", ".join(f"{name} {r}" for name, r in full.items())
            raise ConfigError(f"method.rank={self.cfg.rank} is at least every selected layer's full rank "
                              f"(cut {self.cfg.cut}: {ranks}), so the run would truncate nothing; allowed: "
                              f"a rank below one of them")

    def layer_size(self, name: str, layer: nn.Module) -> int | None:
        """From the singular values of the real weights (None on the meta device)."""
        w = layer.weight
        if w.is_meta:
            return None
        rank = self.choose_rank(cached_spectrum(layer, self.cfg.cut if isinstance(layer, nn.Conv2d) else "out"))
        if isinstance(layer, nn.Conv2d):
            params = factorized_params(tuple(w.shape), self.cfg.cut, rank)
            dense = not self.cfg.factorized or factorizable(layer) or params >= w.numel()
        else:
            params = rank * sum(w.shape)
            dense = not (self.cfg.factorized and params < w.numel())
        return w.numel() if dense else params

    def compress(self, model: nn.Module) -> list[LayerReport]:
        reports = []
        for name, layer in self.selected_layers(model):
            if isinstance(layer, nn.Conv2d):
                reports.append(self._truncate_conv(model, name, layer))
            else:
                reports.append(self._truncate_linear(model, name, layer))
        return reports

    def _report(self, name: str, kind: str, w: torch.Tensor, cut: str, rank: int, s: torch.Tensor,
                params_factorized: int, factorized: bool, note: str) -> LayerReport:
        target_kind, target = self.target()
        losses = truncation_losses(s)
        return LayerReport(
            name, kind, list(w.shape), [rank], w.numel(), params_factorized if factorized else w.numel(),
            norm_loss=float(losses["norm_loss"][rank]), relative_error=float(losses["relative_error"][rank]), note=note,
            extra={"cut": cut, "max_rank": s.numel(), "factorized": factorized, "target": target_kind,
                   "target_value": target, "params_factorized": params_factorized,
                   "norm_loss_energy": float(losses["norm_loss_energy"][rank]),
                   "correlation_loss": float(losses["correlation_loss"][rank])},
        )

    @torch.no_grad()
    def _truncate_conv(self, model: nn.Module, name: str, conv: nn.Conv2d) -> LayerReport:
        cut, w = self.cfg.cut, conv.weight.detach()
        u, s, vh = cached_svd(conv, cut)
        forget_weight_memo(conv)  # done with it (the dense-reconstructed path writes the weight)
        rank = self.choose_rank(s)
        left, right = split_factors(u, s, vh, rank, w.dtype)
        params = factorized_params(tuple(w.shape), cut, rank)
        why_dense = None
        if not self.cfg.factorized:
            why_dense = "dense-reconstructed (method.factorized=false)"
        elif factorizable(conv):
            why_dense = f"dense-reconstructed: no factorized form for a {factorizable(conv)}"
        elif params >= w.numel():
            why_dense = f"dense-reconstructed: rank {rank} factors ({params}) not smaller than the kernel"
        if why_dense:
            conv.weight.copy_(fold(left.double() @ right.double(), cut, tuple(w.shape)).to(w.dtype))
        else:
            replace_module(model, name, factorize_conv(conv, cut, left, right))
        return self._report(name, "conv", w, cut, rank, s, params, why_dense is None, why_dense or "")

    @torch.no_grad()
    def _truncate_linear(self, model: nn.Module, name: str, linear: nn.Linear) -> LayerReport:
        w = linear.weight.detach()
        u, s, vh = cached_svd(linear, "out")
        forget_weight_memo(linear)
        rank = self.choose_rank(s)
        m, n = w.shape
        params = rank * (m + n)
        note = "" if self.cfg.cut in ("out", "in") else "linear: its only bipartition OUT | IN"
        a, b = split_factors(u, s, vh, rank, w.dtype)
        factorized = self.cfg.factorized and params < w.numel()
        if factorized:
            replace_module(model, name, LowRankLinear.from_factors(linear, a, b))
        else:
            linear.weight.copy_(a @ b)
            note = "; ".join(x for x in (note, "dense-reconstructed") if x)
        return self._report(name, "linear", w, "out", rank, s, params, factorized, note)

    def extra_record(self) -> dict[str, Any]:
        kind, value = self.target()
        return {"truncation": {"cut": self.cfg.cut, "target": kind, "target_value": value,
                               "factorized": self.cfg.factorized}}
