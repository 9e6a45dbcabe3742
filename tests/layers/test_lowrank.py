"""LowRankLinear / LowRankConv2d against dense layers with the truncated weight."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tnbench.functional.lowrank import matricize_conv, truncated_svd
from tnbench.layers import LowRankConv2d, LowRankLinear


def test_lowrank_linear_equals_dense_with_truncated_weight():
    torch.manual_seed(1)
    dense = nn.Linear(40, 24).double()
    layer, s = LowRankLinear.from_dense(dense, 5)
    a, b, _ = truncated_svd(dense.weight.detach(), 5)
    x = torch.randn(8, 40, dtype=torch.float64)
    ref = x @ (a @ b).T + dense.bias
    assert torch.allclose(layer(x), ref, atol=1e-12)
    assert torch.allclose(layer.dense_weight(), a @ b, atol=1e-12)
    assert layer.weight_params() == 5 * (40 + 24)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_lowrank_conv_equals_dense_conv_with_truncated_kernel(stride, padding, dilation):
    torch.manual_seed(2)
    conv = nn.Conv2d(6, 10, 3, stride=stride, padding=padding, dilation=dilation).double()
    layer, _ = LowRankConv2d.from_dense(conv, 4)
    a, b, _ = truncated_svd(matricize_conv(conv.weight.detach()), 4)
    kernel = (a @ b).reshape(conv.weight.shape)
    x = torch.randn(2, 6, 13, 13, dtype=torch.float64)
    ref = nn.functional.conv2d(x, kernel, conv.bias, stride, padding, dilation)
    assert torch.allclose(layer(x), ref, atol=1e-12)
    # zero truncation (full rank) reproduces the original conv
    full, _ = LowRankConv2d.from_dense(conv, 10)
    assert torch.allclose(full(x), conv(x), atol=1e-10)
