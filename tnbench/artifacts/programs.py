"""A run's compressed model exported for use outside PyTorch's eager mode, and checked.

- `torch-export`: a `torch.export` ExportedProgram (`model.pt2`, `torch.export.load` reads it);
- `onnx`: an ONNX file (`model.onnx`) from the dynamo-based `torch.onnx.export`, run back with
  onnxruntime (or, without it, onnx's reference evaluator).

Both start from the saved model (`tnbench.artifacts.store.load`) in its inference form: a
generator's orthogonal-gate parametrization (ADQC) is replaced by the gates it gives, since
ONNX has no matrix exponential; the circuit itself stays. The batch dimension is dynamic where
the model traces with one; layers that choose their implementation (or contraction plan) per
input shape export at the fixed batch of the check. The exported file is then run on the first test
images of the run's dataset and compared with the reloaded model: the largest absolute
difference goes into the record (`export`) and is printed.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from tnbench.artifacts.store import load
from tnbench.layers.brickwall import BrickWallGenerator

FORMATS = {"torch-export": "model.pt2", "onnx": "model.onnx"}


def inference_form(model: nn.Module) -> nn.Module:
    """`model` with each parametrized gate tensor replaced by its value (same outputs)."""
    for module in model.modules():
        if isinstance(module, BrickWallGenerator) and parametrize.is_parametrized(module, "gates"):
            parametrize.remove_parametrizations(module, "gates", leave_parametrized=True)
    return model


def sample_images(record: dict[str, Any], count: int) -> torch.Tensor:
    """The first `count` test images of the run's dataset, normalized as the model saw them."""
    from omegaconf import OmegaConf

    from tnbench.data import load_section
    from tnbench.data.batching import normalize

    cfg = OmegaConf.create(record["config"])
    data = load_section(cfg.dataset, cfg.seed)
    return normalize(data.test_x[:count], data.mean, data.std)


def exported_program(run_dir: Path, x: torch.Tensor) -> tuple[torch.export.ExportedProgram, str]:
    """The saved model (inference form) through torch.export, with a dynamic batch where it
    traces; otherwise a fresh copy (the failed trace may have left shape caches behind) at the
    batch of `x`. Returns the program and its batch ("dynamic" or the number)."""
    try:
        batch = torch.export.Dim("batch", min=1)
        return torch.export.export(inference_form(load(run_dir)), (x,), dynamic_shapes=({0: batch},)), "dynamic"
    except Exception:  # noqa: BLE001 - shape-specialized layers
        return torch.export.export(inference_form(load(run_dir)), (x,)), str(x.shape[0])


def _torch_export(program: torch.export.ExportedProgram, x: torch.Tensor, path: Path) -> torch.Tensor:
    # torch's archive writer takes a non-contiguous weight (a channels_last conv kernel) for a
    # slice of a larger tensor and warns that it stores the whole storage instead; for such a
    # weight the storage is exactly its own data, and the outputs are checked right below
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No complete tensor found")
        torch.export.save(program, str(path))
        loaded = torch.export.load(str(path))
    return loaded.module()(x)


def _onnx(program: torch.export.ExportedProgram, x: torch.Tensor, path: Path) -> torch.Tensor:
    torch.onnx.export(program, (x,), str(path), dynamo=True, verbose=False)
    try:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(str(path))
        out = evaluator.run(None, {evaluator.input_names[0]: x.numpy()})[0]
    return torch.from_numpy(out)


def export(run_dir: str | Path, fmt: str, record: dict[str, Any], images: int = 8) -> dict[str, Any]:
    """Export the run's saved model as `fmt` into its run dir and check it on `images` test
    images; returns what goes into the record's `export[fmt]`."""
    run_dir = Path(run_dir)
    model = load(run_dir)
    x = sample_images(record, images).to(next(model.parameters()).dtype)
    with torch.no_grad():
        reference = model(x)
    path = run_dir / FORMATS[fmt]
    t0 = time.perf_counter()
    program, batch = exported_program(run_dir, x)
    with torch.no_grad():
        out = (_torch_export if fmt == "torch-export" else _onnx)(program, x, path)
    seconds = time.perf_counter() - t0
    diff = float((out.detach().to(reference.dtype) - reference).abs().max())
    return {"file": str(path), "max_abs_diff": diff, "images": int(x.shape[0]), "batch": batch,
            "torch": torch.__version__, "time_s": seconds}
