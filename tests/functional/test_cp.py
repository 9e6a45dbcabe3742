"""CP decomposition of conv kernels (tnbench.functional.cp): recovery of an exact low-rank kernel, memory."""
from __future__ import annotations

import resource

import torch

from tnbench.functional.cp import cp_decompose, cp_kernel


def test_cp_of_exact_low_rank_kernel_is_recovered():
    torch.manual_seed(4)
    factors = [torch.randn(d, 3, dtype=torch.float64) for d in (8, 6, 3, 3)]
    w = cp_kernel(factors)
    got, info = cp_decompose(w, 3, n_iter_max=500, tol=1e-12)
    assert info["relative_error"] < 1e-6
    assert torch.allclose(cp_kernel(got), w, atol=1e-5 * float(w.abs().max()))


def test_cp_of_a_512x512x3x3_kernel_at_rank_64_stays_small():
    torch.manual_seed(5)
    w = torch.randn(512, 512, 3, 3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    factors, info = cp_decompose(w, 64, n_iter_max=2)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert [tuple(f.shape) for f in factors] == [(512, 64), (512, 64), (3, 64), (3, 64)]
    assert info["iterations"] <= 2 and 0 < info["relative_error"] < 1
    assert grown_mb < 1024, f"peak memory grew by {grown_mb:.0f} MB"
