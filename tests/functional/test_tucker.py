"""Tucker algebra (tnbench.functional.tucker): mode products, HOSVD, the integrator's truncation and augmentation."""
from __future__ import annotations

import pytest
import torch

from tnbench.functional.tucker import (
    augment_basis,
    feasible_ranks,
    fold,
    hosvd,
    left_singular_pairs,
    mode_product,
    rank_for_tolerance,
    singular_values,
    truncation_bases,
    truncation_ranks,
    tucker_params,
    tucker_to_tensor,
    unfold,
)


def test_unfold_fold_and_mode_product_match_einsum():
    torch.manual_seed(0)
    t = torch.randn(3, 4, 5, 2, dtype=torch.float64)
    for axis in range(4):
        assert torch.equal(fold(unfold(t, axis), axis, t.shape), t)
    m = torch.randn(6, 5, dtype=torch.float64)
    assert torch.allclose(mode_product(t, m, 2), torch.einsum("abcd,ec->abed", t, m))
    # mode product = matrix product on the unfolding
    assert torch.allclose(unfold(mode_product(t, m, 2), 2), m @ unfold(t, 2))


def test_hosvd_reconstructs_at_full_rank_and_truncates_to_a_matching_error():
    torch.manual_seed(1)
    w = torch.randn(12, 7, 3, 3, dtype=torch.float64)
    core, factors, spectra = hosvd(w, {0: 12, 1: 7})
    assert torch.allclose(tucker_to_tensor(core, factors), w, atol=1e-12)
    core, factors, spectra = hosvd(w, {0: 5, 1: 4})
    assert core.shape == (5, 4, 3, 3)
    for a, u in factors.items():
        assert torch.allclose(u.T @ u, torch.eye(u.shape[1], dtype=w.dtype), atol=1e-12)
        assert torch.allclose(spectra[a], torch.linalg.svdvals(unfold(w, a)), atol=1e-10)
    approx = tucker_to_tensor(core, factors)
    # truncated HOSVD: error^2 <= sum over modes of the discarded squared singular values
    err2 = float(torch.linalg.vector_norm(w - approx) ** 2)
    bound = float((spectra[0][5:] ** 2).sum() + (spectra[1][4:] ** 2).sum())
    assert err2 <= bound + 1e-10
    assert tucker_params(w.shape, {0: 5, 1: 4}) == core.numel() + 12 * 5 + 7 * 4


def test_two_mode_hosvd_of_a_matrix_is_the_truncated_svd():
    torch.manual_seed(2)
    w = torch.randn(20, 30, dtype=torch.float64)
    core, factors, s = hosvd(w, {0: 6, 1: 6})
    approx = tucker_to_tensor(core, factors)
    u, sv, vh = torch.linalg.svd(w)
    assert torch.allclose(approx, (u[:, :6] * sv[:6]) @ vh[:6], atol=1e-10)


@pytest.mark.parametrize("tau", [0.01, 0.1, 0.15, 0.3, 0.5, 0.9])
def test_rank_for_tolerance_is_the_smallest_rank_within_tau(tau):
    torch.manual_seed(3)
    s = torch.sort(torch.rand(40, dtype=torch.float64) ** 3, descending=True).values
    j = rank_for_tolerance(s, tau)
    total = torch.linalg.vector_norm(s)
    assert torch.linalg.vector_norm(s[j:]) <= tau * total
    assert j == 0 or torch.linalg.vector_norm(s[j - 1:]) > tau * total


def test_truncation_discards_within_tau_and_respects_rank_bounds():
    torch.manual_seed(4)
    # a core with a decaying spectrum along both modes
    core = torch.randn(30, 24, 3, 3, dtype=torch.float64) * torch.logspace(0, -3, 30, dtype=torch.float64)[:, None, None, None]
    sizes = {0: 64, 1: 48}
    for tau in (0.05, 0.2, 0.5):
        bases, spectra = truncation_bases(core, [0, 1], tau, r_min=1, r_max=100, sizes=sizes)
        for a, p in bases.items():
            d, r = spectra[a], p.shape[1]
            assert torch.allclose(d, torch.linalg.svdvals(unfold(core, a)), atol=1e-10)
            assert torch.linalg.vector_norm(d[r:]) <= tau * torch.linalg.vector_norm(d) * (1 + 1e-12)
            assert torch.linalg.vector_norm(d[r - 1:]) > tau * torch.linalg.vector_norm(d)
            assert torch.allclose(p.T @ p, torch.eye(r, dtype=p.dtype), atol=1e-10)
            # the discarded part of the unfolding is exactly the tail of the spectrum
            kept = p @ (p.T @ unfold(core, a))
            assert torch.linalg.vector_norm(unfold(core, a) - kept) == pytest.approx(
                float(torch.linalg.vector_norm(d[r:])), rel=1e-8, abs=1e-12)
    # clamps: never below r_min, never above r_max or the mode size
    bases, _ = truncation_bases(core, [0, 1], 0.9, r_min=5, r_max=100, sizes=sizes)
    assert [p.shape[1] for p in bases.values()] == [5, 5]
    bases, _ = truncation_bases(core, [0, 1], 1e-9, r_min=1, r_max=7, sizes=sizes)
    assert [p.shape[1] for p in bases.values()] == [7, 7]
    bases, _ = truncation_bases(core, [0, 1], 1e-9, r_min=1, r_max=100, sizes={0: 10, 1: 48})
    assert bases[0].shape[1] == 10
    # tie: the matrix case keeps one rank
    mat = torch.randn(12, 9, dtype=torch.float64)
    bases, _ = truncation_bases(mat, [0, 1], 0.3, 1, 100, {0: 40, 1: 40}, tie=True)
    assert bases[0].shape[1] == bases[1].shape[1]


def test_feasible_ranks_drop_only_factor_columns_that_carry_nothing():
    """A rank above the product of the core's other sizes stores columns the core cannot use: a
    Tucker tensor at such ranks is held exactly at the feasible ranks, with fewer parameters."""
    assert feasible_ranks((120, 400), {0: 9, 1: 28}) == {0: 9, 1: 9}
    assert feasible_ranks((16, 6, 5, 5), {0: 200, 1: 2}) == {0: 50, 1: 2}  # kernel modes whole: 2 * 5 * 5
    assert feasible_ranks((8, 9, 10), {0: 2, 1: 3, 2: 10}) == {0: 2, 1: 3, 2: 6}
    assert feasible_ranks((8, 9, 10), {0: 1, 1: 3, 2: 2}) == {0: 1, 1: 2, 2: 2}
    torch.manual_seed(7)
    for shape, ranks in [((12, 10), {0: 3, 1: 10}), ((12, 4, 2, 2), {0: 9, 1: 1}), ((6, 7, 8), {0: 2, 1: 3, 2: 8})]:
        w = torch.randn(*shape, dtype=torch.float64)
        fit = feasible_ranks(shape, ranks)
        assert fit != ranks and tucker_params(shape, fit) < tucker_params(shape, ranks)
        core, factors, _ = hosvd(w, ranks)
        approx = tucker_to_tensor(core, factors)
        assert all(torch.linalg.matrix_rank(unfold(approx, a)) <= r for a, r in fit.items())
        lean_core, lean_factors, _ = hosvd(approx, fit)  # the same tensor, held at the feasible ranks
        assert torch.allclose(tucker_to_tensor(lean_core, lean_factors), approx, atol=1e-10)


def test_truncation_ranks_from_spectra_alone_are_the_truncations_ranks():
    """What a budget sizes from (the spectra, no vectors) keeps what the truncation keeps."""
    torch.manual_seed(6)
    core = torch.randn(30, 24, 3, 3, dtype=torch.float64) * torch.logspace(0, -3, 30, dtype=torch.float64)[:, None, None, None]
    for matrix in (unfold(core, 0), unfold(core, 0).T):  # the Gram route (wide) and the SVD route (tall)
        assert torch.allclose(singular_values(matrix), left_singular_pairs(matrix)[1], atol=1e-10)
    sizes = {0: 64, 1: 48}
    for tau, r_min, r_max, tie in [(0.05, 1, 100, False), (0.3, 1, 100, True), (0.9, 5, 100, False), (1e-9, 1, 7, False)]:
        bases, _ = truncation_bases(core, [0, 1], tau, r_min, r_max, sizes, tie)
        spectra = {a: singular_values(unfold(core, a)) for a in (0, 1)}
        assert truncation_ranks(spectra, tau, r_min, r_max, sizes, tie) == {a: p.shape[1] for a, p in bases.items()}


def test_augmented_basis_keeps_the_old_basis_first_and_spans_the_gradient():
    torch.manual_seed(5)
    u = torch.linalg.qr(torch.randn(50, 6, dtype=torch.float64))[0]
    g = torch.randn(50, 6, dtype=torch.float64)
    q = augment_basis(u, g, 12)
    assert q.shape == (50, 12)
    assert torch.allclose(q.T @ q, torch.eye(12, dtype=q.dtype), atol=1e-12)
    assert torch.allclose(q[:, :6], u, atol=1e-12)
    assert torch.allclose(q @ (q.T @ g), g, atol=1e-10)  # the K-step direction lies in the new span
    assert augment_basis(u, g, 6) is u  # no room: unchanged
    assert augment_basis(u, g, 500).shape == (50, 12)  # never more than the concatenation spans
