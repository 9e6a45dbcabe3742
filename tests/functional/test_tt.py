"""Tensor trains and TT-matrices (tnbench.functional.tt) against dense tensors."""
from __future__ import annotations

import pytest
import torch

from tnbench.functional.tt import tt_matrix_from_dense, tt_matrix_to_dense, tt_svd, tt_to_dense

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tt_svd_is_exact_at_full_bond_and_truncates_otherwise():
    torch.manual_seed(0)
    t = torch.randn(3, 4, 5, 2, dtype=torch.float64)
    assert torch.allclose(tt_to_dense(tt_svd(t, 100)), t, atol=1e-12)
    w = torch.randn(24, 30, dtype=torch.float64)
    errs = [float(torch.linalg.norm(tt_matrix_to_dense(tt_matrix_from_dense(w, [2, 3, 4], [3, 2, 5], r)) - w))
            for r in (1, 4, 16, 100)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-10
