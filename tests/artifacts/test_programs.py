"""Export of a saved model (torch.export, ONNX) and its check against the reloaded model on test
images: within 1e-5 in float32, for matrix, Tucker and tensor-network models."""
from __future__ import annotations

import onnx
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import QUICK, compose, method_cfg
from tnbench.artifacts.programs import export, inference_form, sample_images
from tnbench.artifacts.store import load, model_preset, save
from tnbench.methods import build_method
from tnbench.models import build_model


def saved(tmp_path, method: str, **options) -> dict:
    """LeNet-5 compressed by `method`, saved in tmp_path; returns a record of a synthetic-data run."""
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10)
    build_method(method_cfg(method, **options)).compress(model)
    save(model, tmp_path, model_preset({"name": "lenet5", "options": {}}, 1, 28, 10))
    return {"config": OmegaConf.to_container(compose(QUICK), resolve=True)}


@pytest.mark.parametrize("fmt", ["torch-export", "onnx"])
@pytest.mark.parametrize("method,options", [("svd", {}), ("tucker", {}), ("mpo", {}),
                                            pytest.param("adqc", {"fit_steps": 3}, marks=pytest.mark.slow)])
def test_the_exported_model_gives_the_reloaded_models_outputs(fmt, method, options, tmp_path):
    record = saved(tmp_path, method, **options)
    out = export(tmp_path, fmt, record, images=6)
    assert out["max_abs_diff"] <= 1e-5 and out["images"] == 6
    path = tmp_path / ("model.pt2" if fmt == "torch-export" else "model.onnx")
    assert out["file"] == str(path) and path.stat().st_size > 0
    if fmt == "onnx":
        onnx.checker.check_model(str(path))
    else:  # the program runs on its own, outside tnbench
        x = sample_images(record, 6)
        with torch.no_grad():
            assert torch.allclose(torch.export.load(str(path)).module()(x), load(tmp_path)(x), atol=1e-5)
    # layers that pick their implementation per input shape fix the batch at the checked one
    assert out["batch"] in ("dynamic", "6")


def test_the_inference_form_keeps_the_outputs(tmp_path):
    saved(tmp_path, "adqc", fit_steps=3)
    model = load(tmp_path)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        before = model(x)
        assert torch.allclose(inference_form(model)(x), before, atol=1e-6)
    gates = [n for n, _ in model.named_parameters() if n.endswith("gates") or "gates.original" in n]
    assert gates and all(n.endswith("generator.gates") for n in gates)  # plain tensors, no matrix exponential
