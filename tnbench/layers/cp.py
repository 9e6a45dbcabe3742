"""A Conv2d stored as CP factors; the math (kernel, four-conv chain, ALS) is tnbench.functional.cp."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tnbench.functional import cost
from tnbench.functional.conv import conv2d, pair
from tnbench.functional.cp import cp_conv2d, cp_decompose, cp_kernel
from tnbench.layers.implementation import CostSwitch


class CPConv2d(CostSwitch):
    """A Conv2d stored as CP factors of rank `rank`; see the module docstring."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], rank: int,
                 stride=1, padding=0, dilation=1, bias: bool = True) -> None:
        super().__init__()
        if isinstance(padding, str):
            raise ValueError(f"CPConv2d needs numeric padding, got {padding!r}")
        kh, kw = pair(kernel_size)
        self.rank = rank
        self.kernel_shape = (out_channels, in_channels, kh, kw)
        self.stride, self.padding, self.dilation = pair(stride), pair(padding), pair(dilation)
        self.out_factor = nn.Parameter(torch.empty(out_channels, rank))
        self.in_factor = nn.Parameter(torch.empty(in_channels, rank))
        self.kh_factor = nn.Parameter(torch.empty(kh, rank))
        self.kw_factor = nn.Parameter(torch.empty(kw, rank))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    @property
    def factors(self) -> list[Tensor]:
        return [self.out_factor, self.in_factor, self.kh_factor, self.kw_factor]

    @classmethod
    def from_factors(cls, conv: nn.Conv2d, factors: list[Tensor]) -> CPConv2d:
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError("CPConv2d supports groups=1, zero-padded convolutions only")
        w = conv.weight
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, factors[0].shape[1], conv.stride,
                  conv.padding, conv.dilation, bias=conv.bias is not None).to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            for p, f in zip(new.factors, factors):
                p.copy_(f)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        return new

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rank: int, **options: Any) -> tuple[CPConv2d, dict[str, Any]]:
        """CP-decompose `conv`'s kernel (options go to `cp_decompose`); the layer and fit info."""
        factors, info = cp_decompose(conv.weight, rank, **options)
        return cls.from_factors(conv, factors), info

    def dense_weight(self) -> Tensor:
        return cp_kernel(self.factors)

    def weight_params(self) -> int:
        return sum(f.numel() for f in self.factors)

    def factorized_forward(self, x: Tensor) -> Tensor:
        return cp_conv2d(x, self.factors, self.bias, self.stride, self.padding, self.dilation)

    def dense_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        return conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation)

    def implementation_costs(self, x_shape: tuple[int, ...]) -> cost.Costs:
        return cost.cp_conv(x_shape[0], x_shape[2:], self.kernel_shape, self.out_factor.shape[1], self.stride,
                            self.padding, self.dilation)

    def extra_repr(self) -> str:
        o, i, kh, kw = self.kernel_shape
        return f"{i}, {o}, kernel_size=({kh}, {kw}), rank={self.rank}, stride={self.stride}, padding={self.padding}"
