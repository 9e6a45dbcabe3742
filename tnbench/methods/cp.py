"""`method=cp`: CP decomposition of conv kernels at a fixed CP rank (arXiv 2403.14379's
alternative to bipartition truncation), then the pipeline's retraining.

Every selected conv becomes a CPConv2d (tnbench.layers.cp) initialized from tensorly's parafac
of its kernel, or with `method.factorized=false` keeps its Conv2d with the dense CP
reconstruction written in. "CP truncation" in the paper's sense (no retraining) is this same
method with `pipeline.retrain_epochs=0`, which `method=cp_truncation` (conf/method/
cp_truncation.yaml) sets. Layer selection as in svd_truncation (including `shallow` / `deep`);
Linear layers are left alone (a matrix's CP is its SVD: use svd or svd_truncation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tnbench.config import MAX_METHOD_SEED, MethodConfig, one_of, ranged
from tnbench.errors import ConfigError
from tnbench.functional.cp import CP_INITS, cp_decompose, cp_kernel
from tnbench.layers.bipartition import factorizable
from tnbench.layers.cp import CPConv2d
from tnbench.methods import METHODS
from tnbench.methods.base import Knob, LayerReport, Method, left_dense, replace_module, select_conv_layers


@dataclass
class CPConfig(MethodConfig):
    name: str = "cp"
    layers: Any = "all"
    rank: int = ranged(8, ge=1)
    n_iter_max: int = ranged(100, ge=1)  # ALS sweeps at most
    tol: float = ranged(1e-6, ge=0)  # stop when the relative error improves by less than this
    init: str = one_of("svd", CP_INITS)
    seed: int = ranged(0, ge=0, le=MAX_METHOD_SEED)  # random columns of the svd init (modes shorter than the rank), random init
    factorized: bool = True
    skip_if_larger: bool = True  # leave a layer dense where the CP factors would be larger


@METHODS.register("cp")
class CPDecomposition(Method):
    config_class = CPConfig
    knob = Knob("rank", int, 1, granularity="one CP rank step per conv")

    def validate(self) -> None:
        if self.cfg.rank is None:
            raise ConfigError("method.rank must be >= 1, got None")

    def selected_layers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        return select_conv_layers(model, self.cfg.layers, include_linear=False)

    def check_model(self, model: nn.Module) -> None:
        """A rank at which every selected conv would be left dense compresses nothing."""
        super().check_model(model)
        if not self.cfg.skip_if_larger:
            return
        convs = {name: conv.weight.shape for name, conv in self.selected_layers(model) if isinstance(conv, nn.Conv2d)}
        if convs and all(self.cfg.rank * sum(shape) >= shape.numel() for shape in convs.values()):
            useful = ", ".join(f"{name} up to {(shape.numel() - 1) // sum(shape)}" for name, shape in convs.items())
            raise ConfigError(f"method.rank={self.cfg.rank} saves no parameters in any selected conv, so the run "
                              f"would compress nothing; ranks that save some: {useful}")

    def layer_size(self, name: str, layer: nn.Module) -> int | None:
        w = layer.weight
        if not isinstance(layer, nn.Conv2d):
            return w.numel()
        params = self.cfg.rank * sum(w.shape)
        if (self.cfg.skip_if_larger and params >= w.numel()) or not self.cfg.factorized or factorizable(layer):
            return w.numel()
        return params

    def compress(self, model: nn.Module) -> list[LayerReport]:
        c = self.cfg
        reports = []
        for name, conv in self.selected_layers(model):
            w = conv.weight.detach()
            if not isinstance(conv, nn.Conv2d):
                reports.append(left_dense(name, conv, "CP applies to convs: a matrix's CP is its SVD (use svd_truncation)"))
                continue
            o, i, kh, kw = w.shape
            params = c.rank * (o + i + kh + kw)
            if c.skip_if_larger and params >= w.numel():
                reports.append(left_dense(name, conv, f"CP rank {c.rank} would not save parameters", [c.rank]))
                continue
            factors, info = cp_decompose(w, c.rank, n_iter_max=c.n_iter_max, tol=c.tol, init=c.init, seed=c.seed)
            problem = factorizable(conv)
            factorized = c.factorized and problem is None
            if factorized:
                replace_module(model, name, CPConv2d.from_factors(conv, factors))
                note = ""
            else:
                with torch.no_grad():
                    conv.weight.copy_(cp_kernel(factors))
                note = f"dense-reconstructed{': ' + problem if problem and c.factorized else ''}"
            reports.append(LayerReport(
                name, "conv", list(w.shape), [c.rank], w.numel(), params if factorized else w.numel(),
                norm_loss=info["norm_loss"], relative_error=info["relative_error"], note=note,
                extra={"als_iterations": info["iterations"], "factorized": factorized, "params_factorized": params},
            ))
        return reports
