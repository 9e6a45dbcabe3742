"""`method=svd`: matrix low-rank factorization of Linear and Conv2d layers by truncated SVD.

Convs are matricized OUT x (IN*KH*KW) and run as a KHxKW conv to `rank` channels followed by
a 1x1 conv. The rank is `method.rank`, or with `method.energy` the smallest rank that keeps
that share of the squared Frobenius norm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from tnbench.config import ConfigError, MethodConfig
from tnbench.layers import LowRankConv2d, LowRankLinear
from tnbench.linalg import matricize_conv, norm_loss, rank_for_energy, relative_error
from tnbench.methods import METHODS
from tnbench.methods.base import LayerReport, Method, replace_module, select_layers


@dataclass
class SVDConfig(MethodConfig):
    name: str = "svd"
    rank: Optional[int] = 8
    energy: Optional[float] = None  # keep the smallest rank holding this share of ||W||^2
    skip_if_larger: bool = True  # leave a layer dense where the factors would be larger


@METHODS.register("svd")
class SVDFactorization(Method):
    config_class = SVDConfig

    def validate(self) -> None:
        rank, energy = self.cfg.rank, self.cfg.energy
        if energy is not None:
            if not 0.0 < energy <= 1.0:
                raise ConfigError(f"method.energy must be in (0, 1], got {energy}")
        elif rank is None:
            raise ConfigError("method.rank or method.energy must be set (rank >= 1 or energy in (0, 1])")
        elif rank < 1:
            raise ConfigError(f"method.rank must be >= 1, got {rank}")

    def _rank(self, s: torch.Tensor) -> int:
        if self.cfg.energy is not None:
            return rank_for_energy(s, self.cfg.energy)
        return min(self.cfg.rank, s.numel())

    def compress(self, model: nn.Module) -> list[LayerReport]:
        reports = []
        for name, layer in select_layers(model, self.cfg.layers):
            w = layer.weight.detach()
            matrix = matricize_conv(w) if isinstance(layer, nn.Conv2d) else w
            m, n = matrix.shape
            s = torch.linalg.svdvals(matrix.double())
            rank = self._rank(s)
            factored = rank * (m + n)
            kind = "conv" if isinstance(layer, nn.Conv2d) else "linear"
            if isinstance(layer, nn.Conv2d) and layer.groups != 1:
                reports.append(LayerReport(name, kind, list(w.shape), [], w.numel(), w.numel(),
                                           compressed=False, note="grouped conv left dense"))
                continue
            if self.cfg.skip_if_larger and factored >= m * n:
                reports.append(LayerReport(name, kind, list(w.shape), [min(m, n)], w.numel(), w.numel(),
                                           compressed=False, note=f"rank {rank} would not save parameters"))
                continue
            cls = LowRankConv2d if kind == "conv" else LowRankLinear
            new, _ = cls.from_dense(layer, rank)
            replace_module(model, name, new)
            reports.append(LayerReport(
                name, kind, list(w.shape), [rank], w.numel(), new.weight_params(),
                norm_loss=norm_loss(s, rank), relative_error=relative_error(s, rank),
            ))
        return reports
