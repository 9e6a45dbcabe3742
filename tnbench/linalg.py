"""Small pure functions for low-rank truncation, tested against dense reconstructions.

Definitions used everywhere in tnbench (papers.md section 1 left them open):
- norm loss       = 1 - ||W_trunc||_F / ||W||_F
- relative error  = ||W - W_trunc||_F / ||W||_F
For an SVD truncation keeping the top r singular values s: ||W_trunc||^2 = sum(s[:r]^2) and
||W - W_trunc||^2 = sum(s[r:]^2), so both follow from the spectrum alone.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def matricize_conv(weight: Tensor) -> Tensor:
    """OUT x IN x KH x KW kernel -> OUT x (IN*KH*KW) matrix (the matrix low-rank view)."""
    return weight.reshape(weight.shape[0], -1)


def norm_loss(s: Tensor, rank: int) -> float:
    total = float(torch.linalg.vector_norm(s))
    if total == 0.0:
        return 0.0
    return 1.0 - float(torch.linalg.vector_norm(s[:rank])) / total


def relative_error(s: Tensor, rank: int) -> float:
    total = float(torch.linalg.vector_norm(s))
    if total == 0.0:
        return 0.0
    return float(torch.linalg.vector_norm(s[rank:])) / total


def rank_for_energy(s: Tensor, energy: float) -> int:
    """Smallest r whose top-r singular values hold at least `energy` of sum(s^2)."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    sq = s.double() ** 2
    total = float(sq.sum())
    if total == 0.0:
        return 1
    kept = torch.cumsum(sq, 0) / total
    # tolerate rounding so energy=1.0 means "full rank", not "one past it"
    r = int(torch.searchsorted(kept, torch.tensor(energy - 1e-12, dtype=kept.dtype))) + 1
    return min(max(r, 1), s.numel())


def truncated_svd(matrix: Tensor, rank: int) -> tuple[Tensor, Tensor, Tensor]:
    """Best rank-`rank` factors A (m x r), B (r x n) with A @ B ~ matrix, plus all singular values.

    The singular values are split evenly (A = U sqrt(S), B = sqrt(S) V^T) so both factors
    have comparable scale, which keeps SGD on the factors well conditioned.
    """
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    a = (u[:, :r] * root).to(matrix.dtype)
    b = (root[:, None] * vh[:r]).to(matrix.dtype)
    return a, b, s.to(matrix.dtype)


def low_rank_params(m: int, n: int, rank: int) -> int:
    return rank * (m + n)


def max_useful_rank(m: int, n: int) -> int:
    """Largest rank at which two factors are still smaller than the m x n matrix."""
    return max(0, math.ceil(m * n / (m + n)) - 1)
