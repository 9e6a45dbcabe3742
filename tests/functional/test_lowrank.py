"""Matrix SVD truncation (tnbench.functional.lowrank) against the dense matrix."""
from __future__ import annotations

import pytest
import torch

from tnbench.functional.approximation import norm_loss, relative_error, truncation_curves
from tnbench.functional.lowrank import truncated_svd


def test_truncated_svd_is_best_rank_r_and_norms_follow_spectrum():
    torch.manual_seed(0)
    w = torch.randn(30, 50, dtype=torch.float64)
    a, b, s = truncated_svd(w, 7)
    approx = a @ b
    assert torch.linalg.matrix_rank(approx) == 7
    err = torch.linalg.norm(w - approx) / torch.linalg.norm(w)
    losses, errors = truncation_curves(s)
    assert err == pytest.approx(float(errors[7]), rel=1e-10)
    assert err == pytest.approx(relative_error(w, approx), rel=1e-10)
    assert 1 - torch.linalg.norm(approx) / torch.linalg.norm(w) == pytest.approx(float(losses[7]), rel=1e-10)
    assert norm_loss(w, approx) == pytest.approx(float(losses[7]), rel=1e-10)
    # full rank reproduces the matrix exactly and loses nothing
    a, b, s = truncated_svd(w, 100)
    assert torch.allclose(a @ b, w, atol=1e-12)
    assert float(truncation_curves(s)[0][30]) == pytest.approx(0.0, abs=1e-15)


def test_random_usv_is_the_official_dlrt_start():
    """Orthonormal U, V; S diagonal with |N(0,1)| values sorted descending; the same seed, the same draw."""
    from tnbench.functional.lowrank import random_usv

    u, s, v = random_usv(50, 500, 25, torch.Generator().manual_seed(3), torch.float64)
    assert u.shape == (50, 25) and v.shape == (500, 25) and s.shape == (25, 25)
    assert torch.allclose(u.T @ u, torch.eye(25, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(v.T @ v, torch.eye(25, dtype=torch.float64), atol=1e-12)
    d = torch.diagonal(s)
    assert torch.equal(s, torch.diag(d)) and (d >= 0).all() and torch.equal(d, d.sort(descending=True).values)
    again = random_usv(50, 500, 25, torch.Generator().manual_seed(3), torch.float64)
    assert all(torch.equal(a, b) for a, b in zip((u, s, v), again))
