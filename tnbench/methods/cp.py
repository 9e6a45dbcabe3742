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

from tnbench.config import MethodConfig
from tnbench.errors import ConfigError
from tnbench.functional.cp import CP_INITS, cp_decompose, cp_kernel
from tnbench.layers.bipartition import factorizable
from tnbench.layers.cp import CPConv2d
from tnbench.methods import METHODS
from tnbench.methods.base import LayerReport, Method, left_dense, replace_module, select_conv_layers


@dataclass
class CPConfig(MethodConfig):
    name: str = "cp"
    layers: Any = "all"
    rank: int = 8
    n_iter_max: int = 100  # ALS sweeps at most
    tol: float = 1e-6  # stop when the relative error improves by less than this
    init: str = "svd"  # svd | random
    seed: int = 0  # random columns of the svd init (modes shorter than the rank), random init
    factorized: bool = True
    skip_if_larger: bool = True  # leave a layer dense where the CP factors would be larger


@METHODS.register("cp")
class CPDecomposition(Method):
    config_class = CPConfig

    def validate(self) -> None:
        c = self.cfg
        if c.rank is None or c.rank < 1:
            raise ConfigError(f"method.rank must be >= 1, got {c.rank}")
        if c.n_iter_max < 1:
            raise ConfigError(f"method.n_iter_max must be >= 1, got {c.n_iter_max}")
        if c.tol < 0:
            raise ConfigError(f"method.tol must be >= 0, got {c.tol}")
        if c.init not in CP_INITS:
            raise ConfigError(f"method.init must be one of {', '.join(CP_INITS)}; got {c.init!r}")

    def selected_layers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        return select_conv_layers(model, self.cfg.layers, include_linear=False)

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
