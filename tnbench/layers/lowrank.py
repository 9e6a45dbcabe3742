"""Matrix low-rank layers: W (OUT x IN[*KH*KW]) = A @ B, run as two smaller layers."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tnbench.functional import cost
from tnbench.functional.conv import padded_conv2d
from tnbench.functional.lowrank import matricize_conv, truncated_svd
from tnbench.layers.implementation import CostSwitch


class LowRankLinear(CostSwitch):
    """y = A (B x) + bias: Linear(in, rank, no bias) then Linear(rank, out)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.rank = rank
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    @classmethod
    def from_factors(cls, layer: nn.Linear, a: Tensor, b: Tensor) -> LowRankLinear:
        """The layer whose weight is a (OUT x r) @ b (r x IN); `layer`'s bias is copied."""
        w = layer.weight
        new = cls(layer.in_features, layer.out_features, a.shape[1], bias=layer.bias is not None)
        new = new.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            new.first.weight.copy_(b)
            new.second.weight.copy_(a)
            if layer.bias is not None:
                new.second.bias.copy_(layer.bias)
        return new

    @classmethod
    def from_dense(cls, layer: nn.Linear, rank: int) -> tuple[LowRankLinear, Tensor]:
        """Truncated-SVD factors of `layer`; returns the new layer and the full spectrum."""
        a, b, s = truncated_svd(layer.weight.detach(), rank)
        return cls.from_factors(layer, a, b), s

    def dense_weight(self) -> Tensor:
        return self.second.weight @ self.first.weight

    def weight_params(self) -> int:
        return self.first.weight.numel() + self.second.weight.numel()

    def factorized_forward(self, x: Tensor) -> Tensor:
        return self.second(self.first(x))

    def dense_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight, self.second.bias)

    def implementation_costs(self, x_shape: tuple[int, ...]) -> cost.Costs:
        return cost.lowrank_linear(math.prod(x_shape[:-1]), self.first.in_features, self.second.out_features,
                                   self.first.out_features)


class LowRankConv2d(CostSwitch):
    """Conv(IN -> rank, KHxKW, the original stride/padding) then a 1x1 conv (rank -> OUT)."""

    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        super().__init__()
        if conv.groups != 1:
            raise ValueError("LowRankConv2d supports groups=1 convolutions only")
        self.rank = rank
        self.first = nn.Conv2d(
            conv.in_channels, rank, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, padding_mode=conv.padding_mode, bias=False,
        )
        self.second = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None)

    @classmethod
    def from_factors(cls, conv: nn.Conv2d, a: Tensor, b: Tensor) -> LowRankConv2d:
        """The conv whose matricized kernel is a (OUT x r) @ b (r x IN*KH*KW); bias copied."""
        w = conv.weight
        new = cls(conv, a.shape[1]).to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            new.first.weight.copy_(b.reshape(-1, *w.shape[1:]))
            new.second.weight.copy_(a[:, :, None, None])
            if conv.bias is not None:
                new.second.bias.copy_(conv.bias)
        return new

    @classmethod
    def from_dense(cls, conv: nn.Conv2d, rank: int) -> tuple[LowRankConv2d, Tensor]:
        a, b, s = truncated_svd(matricize_conv(conv.weight.detach()), rank)
        return cls.from_factors(conv, a, b), s

    def dense_weight(self) -> Tensor:
        out = self.second.weight.shape[0]
        a = self.second.weight.reshape(out, self.rank)
        b = self.first.weight.reshape(self.rank, -1)
        return (a @ b).reshape(out, *self.first.weight.shape[1:])

    def weight_params(self) -> int:
        return self.first.weight.numel() + self.second.weight.numel()

    def factorized_forward(self, x: Tensor) -> Tensor:
        return self.second(self.first(x))

    def dense_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        c = self.first
        return padded_conv2d(x, weight, self.second.bias, c.stride, c.padding, c.dilation, c.padding_mode)

    def implementation_costs(self, x_shape: tuple[int, ...]) -> cost.Costs:
        c = self.first
        return cost.lowrank_conv(x_shape[0], x_shape[2:], self.dense_weight_shape(), c.out_channels, c.stride,
                                 c.padding, c.dilation)

    def dense_weight_shape(self) -> tuple[int, ...]:
        return (self.second.out_channels, *self.first.weight.shape[1:])
