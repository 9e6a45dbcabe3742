"""The cost model of tnbench.functional.cost: op counts against torch's own, and its choices."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tnbench.functional import cost
from tnbench.functional.network import apply_plan, dense_plan
from tnbench.functional.tt import in_legs, out_legs, tt_matrix_network, tt_matrix_shapes


@pytest.mark.parametrize("hw,kernel,stride,padding,dilation,groups", [
    ((9, 9), (3, 3), 1, 0, 1, 1), ((10, 7), (3, 1), (2, 1), (1, 0), 1, 2), ((8, 8), (3, 3), 1, 2, 2, 4),
    ((8, 8), (5, 5), 1, "same", 1, 1), ((8, 8), (5, 5), 1, "valid", 1, 1)])
def test_conv_op_matches_torch_shape_and_flops(hw, kernel, stride, padding, dilation, groups):
    x, w = torch.randn(3, 4, *hw), torch.randn(8, 4 // groups, *kernel)
    with FlopCounterMode(display=False) as counter:
        y = F.conv2d(x, w, None, stride, padding, dilation, groups)
    op, out = cost.conv(3, 4, 8, hw, kernel, stride, padding, dilation, groups)
    assert out == tuple(y.shape[2:])
    assert op.flops == counter.get_total_flops()
    assert op.grouped == (groups > 1)
    assert op.elements == x.numel() + y.numel() + w.numel()


def test_einsum_steps_of_a_tt_matrix_plan_count_torchs_flops():
    net = tt_matrix_network(3)
    shapes = tt_matrix_shapes([4, 5, 6], [4, 10, 10], 8)
    nodes = [torch.randn(s) for s in shapes]
    x = torch.randn(32, 4, 10, 10)
    plan = apply_plan(net, shapes, tuple(x.shape), ["batch", *in_legs(3)], ["batch", *out_legs(3)], ["batch"])
    with FlopCounterMode(display=False) as counter:
        plan.expr(x, *nodes, backend="torch")
    assert cost.flops(cost.einsum_ops(plan.steps, plan.sizes)) == counter.get_total_flops()
    rebuilt = dense_plan(net, shapes, ["b0", *out_legs(3), *in_legs(3), "b3"])
    assert len(rebuilt.steps) == 2


def test_seconds_prices_flops_entries_and_launches():
    m = cost.Machine(flops_per_s=1e9, grouped_flops_per_s=1e8, elements_per_s=1e8, op_s=1e-3)
    assert cost.seconds([], m) == 0
    assert cost.seconds([cost.Op(1e9, 0)], m) == pytest.approx(1 + 1e-3)
    assert cost.seconds([cost.Op(1e9, 0, grouped=True)], m) == pytest.approx(10 + 1e-3)
    assert cost.seconds([cost.copy(50_000_000)], m) == pytest.approx(1 + 1e-3)
    assert cost.matmul(2, 3, 4).flops == 48 and cost.matmul(2, 3, 4, batch=5).elements == 5 * (6 + 12 + 8)
    narrow = cost.Op(1e9, 0, waste=cost.waste(8))  # 8 of 16 lanes: twice the work, four times training
    assert narrow.waste == 2.0
    assert cost.seconds([narrow], m) == pytest.approx(2 + 1e-3)
    assert cost.seconds([narrow], m, training=True) == pytest.approx(4 + 1e-3)
    assert cost.einsum_ops(["ab,bc->ac"], {"a": 2, "b": 3, "c": 4})[0].launches == cost.EINSUM_LAUNCHES


def test_choose_weighs_the_rebuild_unless_the_weight_is_cached():
    one = (cost.Op(1e6, 0),)
    costs = cost.Costs(factorized=(cost.Op(2e6, 0),), rebuild=(cost.Op(5e6, 0),), dense=one)
    assert cost.choose(costs) == "factorized"
    assert cost.choose(costs, weight_cached=True) == "reconstructed"
    tie = cost.Costs(factorized=one, rebuild=(), dense=one)
    assert cost.choose(tie) == "factorized"


def test_low_rank_contracts_when_compressed_and_rebuilds_when_not():
    compressed = cost.lowrank_linear(128, 1024, 1024, 8)
    assert cost.choose(compressed) == "factorized"
    assert cost.flops(compressed.factorized) * 50 < cost.flops(compressed.dense)
    # rank near full at batch 1: rebuilding costs more than the two small matmuls, but at
    # inference the cached dense weight is one launch against two
    barely = cost.lowrank_linear(1, 64, 64, 48)
    assert cost.choose(barely) == "factorized"
    assert cost.choose(barely, weight_cached=True) == "reconstructed"
