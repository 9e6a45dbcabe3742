"""BipartitionConv2d (a conv kernel truncated along one cut) against the dense conv with the truncated kernel."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import CONV_GEOMETRIES, random_conv
from tnbench.functional.bipartition import CUTS, truncate, truncated_kernel, unfold
from tnbench.layers import LowRankConv2d
from tnbench.layers.bipartition import BipartitionConv2d, factorize_conv


@pytest.mark.parametrize("cut", list(CUTS))
@pytest.mark.parametrize("stride,padding,dilation,kernel", CONV_GEOMETRIES)
def test_factorized_layer_equals_dense_conv_with_truncated_kernel(cut, stride, padding, dilation, kernel):
    conv = random_conv(stride, padding, dilation, kernel)
    x = torch.randn(2, 4, 11, 12, dtype=torch.float64)
    m, n = unfold(conv.weight.detach(), cut).shape
    for rank in sorted({1, 2, min(m, n)}):
        left, right, _ = truncate(conv.weight, cut, rank)
        layer = factorize_conv(conv, cut, left, right)
        assert isinstance(layer, LowRankConv2d if cut == "out" else BipartitionConv2d)
        kernel_t = truncated_kernel(conv.weight.detach(), cut, rank)
        ref = F.conv2d(x, kernel_t, conv.bias, conv.stride, conv.padding, conv.dilation)
        out = layer(x)
        assert out.shape == ref.shape
        assert torch.allclose(out, ref, atol=1e-10), (cut, rank)
        assert torch.allclose(layer.dense_weight(), kernel_t, atol=1e-12)
        if rank == min(m, n):  # zero truncation reproduces the original layer
            assert torch.allclose(out, conv(x), atol=1e-10)
    # gradients reach both factors (the shared filters are tied, not copied)
    layer = factorize_conv(conv, cut, *truncate(conv.weight, cut, 2)[:2])
    layer(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_bipartition_layer_parameter_count_is_rank_times_rows_plus_cols():
    conv = random_conv(1, 1, 1, (3, 3), cin=8, cout=16)
    for cut in CUTS:
        m, n = unfold(conv.weight.detach(), cut).shape
        layer = factorize_conv(conv, cut, *truncate(conv.weight, cut, 2)[:2])
        assert layer.weight_params() == 2 * (m + n)
