"""The seven bipartition cuts of a conv kernel (tnbench.functional.bipartition): unfolding, truncation, norms."""
from __future__ import annotations

import pytest
import torch

from tnbench.functional.approximation import truncation_curves
from tnbench.functional.bipartition import CUTS, fold, truncate, truncated_kernel, unfold


@pytest.mark.parametrize("cut", list(CUTS))
def test_unfold_fold_round_trip_and_rank_of_truncation(cut):
    torch.manual_seed(1)
    w = torch.randn(6, 4, 3, 5, dtype=torch.float64)
    m = unfold(w, cut)
    assert torch.equal(fold(m, cut, tuple(w.shape)), w)
    left, right, s = truncate(w, cut, 2)
    wt = truncated_kernel(w, cut, 2)
    assert torch.linalg.matrix_rank(unfold(wt, cut)) == min(2, *m.shape)
    assert torch.allclose(fold(left @ right, cut, tuple(w.shape)), wt, atol=1e-12)
    # norms of the truncation follow from the spectrum alone
    losses, errors = truncation_curves(s)
    kept = 1 - wt.norm() / w.norm()
    assert float(kept) == pytest.approx(float(losses[min(2, s.numel())]), abs=1e-12)
    assert float((w - wt).norm() / w.norm()) == pytest.approx(float(errors[min(2, s.numel())]), abs=1e-12)
