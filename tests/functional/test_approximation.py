"""Approximation bookkeeping (tnbench.functional.approximation): ranks for a target energy, norm loss or relative error."""
from __future__ import annotations

import pytest
import torch

from tnbench.functional.approximation import (
    correlation_loss,
    energy_norm_loss,
    norm_loss_energy,
    rank_for_energy,
    rank_for_norm_loss,
    rank_for_rel_error,
    truncation_curves,
    truncation_losses,
)
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


def test_both_norm_loss_forms_and_correlation_loss_on_a_known_spectrum():
    # singular values 4, 2, 2, 1: ||W||^2 = 16 + 4 + 4 + 1 = 25, ||W|| = 5
    s = torch.tensor([4.0, 2.0, 2.0, 1.0], dtype=torch.float64)
    losses = truncation_losses(s)
    # keeping the top 1: ||W_t|| = 4 -> norm loss 1 - 4/5, energy 1 - 16/25, error sqrt(9/25), 3 of 4 discarded
    assert float(losses["norm_loss"][1]) == pytest.approx(0.2)
    assert float(losses["norm_loss_energy"][1]) == pytest.approx(0.36)
    assert float(losses["relative_error"][1]) == pytest.approx(0.6)
    assert float(losses["correlation_loss"][1]) == pytest.approx(0.75)
    # keeping the top 3: ||W_t||^2 = 24
    assert float(losses["norm_loss"][3]) == pytest.approx(1 - 24 ** 0.5 / 5)
    assert float(losses["norm_loss_energy"][3]) == pytest.approx(1 / 25)
    assert float(losses["correlation_loss"][3]) == pytest.approx(0.25)
    assert [float(losses[k][0]) for k in ("norm_loss", "norm_loss_energy", "correlation_loss")] == [1, 1, 1]
    assert [float(losses[k][4]) for k in ("norm_loss", "norm_loss_energy", "correlation_loss")] == [0, 0, 0]
    # for an SVD truncation the energy form is the squared relative error
    assert torch.allclose(losses["norm_loss_energy"], losses["relative_error"] ** 2)
    assert energy_norm_loss(0.5) == pytest.approx(0.75)  # "50% norm loss" is 75% of the energy
    assert correlation_loss(2, 8) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        correlation_loss(3, 2)


def test_energy_form_from_tensors_matches_the_spectrum():
    torch.manual_seed(0)
    w = torch.randn(6, 5, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    wt = u[:, :2] @ torch.diag(s[:2]) @ vh[:2]
    assert norm_loss_energy(w, wt) == pytest.approx(float(truncation_losses(s)["norm_loss_energy"][2]))
    assert norm_loss_energy(w, wt) == pytest.approx(1 - float((s[:2] ** 2).sum() / (s ** 2).sum()))
