"""CP (CANDECOMP/PARAFAC) kernels: W[o,i,h,w] = sum_r A[o,r] B[i,r] C[h,r] D[w,r].

Forward as four small convs (`cp_conv2d`): 1x1 IN -> R (B), depthwise KHx1 (C) with the rows'
stride/padding/dilation, depthwise 1xKW (D) with the columns', 1x1 R -> OUT (A) plus bias.
The first conv is pointwise without bias and each depthwise conv acts on one axis, so splitting
the padding per axis is exact. Weights: R * (OUT + IN + KH + KW).

`cp_decompose` runs tensorly's `parafac` (ALS) on the kernel. Memory: tensorly's default MTTKRP
materializes the Khatri-Rao product of all other factors, (prod of other dims) x R numbers, about
0.4 GB for a 512x512x3x3 kernel at R=64 in float64 and growing with R; we run it with tensorly's
einsum tenalg backend, which contracts the kernel with the factors directly (torch.einsum with
opt_einsum paths) and stays within a few hundred MB there.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tnbench.functional.approximation import norm_loss, relative_error
from tnbench.functional.conv import pair

CP_INITS = ("svd", "random")


def cp_kernel(factors: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    """Dense OUT x IN x KH x KW kernel of CP factors (A, B, C, D), each (dim x R)."""
    a, b, c, d = factors
    return torch.einsum("or,ir,hr,wr->oihw", a, b, c, d)


def cp_conv2d(x: Tensor, factors: list[Tensor] | tuple[Tensor, ...], bias: Tensor | None = None,
              stride=1, padding=0, dilation=1) -> Tensor:
    """conv2d(x, cp_kernel(factors), bias, ...) as the four-conv chain (zero padding, groups=1)."""
    a, b, c, d = factors
    rank = a.shape[1]
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    t = F.conv2d(x, b.t().reshape(rank, -1, 1, 1))
    t = F.conv2d(t, c.t().reshape(rank, 1, -1, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), groups=rank)
    t = F.conv2d(t, d.t().reshape(rank, 1, 1, -1), stride=(1, sw), padding=(0, pw), dilation=(1, dw), groups=rank)
    return F.conv2d(t, a.reshape(a.shape[0], rank, 1, 1), bias)


def balance(weights: Tensor, factors: list[Tensor]) -> list[Tensor]:
    """Fold the CP weights into the factors so every factor's column r has norm
    (weights[r] * prod of the column norms)^(1/4): equal scales keep SGD well conditioned."""
    norms = [f.norm(dim=0) for f in factors]
    scale = weights.abs() * torch.stack(norms).prod(0)
    root = scale.clamp_min(0) ** (1.0 / len(factors))
    out = []
    for k, (f, n) in enumerate(zip(factors, norms)):
        col = f / n.clamp_min(torch.finfo(f.dtype).tiny)
        if k == 0:
            col = col * torch.sign(weights)
        out.append(col * root)
    return out


def svd_init(w: Tensor, rank: int, seed: int = 0) -> tuple[Tensor, list[Tensor]]:
    """tensorly's 'svd' initialization (leading left singular vectors of each unfolding, the
    first scaled by its singular values, random columns where a mode is shorter than the
    rank), computed from each unfolding's Gram matrix: an n x n eigenproblem per mode instead
    of an SVD of an n x (everything else) matrix, which is slow for the short KH/KW modes."""
    g = torch.Generator().manual_seed(seed)
    factors = []
    for mode in range(w.ndim):
        m = w.movedim(mode, 0).reshape(w.shape[mode], -1)
        evals, evecs = torch.linalg.eigh(m @ m.T)
        k = min(rank, w.shape[mode])
        u = evecs[:, -k:].flip(1)
        if mode == 0:
            u = u * evals[-k:].flip(0).clamp_min(0).sqrt()
        if k < rank:
            u = torch.cat([u, torch.rand(w.shape[mode], rank - k, generator=g, dtype=w.dtype)], 1)
        factors.append(u)
    return torch.ones(rank, dtype=w.dtype), factors


def cp_decompose(kernel: Tensor, rank: int, n_iter_max: int = 100, tol: float = 1e-6, init: str = "svd",
                 seed: int = 0) -> tuple[list[Tensor], dict[str, Any]]:
    """CP factors (A, B, C, D) of a conv kernel by tensorly's parafac (ALS), in float64, weights
    balanced into the factors. Returns the factors (kernel's dtype) and {"iterations",
    "relative_error", "norm_loss"} with relative_error = ||W - W_cp|| / ||W|| and norm_loss =
    1 - ||W_cp|| / ||W||.

    ALS on a conv kernel is many small ops (R x R solves, thin products), where intra-op
    threads only add synchronization: on a busy 2-core machine a rank-4 CP of a 256x128x3x3
    kernel took 13 s with 2 threads and 0.7 s with 1. So it runs single-threaded and restores
    the thread count after."""
    import tensorly as tl
    from tensorly.cp_tensor import CPTensor
    from tensorly.decomposition import parafac

    if rank < 1:
        raise ValueError(f"CP rank must be >= 1, got {rank}")
    if init not in CP_INITS:
        raise ValueError(f"CP init must be one of {', '.join(CP_INITS)}; got {init!r}")
    w = kernel.detach().to(torch.float64).cpu()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = CPTensor(svd_init(w, rank, seed)) if init == "svd" else "random"
        with tl.backend_context("pytorch"), tl.tenalg.backend_context("einsum"):
            cp, errors = parafac(w, rank, n_iter_max=n_iter_max, init=start, tol=tol, random_state=seed,
                                 return_errors=True)
    finally:
        torch.set_num_threads(threads)
    weights, factors = cp
    factors = balance(weights, list(factors))
    approx = cp_kernel(factors)
    info = {"iterations": len(errors), "relative_error": relative_error(w, approx), "norm_loss": norm_loss(w, approx)}
    return [f.to(device=kernel.device, dtype=kernel.dtype) for f in factors], info
