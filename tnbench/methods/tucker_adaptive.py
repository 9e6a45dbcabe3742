"""`method=tucker_adaptive`: TDLRT, rank-adaptive training in Tucker format (arXiv 2305.19059).

Each selected Conv2d becomes a `TuckerConv2d` factored on the adaptive modes (default OUT and
IN, kernel modes whole, as in the authors' later code), each Linear a `TuckerLinear` (its
`out`/`in` modes); the rank of every factored mode is then adapted while training by the
integrator in tnbench.methods.families.integrator. Defaults: tau 0.1, r_min 7, r_max 100, initial
rank 50, truncation every 10 steps (papers.md section 2). Budgets (`budget.*`,
tnbench.methods.families.rank_adaptive) search by default the cap `rank_cap`, one fraction of every
factored mode's size (like method=tucker's `ranks`, at most r_max; a cap below r_min wins over
the floor), and start every mode at it (`rank_init: cap`); tau stays 0.1, so the ranks adapt
below the caps. With `budget_knob: tau` they search tau instead and start each mode at the rank
the truncation rule at tau keeps of the weight's HOSVD (`rank_init: tau`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from tnbench.functional.counting import STORED
from tnbench.layers.tucker import CONV_MODES, LINEAR_MODES, TuckerConv2d, TuckerLayer, TuckerLinear
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

    def layer_modes(self, layer: nn.Module) -> tuple[str, ...]:
        """The layer's factored modes, in its own mode order."""
        if isinstance(layer, nn.Conv2d):
            return CONV_MODES
        # a Linear has only out/in; with adaptive_modes naming neither (kh/kw only), both adapt
        return LINEAR_MODES

    def factored(self, layer: nn.Module) -> list[str]:
        names = self.layer_modes(layer)
        return [m for m in self.modes if m in names] or list(names)

    def layout(self, layer: nn.Module) -> tuple[tuple[int, ...], list[int]]:
        names = self.layer_modes(layer)
        return tuple(layer.weight.shape), [names.index(m) for m in self.factored(layer)]

    def factorize(self, layer: nn.Module) -> TuckerLayer:
        names, by_axis = self.layer_modes(layer), self.start_ranks(layer)
        ranks = {m: by_axis[names.index(m)] for m in self.factored(layer)}
        cls = TuckerConv2d if isinstance(layer, nn.Conv2d) else TuckerLinear
        return cls.from_dense(layer, ranks, tuple(ranks), self.decompositions(layer, by_axis))[0]
