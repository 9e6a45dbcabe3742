"""What `method=tt`, `method=mpo` and `method=peps` share: tensorized layers, from the pretrained
weights or freshly initialized with partial norms (arXiv 2309.06577), then trained by the
retrain stage.

- `tt`:   Linear -> TTLinear (TT-matrix), Conv2d -> TTConv2d (TT-matrix over the channels
          with the spatial kernel as one more node).
- `mpo`:  Linear -> TTLinear only; convolutions stay dense. The same layer as `tt` (an MPO
          *is* a TT-matrix), kept as a name for papers that say MPO and compress the FC part.
- `peps`: Linear -> PEPSLinear on a `grid_rows` x (num_cores / grid_rows) grid; convs stay dense.

`method.init` says where the nodes come from, so one sweep compares "decompose then retrain"
with "initialize then train":
- `decompose`:    TT-SVD of the pretrained weight, bonds capped at `bond_dim` (peps: least
                  squares fit of the grid to the weight by Adam, `fit_steps` steps).
- `partial_norm`: Gaussian(init_mean, init_std) nodes, then the paper's FTNR protocol to the
                  target norm within (a F, b F) = `tolerance` (tnbench.functional.partial_norm).
                  The paper draws mean 1, std 0.5; for a *layer* that gives the right norm but
                  a weight that is almost one rank-1, all-positive component (the mean of every
                  node times the all-ones bonds: 94% of ||W||^2 for LeNet-5's 400 x 120 at b = 8),
                  whose outputs are all alike and which does not train. So `init_mean` defaults
                  to 0; `init_mean=1` reproduces the paper's nodes.
- `log_norm`:     the same Gaussian nodes, normalized in one pass in log space.
- `gaussian`:     the Gaussian nodes as drawn (the baseline the paper fixes; its norm grows
                  like (p b^2)^(N/2), so training usually diverges).
Fresh layers get a zero bias. `target_norm`: `match_dense` = the expected Frobenius norm of
the dense layer under PyTorch's default init (kaiming uniform, a = sqrt(5): sqrt(OUT / 3)),
`paper` = p^N, the product of the nodes' physical sizes (OUT * IN [* KH * KW]), or a number.

Each dimension is split into `num_cores` factors, as evenly as its primes allow (1s pad a
dimension with too few primes); `factors` overrides per layer: {name: {out: [...], in: [...]}}.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig
from torch import nn

from tnbench.config import MAX_METHOD_SEED, MethodConfig, check_number, checked, one_of, ranged
from tnbench.errors import ConfigError
from tnbench.functional.approximation import norm_loss, relative_error
from tnbench.functional.factorize import balanced_factors, check_factors
from tnbench.functional.partial_norm import normalize_log, normalize_partial
from tnbench.layers.tensorized import TensorizedLayer, TTConv2d, TTLinear
from tnbench.methods.base import Knob, LayerReport, Method, kind_of, left_dense, replace_module, select_layers

INITS = ("decompose", "partial_norm", "log_norm", "gaussian")
TARGETS = ("match_dense", "paper")


def check_tolerance(key: str, tol: Any) -> None:
    """(a, b): the initial weights' norm is accepted within (a F, b F)."""
    tol = list(tol)
    if len(tol) != 2:
        raise ConfigError(f"{key} must be [a, b] with 0 < a <= 1 <= b; got {tol}")
    check_number(f"{key} a", tol[0], gt=0, le=1)
    check_number(f"{key} b", tol[1], ge=1)


@dataclass
class TTConfig(MethodConfig):
    name: str = "tt"
    bond_dim: int = ranged(8, ge=1)  # `method.rank`, when set, overrides it (shared sweeps)
    num_cores: int = ranged(3, ge=1)  # N: factors per dimension
    factors: Any = None  # {layer: {out: [...], in: [...]}}
    init: str = one_of("decompose", INITS)
    init_mean: float = ranged(0.0)  # the paper's experiments: 1.0 (see the module notes)
    init_std: float = ranged(0.5, ge=0)
    init_seed: int = ranged(0, ge=0, le=MAX_METHOD_SEED)
    target_norm: Any = "match_dense"  # match_dense | paper | a positive number
    tolerance: list[float] = checked(None, check_tolerance, factory=lambda: [1e-3, 1e3])  # (a, b): norm within (aF, bF)
    max_iter: int = ranged(100, ge=1)
    skip_if_larger: bool = True  # leave a layer dense where the nodes would be larger


def dense_init_norm(layer: nn.Module) -> float:
    """Expected ||W||_F of `layer` under PyTorch's default init: entries U(-1/sqrt(fan_in), ..)."""
    w = layer.weight
    fan_in = w[0].numel()
    return math.sqrt(w.numel() / (3.0 * fan_in))


def gaussian_nodes(shapes: Sequence[Sequence[int]], mean: float, std: float, generator: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(tuple(s), generator=generator, dtype=torch.float64) * std + mean for s in shapes]


class TensorizedMethod(Method):
    config_class = TTConfig
    knob = Knob("bond_dim", int, 1, clears=("rank",), granularity="one bond dimension step per layer")
    handles: tuple[type, ...] = (nn.Linear, nn.Conv2d)

    def validate(self) -> None:
        c = self.cfg
        rank = c.get("rank")
        self.bond_dim = int(rank) if rank is not None else c.bond_dim
        t = c.target_norm
        if not (t in TARGETS or (isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < math.inf)):
            raise ConfigError(f"method.target_norm must be match_dense, paper or a number > 0; got {t!r}")
        if c.factors is not None and not isinstance(c.factors, (dict, DictConfig)):
            raise ConfigError(f"method.factors must be null or {{layer: {{out: [...], in: [...]}}}}; got {c.factors!r}")
        for name, spec in dict(c.factors or {}).items():
            if not isinstance(spec, (dict, DictConfig)) or set(spec) != {"out", "in"}:
                raise ConfigError(f"method.factors.{name} must be {{out: [...], in: [...]}}; got {spec}")
            if not isinstance(spec["out"], (list, ListConfig)) or not isinstance(spec["in"], (list, ListConfig)) \
                    or len(spec["out"]) != len(spec["in"]):
                raise ConfigError(f"method.factors.{name}: out and in must be lists of the same length; got {spec}")

    def check_model(self, model: nn.Module) -> None:
        """`method.factors` names real layers and fits their sizes: each replacement layer is
        built on the meta device, as `compress` would build it."""
        super().check_model(model)
        selected = self.selected_layers(model)
        unknown = sorted(set(self.cfg.factors or {}) - {n for n, _ in selected})
        if unknown:
            raise ConfigError(f"method.factors names layer(s) {', '.join(unknown)} that method.layers does not "
                              f"select; allowed: {', '.join(n for n, _ in selected)}")
        with torch.device("meta"):
            for name, layer in selected:
                self.build(name, layer)

    # --- factors -------------------------------------------------------------------------

    def factors(self, name: str, out_size: int, in_size: int) -> tuple[list[int], list[int]]:
        spec = self.cfg.factors.get(name) if self.cfg.factors else None
        if spec is None:
            n = self.cfg.num_cores
            return balanced_factors(out_size, n), balanced_factors(in_size, n)
        try:
            return (check_factors(spec["out"], out_size, f"method.factors.{name}.out"),
                    check_factors(spec["in"], in_size, f"method.factors.{name}.in"))
        except ValueError as e:
            raise ConfigError(str(e)) from None

    # --- layers --------------------------------------------------------------------------

    def build(self, name: str, layer: nn.Module) -> TensorizedLayer | None:
        """The empty tensorized layer replacing `layer`; None if this method leaves it dense."""
        if isinstance(layer, nn.Linear):
            out_f, in_f = self.factors(name, layer.out_features, layer.in_features)
            return TTLinear(layer.in_features, layer.out_features, out_f, in_f, self.bond_dim,
                            bias=layer.bias is not None)
        if isinstance(layer, nn.Conv2d) and nn.Conv2d in self.handles and layer.groups == 1:
            out_f, in_f = self.factors(name, layer.out_channels, layer.in_channels)
            return TTConv2d(layer, out_f, in_f, self.bond_dim)
        return None

    def decompose(self, new: TensorizedLayer, layer: nn.Module) -> dict[str, Any]:
        """TT-SVD of the pretrained weight into `new`'s nodes; bias copied."""
        cls = TTConv2d if isinstance(new, TTConv2d) else TTLinear
        src = cls.from_dense(layer, new.out_factors, new.in_factors, self.bond_dim)
        new.load_state_dict(src.state_dict())
        return {}

    def target(self, new: TensorizedLayer, layer: nn.Module) -> float:
        t = self.cfg.target_norm
        if t == "match_dense":
            return dense_init_norm(layer)
        if t == "paper":
            return float(math.prod(new.physical_dims()))
        return float(t)

    def initialize(self, name: str, new: TensorizedLayer, layer: nn.Module, generator: torch.Generator) -> dict[str, Any]:
        c = self.cfg
        nodes = gaussian_nodes([p.shape for p in new.cores], c.init_mean, c.init_std, generator)
        info: dict[str, Any] = {}
        if c.init in ("partial_norm", "log_norm"):
            target = self.target(new, layer)
            if c.init == "partial_norm":
                res = normalize_partial(new.net, nodes, target=target, tolerance=tuple(c.tolerance),
                                        max_iter=c.max_iter, generator=generator)
            else:
                res = normalize_log(new.net, nodes, target=target, tolerance=tuple(c.tolerance))
            if not res.converged:
                raise ConfigError(f"method.init={c.init} failed on layer {name}: {res.reason} "
                                  f"(target norm {target:.4g}; raise method.max_iter or widen method.tolerance)")
            info = {"target_norm": target, "normalization": res.as_dict()}
        new.set_nodes(nodes)
        with torch.no_grad():
            if new.bias is not None:
                new.bias.zero_()
        return info

    def layer_size(self, name: str, layer: nn.Module) -> int | None:
        with torch.device("meta"):
            new = self.build(name, layer)
        if new is None or (self.cfg.skip_if_larger and new.weight_params() >= layer.weight.numel()):
            return layer.weight.numel()
        return new.weight_params()

    def compress(self, model: nn.Module) -> list[LayerReport]:
        reports = []
        generator = torch.Generator().manual_seed(self.cfg.init_seed)
        for name, layer in select_layers(model, self.cfg.layers):
            w = layer.weight.detach()
            kind = kind_of(layer)
            new = self.build(name, layer)
            if new is None:
                why = "grouped conv left dense" if kind == "conv" and layer.groups != 1 else \
                    f"method={self.cfg.name} tensorizes Linear layers only"
                reports.append(left_dense(name, layer, why))
                continue
            new = new.to(device=w.device, dtype=w.dtype)
            if self.cfg.skip_if_larger and new.weight_params() >= w.numel():
                reports.append(left_dense(name, layer, f"{new.weight_params()} node parameters would not save any",
                                          new.bonds()))
                continue
            if self.cfg.init == "decompose":
                info = self.decompose(new, layer)
            else:
                info = self.initialize(name, new, layer, generator)
            with torch.no_grad():
                dense = new.dense_weight().double()
            old = w.double().reshape(dense.shape)
            loss, err = norm_loss(old, dense), relative_error(old, dense)
            replace_module(model, name, new)
            reports.append(LayerReport(
                name, kind, list(w.shape), new.bonds(), w.numel(), new.weight_params(), norm_loss=loss,
                relative_error=err, note="" if self.cfg.init == "decompose" else "fresh init: errors are against the pretrained weight",
                extra={"layout": new.layout, "out_factors": new.out_factors, "in_factors": new.in_factors,
                       "init": self.cfg.init, "norm": float(torch.linalg.vector_norm(dense)), **info},
            ))
        return reports
