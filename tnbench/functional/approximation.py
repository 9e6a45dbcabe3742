"""How far an approximation W' is from the weight W: the definitions used everywhere.

  norm loss       = 1 - ||W'||_F / ||W||_F      (papers.md section 1 leaves it open; ours)
  relative error  = ||W - W'||_F / ||W||_F

For an SVD truncation keeping the top r singular values s, ||W'||^2 = sum(s[:r]^2) and
||W - W'||^2 = sum(s[r:]^2): `truncation_curves` gives both for every r from the spectrum
alone, and the `rank_for_*` functions pick the smallest rank meeting a target.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Slack on the target comparisons, so a target met exactly in exact arithmetic is met in
# floating point too (e.g. norm_loss=0 keeps every non-negligible singular value).
SLACK = 1e-12


def norm_loss(dense: Tensor, approx: Tensor) -> float:
    """1 - ||approx|| / ||dense|| (0 for an all-zero dense tensor)."""
    total = float(torch.linalg.vector_norm(dense.detach().double()))
    if total == 0.0:
        return 0.0
    return 1.0 - float(torch.linalg.vector_norm(approx.detach().double())) / total


def relative_error(dense: Tensor, approx: Tensor) -> float:
    """||dense - approx|| / ||dense|| (0 for an all-zero dense tensor)."""
    d = dense.detach().double()
    total = float(torch.linalg.vector_norm(d))
    if total == 0.0:
        return 0.0
    return float(torch.linalg.vector_norm(d - approx.detach().double().reshape(d.shape))) / total


def truncation_curves(s: Tensor) -> tuple[Tensor, Tensor]:
    """(norm loss, relative error) of keeping the top r singular values, for r = 0..len(s)."""
    sq = s.double() ** 2
    total = sq.sum()
    if total == 0:
        zeros = torch.zeros(len(s) + 1, dtype=torch.float64)
        return zeros, zeros.clone()
    kept = torch.cat([sq.new_zeros(1), torch.cumsum(sq, 0)])
    tail = torch.cat([torch.flip(torch.cumsum(torch.flip(sq, [0]), 0), [0]), sq.new_zeros(1)])
    return 1.0 - (kept / total).clamp(0, 1).sqrt(), (tail / total).clamp(0, 1).sqrt()


def _smallest_rank(curve: Tensor, target: float) -> int:
    """Smallest r >= 1 with curve[r] <= target (curve is non-increasing, curve[-1] ~ 0)."""
    ok = torch.nonzero(curve[1:] <= target + SLACK)
    return int(ok[0]) + 1 if len(ok) else len(curve) - 1


def rank_for_norm_loss(s: Tensor, target: float) -> int:
    """Smallest rank whose norm loss is <= target (in [0, 1))."""
    if not 0.0 <= target < 1.0:
        raise ValueError(f"norm loss target must be in [0, 1), got {target}")
    return _smallest_rank(truncation_curves(s)[0], target)


def rank_for_rel_error(s: Tensor, tolerance: float) -> int:
    """Smallest rank whose relative error is <= tolerance (in [0, 1))."""
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"relative error tolerance must be in [0, 1), got {tolerance}")
    return _smallest_rank(truncation_curves(s)[1], tolerance)


def rank_for_energy(s: Tensor, energy: float) -> int:
    """Smallest r whose top-r singular values hold at least `energy` of sum(s^2), in (0, 1]."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    sq = s.double() ** 2
    total = float(sq.sum())
    if total == 0.0:
        return 1
    kept = torch.cumsum(sq, 0) / total
    # tolerate rounding so energy=1.0 means "full rank", not "one past it"
    r = int(torch.searchsorted(kept, torch.tensor(energy - SLACK, dtype=kept.dtype))) + 1
    return min(max(r, 1), s.numel())
