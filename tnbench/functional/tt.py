"""Tensor trains (TT, cores (b_{k-1}, p_k, b_k)) and TT-matrices / MPOs (cores
(b_{k-1}, out_k, in_k, b_k)): structure, shapes, TT-SVD and dense reconstruction.

Boundary bonds b_0 = b_N = 1. The dense matrix of a TT-matrix is W[(o_1..o_N), (i_1..i_N)]
with row-major multi-indices, so `W.reshape(out_factors + in_factors)` matches the legs.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from tnbench.functional.network import Network, dense


def tt_network(n: int) -> Network:
    return Network(tuple((f"b{k}", f"p{k}", f"b{k + 1}") for k in range(n)))


def tt_matrix_network(n: int) -> Network:
    return Network(tuple((f"b{k}", f"o{k}", f"i{k}", f"b{k + 1}") for k in range(n)))


def out_legs(n: int) -> list[str]:
    return [f"o{k}" for k in range(n)]


def in_legs(n: int) -> list[str]:
    return [f"i{k}" for k in range(n)]


def bond_dims(physical: Sequence[int], max_bond: int) -> list[int]:
    """Bond sizes b_0..b_N: `max_bond` capped where it exceeds the full rank of the
    unfolding (the product of the physical sizes on either side), with b_0 = b_N = 1."""
    n = len(physical)
    dims = [1]
    for k in range(1, n):
        left, right = math.prod(physical[:k]), math.prod(physical[k:])
        dims.append(min(max_bond, left, right))
    return dims + [1]


def tt_shapes(physical: Sequence[int], max_bond: int) -> list[tuple[int, int, int]]:
    b = bond_dims(physical, max_bond)
    return [(b[k], p, b[k + 1]) for k, p in enumerate(physical)]


def tt_matrix_shapes(out_factors: Sequence[int], in_factors: Sequence[int], max_bond: int) -> list[tuple[int, ...]]:
    b = bond_dims([o * i for o, i in zip(out_factors, in_factors)], max_bond)
    return [(b[k], o, i, b[k + 1]) for k, (o, i) in enumerate(zip(out_factors, in_factors))]


def tt_svd(tensor: Tensor, max_bond: int) -> list[Tensor]:
    """TT-SVD: sequential truncated SVDs of the unfoldings; cores (b_{k-1}, p_k, b_k).
    Truncation keeps the top `max_bond` singular values at each bond (quasi-optimal)."""
    shape = tensor.shape
    cores = []
    rest = tensor.reshape(1, -1)
    left = 1
    for p in shape[:-1]:
        mat = rest.reshape(left * p, -1)
        u, s, vh = torch.linalg.svd(mat, full_matrices=False)
        r = min(max_bond, s.numel())
        cores.append(u[:, :r].reshape(left, p, r))
        rest = s[:r, None] * vh[:r]
        left = r
    cores.append(rest.reshape(left, shape[-1], 1))
    return cores


def tt_matrix_from_dense(weight: Tensor, out_factors: Sequence[int], in_factors: Sequence[int],
                         max_bond: int) -> list[Tensor]:
    """TT-matrix cores of an OUT x IN matrix by TT-SVD of the interleaved (o_1 i_1, o_2 i_2, ...)
    tensor; computed in float64, returned in the weight's dtype. The norm left after the last
    truncation is spread evenly over the cores so that none is much larger than the others."""
    n = len(out_factors)
    w = weight.detach().to(torch.float64).reshape(*out_factors, *in_factors)
    perm = [a for k in range(n) for a in (k, n + k)]
    merged = w.permute(perm).reshape([o * i for o, i in zip(out_factors, in_factors)])
    cores = tt_svd(merged, max_bond)
    total = float(torch.linalg.vector_norm(cores[-1]))
    if total > 0:  # the other cores are isometries, the last holds the whole norm: share it
        share = total ** (1.0 / n)
        cores = [c * share for c in cores[:-1]] + [cores[-1] / share ** (n - 1)]
    return [c.reshape(c.shape[0], o, i, c.shape[-1]).to(weight.dtype)
            for c, o, i in zip(cores, out_factors, in_factors)]


def tt_to_dense(cores: Sequence[Tensor]) -> Tensor:
    n = len(cores)
    return dense(tt_network(n), cores, ["b0", *[f"p{k}" for k in range(n)], f"b{n}"]).reshape(
        [c.shape[1] for c in cores])


def tt_matrix_to_dense(cores: Sequence[Tensor]) -> Tensor:
    """The OUT x IN matrix of a TT-matrix."""
    n = len(cores)
    t = dense(tt_matrix_network(n), cores, ["b0", *out_legs(n), *in_legs(n), f"b{n}"])
    out = math.prod(c.shape[1] for c in cores)
    return t.reshape(out, -1)
