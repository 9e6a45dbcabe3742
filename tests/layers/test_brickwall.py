"""BrickWallGenerator and weight encoding: orthogonal gates, what trains."""
from __future__ import annotations

import pytest
import torch

from tnbench.functional.brickwall import adqc_params, adtn_params, skew_orthogonal
from tnbench.layers.brickwall import BrickWallGenerator, encode_weights
from tnbench.models import build_model
from tnbench.pipeline.metrics import count_params

pytestmark = pytest.mark.usefixtures("one_thread")


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
