"""TTLinear / TTConv2d / PEPSLinear against dense layers with their own weight."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tnbench.layers.tensorized import PEPSLinear, TTConv2d, TTLinear

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tt_linear_equals_dense_layer_with_its_weight():
    torch.manual_seed(3)
    lin = nn.Linear(60, 24).double()
    x = torch.randn(7, 60, dtype=torch.float64)
    for bond in (2, 100):
        layer = TTLinear.from_dense(lin, [2, 3, 4], [3, 4, 5], bond)
        assert torch.allclose(layer(x), x @ layer.dense_weight().T + lin.bias, atol=1e-12)
    assert torch.allclose(layer.dense_weight(), lin.weight, atol=1e-12)  # full bond: exact
    assert layer(torch.randn(2, 3, 60, dtype=torch.float64)).shape == (2, 3, 24)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_tt_conv_equals_dense_conv_with_its_kernel(stride, padding, dilation):
    torch.manual_seed(4)
    conv = nn.Conv2d(6, 10, 3, stride=stride, padding=padding, dilation=dilation).double()
    x = torch.randn(2, 6, 11, 11, dtype=torch.float64)
    layer = TTConv2d.from_dense(conv, [2, 5], [3, 2], 3)
    ref = nn.functional.conv2d(x, layer.dense_weight(), conv.bias, stride, padding, dilation)
    assert torch.allclose(layer(x), ref, atol=1e-12)
    assert torch.allclose(layer(x.to(memory_format=torch.channels_last)), ref, atol=1e-12)
    full = TTConv2d.from_dense(conv, [2, 5], [3, 2], 1000)
    assert torch.allclose(full(x), conv(x), atol=1e-10)


@pytest.mark.parametrize("rows,out_f,in_f", [(2, [2, 3, 2, 2], [3, 2, 5, 2]), (2, [2, 1, 3, 2, 1, 2], [2, 2, 3, 1, 5, 1]),
                                             (1, [4, 6], [6, 10])])
def test_peps_linear_equals_dense_layer_with_its_weight(rows, out_f, in_f):
    torch.manual_seed(5)
    layer = PEPSLinear(60, 24, out_f, in_f, 3, rows=rows).double()
    with torch.no_grad():
        for p in layer.cores:
            p.normal_()
        layer.bias.normal_()
    x = torch.randn(9, 60, dtype=torch.float64)
    assert torch.allclose(layer(x), x @ layer.dense_weight().T + layer.bias, atol=1e-10)
