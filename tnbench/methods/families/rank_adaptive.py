"""What `method=dlrt` and `method=tucker_adaptive` share: layers held as a core and orthonormal
factors (tnbench.layers.tucker), compressed at a starting rank, whose ranks the integrator
(tnbench.methods.families.integrator) adapts while the pipeline retrains.

Rank caps (`rank_cap`): the most each factored mode's rank may be, per layer: `r_max` (the same
for every mode), `half` (half the mode's full rank, DLRT's official code) or a fraction of the full
rank (rounded up); always at most `r_max` and at most the product of the other modes' caps (the
most a core's unfolding can hold, `feasible_ranks`), and a cap below `r_min` wins over the floor.
The full rank is the mode size (tucker_adaptive) or the matricized weight's smaller side (dlrt).
With `half` or a fraction the integrator augments to twice the cap and truncates back under it.

Budgets (`budget.*`) search one of two knobs (`budget_knob`):
- `rank_cap` (the default): the search sets the fraction cap and starts every layer at it
  (`rank_init: cap`), as the official DLRT code starts at its cap. The size then follows from the
  shapes alone (also on the meta device, so an out-of-reach budget is refused up front), tau stays
  the method's own, and since retraining can only lower the ranks under the cap, the retrained
  model is at most the size the search landed on: its ratio is at least the asked one within the
  budget's tolerance. This is the fair equal-budget setting.
- `tau`: the search sets the tolerance and starts the layers at `rank_init: tau`, the ranks the
  integrator's own truncation rule (`truncation_ranks`) keeps of the spectra of the weights the
  method is given (pretrained, or the random initial ones with `pipeline.pretrain_epochs=0`).
  That lands the model as compressed on the budget, but the tolerance it takes (0.7-0.9 on a
  pretrained LeNet-5) is then applied again at every truncation, so the ranks keep falling in
  retraining (results/studies/budget_lenet5_fmnist).
Either way the record's `budget_reached` is the retrained model's and
`compression_at_compress.budget_reached` the one the search aimed at."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tnbench.config import MethodConfig, checked, one_of, ranged
from tnbench.errors import ConfigError
from tnbench.functional.approximation import norm_loss, relative_error
from tnbench.functional.tucker import (
    clamp_rank,
    feasible_ranks,
    resolve_rank,
    truncation_ranks,
    tucker_params,
)
from tnbench.layers.tucker import TuckerLayer
from tnbench.methods.base import (
    Knob,
    LayerReport,
    Method,
    forget_weight_memo,
    replace_module,
    ungrouped_layers,
    weight_pairs,
    weight_pairs_at,
)
from tnbench.methods.families.integrator import RankAdaptiveIntegrator

RANK_CAPS = ("r_max", "half")
BUDGET_KNOBS = ("rank_cap", "tau")


def check_rank_cap(key: str, value: Any) -> None:
    if value in RANK_CAPS or (isinstance(value, float) and 0.0 < value <= 1.0):
        return
    raise ConfigError(f"{key} must be one of {', '.join(RANK_CAPS)} or a fraction in (0, 1] of each full rank; "
                      f"got {value!r}")


@dataclass
class RankAdaptiveConfig(MethodConfig):
    """Settings shared by the rank-adaptive methods (defaults: TDLRT's later public code)."""

    tau: float = ranged(0.1, gt=0, lt=1)  # relative truncation tolerance
    r_min: int = ranged(7, ge=1)  # ranks are clamped to [r_min, r_max], each capped at the mode size
    r_max: int = ranged(100, ge=1)
    # starting rank: an integer, a fraction (0, 1] of each mode size, `cap` (the cap), or `tau` (the
    # truncation rule at tau on the given weights' spectra; what a budget sets)
    rank_init: Any = 50
    adapt_every: int = ranged(10, ge=1)  # optimizer steps per augment -> train -> truncate window
    # each factored mode's most rank: r_max | half | a fraction in (0, 1] of its full rank (see above)
    rank_cap: Any = checked("r_max", check_rank_cap)
    # what budget.* searches: rank_cap (start at the cap, adapt below it) or tau (start where the
    # truncation at tau keeps the weights; how budgets worked before this option existed)
    budget_knob: str = one_of("rank_cap", BUDGET_KNOBS)


def weight_spectrum(layer: nn.Module, shape: tuple[int, ...], axis: int) -> torch.Tensor:
    """Singular values of the mode-`axis` unfolding of the layer's weight viewed as `shape`
    (in float64, as the integrator computes a core's), padded with zeros, descending."""
    return weight_pairs(layer, shape, axis)[1]


class RankAdaptiveMethod(Method):
    """Compress the selected layers into factored form at `rank_init` (HOSVD of the current
    weights: pretrained, or the random initialisation when pretrain_epochs=0), then let the
    integrator adapt the ranks during retraining."""

    config_class = RankAdaptiveConfig
    budget_options = ("budget_knob",)
    tie = False  # one rank per layer (the matrix case) instead of one per mode
    # budget_knob=rank_cap: one fraction of every full rank, the layers starting at that cap
    knob = Knob("rank_cap", float, 1e-6, 1.0, clears=("rank",), sets=(("rank_init", "cap"),),
                granularity="integer rank caps per layer and factored mode, ceil(rank_cap x full rank), at most r_max")
    # budget_knob=tau: a larger tolerance truncates more; the starting ranks follow it (rank_init: tau)
    tau_knob = Knob("tau", float, 1e-4, 0.999, more_params=False, clears=("rank",), sets=(("rank_init", "tau"),),
                    granularity="one rank step per layer and factored mode, ranks within [r_min, r_max]")

    @classmethod
    def knob_for(cls, section: Any) -> Knob:
        return cls.tau_knob if section.get("budget_knob") == "tau" else cls.knob

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.layers: list[tuple[str, TuckerLayer]] = []
        self.reports: list[LayerReport] = []
        self.history: list[dict[str, Any]] = []
        self.caps: dict[str, tuple[dict[int, int], dict[int, int]]] = {}

    def validate(self) -> None:
        c = self.cfg
        if c.r_min > c.r_max:
            raise ConfigError(f"method.r_min ({c.r_min}) must be <= method.r_max ({c.r_max})")
        if self.rank_init_spec() in ("cap", "tau"):
            return
        try:
            resolve_rank(self.rank_init_spec(), 1)
        except ValueError:
            raise ConfigError(f"method.rank_init must be an integer >= 1, a fraction in (0, 1], cap or tau; "
                              f"got {self.rank_init_spec()!r}") from None
        if isinstance(self.rank_init_spec(), int) and not c.r_min <= self.rank_init_spec() <= c.r_max:
            raise ConfigError(f"method.rank_init ({self.rank_init_spec()}) must lie in [r_min, r_max] = "
                              f"[{c.r_min}, {c.r_max}]")

    def rank_init_spec(self) -> Any:
        """The shared `method.rank`, when a sweep sets it, is the starting rank."""
        rank = self.cfg.get("rank")
        return int(rank) if rank is not None else self.cfg.rank_init

    def layout(self, layer: nn.Module) -> tuple[tuple[int, ...], list[int]]:
        """How the integrator holds a layer: the weight's shape as factored and the factored axes."""
        raise NotImplementedError

    def full_ranks(self, layer: nn.Module) -> dict[int, int]:
        """Per factored axis, the most its rank can be: the mode size, or with `tie` (one rank
        per layer) the smallest of them."""
        shape, axes = self.layout(layer)
        side = min(shape[a] for a in axes)
        return {a: side if self.tie else shape[a] for a in axes}

    def rank_caps(self, layer: nn.Module) -> dict[int, int]:
        """Per factored axis, the cap its rank is truncated under (`rank_cap`, at most r_max), and at
        most what the other axes' caps let the core's unfolding have (`feasible_ranks`: a fraction
        of a Linear's two sides caps the larger side at the smaller's rank)."""
        rule = self.cfg.rank_cap
        caps = {}
        for a, full in self.full_ranks(layer).items():
            cap = full if rule == "r_max" else full // 2 if rule == "half" else resolve_rank(float(rule), full)
            caps[a] = max(1, min(self.cfg.r_max, cap))
        return feasible_ranks(self.layout(layer)[0], caps)

    def layer_caps(self, layer: nn.Module) -> tuple[dict[int, int], dict[int, int]] | None:
        """A layer's own (truncation caps, augmentation caps) per axis, where they differ from
        r_max for every layer (None: r_max, tnbench.methods.families.integrator): with `half` or
        a fraction, the cap and twice it (the official code's buffers of twice the cap)."""
        if self.cfg.rank_cap == "r_max":
            return None
        caps = self.rank_caps(layer)
        return caps, {a: 2 * c for a, c in caps.items()}

    def start_ranks(self, layer: nn.Module) -> dict[int, int]:
        """Per factored axis, the rank compression starts at (`rank_init`), never above its cap."""
        spec = self.rank_init_spec()
        if spec == "tau":
            return self.tau_ranks(layer)
        caps = self.rank_caps(layer)
        if spec == "cap":
            return caps
        full = self.full_ranks(layer)
        return {a: min(clamp_rank(resolve_rank(spec, full[a]), self.cfg.r_min, self.cfg.r_max, full[a]), caps[a])
                for a in caps}

    def tau_ranks(self, layer: nn.Module) -> dict[int, int]:
        """Per factored axis, the rank the integrator's truncation at `tau` keeps of the layer's
        weight as it is (`rank_init: tau`)."""
        shape, axes = self.layout(layer)
        spectra = {a: weight_spectrum(layer, shape, a) for a in axes}
        return truncation_ranks(spectra, self.cfg.tau, self.cfg.r_min, self.rank_caps(layer),
                                {a: shape[a] for a in axes}, self.tie)

    def layer_size(self, name: str, layer: nn.Module) -> int | None:
        """From the shapes (also on the meta device); with `rank_init: tau` from the spectra of
        the real weights (None on the meta device)."""
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            return layer.weight.numel()  # left dense
        if self.rank_init_spec() == "tau" and layer.weight.is_meta:
            return None
        return tucker_params(self.layout(layer)[0], self.start_ranks(layer))

    def factorize(self, layer: nn.Module) -> TuckerLayer:
        """The factored replacement of one Conv2d/Linear at the starting ranks."""
        raise NotImplementedError

    def decompositions(self, layer: nn.Module, ranks: dict[int, int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Per factored axis, the singular pairs a factorization at `ranks` starts from, of the
        weight as the integrator holds it (`weight_pairs_at`)."""
        return weight_pairs_at(layer, self.layout(layer)[0], ranks)

    def compress(self, model: nn.Module) -> list[LayerReport]:
        reports: list[LayerReport] = []
        self.layers, self.reports = [], reports
        self.history.clear()
        self.caps.clear()
        for name, layer, kind in ungrouped_layers(model, self.cfg.layers, reports):
            w = layer.weight.detach()
            new = self.factorize(layer)
            forget_weight_memo(layer)  # its decompositions are used
            if (caps := self.layer_caps(layer)) is not None:
                self.caps[name] = caps
            with torch.no_grad():
                approx = new.dense_weight()
            for mode in new.modes:
                new.factor(mode).requires_grad_(False)  # moved by the integrator only
            replace_module(model, name, new)
            self.layers.append((name, new))
            report = LayerReport(name, kind, list(w.shape), self.ranks_of(new), w.numel(), new.weight_params(),
                                 norm_loss=norm_loss(w, approx), relative_error=relative_error(w, approx),
                                 extra={"modes": list(new.modes)})
            reports.append(report)
        return reports

    def ranks_of(self, layer: TuckerLayer) -> list[int]:
        return layer.ranks()[:1] if self.tie else layer.ranks()

    def callbacks(self) -> list[Any]:
        c = self.cfg
        return [RankAdaptiveIntegrator(self.layers, c.tau, c.r_min, c.r_max, c.adapt_every, tie=self.tie,
                                       history=self.history, caps=self.caps or None)]

    def describe(self, model: nn.Module) -> list[LayerReport] | None:
        """The layers as retraining left them. norm_loss and relative_error stay those of the
        initial factorization (the trained weights have no dense counterpart to compare with)."""
        adapted = dict(self.layers)
        out = []
        for start in self.reports:
            layer = adapted.get(start.name)
            if layer is None:  # left dense
                out.append(start)
                continue
            out.append(LayerReport(
                start.name, start.kind, start.shape, self.ranks_of(layer), start.weight_params_dense,
                layer.weight_params(), norm_loss=start.norm_loss, relative_error=start.relative_error,
                note=f"ranks adapted in training (tau={self.cfg.tau})",
                extra={**start.extra, "ranks_at_compress": start.ranks},
            ))
        return out

    def extra_record(self) -> dict[str, Any]:
        return {"rank_history": self.history}
