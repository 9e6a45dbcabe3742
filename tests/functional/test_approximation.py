"""Approximation bookkeeping (tnbench.functional.approximation): ranks for a target energy, norm loss or relative error."""
from __future__ import annotations

import pytest
import torch

from tnbench.functional.approximation import rank_for_energy, rank_for_norm_loss, rank_for_rel_error, truncation_curves
from tnbench.functional.bipartition import CUTS, spectrum, truncated_kernel


def test_rank_for_energy_is_smallest_rank_meeting_it():
    s = torch.tensor([4.0, 2.0, 1.0, 1.0])  # squares 16, 4, 1, 1 of 22
    assert rank_for_energy(s, 16 / 22) == 1
    assert rank_for_energy(s, 16 / 22 + 1e-6) == 2
    assert rank_for_energy(s, 0.99) == 4
    assert rank_for_energy(s, 1.0) == 4
    with pytest.raises(ValueError):
        rank_for_energy(s, 0.0)


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.95])
def test_rank_for_norm_loss_is_within_one_singular_value(target):
    torch.manual_seed(3)
    w = torch.randn(16, 8, 3, 3, dtype=torch.float64) * torch.logspace(0, -2, 16, dtype=torch.float64)[:, None, None, None]
    for cut in CUTS:
        s = spectrum(w, cut)
        r = rank_for_norm_loss(s, target)
        losses, errors = truncation_curves(s)
        assert losses[r] <= target + 1e-12  # achieved <= target
        assert r == 1 or losses[r - 1] > target  # one singular value fewer would exceed it
        # the achieved loss is that of the actual truncated kernel
        wt = truncated_kernel(w, cut, r)
        assert float(1 - wt.norm() / w.norm()) == pytest.approx(float(losses[r]), abs=1e-10)
        e = rank_for_rel_error(s, target)
        assert errors[e] <= target + 1e-12 and (e == 1 or errors[e - 1] > target)
