"""A conv kernel stored as the two SVD factors of one bipartition (tnbench.functional.bipartition).

`BipartitionConv2d` owns L (rows x r) and R (r x cols) and runs the cut's exact conv chain;
the math is `tnbench.functional.bipartition.bipartition_conv2d`. The OUT cut is `LowRankConv2d`, which
`factorize_conv` returns for it, so every cut has a factorized layer.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from tnbench.functional import cost
from tnbench.functional.bipartition import bipartition_conv2d, fold, matrix_shape, truncate
from tnbench.functional.conv import conv2d
from tnbench.layers.implementation import CostSwitch
from tnbench.layers.lowrank import LowRankConv2d


def factorizable(conv: nn.Conv2d) -> str | None:
    """Why `conv` has no factorized form here, or None if it has one."""
    if conv.groups != 1:
        return "grouped conv"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode}"
    if isinstance(conv.padding, str):
        return f"padding={conv.padding!r}"
    return None


class BipartitionConv2d(CostSwitch):
    """Conv2d whose kernel is fold(left @ right) along `cut` (any cut but OUT)."""

    def __init__(self, conv: nn.Conv2d, cut: str, rank: int) -> None:
        super().__init__()
        if cut == "out":
            raise ValueError("the OUT cut is LowRankConv2d")
        problem = factorizable(conv)
        if problem:
            raise ValueError(f"BipartitionConv2d cannot factorize a {problem}")
        shape = tuple(conv.weight.shape)
        m, n = matrix_shape(shape, cut)
        self.cut, self.rank, self.kernel_shape = cut, rank, shape
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.left = nn.Parameter(torch.empty(m, rank))
        self.right = nn.Parameter(torch.empty(rank, n))
        self.bias = nn.Parameter(torch.empty(shape[0])) if conv.bias is not None else None

    @classmethod
    def from_factors(cls, conv: nn.Conv2d, cut: str, left: Tensor, right: Tensor) -> BipartitionConv2d:
        w = conv.weight
        new = cls(conv, cut, left.shape[1]).to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            new.left.copy_(left)
            new.right.copy_(right)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        return new

    @classmethod
    def from_dense(cls, conv: nn.Conv2d, cut: str, rank: int) -> tuple[BipartitionConv2d, Tensor]:
        left, right, s = truncate(conv.weight, cut, rank)
        return cls.from_factors(conv, cut, left, right), s

    def dense_weight(self) -> Tensor:
        return fold(self.left @ self.right, self.cut, self.kernel_shape)

    def weight_params(self) -> int:
        return self.left.numel() + self.right.numel()

    def factorized_forward(self, x: Tensor) -> Tensor:
        return bipartition_conv2d(x, self.left, self.right, self.cut, self.kernel_shape, self.bias,
                                  self.stride, self.padding, self.dilation)

    def dense_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        return conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation)

    def implementation_costs(self, x_shape: tuple[int, ...]) -> cost.Costs:
        return cost.bipartition_conv(x_shape[0], x_shape[2:], self.kernel_shape, self.cut, self.left.shape[1],
                                     self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        o, i, kh, kw = self.kernel_shape
        return f"{i}, {o}, kernel_size=({kh}, {kw}), cut={self.cut}, rank={self.rank}, stride={self.stride}"


def factorize_conv(conv: nn.Conv2d, cut: str, left: Tensor, right: Tensor) -> nn.Module:
    """The factorized layer of a truncated conv: LowRankConv2d for OUT, else BipartitionConv2d."""
    if cut != "out":
        return BipartitionConv2d.from_factors(conv, cut, left, right)
    return LowRankConv2d.from_factors(conv, left, right)
