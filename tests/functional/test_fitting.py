"""Gradient fits of a network to given weights (tnbench.functional.fitting, ADTN stage 1)."""
from __future__ import annotations

import pytest
import torch

from tnbench.functional.brickwall import contract, gate_positions, skew_orthogonal
from tnbench.functional.fitting import fit_generator
from tnbench.layers.brickwall import BrickWallGenerator

pytestmark = pytest.mark.usefixtures("one_thread")


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
