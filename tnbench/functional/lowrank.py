"""Matrix low-rank truncation: the one truncated SVD every factorized layer starts from."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def matricize_conv(weight: Tensor) -> Tensor:
    """OUT x IN x KH x KW kernel -> OUT x (IN*KH*KW) matrix (the matrix low-rank view)."""
    return weight.reshape(weight.shape[0], -1)


def svd(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD in float64: U, s (descending), V^T."""
    return torch.linalg.svd(matrix.detach().double(), full_matrices=False)


def split_factors(u: Tensor, s: Tensor, vh: Tensor, rank: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """A = U_r sqrt(S_r), B = sqrt(S_r) V_r^T, so A @ B is the best rank-r approximation.

    The singular values are split evenly so both factors have comparable scale, which keeps
    SGD on the factors well conditioned."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    return (u[:, :r] * root).to(dtype), (root[:, None] * vh[:r]).to(dtype)


def truncated_svd(matrix: Tensor, rank: int) -> tuple[Tensor, Tensor, Tensor]:
    """Best rank-`rank` factors A (m x r), B (r x n) with A @ B ~ matrix (the matrix's dtype),
    and the full spectrum (float64)."""
    u, s, vh = svd(matrix)
    a, b = split_factors(u, s, vh, rank, matrix.dtype)
    return a, b, s


def low_rank_params(m: int, n: int, rank: int) -> int:
    return rank * (m + n)


def max_useful_rank(m: int, n: int) -> int:
    """Largest rank at which two factors are still smaller than the m x n matrix."""
    return max(0, math.ceil(m * n / (m + n)) - 1)


def random_orthonormal(n: int, r: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
    """n x r with orthonormal columns, Haar-distributed: QR of a Gaussian matrix with the signs of
    R's diagonal moved into Q."""
    q, rr = torch.linalg.qr(torch.randn(n, r, generator=generator, dtype=torch.float64))
    signs = torch.sign(torch.diagonal(rr))
    signs[signs == 0] = 1.0
    return (q * signs).to(dtype)


def random_usv(m: int, n: int, r: int, generator: torch.Generator,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    """The official DLRT code's starting point of a rank-r layer W = U S V^T (m x n): random
    orthonormal U (m x r) and V (n x r), S = diag of |N(0, 1)| draws sorted descending."""
    u = random_orthonormal(m, r, generator, dtype)
    v = random_orthonormal(n, r, generator, dtype)
    s = torch.randn(r, generator=generator, dtype=torch.float64).abs().sort(descending=True).values
    return u, torch.diag(s).to(dtype), v
