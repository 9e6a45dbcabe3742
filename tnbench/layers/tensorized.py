"""Tensorized layers: the weight is a tensor network whose nodes are the parameters.

- `TTLinear`: a TT-matrix / MPO. OUT = o_1..o_N and IN = i_1..i_N are factorized, node k is
  (b_{k-1}, o_k, i_k, b_k), b_0 = b_N = 1.
- `TTConv2d`: the TT-matrix of the OUT x (IN*KH*KW) kernel matrix with the spatial kernel as
  one more node (b_N, 1, KH*KW, 1) after the channel nodes (Garipov et al.'s layout). It runs
  as a grouped KHxKW conv of each input channel with the b_N spatial filters (IN -> IN*b_N
  channels, the original stride/padding/dilation), then the channel nodes contracted with
  that (IN, b_N) map at every pixel. No unfold, no dense kernel.
- `PEPSLinear`: a rows x cols grid of nodes (left, right, up, down, out, in), bond b between
  grid neighbours (tnbench.functional.peps; nodes numbered column by column).

The input is contracted with the nodes by opt_einsum, with the path found once per input
shape and cached, and never through the dense weight (tnbench.functional.network.apply).
`dense_weight()` builds the dense weight for tests and reconstruction errors only.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tnbench.functional import cost
from tnbench.functional.conv import padded_conv2d
from tnbench.functional.network import Network, apply, apply_plan, dense_plan
from tnbench.functional.peps import peps_network, peps_shapes, peps_to_dense
from tnbench.functional.tt import (
    in_legs,
    out_legs,
    tt_matrix_from_dense,
    tt_matrix_network,
    tt_matrix_shapes,
    tt_matrix_to_dense,
)
from tnbench.layers.implementation import CostSwitch


class TensorizedLayer(CostSwitch):
    """What the tensorized layers share: nodes in network order, the network, the factors."""

    layout = ""
    net: Network

    def _set_factors(self, in_features: int, out_features: int, out_factors: Sequence[int],
                     in_factors: Sequence[int]) -> None:
        """The Linear layers' shape: OUT = prod(out_factors), IN = prod(in_factors), one pair a node."""
        if len(out_factors) != len(in_factors):
            raise ValueError(f"out and in need the same number of factors, got {list(out_factors)} and {list(in_factors)}")
        if math.prod(out_factors) != out_features or math.prod(in_factors) != in_features:
            raise ValueError(f"factors {list(out_factors)} x {list(in_factors)} do not multiply to "
                             f"{out_features} x {in_features}")
        self.in_features, self.out_features = in_features, out_features
        self.out_factors, self.in_factors = list(out_factors), list(in_factors)

    def _init_nodes(self, shapes: Sequence[Sequence[int]]) -> None:
        self.cores = nn.ParameterList([nn.Parameter(torch.zeros(tuple(s))) for s in shapes])

    def nodes(self) -> list[Tensor]:
        return list(self.cores)

    @torch.no_grad()
    def set_nodes(self, tensors: Sequence[Tensor]) -> None:
        for p, t in zip(self.cores, tensors, strict=True):
            if p.shape != t.shape:
                raise ValueError(f"node shape {tuple(t.shape)} does not match {tuple(p.shape)}")
            p.copy_(t.to(dtype=p.dtype, device=p.device))

    def weight_params(self) -> int:
        return sum(p.numel() for p in self.cores)

    def physical_dims(self) -> list[int]:
        """Size of each node's physical legs together (the paper's p per node)."""
        raise NotImplementedError

    def bonds(self) -> list[int]:
        raise NotImplementedError

    def dense_weight(self) -> Tensor:
        raise NotImplementedError

    def dense_legs(self) -> list[str]:
        """The open legs in the order `dense_weight` contracts the network to."""
        raise NotImplementedError

    def dense_forward(self, x: Tensor, weight: Tensor) -> Tensor:  # the Linear layers; TTConv2d has its own
        return F.linear(x, weight, self.bias)

    def implementation_costs(self, x_shape: tuple[int, ...]) -> cost.Costs:  # the Linear layers
        rows = math.prod(x_shape[:-1])
        shapes = [tuple(c.shape) for c in self.cores]
        applied = apply_plan(self.net, shapes, (rows, *self.in_factors), ["batch", *in_legs(self.n)],
                             ["batch", *out_legs(self.n)], ["batch"])
        rebuilt = dense_plan(self.net, shapes, self.dense_legs())
        return cost.network_linear(rows, self.in_features, self.out_features, applied.steps, applied.sizes,
                                   rebuilt.steps, rebuilt.sizes)

    def extra_repr(self) -> str:
        return f"{self.layout}, out={self.out_factors}, in={self.in_factors}, bonds={self.bonds()}"


class TTLinear(TensorizedLayer):
    layout = "tt-matrix"

    def __init__(self, in_features: int, out_features: int, out_factors: Sequence[int], in_factors: Sequence[int],
                 bond_dim: int, bias: bool = True) -> None:
        super().__init__()
        self._set_factors(in_features, out_features, out_factors, in_factors)
        self.n = len(out_factors)
        self.net = tt_matrix_network(self.n)
        self._init_nodes(tt_matrix_shapes(out_factors, in_factors, bond_dim))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_dense(cls, layer: nn.Linear, out_factors: Sequence[int], in_factors: Sequence[int],
                   bond_dim: int) -> TTLinear:
        """TT-SVD of the dense weight (bonds capped at `bond_dim`), bias copied."""
        w = layer.weight.detach()
        new = cls(layer.in_features, layer.out_features, out_factors, in_factors, bond_dim,
                  bias=layer.bias is not None).to(device=w.device, dtype=w.dtype)
        new.set_nodes(tt_matrix_from_dense(w, out_factors, in_factors, bond_dim))
        if layer.bias is not None:
            with torch.no_grad():
                new.bias.copy_(layer.bias)
        return new

    def physical_dims(self) -> list[int]:
        return [o * i for o, i in zip(self.out_factors, self.in_factors)]

    def bonds(self) -> list[int]:
        return [c.shape[-1] for c in self.cores[:-1]]

    def dense_weight(self) -> Tensor:
        return tt_matrix_to_dense(self.nodes())

    def dense_legs(self) -> list[str]:
        return ["b0", *out_legs(self.n), *in_legs(self.n), f"b{self.n}"]

    def factorized_forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, *self.in_factors)
        y = apply(self.net, self.nodes(), x, ["batch", *in_legs(self.n)], ["batch", *out_legs(self.n)], ["batch"])
        y = y.reshape(*lead, self.out_features)
        return y + self.bias if self.bias is not None else y


class TTConv2d(TensorizedLayer):
    layout = "tt-matrix+kernel"

    def __init__(self, conv: nn.Conv2d, out_factors: Sequence[int], in_factors: Sequence[int], bond_dim: int) -> None:
        super().__init__()
        if conv.groups != 1:
            raise ValueError("TTConv2d supports groups=1 convolutions only")
        if len(out_factors) != len(in_factors):
            raise ValueError(f"out and in need the same number of factors, got {list(out_factors)} and {list(in_factors)}")
        if math.prod(out_factors) != conv.out_channels or math.prod(in_factors) != conv.in_channels:
            raise ValueError(f"factors {list(out_factors)} x {list(in_factors)} do not multiply to "
                             f"{conv.out_channels} x {conv.in_channels} channels")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = tuple(conv.kernel_size)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.padding_mode = conv.padding_mode
        self._reversed_padding = getattr(conv, "_reversed_padding_repeated_twice", None)
        self.out_factors, self.in_factors = list(out_factors), list(in_factors)
        self.n = len(out_factors)  # channel nodes; node n is the spatial kernel
        self.net = tt_matrix_network(self.n + 1)
        self._channel_net = Network(self.net.legs[: self.n])
        kernel = self.kernel_size[0] * self.kernel_size[1]
        self._init_nodes(tt_matrix_shapes([*out_factors, 1], [*in_factors, kernel], bond_dim))
        self.bias = nn.Parameter(torch.zeros(conv.out_channels)) if conv.bias is not None else None

    @classmethod
    def from_dense(cls, conv: nn.Conv2d, out_factors: Sequence[int], in_factors: Sequence[int],
                   bond_dim: int) -> TTConv2d:
        w = conv.weight.detach()
        new = cls(conv, out_factors, in_factors, bond_dim).to(device=w.device, dtype=w.dtype)
        kernel = w.shape[2] * w.shape[3]
        new.set_nodes(tt_matrix_from_dense(w.reshape(w.shape[0], -1), [*out_factors, 1], [*in_factors, kernel],
                                           bond_dim))
        if conv.bias is not None:
            with torch.no_grad():
                new.bias.copy_(conv.bias)
        return new

    def physical_dims(self) -> list[int]:
        return [c.shape[1] * c.shape[2] for c in self.cores]

    def bonds(self) -> list[int]:
        return [c.shape[-1] for c in self.cores[:-1]]

    def dense_weight(self) -> Tensor:
        return tt_matrix_to_dense(self.nodes()).reshape(self.out_channels, self.in_channels, *self.kernel_size)

    def dense_legs(self) -> list[str]:
        return ["b0", *out_legs(self.n + 1), *in_legs(self.n + 1), f"b{self.n + 1}"]

    def dense_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        return padded_conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.padding_mode)

    def implementation_costs(self, x_shape: tuple[int, ...]) -> cost.Costs:
        batch, hw = x_shape[0], x_shape[2:]
        shapes = [tuple(c.shape) for c in self.cores]
        rank = shapes[-1][0]
        h, w = cost.conv_geometry(hw, self.kernel_size, self.stride, self.padding, self.dilation)
        channel = apply_plan(self._channel_net, shapes[: self.n], (batch, *self.in_factors, rank, h, w),
                             ["batch", *in_legs(self.n), f"b{self.n}", "h", "w"], ["batch", *out_legs(self.n), "h", "w"],
                             ["batch", "h", "w"])
        rebuilt = dense_plan(self.net, shapes, self.dense_legs())
        return cost.tt_conv(batch, hw, (self.out_channels, self.in_channels, *self.kernel_size), rank, channel.steps,
                            channel.sizes, rebuilt.steps, rebuilt.sizes, self.stride, self.padding, self.dilation)

    def factorized_forward(self, x: Tensor) -> Tensor:
        spatial = self.cores[-1]
        rank = spatial.shape[0]
        filters = spatial.reshape(rank, 1, *self.kernel_size).repeat(self.in_channels, 1, 1, 1)
        padding = self.padding
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding, mode=self.padding_mode)
            padding = 0
        z = F.conv2d(x, filters, None, self.stride, padding, self.dilation, groups=self.in_channels)
        batch, _, h, w = z.shape
        z = z.reshape(batch, *self.in_factors, rank, h, w)
        y = apply(self._channel_net, self.nodes()[: self.n], z, ["batch", *in_legs(self.n), f"b{self.n}", "h", "w"],
                  ["batch", *out_legs(self.n), "h", "w"], ["batch", "h", "w"])
        y = y.reshape(batch, self.out_channels, h, w)
        return y + self.bias[:, None, None] if self.bias is not None else y


class PEPSLinear(TensorizedLayer):
    layout = "peps"

    def __init__(self, in_features: int, out_features: int, out_factors: Sequence[int], in_factors: Sequence[int],
                 bond_dim: int, rows: int = 2, bias: bool = True) -> None:
        super().__init__()
        self._set_factors(in_features, out_features, out_factors, in_factors)
        n = self.n = len(out_factors)
        if rows < 1 or n % rows:
            raise ValueError(f"a PEPS grid of {rows} rows needs a multiple of {rows} nodes, got {n}")
        self.rows, self.cols = rows, n // rows
        self.bond_dim = bond_dim
        self.net = peps_network(self.rows, self.cols)
        self._init_nodes(peps_shapes(self.rows, self.cols, out_factors, in_factors, bond_dim))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def physical_dims(self) -> list[int]:
        return [c.shape[4] * c.shape[5] for c in self.cores]

    def bonds(self) -> list[int]:
        return [self.bond_dim] * (self.rows * (self.cols - 1) + (self.rows - 1) * self.cols)

    def dense_weight(self) -> Tensor:
        return peps_to_dense(self.nodes(), self.rows, self.cols)

    def dense_legs(self) -> list[str]:
        return [*out_legs(self.n), *in_legs(self.n), *(l for l in self.net.open_legs if l[0] in "hv")]

    def factorized_forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, *self.in_factors)
        y = apply(self.net, self.nodes(), x, ["batch", *in_legs(self.n)], ["batch", *out_legs(self.n)], ["batch"])
        y = y.reshape(*lead, self.out_features)
        return y + self.bias if self.bias is not None else y
