"""Size and cost of a model: parameters, FLOPs (torch.utils.flop_counter) and compression."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tnbench.functional.approximation import energy_norm_loss
from tnbench.functional.counting import paper_count
from tnbench.layers.implementation import forced


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_weights(model: nn.Module) -> int:
    """Weights (no biases) of every Conv2d and Linear: what the DLRT table's rate is over."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1,
                layers: Sequence[str] = ()) -> dict[str, Any]:
    """FLOPs per example of one forward pass on a batch of `batch_size` zeros: the whole model
    (`total`) and each module named in `layers` (`layers`, children included). The counter sees
    the aten ops actually run, so factorized layers (two convs, chains of matmuls, einsums) are
    counted as executed. The batch matters for tensor-network layers: work that does not scale
    with the batch (contracting cores into a weight, generating weights from gates) is shared by
    the batch's examples, and a contraction order chosen for one example can cost more per
    example than the one chosen for a batch. Factorized layers count their factorized form even
    where they would run their rebuilt dense weight (tnbench.layers.implementation): the count
    is the compression's FLOPs, not the switch's. Values are rounded to whole FLOPs."""
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    x = torch.zeros(batch_size, *input_shape, device=p.device, dtype=p.dtype)
    with FlopCounterMode(display=False) as counter, forced("factorized"):
        model(x)
    model.train(was_training)
    counts = counter.get_flop_counts()
    # keys are "<root class>.<module path>"; the root's own key is its class name
    root = type(model).__name__

    def per_example(key: str) -> int:
        return round(sum(counts.get(key, {}).values()) / batch_size)

    return {"total": round(counter.get_total_flops() / batch_size),
            "layers": {name: per_example(f"{root}.{name}") for name in layers}}


def record_flops(rec: dict[str, Any], model: nn.Module, input_shape: Sequence[int], which: str,
                 layers: Sequence[str] | None = None) -> None:
    """Set the record's `flops_<which>` (per example at `rec["flops_batch_size"]`, the
    evaluation batch), `flops_<which>_b1` (at batch 1) and, per layer of `flops_layers` (or of
    `layers`, which starts it), the same two counts under `<which>` and `<which>_b1`."""
    per_layer = rec.setdefault("flops_layers", {})
    names = list(layers) if layers is not None else list(per_layer)
    batch = rec["flops_batch_size"]
    at_batch = count_flops(model, input_shape, batch, names)
    at_one = count_flops(model, input_shape, 1, names) if batch != 1 else at_batch
    rec[f"flops_{which}"], rec[f"flops_{which}_b1"] = at_batch["total"], at_one["total"]
    for n in names:
        per_layer.setdefault(n, {}).update({which: at_batch["layers"][n], f"{which}_b1": at_one["layers"][n]})


def _with_mean(per_layer: dict[str, float]) -> dict[str, Any]:
    return {"layers": per_layer, "mean": sum(per_layer.values()) / len(per_layer) if per_layer else 0.0}


def compression_summary(params_dense: int, params_compressed: int, layers: list[dict[str, Any]],
                        count_rule: str | None = None, weights_dense: int | None = None) -> dict[str, Any]:
    """Whole-model ratio (dense / compressed, all parameters) and our layer-level rate: percent
    of weights removed over the layers the method compressed, weights counted as stored. With
    `count_rule` (the method's paper counts differently, or its rule is known), the size under
    that rule too (`params_paper`, `compression_rate_paper`; tnbench.functional.counting), over
    `weights_dense`, the dense network's conv/linear weights."""
    done = [l for l in layers if l["compressed"]]
    dense_w = sum(l["weight_params_dense"] for l in done)
    comp_w = sum(l["weight_params_compressed"] for l in done)
    losses = {l["name"]: l["norm_loss"] for l in done}
    energy = {name: energy_norm_loss(v) for name, v in losses.items()}
    correlation = {l["name"]: l["extra"]["correlation_loss"] for l in done
                   if "correlation_loss" in (l.get("extra") or {})}
    return {
        "params_dense": params_dense,
        "params_compressed": params_compressed,
        "compression_ratio": params_dense / params_compressed if params_compressed else None,
        "compression_ratio_layers": dense_w / comp_w if comp_w else 1.0,
        "compression_rate": 100.0 * (1.0 - comp_w / dense_w) if dense_w else 0.0,
        "layer_params_dense": dense_w,
        "layer_params_compressed": comp_w,
        "norm_loss": _with_mean(losses),
        "norm_loss_energy": _with_mean(energy),
        **({"correlation_loss": _with_mean(correlation)} if correlation else {}),
        "relative_error": {l["name"]: l["relative_error"] for l in done},
        "ranks": {l["name"]: l["ranks"] for l in layers},
        **(paper_count(count_rule, layers, weights_dense) if count_rule and weights_dense else {}),
    }


def recovery_epochs(acc_pretrain: float, acc_compressed: float, retrain_accs: list[float], tolerance: float) -> int | None:
    """First retrain epoch (1-based) whose test accuracy is back within `tolerance` points of
    the pretrained accuracy; 0 if compression lost nothing beyond it; None if never reached."""
    target = acc_pretrain - tolerance
    if acc_compressed >= target:
        return 0
    for epoch, acc in enumerate(retrain_accs, start=1):
        if acc >= target:
            return epoch
    return None
