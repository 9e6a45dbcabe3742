"""How far an approximation W' is from the weight W: the definitions used everywhere.

  norm loss         = 1 - ||W'||_F / ||W||_F      (papers.md section 1 leaves it open; ours)
  norm loss, energy = 1 - ||W'||_F^2 / ||W||_F^2  (the squared reading: the share of the
                      kernel's energy discarded; = 1 - (1 - norm loss)^2)
  relative error    = ||W - W'||_F / ||W||_F
  correlation loss  = 1 - r / n: the share of the correlations across a bipartition (its n
                      singular values, n = the smaller side of the unfolding) that a rank-r
                      truncation discards

arXiv 2403.14379 reports a "norm loss" and a "correlation loss" without a formula in our
material (papers.md, seed summary): the two norm-loss forms above are both kept so that its
"~50% norm loss costs little" can be read either way (norm loss 0.5 is energy 0.75; energy 0.5
is norm loss 0.29), and the correlation loss is our reading of "correlations" as the singular
values of the cut (Schmidt coefficients), counted rather than weighted.

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


def energy_norm_loss(norm_loss_value: float) -> float:
    """The energy form 1 - ||W'||^2 / ||W||^2 of a norm loss 1 - ||W'|| / ||W||."""
    kept = 1.0 - norm_loss_value
    return 1.0 - kept * kept


def norm_loss_energy(dense: Tensor, approx: Tensor) -> float:
    """1 - ||approx||^2 / ||dense||^2 (0 for an all-zero dense tensor). For an SVD truncation
    (an orthogonal projection) it equals relative_error^2."""
    return energy_norm_loss(norm_loss(dense, approx))


def correlation_loss(rank: int, full_rank: int) -> float:
    """Share of a bipartition's `full_rank` singular values that keeping `rank` discards."""
    if full_rank < 1 or not 0 <= rank <= full_rank:
        raise ValueError(f"rank must be in [0, {full_rank}] with full_rank >= 1, got rank {rank}")
    return 1.0 - rank / full_rank


def truncation_losses(s: Tensor) -> dict[str, Tensor]:
    """Every loss of keeping the top r singular values of `s`, for r = 0..len(s): `norm_loss`,
    `norm_loss_energy`, `relative_error`, `correlation_loss`."""
    losses, errors = truncation_curves(s)
    n = s.numel()
    return {"norm_loss": losses, "norm_loss_energy": 1.0 - (1.0 - losses) ** 2, "relative_error": errors,
            "correlation_loss": 1.0 - torch.arange(n + 1, dtype=torch.float64) / max(n, 1)}


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
