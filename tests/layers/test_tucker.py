"""TuckerConv2d / TuckerLinear / USVConv2d against dense layers with the reconstructed weight."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tnbench.functional.tucker import tucker_params
from tnbench.layers.tucker import TuckerConv2d, TuckerLinear, USVConv2d


@pytest.mark.parametrize("modes", [("out", "in"), ("out", "in", "kh", "kw"), ("out",), ("in", "kw")])
@pytest.mark.parametrize("stride,padding,dilation,padding_mode",
                         [(1, 0, 1, "zeros"), (2, 1, 1, "zeros"), (1, 2, 2, "zeros"), (1, 1, 1, "reflect")])
def test_tucker_conv_equals_dense_conv_with_reconstructed_kernel(modes, stride, padding, dilation, padding_mode):
    torch.manual_seed(6)
    conv = nn.Conv2d(6, 10, 3, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode).double()
    ranks = {"out": 4, "in": 3, "kh": 2, "kw": 2}
    layer, _ = TuckerConv2d.from_dense(conv, {m: ranks[m] for m in modes}, modes)
    kernel = layer.dense_weight()
    assert kernel.shape == conv.weight.shape
    dense = nn.Conv2d(6, 10, 3, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode).double()
    with torch.no_grad():
        dense.weight.copy_(kernel)
        dense.bias.copy_(conv.bias)
    x = torch.randn(2, 6, 13, 13, dtype=torch.float64)
    for inp in (x, x.to(memory_format=torch.channels_last)):
        ref = dense(inp)
        assert (torch.linalg.vector_norm(layer(inp) - ref) / torch.linalg.vector_norm(ref)) < 1e-10
    assert layer.weight_params() == tucker_params(conv.weight.shape, {("out", "in", "kh", "kw").index(m): ranks[m] for m in modes})


def test_full_ranks_reproduce_the_original_layers():
    torch.manual_seed(7)
    conv = nn.Conv2d(5, 8, 3, padding=1).double()
    x = torch.randn(3, 5, 9, 9, dtype=torch.float64)
    for layer in (TuckerConv2d.from_dense(conv, [8, 5])[0],
                  TuckerConv2d.from_dense(conv, [8, 5, 3, 3], ("out", "in", "kh", "kw"))[0],
                  USVConv2d.from_dense(conv, 45)[0]):
        assert torch.allclose(layer(x), conv(x), atol=1e-10)
        assert torch.allclose(layer.dense_weight(), conv.weight, atol=1e-12)
    lin = nn.Linear(30, 12).double()
    layer, _ = TuckerLinear.from_dense(lin, [12, 30])
    z = torch.randn(4, 30, dtype=torch.float64)
    assert torch.allclose(layer(z), lin(z), atol=1e-12)
    assert layer.weight_params() == 12 * 30 + 12 * 12 + 30 * 30


def test_usv_conv_is_the_truncated_svd_of_the_matricized_kernel():
    torch.manual_seed(8)
    conv = nn.Conv2d(6, 10, 3).double()
    layer, s = USVConv2d.from_dense(conv, 4)
    u, sv, vh = torch.linalg.svd(conv.weight.detach().reshape(10, -1))
    best = ((u[:, :4] * sv[:4]) @ vh[:4]).reshape(conv.weight.shape)
    assert torch.allclose(layer.dense_weight(), best, atol=1e-10)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    assert torch.allclose(layer(x), F.conv2d(x, best, conv.bias), atol=1e-10)
    assert layer.weight_params() == 10 * 4 + 16 + 54 * 4
