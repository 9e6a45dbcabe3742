"""Every factorized layer runs factorized or through its rebuilt dense weight (CostSwitch): both
forms agree (outputs and gradients, float64), the cost model's FLOPs are the ones executed, the
choice follows the cost model, the inference cache is reused until a parameter changes, and an
exported layer matches the eager one."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tnbench.functional import cost
from tnbench.layers.bipartition import BipartitionConv2d
from tnbench.layers.brickwall import BrickWallGenerator, encode_weights
from tnbench.layers.cp import CPConv2d
from tnbench.layers.implementation import forced, forget
from tnbench.layers.lowrank import LowRankConv2d, LowRankLinear
from tnbench.layers.tensorized import PEPSLinear, TTConv2d, TTLinear
from tnbench.layers.tucker import TuckerConv2d, TuckerLinear, USVConv2d

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64
CONV_INPUT, LINEAR_INPUT = (2, 6, 9, 9), (5, 24)


def _conv(stride=2, padding=1):
    return nn.Conv2d(6, 8, 3, stride=stride, padding=padding).to(F64)


def _random_nodes(layer):
    layer.set_nodes([torch.randn(c.shape, dtype=F64) for c in layer.cores])
    return layer


def layer_cases() -> dict[str, tuple]:
    torch.manual_seed(0)
    conv, lin = _conv(), nn.Linear(24, 20).to(F64)
    cp_factors = [torch.randn(n, 3, dtype=F64) for n in (8, 6, 3, 3)]
    reflect, circular, replicate = (nn.Conv2d(6, 8, 3, padding=1, padding_mode=m).to(F64)
                                    for m in ("reflect", "circular", "replicate"))
    cases = {
        "lowrank_linear": (LowRankLinear.from_dense(lin, 4)[0], LINEAR_INPUT),
        "lowrank_conv": (LowRankConv2d.from_dense(conv, 3)[0], CONV_INPUT),
        "lowrank_conv_reflect": (LowRankConv2d.from_dense(nn.Conv2d(6, 8, 3, padding=1, padding_mode="reflect")
                                                          .to(F64), 3)[0], CONV_INPUT),
        "cp_conv": (CPConv2d.from_factors(conv, cp_factors), CONV_INPUT),
        "tucker_conv_reflect": (TuckerConv2d.from_dense(reflect, {"out": 4, "in": 3})[0], CONV_INPUT),
        "usv_conv_circular": (USVConv2d.from_dense(circular, 4)[0], CONV_INPUT),
        "tt_conv_replicate": (TTConv2d.from_dense(replicate, [2, 4], [2, 3], 3), CONV_INPUT),
        "tucker_conv": (TuckerConv2d.from_dense(conv, {"out": 4, "in": 3, "kh": 2})[0], CONV_INPUT),
        "tucker_linear": (TuckerLinear.from_dense(lin, [5, 6])[0], LINEAR_INPUT),
        "usv_conv": (USVConv2d.from_dense(conv, 4)[0], CONV_INPUT),
        "tt_linear": (TTLinear.from_dense(lin, [4, 5], [4, 6], 3), LINEAR_INPUT),
        "tt_conv": (TTConv2d.from_dense(conv, [2, 4], [2, 3], 3), CONV_INPUT),
        "peps_linear": (_random_nodes(PEPSLinear(24, 20, [2, 2, 5, 1], [2, 3, 2, 2], 2).to(F64)), LINEAR_INPUT),
    }
    for cut in ("in", "kh", "kw", "out_in", "out_kh", "out_kw"):
        cases[f"bipartition_{cut}"] = (BipartitionConv2d.from_dense(conv, cut, 2)[0], CONV_INPUT)
    return cases


CASES = layer_cases()


def run(layer: nn.Module, x: torch.Tensor, implementation: str):
    layer.zero_grad(set_to_none=True)
    x.grad = None
    with forced(implementation):
        y = layer(x)
    (y.square().sum() + y.sum()).backward()
    return y.detach(), x.grad.clone(), [p.grad.clone() for p in layer.parameters()]


@pytest.mark.parametrize("name", sorted(CASES))
def test_both_implementations_agree_in_outputs_and_gradients(name):
    layer, shape = CASES[name]
    x = torch.randn(shape, dtype=F64, requires_grad=True)
    (y_f, gx_f, gp_f), (y_r, gx_r, gp_r) = run(layer, x, "factorized"), run(layer, x, "reconstructed")
    assert torch.allclose(y_f, y_r, atol=1e-10)
    assert torch.allclose(gx_f, gx_r, atol=1e-10)
    assert len(gp_f) == len(gp_r) > 0
    for a, b in zip(gp_f, gp_r):
        assert torch.allclose(a, b, atol=1e-9)
    with torch.no_grad():  # and the automatic choice runs one of them
        assert torch.allclose(layer(x), y_f, atol=1e-10)


@pytest.mark.parametrize("name", sorted(CASES))
def test_cost_model_counts_the_flops_each_form_executes(name):
    layer, shape = CASES[name]
    x = torch.randn(shape, dtype=F64)
    costs = layer.implementation_costs(shape)
    counted = {}
    for impl in ("factorized", "reconstructed"):
        with torch.no_grad(), FlopCounterMode(display=False) as counter, forced(impl):
            layer(x)
        counted[impl] = counter.get_total_flops()
    assert cost.flops(costs.factorized) == counted["factorized"]
    # CP's rebuild is one torch.einsum whose order torch picks: within a few percent
    assert cost.flops(costs.reconstructed()) == pytest.approx(counted["reconstructed"], rel=0.05)
    assert cost.flops(costs.dense) < counted["reconstructed"]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("batch", [1, 128])
def test_the_choice_is_the_cost_models(name, batch):
    layer, shape = CASES[name]
    shape = (batch, *shape[1:])
    x = torch.randn(shape, dtype=F64)
    costs = layer.implementation_costs(shape)
    assert layer.chosen_implementation(x) == cost.choose(costs, training=True)
    with torch.no_grad():  # the training mode keeps the choice off the weight cache
        assert layer.chosen_implementation(x) == cost.choose(costs)


def test_large_bond_mpo_rebuilds_at_batch_1_and_a_compressed_low_rank_layer_contracts():
    torch.manual_seed(1)
    mpo = TTLinear(512, 512, [8, 8, 8], [8, 8, 8], 64)
    for core in mpo.cores:
        nn.init.normal_(core)
    # bond 64: contracting a batch costs more than rebuilding the weight once and one matmul...
    assert mpo.chosen_implementation(torch.zeros(128, 512)) == "reconstructed"
    # ...but rebuilding costs more than one example (training, nothing cached)...
    assert mpo.chosen_implementation(torch.zeros(1, 512)) == "factorized"
    with torch.no_grad():  # ...unless the weight is cached: inference at batch 1 is one matmul
        assert mpo.eval().chosen_implementation(torch.zeros(1, 512)) == "reconstructed"
    low = LowRankLinear.from_dense(nn.Linear(1024, 1024), 8)[0]
    for batch in (1, 128):
        assert low.chosen_implementation(torch.zeros(batch, 1024)) == "factorized"
    pinned = LowRankLinear.from_dense(nn.Linear(1024, 1024), 8)[0]
    pinned.implementation = "reconstructed"
    assert pinned.chosen_implementation(torch.zeros(1, 1024)) == "reconstructed"
    pinned.implementation = "fast"
    with pytest.raises(ValueError, match="implementation must be one of"):
        pinned(torch.zeros(1, 1024))


def test_inference_caches_the_dense_weight_until_a_parameter_changes():
    torch.manual_seed(2)
    layer = TTLinear(512, 512, [8, 8, 8], [8, 8, 8], 64)
    for core in layer.cores:
        nn.init.normal_(core, std=0.1)
    x = torch.randn(1, 512)
    layer.eval()
    with torch.no_grad():
        y = layer(x)
        weight = layer.__dict__["_weight_cache"][1]
        assert layer(x).equal(y) and layer.__dict__["_weight_cache"][1] is weight  # reused
        layer.cores[0].mul_(2.0)  # in place, as an optimizer step
        y2 = layer(x)
        assert layer.__dict__["_weight_cache"][1] is not weight
        with forced("factorized"):
            assert torch.allclose(y2, layer(x), atol=1e-4)
        assert torch.allclose(y2, 2 * y - 2 * layer.bias, atol=1e-4)
    layer.train()
    assert "_weight_cache" not in layer.__dict__  # training holds no stale dense copy
    y3 = layer(x)  # with autograd: nothing cached, gradients reach the nodes
    y3.sum().backward()
    assert "_weight_cache" not in layer.__dict__ and layer.cores[0].grad is not None


def test_generated_weights_are_built_once_at_inference():
    torch.manual_seed(3)
    lin = nn.Linear(16, 8)
    gen = BrickWallGenerator(qubits=7, depth=2, init="random")
    encode_weights([lin], gen)
    x = torch.randn(3, 16)
    model = nn.Sequential(lin).eval()
    with torch.no_grad():
        y = model(x)
        vector = gen.__dict__["_weight_cache"][1]
        assert model(x).equal(y) and gen.__dict__["_weight_cache"][1] is vector
        gen.scale.mul_(3.0)
        assert torch.allclose(model(x), 3 * (y - lin.bias) + lin.bias, atol=1e-6)
    model.train()
    assert "_weight_cache" not in gen.__dict__
    model(x).sum().backward()
    assert gen.scale.grad is not None


@pytest.mark.parametrize("name", ["tt_linear", "tt_conv", "lowrank_conv", "bipartition_out_kh"])
def test_exported_layer_matches_eager_and_caches_nothing(name):
    layer, shape = CASES[name]
    layer = copy.deepcopy(layer).float().eval()
    x = torch.randn(shape)
    for impl in ("factorized", "reconstructed", "auto"):
        layer.implementation = impl
        forget(layer)
        with torch.no_grad():
            exported = torch.export.export(layer, (x,))
            assert "_weight_cache" not in layer.__dict__ and "_param_list" not in layer.__dict__
            assert torch.allclose(exported.module()(x), layer(x), atol=1e-5)  # eager after export still works


@pytest.mark.parametrize("name", sorted(n for n, (_, shape) in CASES.items() if len(shape) == 4))
def test_channels_last_batch_of_one_trains_in_both_forms(name):
    layer, shape = CASES[name]
    x = torch.randn(1, *shape[1:], dtype=F64).to(memory_format=torch.channels_last).requires_grad_()
    (y_f, gx_f, _), (y_r, gx_r, _) = run(layer, x, "factorized"), run(layer, x, "reconstructed")
    assert torch.allclose(y_f, y_r, atol=1e-10) and torch.allclose(gx_f, gx_r, atol=1e-10)
