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
Budgets (`budget.*`, tnbench.pipeline.budget): the knob is `tau`; the layers then start at the
rank the truncation rule at tau keeps of each matricized weight's SVD (`rank_init: tau`, capped
per layer as above), see tnbench.methods.families.rank_adaptive. With `init=random` the factors
do not come from the weights, so that sizing means nothing: refused (one line naming
method.init), as for `method=dlrt_official`.
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
from tnbench.functional.tucker import clamp_rank
from tnbench.layers.tucker import TuckerLayer, TuckerLinear, USVConv2d
from tnbench.methods import METHODS
from tnbench.methods.base import LayerReport
from tnbench.methods.families.rank_adaptive import RankAdaptiveConfig, RankAdaptiveMethod

RANK_CAPS = ("r_max", "half")
INITS = ("decompose", "random")


@dataclass
class DLRTConfig(RankAdaptiveConfig):
    name: str = "dlrt"
    r_min: int = ranged(1, ge=1)
    r_max: int = ranged(400, ge=1)
    adapt_every: int = ranged(1, ge=1)
    # r_max: every layer capped by r_max; half: floor(min(OUT, IN*KH*KW) / 2), the official code's
    # cap (and still at most r_max)
    rank_cap: str = one_of("r_max", RANK_CAPS)
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
                              "follow tau (method.rank_init=tau, which budget.* sets); allowed: method.init=decompose, "
                              "or method.init=random with a fixed method.rank_init and no budget")

    def cap(self, rows: int, cols: int) -> int:
        """The most a layer's rank may be (rows x cols, the matricized weight)."""
        side = min(rows, cols)
        return max(1, min(self.cfg.r_max, side // 2 if self.cfg.rank_cap == "half" else side))

    def layer_caps(self, layer: nn.Module) -> tuple[int, int] | None:
        if self.cfg.rank_cap == "r_max":
            return None
        rows, cols = layer.weight.shape[0], layer.weight[0].numel()
        cap = self.cap(rows, cols)
        return cap, 2 * cap  # the official code augments to 2r within buffers of twice the cap

    def layout(self, layer: nn.Module) -> tuple[tuple[int, ...], list[int], int]:
        rows, cols = layer.weight.shape[0], layer.weight[0].numel()
        return (rows, cols), [0, 1], self.cap(rows, cols)

    def start(self, rows: int, cols: int) -> int:
        cap = self.cap(rows, cols)
        if self.rank_init_spec() == "cap":
            return clamp_rank(cap, self.cfg.r_min, cap, cap)
        return min(self.start_rank(rows), self.start_rank(cols), cap)

    def compress(self, model: nn.Module) -> list[LayerReport]:
        self.generator = torch.Generator().manual_seed(self.cfg.init_seed)
        return super().compress(model)

    def factorize(self, layer: nn.Module) -> TuckerLayer:
        rows, cols = layer.weight.shape[0], layer.weight[0].numel()
        rank = self.tau_ranks(layer)[0] if self.rank_init_spec() == "tau" else self.start(rows, cols)
        if self.cfg.init == "decompose":
            if isinstance(layer, nn.Conv2d):
                return USVConv2d.from_dense(layer, rank)[0]
            return TuckerLinear.from_dense(layer, rank)[0]
        w = layer.weight.detach()
        new = (USVConv2d(layer, rank) if isinstance(layer, nn.Conv2d) else TuckerLinear(layer, rank))
        new = new.to(device=w.device, dtype=w.dtype)
        u, s, v = random_usv(rows, cols, rank, self.generator, w.dtype)
        bias = layer.bias.detach() if layer.bias is not None else None
        new._load_decomposition(s.to(w.device), {0: u.to(w.device), 1: v.to(w.device)}, bias)
        return new
