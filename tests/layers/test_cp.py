"""CPConv2d against the dense conv with its factors' kernel."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import CONV_GEOMETRIES, random_conv
from tnbench.functional.cp import cp_conv2d, cp_kernel
from tnbench.layers.cp import CPConv2d


@pytest.mark.parametrize("stride,padding,dilation,kernel", CONV_GEOMETRIES)
def test_cp_layer_equals_dense_reconstruction_of_its_factors(stride, padding, dilation, kernel):
    conv = random_conv(stride, padding, dilation, kernel)
    layer, info = CPConv2d.from_conv(conv, 5, n_iter_max=30)
    x = torch.randn(2, 4, 11, 12, dtype=torch.float64)
    kernel_cp = cp_kernel(layer.factors).detach()
    ref = F.conv2d(x, kernel_cp, conv.bias, conv.stride, conv.padding, conv.dilation)
    assert torch.allclose(layer(x), ref, atol=1e-10)
    assert torch.allclose(cp_conv2d(x, layer.factors, None, stride, padding, dilation),
                          F.conv2d(x, kernel_cp, None, conv.stride, conv.padding, conv.dilation), atol=1e-10)
    assert layer.weight_params() == 5 * (6 + 4 + sum(conv.kernel_size))
    w = conv.weight.detach()
    err = float((w - kernel_cp).norm() / w.norm())
    assert err == pytest.approx(info["relative_error"], abs=1e-10) and 0 <= err < 1
