"""`method=tucker`: fixed-rank partial Tucker of the selected layers, then ordinary fine-tuning.

Each selected Conv2d becomes a `TuckerConv2d` (by default factored on its OUT and IN modes,
kernel modes whole), each Linear a `TuckerLinear`, both initialised by truncated HOSVD.
`method.ranks` gives one rank per entry of `method.modes` (or one value for all): an integer
is a rank, a float in (0, 1] a fraction of the mode size (rounded up). The shared
`method.rank`, when set, is an integer rank for every mode (so `-m method=svd,tucker
method.rank=4,8` compares both at the same ranks). Linear layers use the `out`/`in` entries.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import ListConfig
from torch import nn

from tnbench.config import MethodConfig
from tnbench.errors import ConfigError
from tnbench.functional.approximation import norm_loss, relative_error
from tnbench.functional.tucker import resolve_rank, tucker_params
from tnbench.layers.tucker import CONV_MODES, LINEAR_MODES, TuckerConv2d, TuckerLinear
from tnbench.methods import METHODS
from tnbench.methods.base import (
    Knob,
    LayerReport,
    Method,
    check_modes,
    forget_weight_memo,
    kind_of,
    left_dense,
    replace_module,
    ungrouped_layers,
    weight_pairs_at,
)


@dataclass
class TuckerConfig(MethodConfig):
    name: str = "tucker"
    ranks: Any = field(default_factory=lambda: [0.5, 0.5])  # per mode in `modes`, or one value
    modes: list[str] = field(default_factory=lambda: ["out", "in"])  # factored conv modes
    skip_if_larger: bool = True  # leave a layer dense where the Tucker format would be larger


def check_rank_spec(value: Any, key: str) -> None:
    try:
        resolve_rank(value, 1)
    except ValueError:
        raise ConfigError(f"{key} entries must be integers >= 1 or fractions in (0, 1]; got {value!r}") from None


def layer_ranks(spec: dict[str, Any], layer: nn.Module, name: str, key: str) -> dict[str, int]:
    """Integer rank per factored mode of `layer`; an integer larger than the mode is an error."""
    shape = layer.weight.shape
    names = CONV_MODES if isinstance(layer, nn.Conv2d) else LINEAR_MODES
    out = {}
    for mode, value in spec.items():
        if mode not in names:
            continue
        size = shape[names.index(mode)]
        rank = resolve_rank(value, size)
        if rank > size:
            raise ConfigError(f"{key}: rank {rank} for mode {mode} of layer {name} exceeds the mode size {size}")
        out[mode] = rank
    return out


@METHODS.register("tucker")
class TuckerFactorization(Method):
    config_class = TuckerConfig
    # one fraction of every mode's size (rounded up to an integer rank per mode)
    knob = Knob("ranks", float, 1e-6, 1.0, clears=("rank",), granularity="integer Tucker ranks per mode")

    def validate(self) -> None:
        self.modes = check_modes(self.cfg.modes, CONV_MODES, "method.modes")
        rank = self.cfg.get("rank")
        if rank is not None:
            if rank < 1:
                raise ConfigError(f"method.rank must be >= 1, got {rank}")
            self.spec = {m: int(rank) for m in self.modes}
            return
        ranks = self.cfg.ranks
        if isinstance(ranks, (list, tuple, ListConfig)):
            ranks = list(ranks)
            if len(ranks) != len(self.cfg.modes):
                raise ConfigError(f"method.ranks has {len(ranks)} entries for {len(self.cfg.modes)} modes "
                                  f"({', '.join(self.cfg.modes)}); give one per mode or a single value")
            by_mode = dict(zip(self.cfg.modes, ranks))
        else:
            by_mode = {m: ranks for m in self.modes}
        for value in by_mode.values():
            check_rank_spec(value, "method.ranks")
        self.spec = {m: by_mode[m] for m in self.modes}

    def check_model(self, model: nn.Module) -> None:
        super().check_model(model)
        key = "method.rank" if self.cfg.get("rank") is not None else "method.ranks"
        for name, layer in self.selected_layers(model):
            if kind_of(layer) == "linear" or layer.groups == 1:
                layer_ranks(self.spec, layer, name, key)

    def layer_size(self, name: str, layer: nn.Module) -> int | None:
        w = layer.weight
        if kind_of(layer) == "conv" and layer.groups != 1:
            return w.numel()
        ranks = layer_ranks(self.spec, layer, name, "method.ranks")
        names = CONV_MODES if kind_of(layer) == "conv" else LINEAR_MODES
        if not ranks:
            return w.numel()
        size = tucker_params(tuple(w.shape), {names.index(m): r for m, r in ranks.items()})
        return w.numel() if self.cfg.skip_if_larger and size >= w.numel() else size

    def compress(self, model: nn.Module) -> list[LayerReport]:
        reports = []
        for name, layer, kind in ungrouped_layers(model, self.cfg.layers, reports):
            w = layer.weight.detach()
            ranks = layer_ranks(self.spec, layer, name, "method.ranks")
            names = CONV_MODES if kind == "conv" else LINEAR_MODES
            if not ranks:
                reports.append(left_dense(name, layer, "no factored mode applies to this layer"))
                continue
            size = tucker_params(tuple(w.shape), {names.index(m): r for m, r in ranks.items()})
            if self.cfg.skip_if_larger and size >= w.numel():
                reports.append(left_dense(name, layer, f"ranks {list(ranks.values())} would not save parameters",
                                          list(ranks.values())))
                continue
            # the modes' singular pairs once, also where a FLOP budget compresses copies at many ranks
            pairs = weight_pairs_at(layer, tuple(w.shape), {names.index(m): r for m, r in ranks.items()})
            forget_weight_memo(layer)
            cls = TuckerConv2d if kind == "conv" else TuckerLinear
            new, _ = cls.from_dense(layer, ranks, tuple(ranks), pairs)
            with torch.no_grad():
                approx = new.dense_weight()
            replace_module(model, name, new)
            reports.append(LayerReport(
                name, kind, list(w.shape), new.ranks(), w.numel(), new.weight_params(),
                norm_loss=norm_loss(w, approx), relative_error=relative_error(w, approx),
                extra={"modes": list(new.modes)},
            ))
        return reports
