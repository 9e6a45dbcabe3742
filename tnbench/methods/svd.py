"""`method=svd`: matrix low-rank factorization of Linear and Conv2d layers by truncated SVD.

Convs are matricized OUT x (IN*KH*KW) and run as a KHxKW conv to `rank` channels followed by
a 1x1 conv. The rank is `method.rank`, or with `method.energy` the smallest rank that keeps
that share of the squared Frobenius norm. Each layer's SVD is computed once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from tnbench.config import MethodConfig, ranged
from tnbench.errors import ConfigError
from tnbench.functional.approximation import rank_for_energy, truncation_curves
from tnbench.functional.lowrank import matricize_conv, split_factors, svd
from tnbench.layers import LowRankConv2d, LowRankLinear
from tnbench.methods import METHODS
from tnbench.methods.base import (
    Knob,
    LayerReport,
    Method,
    forget_weight_memo,
    kind_of,
    left_dense,
    replace_module,
    ungrouped_layers,
    weight_memo,
)


@dataclass
class SVDConfig(MethodConfig):
    name: str = "svd"
    rank: Optional[int] = ranged(8, ge=1)
    energy: Optional[float] = ranged(None, gt=0, le=1)  # keep the smallest rank holding this share of ||W||^2
    skip_if_larger: bool = True  # leave a layer dense where the factors would be larger


@METHODS.register("svd")
class SVDFactorization(Method):
    config_class = SVDConfig
    knob = Knob("rank", int, 1, clears=("energy",), granularity="one rank step per layer")

    @classmethod
    def ignored(cls, cfg):
        """With `energy` set, the rank comes from it and `rank` is not read."""
        return super().ignored(cfg) | ({"rank"} if cfg.get("energy") is not None else set())

    def validate(self) -> None:
        if self.cfg.energy is None and self.cfg.rank is None:
            raise ConfigError("method.rank or method.energy must be set (rank >= 1 or energy in (0, 1])")

    def check_model(self, model: nn.Module) -> None:
        """A fixed rank that leaves every selected layer dense (no saving at that rank) is a run
        that compresses nothing, and so is energy 1. A rank above a layer's full rank is capped to it."""
        super().check_model(model)
        rank = self.cfg.rank
        if self.cfg.energy is not None and self.cfg.energy >= 1 and self.cfg.skip_if_larger:
            raise ConfigError(f"method.energy={self.cfg.energy} keeps every singular value, so every layer stays "
                              "dense and the run would compress nothing; allowed: an energy in (0, 1), or "
                              "method.skip_if_larger=false to factorize at full rank")
        if self.cfg.energy is not None or not self.cfg.skip_if_larger:
            return
        shapes = {name: (layer.weight.shape[0], layer.weight[0].numel()) for name, layer in self.selected_layers(model)
                  if kind_of(layer) == "linear" or layer.groups == 1}
        if shapes and all(min(rank, m, n) * (m + n) >= m * n for m, n in shapes.values()):
            useful = ", ".join(f"{name} up to {(m * n - 1) // (m + n)}" for name, (m, n) in shapes.items())
            raise ConfigError(f"method.rank={rank} saves no parameters in any selected layer, so the run would "
                              f"compress nothing; ranks that save some: {useful}")

    def layer_size(self, name: str, layer: nn.Module) -> int | None:
        w = layer.weight
        if self.cfg.energy is not None:
            return None
        if kind_of(layer) == "conv" and layer.groups != 1:
            return w.numel()
        m, n = w.shape[0], w[0].numel()
        rank = min(self.cfg.rank, m, n)
        return w.numel() if self.cfg.skip_if_larger and rank * (m + n) >= m * n else rank * (m + n)

    def _rank(self, s: torch.Tensor) -> int:
        if self.cfg.energy is not None:
            return rank_for_energy(s, self.cfg.energy)
        return min(self.cfg.rank, s.numel())

    @torch.no_grad()
    def compress(self, model: nn.Module) -> list[LayerReport]:
        reports = []
        for name, layer, kind in ungrouped_layers(model, self.cfg.layers, reports):
            w = layer.weight.detach()
            m, n = matricize_conv(w).shape
            # computed once also where a budget in FLOPs compresses copies at many ranks
            u, s, vh = weight_memo(layer, "matrix svd", lambda w: svd(matricize_conv(w)))
            forget_weight_memo(layer)
            rank = self._rank(s)
            if self.cfg.skip_if_larger and rank * (m + n) >= m * n:
                reports.append(left_dense(name, layer, f"rank {rank} would not save parameters", [min(m, n)]))
                continue
            a, b = split_factors(u, s, vh, rank, w.dtype)
            cls = LowRankConv2d if kind == "conv" else LowRankLinear
            new = cls.from_factors(layer, a, b)
            replace_module(model, name, new)
            losses, errors = truncation_curves(s)
            reports.append(LayerReport(name, kind, list(w.shape), [rank], w.numel(), new.weight_params(),
                                       norm_loss=float(losses[rank]), relative_error=float(errors[rank])))
        return reports
