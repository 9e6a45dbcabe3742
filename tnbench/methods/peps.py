"""`method=peps`: Linear -> PEPSLinear on a `grid_rows` x (num_cores / grid_rows) grid; convs stay
dense. Initialization as for `tt` (tnbench.methods.families.tensorized), except `decompose`:
no PEPS-SVD exists, so a log-normalized random grid is fitted to the weight by Adam."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tnbench.config import ranged
from tnbench.errors import ConfigError
from tnbench.functional.fitting import fit_least_squares
from tnbench.functional.partial_norm import normalize_log
from tnbench.layers.tensorized import PEPSLinear, TensorizedLayer
from tnbench.methods import METHODS
from tnbench.methods.families.tensorized import TensorizedMethod, TTConfig, gaussian_nodes


@dataclass
class PEPSConfig(TTConfig):
    name: str = "peps"
    num_cores: int = ranged(4, ge=1)
    grid_rows: int = ranged(2, ge=1)
    fit_steps: int = ranged(500, ge=0)  # init=decompose: Adam steps fitting the grid to the dense weight
    fit_lr: float = ranged(0.02, gt=0)


@METHODS.register("peps")
class PEPSMethod(TensorizedMethod):
    config_class = PEPSConfig
    handles = (nn.Linear,)

    def validate(self) -> None:
        super().validate()
        c = self.cfg
        if c.num_cores % c.grid_rows:
            raise ConfigError(f"method.num_cores ({c.num_cores}) must be a multiple of method.grid_rows ({c.grid_rows})")
        for name, spec in dict(c.factors or {}).items():
            if len(spec["out"]) % c.grid_rows:
                raise ConfigError(f"method.factors.{name} needs a multiple of method.grid_rows ({c.grid_rows}) factors")

    def build(self, name: str, layer: nn.Module) -> TensorizedLayer | None:
        if not isinstance(layer, nn.Linear):
            return None
        out_f, in_f = self.factors(name, layer.out_features, layer.in_features)
        return PEPSLinear(layer.in_features, layer.out_features, out_f, in_f, self.bond_dim, rows=self.cfg.grid_rows,
                          bias=layer.bias is not None)

    def decompose(self, new: TensorizedLayer, layer: nn.Module) -> dict[str, Any]:
        w = layer.weight.detach()
        generator = torch.Generator().manual_seed(self.cfg.init_seed)
        nodes = gaussian_nodes([p.shape for p in new.cores], 0.0, 1.0, generator)
        normalize_log(new.net, nodes, target=max(float(torch.linalg.vector_norm(w)), 1e-12))
        new.set_nodes(nodes)
        error = fit_least_squares(new.cores, new.dense_weight, w, self.cfg.fit_steps, self.cfg.fit_lr)
        if layer.bias is not None:
            with torch.no_grad():
                new.bias.copy_(layer.bias)
        return {"fit_steps": self.cfg.fit_steps, "fit_relative_error": error}
