"""A run's compressed model on disk: `model.safetensors` (the tensors) and `model.json` (the
architecture: tnbench.artifacts.spec), and `load`, which rebuilds the model from them.

Nothing here unpickles: the weights are read by safetensors, the spec is JSON, and rebuilding
needs only the model registry and tnbench.layers (no method, no Lightning, no training code).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from tnbench.artifacts.spec import SPEC_VERSION, UnsupportedModel, describe, rebuild
from tnbench.errors import CheckpointError
from tnbench.files import share
from tnbench.models import MODELS, build_model

WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "model.json"


def model_preset(model_section: Any, in_channels: int, image_size: int, num_classes: int) -> dict[str, Any]:
    """What builds the dense model: the `model` config section (name, options, a plugin's
    `_target_`) and the data's geometry."""
    section = dict(model_section)
    preset = {"name": section["name"], "options": dict(section.get("options") or {}),
              "in_channels": in_channels, "image_size": image_size, "num_classes": num_classes}
    if section.get("_target_"):
        preset["_target_"] = section["_target_"]
    return preset


def channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-d weights are laid out channels-last, judged by their exact strides:
    a kernel with one input channel is "contiguous" in both orders, yet a conv runs (and rounds)
    differently on each."""
    for p in model.parameters():
        if p.dim() == 4:
            o, i, h, w = p.shape
            if p.stride() == (i * h * w, 1, w * i, i) != (i * h * w, h * w, w, 1):
                return True
    return False


def model_spec(model: nn.Module, preset: dict[str, Any], **about: Any) -> dict[str, Any]:
    """The JSON that, with the weights, gives `model` back (`about`: run id, method, for people)."""
    return {"format": SPEC_VERSION, **about, "preset": preset, "channels_last": channels_last(model),
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."), **describe(model)}


def build(spec: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """The spec's model with fresh values (the weights file fills them)."""
    preset = spec["preset"]
    if preset.get("_target_"):
        MODELS.resolve({"name": preset["name"], "_target_": preset["_target_"]})
    with torch.device(device):
        dense = build_model(preset["name"], in_channels=preset["in_channels"], image_size=preset["image_size"],
                            num_classes=preset["num_classes"], **preset["options"])
    model = rebuild(dense.to(getattr(torch, spec.get("dtype", "float32"))), spec)
    if spec.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    return model


def _write_json(path: Path, data: Any) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def save(model: nn.Module, run_dir: str | Path, preset: dict[str, Any], **about: Any) -> Path:
    """Write the model's spec and weights into `run_dir`; returns the weights file. Raises
    UnsupportedModel (and writes nothing) when the spec would not give the same tensors back."""
    run_dir = Path(run_dir)
    spec = model_spec(model, preset, **about)
    with torch.device("meta"):  # shapes only: checks the spec before anything is written
        rebuilt = build(spec, "meta").state_dict()
    mine = model.state_dict()
    if {k: tuple(v.shape) for k, v in rebuilt.items()} != {k: tuple(v.shape) for k, v in mine.items()}:
        missing = sorted(set(mine) ^ set(rebuilt)) or sorted(k for k in mine if mine[k].shape != rebuilt[k].shape)
        raise UnsupportedModel(f"the spec does not rebuild the model's tensors ({', '.join(missing[:3])}, ...)")
    run_dir.mkdir(parents=True, exist_ok=True)
    weights = run_dir / WEIGHTS_FILE
    tmp = run_dir / (WEIGHTS_FILE + ".tmp")
    save_model(model, str(tmp), metadata={"format": "pt", "tnbench_spec": SPEC_FILE})
    share(tmp)  # safetensors writes 0600
    os.replace(tmp, weights)
    _write_json(run_dir / SPEC_FILE, spec)
    return weights


def read_spec(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    missing = [f for f in (WEIGHTS_FILE, SPEC_FILE) if not (run_dir / f).is_file()]
    if missing:
        raise CheckpointError(f"{run_dir} has no {' or '.join(missing)}: its run was recorded before tnbench saved "
                              f"models, or did not finish; run it again (pipeline.rerun=true) to get the model")
    try:
        return json.loads((run_dir / SPEC_FILE).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{run_dir / SPEC_FILE} is not valid JSON: {e}") from None


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The compressed model a run saved, rebuilt from its spec with its weights, in eval mode."""
    run_dir = Path(run_dir)
    spec = read_spec(run_dir)
    try:
        model = build(spec, device)
        load_model(model, str(run_dir / WEIGHTS_FILE), strict=True, device=str(device))
    except (UnsupportedModel, RuntimeError, KeyError) as e:
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot rebuild the model of {run_dir}: {line}") from None
    return model.eval()
