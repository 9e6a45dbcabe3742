"""ADTN / ADQC: brick-wall contraction against a dense operator, orthogonality, fitting,
bad input, and a pipeline run whose record counts the gates."""
from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import QUICK, compose

from tnbench.errors import ConfigError
from tnbench.functional import brickwall as tn
from tnbench.functional.brickwall import (
    adqc_params,
    adtn_params,
    brick_wall,
    contract,
    gate_positions,
    num_gates,
    product_state,
    skew_orthogonal,
)
from tnbench.functional.fitting import fit_generator
from tnbench.layers.brickwall import BrickWallGenerator, encode_weights
from tnbench.methods import build_method
from tnbench.methods.families.brickwall import apportion
from tnbench.models import build_model
from tnbench.pipeline.metrics import count_params
from tnbench.pipeline.stages import run_pipeline

MODES = ("none", "sqrt", "log")


@pytest.fixture(autouse=True)
def one_thread():
    """Small contractions: a second BLAS thread only waits on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def dense_operator(gates: torch.Tensor, positions: list[int], qubits: int) -> torch.Tensor:
    """The whole circuit as one 2^Q x 2^Q matrix: kron(I_(2^i), G, I_(2^(Q-i-2))) per gate."""
    op = torch.eye(2**qubits, dtype=gates.dtype)
    for g, i in zip(gates, positions):
        left = torch.eye(2**i, dtype=gates.dtype)
        right = torch.eye(2 ** (qubits - i - 2), dtype=gates.dtype)
        op = torch.kron(torch.kron(left, g), right) @ op
    return op


def test_brick_wall_layout_and_gate_count():
    # first pairs (0,1),(2,3),... then (1,2),(3,4),...
    assert gate_positions(5, 3) == [0, 2, 1, 3, 0, 2]
    assert gate_positions(6, 2) == [0, 2, 4, 1, 3]
    for q in range(2, 12):
        for m in range(1, 7):
            assert num_gates(q, m) == len(gate_positions(q, m))
    assert adtn_params(19, 8) == 16 * 72 + 1
    assert adqc_params(19, 8) == 6 * 72 + 1


@pytest.mark.parametrize("kind", ["plus", "zero"])
def test_identity_gates_give_the_initial_state(kind):
    q, m = 7, 5
    state = product_state(q, kind, dtype=torch.float64)
    gates = torch.eye(4, dtype=torch.float64).repeat(num_gates(q, m), 1, 1).requires_grad_()
    for mode in MODES:
        assert torch.equal(brick_wall(state, gates, gate_positions(q, m), q, mode), state)
    gen = BrickWallGenerator(q, m, init="near_identity", init_std=0.0, initial_state=kind, dtype=torch.float64)
    assert torch.equal(gen().detach(), state)
    assert float(state.norm()) == pytest.approx(1.0)


@pytest.mark.parametrize("qubits", [2, 3, 5, 6])
def test_gate_by_gate_contraction_matches_dense_operator(qubits):
    torch.manual_seed(qubits)
    depth = 4
    positions = gate_positions(qubits, depth)
    gates = torch.randn(len(positions), 4, 4, dtype=torch.float64)
    state = torch.randn(2**qubits, dtype=torch.float64)
    reference = dense_operator(gates, positions, qubits) @ state
    torch.testing.assert_close(contract(state, gates, positions, qubits), reference, rtol=1e-12, atol=1e-12)
    for mode in MODES:
        out = brick_wall(state, gates.clone().requires_grad_(), positions, qubits, mode)
        torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_checkpointed_backward_matches_autograd(mode, monkeypatch):
    torch.manual_seed(0)
    q, m = 9, 6  # every gate position, both matmul regimes of apply_gate/gate_gradient
    positions = gate_positions(q, m)
    gates = torch.randn(len(positions), 4, 4, dtype=torch.float64) * 0.6
    state = torch.randn(2**q, dtype=torch.float64)
    weight = torch.randn(2**q, dtype=torch.float64)

    g1, s1 = gates.clone().requires_grad_(), state.clone().requires_grad_()
    (contract(s1, g1, positions, q) * weight).sum().backward()
    g2, s2 = gates.clone().requires_grad_(), state.clone().requires_grad_()
    out = brick_wall(s2, g2, positions, q, mode)
    applied = []
    apply = tn.apply_gate
    monkeypatch.setattr(tn, "apply_gate", lambda *a: applied.append(1) or apply(*a))
    (out * weight).sum().backward()
    torch.testing.assert_close(g2.grad, g1.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s2.grad, s1.grad, rtol=1e-10, atol=1e-10)
    # backward = the gradient through every gate + the states the plan recomputes
    split, leaf = tn.checkpoint_plan(mode, len(positions), q, 8)
    assert len(applied) == len(positions) + tn.recomputed_gates(len(positions), split, leaf)


def test_adqc_gates_stay_orthogonal_after_optimizer_steps():
    torch.manual_seed(0)
    gen = BrickWallGenerator(6, 4, orthogonal=True, init="random", dtype=torch.float64)
    assert gen.trained_params() == adqc_params(6, 4)
    target = torch.randn(2**6, dtype=torch.float64)
    opt = torch.optim.Adam(gen.parameters(), lr=0.2)
    for _ in range(25):
        opt.zero_grad()
        (gen() - target).pow(2).sum().backward()
        opt.step()
    g = gen.gates.detach()
    eye = torch.eye(4, dtype=torch.float64).expand_as(g)
    assert (g.transpose(1, 2) @ g - eye).abs().max() < 1e-10
    assert (torch.linalg.det(g) - 1).abs().max() < 1e-10
    # an orthogonal circuit on a unit state: the output's norm is the scale
    assert float(gen().norm()) == pytest.approx(abs(float(gen.scale)), rel=1e-12)
    # the map itself: any generator gives an exactly orthogonal gate
    q = skew_orthogonal(torch.randn(10, 6, dtype=torch.float64) * 3)
    assert (q.transpose(1, 2) @ q - torch.eye(4, dtype=torch.float64)).abs().max() < 1e-12


def test_random_adtn_gates_start_orthogonal_and_free():
    gen = BrickWallGenerator(6, 3, init="random", dtype=torch.float64)
    g = gen.gates.detach()
    assert (g.transpose(1, 2) @ g - torch.eye(4, dtype=torch.float64)).abs().max() < 1e-12
    assert gen.trained_params() == adtn_params(6, 3)  # 16 free numbers per gate, not 6
    near = BrickWallGenerator(6, 3, init="near_identity", init_std=0.1, dtype=torch.float64)
    assert 0 < (near.gates.detach() - torch.eye(4, dtype=torch.float64)).abs().max() < 1


@pytest.mark.parametrize("orthogonal, scale", [(False, "free"), (True, "free"), (False, "norm")])
def test_fit_approaches_a_low_entanglement_target(orthogonal, scale):
    torch.manual_seed(1)
    q = 8
    # target: a random shallow (depth 2) brick wall on a random product state
    shallow = gate_positions(q, 2)
    single = torch.randn(q, 2, dtype=torch.float64)
    state = single[0]
    for v in single[1:]:
        state = torch.kron(state, v)
    target = 3.0 * contract(state, skew_orthogonal(torch.randn(len(shallow), 6, dtype=torch.float64)), shallow, q)
    gen = BrickWallGenerator(q, 4, orthogonal=orthogonal, init="near_identity", init_std=0.1,
                             dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gen.scale.fill_(float(target.norm()))
    fit = fit_generator(gen, target, steps=300, lr=0.05, tol=1e-4, patience=None, scale=scale)
    assert fit["initial_distance"] > 0.5
    assert fit["final_distance"] < 0.1 * fit["initial_distance"], fit["final_distance"]
    achieved = float((gen().detach() - target).norm() / target.norm())
    assert achieved == pytest.approx(fit["final_distance"], rel=1e-6)


def test_encoded_layers_train_only_the_gates():
    torch.manual_seed(0)
    model = build_model("fc2", in_channels=1, image_size=8, num_classes=10, hidden=16)
    layers = [model.classifier[0], model.classifier[2]]
    weights = sum(m.weight.numel() for m in layers)  # 64*16 + 16*10 = 1184 -> Q = 11
    biases = sum(m.bias.numel() for m in layers)
    gen = BrickWallGenerator(11, 3, dtype=torch.float32)
    encode_weights(layers, gen)
    assert count_params(model) == biases + adtn_params(11, 3)
    assert not any("original" in k for k in model.state_dict())
    out = model(torch.randn(5, 1, 8, 8))
    out.sum().backward()
    assert gen.gates.grad is not None and gen.gates.grad.abs().sum() > 0
    vec = gen().detach()
    torch.testing.assert_close(model.classifier[2].weight.detach().reshape(-1), vec[1024:1184])
    assert weights == 1184


def test_dims_layout_gives_each_weight_dimension_its_own_indices():
    from tnbench.functional.brickwall import layout_size, weight_layout, weight_positions

    shapes = [(10, 3), (5, 7, 2)]
    assert weight_layout(shapes, "flat") == [(0, (10, 3)), (30, (5, 7, 2))]
    assert layout_size(shapes, "flat") == 100
    # (16, 4) = 64 entries at 0, then (8, 8, 2) = 128 entries aligned at 128
    assert weight_layout(shapes, "dims") == [(0, (16, 4)), (128, (8, 8, 2))]
    assert layout_size(shapes, "dims") == 256
    pos = weight_positions(shapes, "dims")
    assert pos[:3].tolist() == [0, 1, 2] and pos[3] == 4  # row 1 starts at 4 (columns padded to 4)
    assert pos[30:33].tolist() == [128, 129, 130]  # (0, 0, 0), (0, 0, 1), (0, 1, 0) of an (8, 8, 2) block
    torch.testing.assert_close(weight_positions(shapes, "flat"), torch.arange(100))
    # a model encoded with the dims layout reads its weights from those positions
    model = build_model("fc2", in_channels=1, image_size=4, num_classes=3, hidden=5)
    layers = [model.classifier[0], model.classifier[2]]
    gen = BrickWallGenerator(8, 2, init="random")
    encode_weights(layers, gen, "dims")
    vec = gen().detach()
    flat = torch.cat([m.weight.detach().reshape(-1) for m in layers])
    torch.testing.assert_close(flat, vec[weight_positions([(5, 16), (3, 5)], "dims")])


def test_apportion_sums_exactly():
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(apportion(1153, [401408, 5120, 3])) == 1153
    assert apportion(7, [100, 0]) == [7, 0]


def _method(tmp_path, *overrides):
    cfg = compose([*QUICK, "model=fc2", "method=adtn", "logger=none", f"paths.results_dir={tmp_path}", *overrides])
    return cfg, build_method(cfg.method)


@pytest.mark.parametrize("override, message", [
    ("method.depth=0", "method.depth must be >= 1, got 0"),
    ("method.qubits=1", "method.qubits must be null or between 2 and 30, got 1"),
    ("method.init=zeros", "method.init must be one of near_identity, random; got 'zeros'"),
    ("method.fit_lr=0", "method.fit_lr must be > 0, got 0"),
    ("method.groups=some", "method.groups must be one of each, all"),
    ("method.groups=[[classifier.0],[classifier.0,classifier.2]]", "in more than one group"),
    ("method.checkpoint=most", "method.checkpoint must be one of auto, none, sqrt, log"),
])
def test_bad_settings_are_one_line_config_errors(tmp_path, override, message):
    with pytest.raises(ConfigError) as e:
        _method(tmp_path, override)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("overrides, message", [
    (["method.qubits=12"], "method.qubits=12 is too small for group 0 (classifier.0): 401408 weights need qubits >= 19"),
    (["method.groups=[[classifier.0,classifier.9]]"], "method.groups names unknown layer(s) classifier.9; allowed:"),
    (["method.groups=[[flatten]]"], "method.groups names unknown layer(s) flatten"),
])
def test_bad_groups_for_the_model_are_one_line_config_errors(tmp_path, overrides, message):
    _, method = _method(tmp_path, *overrides)
    model = build_model("fc2", in_channels=1, image_size=28, num_classes=10)
    with pytest.raises(ConfigError) as e:
        method.compress(model)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert count_params(model) == 407050  # nothing was changed


def test_one_network_for_two_layers_is_built_once_per_forward(tmp_path, monkeypatch):
    _, method = _method(tmp_path, "method.groups=all", "method.fit_steps=5", "method.depth=2")
    model = build_model("fc2", in_channels=1, image_size=8, num_classes=10, hidden=16)
    reports = method.compress(model)
    gen = model.classifier[0].parametrizations["weight"][0].generator
    assert gen is model.classifier[2].parametrizations["weight"][0].generator
    assert [r.weight_params_dense for r in reports] == [1024, 160]
    assert sum(r.weight_params_compressed for r in reports) == gen.trained_params() == adtn_params(11, 2)
    calls = []
    original = BrickWallGenerator.circuit
    monkeypatch.setattr(BrickWallGenerator, "circuit", lambda self: calls.append(1) or original(self))
    model(torch.randn(3, 1, 8, 8)).sum().backward()
    assert len(calls) == 1
    model(torch.randn(3, 1, 8, 8))
    assert len(calls) == 2


@pytest.mark.parametrize("method", ["adtn", "adqc"])
def test_pipeline_record_counts_the_gates(tmp_path, method):
    cfg = compose([*QUICK, "model=fc2", "model.options.hidden=64", f"method={method}", "logger=none",
                   f"paths.results_dir={tmp_path}", "method.fit_steps=30", "method.depth=4"])
    run_pipeline(cfg, tmp_path / "run")
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    assert rec["status"] == "ok", rec.get("error")
    assert rec["paper"] == "ADTN (arXiv 2305.06058)"
    per_gate = 16 if method == "adtn" else 6
    # classifier.0: 784*64 = 50176 weights -> Q = 16; classifier.2: 64*10 = 640 -> Q = 10
    gen_params = [per_gate * num_gates(16, 4) + 1, per_gate * num_gates(10, 4) + 1]
    assert rec["params_compressed"] == 64 + 10 + sum(gen_params)
    assert rec["params_dense"] == 50176 + 640 + 64 + 10
    assert rec["layer_params_compressed"] == sum(gen_params)
    assert rec["compression_ratio_layers"] == pytest.approx((50176 + 640) / sum(gen_params))
    fits = rec["adtn_fit"]
    assert [f["qubits"] for f in fits] == [16, 10] and [f["params"] for f in fits] == gen_params
    for f, layer in zip(fits, rec["layers"]):
        assert f["final_distance"] <= f["initial_distance"]
        assert layer["norm_loss"] == pytest.approx(f["final_distance"])
        assert f["curve"][0] == [0, f["initial_distance"]]
    assert math.isfinite(rec["acc_retrained"])
