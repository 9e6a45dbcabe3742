"""`method=dlrt`: DLRT, rank-adaptive matrix low-rank training (arXiv 2205.13571).

Each selected layer is W = U S V^T with orthonormal U, V and a small core S: Linear layers as
`TuckerLinear` (the two-mode case), Conv2d layers matricized OUT x (IN*KH*KW) as `USVConv2d`.
The K/L-steps augment U and V, the S-step trains S, and the truncation keeps one rank r per
layer, the smallest with ||sigma[r:]|| <= tau ||sigma|| for the singular values sigma of S
(tnbench.methods.families.integrator). DLRT integrates every step (adapt_every 1).

Two sets of settings (papers.md section 2; `method=dlrt_official` is the second):
- ours (the defaults): r_min 1, every layer capped by r_max 400, start at rank 50, factors from
  the truncated SVD of the weights the method is given (pretrained, or the random initial ones).
- the official code's: r_min 2, each layer capped at half its smaller side
  (`rank_cap=half`: 10, 25, 250 for the DLRT LeNet-5), start at the cap (`rank_init=cap`),
  random orthonormal U, V and S = diag of sorted |N(0,1)| (`init=random`), augmenting to twice
  the rank (buffers of twice the cap). Its model selection (best validation loss on a 50k/10k
  split) is the pipeline's `pipeline.select=best_val_loss` with `dataset.val_split`.
Budgets (`budget.*`, tnbench.pipeline.budget; tnbench.methods.families.rank_adaptive): by default
the knob is the cap, `rank_cap` as one fraction of every layer's smaller side, and the layers start
at it (`rank_init: cap`), as the official code starts at its cap; tau stays 0.1, so the ranks adapt
below the cap and the retrained model never exceeds the budget. With `budget_knob: tau` the knob is
the tolerance and the layers start at the rank the truncation rule at tau keeps of each matricized
weight's SVD (`rank_init: tau`); with `init=random` the factors do not come from the weights, so
that sizing means nothing: refused (one line naming method.init).
Not reproduced: the official truncation ignores the last singular value of the augmented S and
keeps the rank when no j qualifies; ours is the plain tau rule above.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tnbench.config import MAX_METHOD_SEED, one_of, ranged
from tnbench.errors import ConfigError
from tnbench.functional.counting import DLRT as DLRT_RULE
from tnbench.functional.lowrank import random_usv
from tnbench.layers.tucker import TuckerLayer, TuckerLinear, USVConv2d
from tnbench.methods import METHODS
from tnbench.methods.base import LayerReport
from tnbench.methods.families.rank_adaptive import RankAdaptiveConfig, RankAdaptiveMethod

INITS = ("decompose", "random")


@dataclass
class DLRTConfig(RankAdaptiveConfig):
    name: str = "dlrt"
    r_min: int = ranged(1, ge=1)
    r_max: int = ranged(400, ge=1)
    adapt_every: int = ranged(1, ge=1)
    # decompose: truncated SVD of the weights given; random: the official code's random
    # orthonormal U, V and S = diag(sorted |N(0,1)|), drawn from init_seed
    init: str = one_of("decompose", INITS)
    init_seed: int = ranged(0, ge=0, le=MAX_METHOD_SEED)


@METHODS.register("dlrt")
class DLRT(RankAdaptiveMethod):
    config_class = DLRTConfig
    tie = True
    count_rule = DLRT_RULE  # the published table counts r(OUT+1) per layer + the dense layers

    def validate(self) -> None:
        super().validate()
        if self.rank_init_spec() == "tau" and self.cfg.init == "random":
            raise ConfigError("method.init=random draws factors unrelated to the weights, so the starting ranks cannot "
                              "follow tau (method.rank_init=tau, which budget.* sets with method.budget_knob=tau); "
                              "allowed: method.init=decompose, or method.budget_knob=rank_cap")

    def layout(self, layer: nn.Module) -> tuple[tuple[int, ...], list[int]]:
        return (layer.weight.shape[0], layer.weight[0].numel()), [0, 1]

    def compress(self, model: nn.Module) -> list[LayerReport]:
        self.generator = torch.Generator().manual_seed(self.cfg.init_seed)
        return super().compress(model)

    def factorize(self, layer: nn.Module) -> TuckerLayer:
        rows, cols = layer.weight.shape[0], layer.weight[0].numel()
        rank = self.start_ranks(layer)[0]
        if self.cfg.init == "decompose":
            # the singular pairs at the ranks from_dense takes (a conv's: one rank, at most either side)
            if isinstance(layer, nn.Conv2d):
                r = min(rank, rows, cols)
                return USVConv2d.from_dense(layer, rank, self.decompositions(layer, {0: r, 1: r}))[0]
            return TuckerLinear.from_dense(layer, rank, pairs=self.decompositions(layer, {0: rank, 1: rank}))[0]
        w = layer.weight.detach()
        new = (USVConv2d(layer, rank) if isinstance(layer, nn.Conv2d) else TuckerLinear(layer, rank))
        new = new.to(device=w.device, dtype=w.dtype)
        u, s, v = random_usv(rows, cols, rank, self.generator, w.dtype)
        bias = layer.bias.detach() if layer.bias is not None else None
        new._load_decomposition(s.to(w.device), {0: u.to(w.device), 1: v.to(w.device)}, bias)
        return new
