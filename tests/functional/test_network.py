"""Tensor networks by leg labels (tnbench.functional.network): the contraction order never forms a layer's dense weight."""
from __future__ import annotations

import opt_einsum as oe
import pytest
import torch

from tnbench.functional import network as tn_network
from tnbench.layers.tensorized import PEPSLinear

pytestmark = pytest.mark.usefixtures("one_thread")


def test_layer_forward_never_forms_the_dense_weight():
    layer = PEPSLinear(400, 120, [5, 4, 3, 2], [5, 5, 4, 4], 8)
    x = torch.randn(128, 5, 5, 4, 4)
    tn_network.apply_expression.cache_clear()
    eq = tn_network.equation([("batch", "i0", "i1", "i2", "i3"), *layer.net.legs],
                             ["batch", "o0", "o1", "o2", "o3"])
    shapes = (tuple(x.shape), *(tuple(p.shape) for p in layer.cores))
    _, best = oe.contract_path(eq, *shapes, shapes=True)
    assert tn_network._materializes_weight(best, "a", 400 * 120)  # opt_einsum alone would
    expr = tn_network.apply_expression(eq, shapes, "a", 400 * 120)
    _, used = oe.contract_path(eq, *shapes, shapes=True, optimize=[c[0] for c in expr.contraction_list])
    assert not tn_network._materializes_weight(used, "a", 400 * 120)
    assert torch.allclose(layer(x.reshape(128, 400)), x.reshape(128, 400) @ layer.dense_weight().T, rtol=1e-4, atol=1e-4)
