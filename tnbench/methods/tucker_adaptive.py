"""`method=tucker_adaptive`: TDLRT, rank-adaptive training in Tucker format (arXiv 2305.19059).

Each selected Conv2d becomes a `TuckerConv2d` factored on the adaptive modes (default OUT and
IN, kernel modes whole, as in the authors' later code), each Linear a `TuckerLinear` (its
`out`/`in` modes); the rank of every factored mode is then adapted while training by the
integrator in tnbench.methods.families.integrator. Defaults: tau 0.1, r_min 7, r_max 100, initial
rank 50, truncation every 10 steps (papers.md section 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from tnbench.functional.counting import STORED
from tnbench.layers.tucker import CONV_MODES, TuckerConv2d, TuckerLayer, TuckerLinear
from tnbench.methods import METHODS
from tnbench.methods.base import check_modes
from tnbench.methods.families.rank_adaptive import RankAdaptiveConfig, RankAdaptiveMethod


@dataclass
class TuckerAdaptiveConfig(RankAdaptiveConfig):
    name: str = "tucker_adaptive"
    adaptive_modes: list[str] = field(default_factory=lambda: ["out", "in"])  # among out, in, kh, kw


@METHODS.register("tucker_adaptive")
class TuckerAdaptive(RankAdaptiveMethod):
    config_class = TuckerAdaptiveConfig
    count_rule = STORED  # TDLRT's rate: stored core and factors over the factorized layers, as ours

    def validate(self) -> None:
        super().validate()
        self.modes = check_modes(self.cfg.adaptive_modes, CONV_MODES, "method.adaptive_modes")

    def factorize(self, layer: nn.Module) -> TuckerLayer:
        shape = layer.weight.shape
        if isinstance(layer, nn.Conv2d):
            ranks = {m: self.start_rank(shape[CONV_MODES.index(m)]) for m in self.modes}
            return TuckerConv2d.from_dense(layer, ranks, tuple(ranks))[0]
        # a Linear has only out/in; with adaptive_modes naming neither (kh/kw only), both adapt
        linear_modes = [m for m in self.modes if m in ("out", "in")] or ["out", "in"]
        ranks = {m: self.start_rank(shape[("out", "in").index(m)]) for m in linear_modes}
        return TuckerLinear.from_dense(layer, ranks, tuple(ranks))[0]
