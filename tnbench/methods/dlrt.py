"""`method=dlrt`: DLRT, rank-adaptive matrix low-rank training (arXiv 2205.13571).

Each selected layer is W = U S V^T with orthonormal U, V and a small core S: Linear layers as
`TuckerLinear` (the two-mode case), Conv2d layers matricized OUT x (IN*KH*KW) as `USVConv2d`.
The K/L-steps augment U and V, the S-step trains S, and the truncation keeps one rank r per
layer, the smallest with ||sigma[r:]|| <= tau ||sigma|| for the singular values sigma of S
(tnbench.methods.families.integrator). DLRT integrates every step (adapt_every 1) and its published
ranks go down to 2, hence r_min 1.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tnbench.functional.counting import DLRT as DLRT_RULE
from tnbench.layers.tucker import TuckerLayer, TuckerLinear, USVConv2d
from tnbench.methods import METHODS
from tnbench.methods.families.rank_adaptive import RankAdaptiveConfig, RankAdaptiveMethod


@dataclass
class DLRTConfig(RankAdaptiveConfig):
    name: str = "dlrt"
    r_min: int = 1
    r_max: int = 400
    adapt_every: int = 1


@METHODS.register("dlrt")
class DLRT(RankAdaptiveMethod):
    config_class = DLRTConfig
    tie = True
    count_rule = DLRT_RULE  # the published table counts r(OUT+1) per layer + the dense layers

    def factorize(self, layer: nn.Module) -> TuckerLayer:
        rows, cols = layer.weight.shape[0], layer.weight[0].numel()
        rank = min(self.start_rank(rows), self.start_rank(cols))
        if isinstance(layer, nn.Conv2d):
            return USVConv2d.from_dense(layer, rank)[0]
        return TuckerLinear.from_dense(layer, rank)[0]
