"""Gradient fits of a tensor network to given weights: ADTN/ADQC's stage 1 and the PEPS
"decomposition" (no PEPS-SVD exists). Both minimize ||g - W||^2 / ||W||^2 with Adam."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

FIT_SCALES = ("norm", "free")
CURVE_POINTS = 200  # a fit curve kept in a record is thinned to about this many points


def fit_least_squares(params: Sequence[torch.Tensor], produce: Callable[[], torch.Tensor], target: torch.Tensor,
                      steps: int, lr: float) -> float:
    """Adam on ||produce() - target||^2 / ||target||^2 for `steps` steps; returns the final
    relative distance (not squared)."""
    ref = float(torch.linalg.vector_norm(target)) ** 2 or 1.0
    opt = torch.optim.Adam(list(params), lr=lr)
    loss = torch.tensor(float("nan"))
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            loss = (produce() - target).pow(2).sum() / ref
            loss.backward()
            opt.step()
    return math.sqrt(max(float(loss.detach()), 0.0))


def fit_generator(generator: nn.Module, target: torch.Tensor, steps: int, lr: float,
                  tol: float = 0.0, patience: int | None = None,
                  positions: torch.Tensor | None = None, scale: str = "free") -> dict[str, Any]:
    """Stage 1: Adam on ||g[P] - target||^2 / ||target||^2, P = `positions` (default: the first
    target.numel() entries); keeps the best parameters seen. Returns the distances (relative,
    not squared) and why it stopped.

    scale "free": g is the generator's output, its scale is fitted with the gates. "norm": g is
    the circuit's output rescaled to the target's norm, only the gates are fitted, and the
    scale is set to match at the end. Where the circuit cannot follow the target (a trained
    layer is mostly unstructured), the free fit's best move is to shrink the scale toward 0,
    which hands stage 2 all-zero weights; holding the norm fits the direction instead."""
    n = target.numel()
    target = target.reshape(-1)
    tnorm = target.norm()

    def used(out: torch.Tensor) -> torch.Tensor:
        return out[:n] if positions is None else out.index_select(0, positions)

    def generated() -> torch.Tensor:
        if scale == "free":
            return used(generator())
        g = used(generator.circuit())
        return g * (tnorm / g.norm().clamp_min(torch.finfo(g.dtype).tiny))

    if scale not in FIT_SCALES:
        raise ValueError(f"fit scale must be one of {', '.join(FIT_SCALES)}; got {scale!r}")
    t2 = target.pow(2).sum().clamp_min(torch.finfo(target.dtype).tiny)
    params = [p for p in generator.parameters() if p.requires_grad and (scale == "free" or p is not generator.scale)]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr * 0.01)
    curve: list[float] = []
    best, best_state, since, stopped = math.inf, None, 0, "steps"
    for step in range(steps + 1):
        loss = (generated() - target).pow(2).sum() / t2
        dist = math.sqrt(max(float(loss.detach()), 0.0))
        curve.append(dist)
        if not math.isfinite(dist):
            stopped = "diverged"
            break
        if dist < best:
            improved = dist < best * (1 - 1e-3)
            best, best_state = dist, [p.detach().clone() for p in params]
            since = 0 if improved else since + 1
        else:
            since += 1
        if dist <= tol:
            stopped = "tol"
            break
        if patience is not None and since >= patience:
            stopped = "patience"
            break
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        if best_state is not None:
            for p, b in zip(params, best_state):
                p.copy_(b)
        if scale == "norm":
            norm = used(generator.circuit()).norm()
            if norm > 0:
                generator.scale.fill_(float(tnorm / norm))
    return {"initial_distance": curve[0], "final_distance": best, "steps": len(curve) - 1,
            "stopped": stopped, "curve": curve}


def thin_curve(curve: list[float], points: int = CURVE_POINTS) -> list[list[float]]:
    """[[step, distance], ...] at most about `points` long, always with the first and last step."""
    stride = max(1, math.ceil(len(curve) / points))
    steps = sorted(set(range(0, len(curve), stride)) | {len(curve) - 1})
    return [[s, curve[s]] for s in steps]
