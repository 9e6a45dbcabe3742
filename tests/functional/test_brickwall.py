"""Brick-wall circuits (tnbench.functional.brickwall): layout, contraction against a dense operator,
checkpointed backward against autograd, weight layouts."""
from __future__ import annotations

import pytest
import torch

from tnbench.functional import brickwall as tn
from tnbench.functional.brickwall import (
    adqc_params,
    adtn_params,
    brick_wall,
    contract,
    gate_positions,
    num_gates,
    product_state,
)
from tnbench.layers.brickwall import BrickWallGenerator, encode_weights
from tnbench.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

MODES = ("none", "sqrt", "log")


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
    # a gate budget keeps the first gates: full layers, then the start of a partial one
    assert gate_positions(5, 3, gates=5) == [0, 2, 1, 3, 0]
    assert num_gates(23, 4, 39) == 39 and adtn_params(23, 4, 39) == 625  # the VGG-16 three-conv preset
    assert adtn_params(23, 4) == 16 * 44 + 1 == 705 and adtn_params(23, 3) == 529
    with pytest.raises(ValueError, match="gates must be in"):
        gate_positions(5, 3, gates=7)


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
