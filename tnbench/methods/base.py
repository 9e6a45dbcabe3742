"""What every compression method shares: layer selection, replacement and per-layer reports."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from tnbench.config import ConfigError, MethodConfig

COMPRESSIBLE = (nn.Linear, nn.Conv2d)


@dataclass
class LayerReport:
    """One compressed (or deliberately skipped) layer. Parameter counts are weights only:
    biases are never factorized, and the DLRT/TDLRT papers count weights without them."""

    name: str
    kind: str
    shape: list[int]
    ranks: list[int]
    weight_params_dense: int
    weight_params_compressed: int
    norm_loss: float = 0.0
    relative_error: float = 0.0
    compressed: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compressible_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, COMPRESSIBLE)]


def select_layers(model: nn.Module, spec: Any) -> list[tuple[str, nn.Module]]:
    """`all`, `all_but_first_last` (the papers' default: input and classifier stay dense),
    or an explicit list of module names."""
    layers = compressible_layers(model)
    if spec == "all":
        return layers
    if spec == "all_but_first_last":
        return layers[1:-1]
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, Iterable):
        names = dict(layers)
        wanted = list(spec)
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ConfigError(
                f"method.layers names unknown layer(s) {', '.join(unknown)}; "
                f"allowed: all, all_but_first_last, or names among {', '.join(names)}"
            )
        return [(n, names[n]) for n in wanted]
    raise ConfigError(f"method.layers must be all, all_but_first_last or a list of names; got {spec!r}")


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-d weights are in channels-last order (judged on those where the two
    orders differ: a 1-channel or 1x1 kernel is contiguous in both)."""
    return any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters())


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` in place of the submodule `name`, in the model's memory format: a contiguous
    layer among channels-last ones takes a slow mixed-layout path (~4x on CPU)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if is_channels_last(model):
        new = new.to(memory_format=torch.channels_last)
    setattr(parent, child, new)


class Method:
    """A compression method. `compress` changes a pretrained model in place and reports each
    layer; `callbacks` lets a method take part in retraining without the pipeline knowing.
    `config_class` is the structured config its YAML is validated against."""

    config_class: type = MethodConfig

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for out-of-range settings, before any work starts."""

    def compress(self, model: nn.Module) -> list[LayerReport]:
        raise NotImplementedError

    def callbacks(self) -> list[Any]:
        """Lightning callbacks active during retraining (e.g. rank adaptation)."""
        return []

    def describe(self, model: nn.Module) -> list[LayerReport] | None:
        """Layer reports of the model *after* retraining, for methods whose structure changes
        while training (adaptive ranks); None means the post-compression reports still hold."""
        return None

    def extra_record(self) -> dict[str, Any]:
        """Method-specific results merged into the run record (e.g. rank histories)."""
        return {}
