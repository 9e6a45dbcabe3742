"""Tucker-format math as small pure functions, tested against dense reconstructions.

A tensor W is held as a core C and one factor matrix U_a (n_a x r_a) per factored axis a:
W = C x_a U_a for every factored a (x_a: the mode-a product, summing the core's axis a against
the factor's columns). Axes that are not factored keep their full size in the core. The
partial Tucker used everywhere is the truncated HOSVD: each factor holds the leading left
singular vectors of W's mode-a unfolding, and the core is W projected onto them.

The rank-adaptive integrators (TDLRT, DLRT) need three more operations, all here:
- `augment_basis`: orth([U, G]) with U's own columns first, so the core moves by zero padding;
- `rank_for_tolerance`: the truncation rule, smallest j with ||d[j:]|| <= tau * ||d||;
- `truncation_ranks`: that rule per axis, clamped (also what sizes a budget's starting ranks);
- `truncation_bases`: per axis, the rotation that truncates the core's unfolding by that rule.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def unfold(t: Tensor, axis: int) -> Tensor:
    """Mode-`axis` unfolding: n_axis x (product of the other sizes), the others in order."""
    return t.movedim(axis, 0).reshape(t.shape[axis], -1)


def fold(matrix: Tensor, axis: int, shape: tuple[int, ...] | torch.Size) -> Tensor:
    """Inverse of `unfold` for a tensor of the given shape."""
    moved = [shape[axis]] + [s for i, s in enumerate(shape) if i != axis]
    return matrix.reshape(moved).movedim(0, axis)


def mode_product(t: Tensor, matrix: Tensor, axis: int) -> Tensor:
    """t x_axis matrix, with `matrix` of shape (new size, t.shape[axis])."""
    return torch.tensordot(matrix, t, dims=([1], [axis])).movedim(0, axis)


def multi_mode_product(t: Tensor, matrices: Mapping[int, Tensor]) -> Tensor:
    for axis, matrix in matrices.items():
        t = mode_product(t, matrix, axis)
    return t


def tucker_to_tensor(core: Tensor, factors: Mapping[int, Tensor]) -> Tensor:
    """The full tensor C x_a U_a of a (partial) Tucker decomposition."""
    return multi_mode_product(core, factors)


def resolve_rank(spec: Any, size: int) -> int:
    """A rank given as an integer (>= 1) or as a fraction of the mode size (0 < f <= 1, a float).

    A fraction rounds up, so any positive fraction keeps at least one direction. An integer
    is returned as is: the callers decide whether one larger than `size` is an error.
    """
    if isinstance(spec, bool):
        raise ValueError(f"a rank must be an integer >= 1 or a fraction in (0, 1]; got {spec!r}")
    if isinstance(spec, int):
        if spec < 1:
            raise ValueError(f"a rank must be an integer >= 1 or a fraction in (0, 1]; got {spec}")
        return spec
    if isinstance(spec, float):
        if not 0.0 < spec <= 1.0:
            raise ValueError(f"a rank must be an integer >= 1 or a fraction in (0, 1]; got {spec}")
        return max(1, math.ceil(spec * size - 1e-9))
    raise ValueError(f"a rank must be an integer >= 1 or a fraction in (0, 1]; got {spec!r}")


def left_singular_pairs(matrix: Tensor, count: int | None = None) -> tuple[Tensor, Tensor]:
    """The `count` (default: all `rows`) leading left singular vectors of a matrix, and its
    singular values padded with zeros to `rows`, descending. Asking for more vectors than the
    matrix has nonzero singular values is allowed (a rank clamped up to r_min): the extra
    columns complete an orthonormal basis.

    A wide matrix goes through its small Gram matrix, whose eigen-decomposition is far cheaper
    than an SVD; in float64 that resolves singular values down to ~1e-8 of the largest, well
    below any truncation tolerance in use, and the vectors stay exactly orthonormal."""
    rows, cols = matrix.shape
    count = rows if count is None else min(count, rows)
    if rows <= cols:
        evals, evecs = torch.linalg.eigh(matrix @ matrix.T)
        return evecs.flip(1)[:, :count], evals.flip(0).clamp_min(0).sqrt()
    u, s, _ = torch.linalg.svd(matrix, full_matrices=count > cols)
    return u[:, :count], torch.cat([s, s.new_zeros(rows - s.numel())])


def singular_values(matrix: Tensor) -> Tensor:
    """The spectrum `left_singular_pairs` gives (padded with zeros to `rows`, descending, the same
    Gram route for a wide matrix), without computing the vectors."""
    rows, cols = matrix.shape
    if rows <= cols:
        return torch.linalg.eigvalsh(matrix @ matrix.T).flip(0).clamp_min(0).sqrt()
    s = torch.linalg.svdvals(matrix)
    return torch.cat([s, s.new_zeros(rows - s.numel())])


def hosvd(tensor: Tensor, ranks: Mapping[int, int], pairs: Mapping[int, tuple[Tensor, Tensor]] | None = None
          ) -> tuple[Tensor, dict[int, Tensor], dict[int, Tensor]]:
    """Truncated HOSVD on the axes in `ranks` (the others stay whole): core, factors, and each
    axis's unfolding spectrum. Computed in float64 and returned in the input's dtype. `pairs`:
    per axis, `left_singular_pairs` of its float64 unfolding already at hand (at least `rank`
    vectors, or all it can give), taken instead of computing it again."""
    w = tensor.detach().double()
    factors, spectra = {}, {}
    for axis, rank in ranks.items():
        if pairs is not None and axis in pairs:
            u, s = pairs[axis]
            factors[axis], spectra[axis] = u[:, :rank], s
        else:
            factors[axis], spectra[axis] = left_singular_pairs(unfold(w, axis), rank)
    core = multi_mode_product(w, {a: u.T for a, u in factors.items()})
    cast = {a: u.to(tensor.dtype) for a, u in factors.items()}
    return core.to(tensor.dtype), cast, {a: s.to(tensor.dtype) for a, s in spectra.items()}


def feasible_ranks(shape: tuple[int, ...] | torch.Size, ranks: Mapping[int, int]) -> dict[int, int]:
    """Tucker ranks lowered until each r_a is at most the product of the core's other sizes (the
    other ranks; axes not in `ranks` count whole): the most the core's mode-a unfolding can have.
    A larger r_a adds parameters but no rank: the tensor it gives is held exactly at these ranks
    (a matrix core r_out x r_in has rank min(r_out, r_in))."""
    out = dict(ranks)
    while True:
        sizes = [out.get(a, n) for a, n in enumerate(shape)]
        lowered = {a: min(r, math.prod(sizes) // sizes[a]) for a, r in out.items()}
        if lowered == out:
            return out
        out = lowered


def tucker_params(shape: tuple[int, ...] | torch.Size, ranks: Mapping[int, int]) -> int:
    """Weights of a partial Tucker format: the core plus one n_a x r_a factor per factored axis."""
    core = math.prod(ranks.get(a, n) for a, n in enumerate(shape))
    return core + sum(shape[a] * r for a, r in ranks.items())


def rank_for_tolerance(s: Tensor, tau: float) -> int:
    """Smallest j with ||s[j:]|| <= tau * ||s||: the rank that discards at most a relative
    Frobenius norm `tau` of the spectrum `s` (sorted descending). 0 for an all-zero spectrum."""
    sq = s.double() ** 2
    # tails[j] = sum(s[j:]^2), for j = 0 .. len(s)
    tails = torch.flip(torch.cumsum(torch.flip(sq, [0]), 0), [0])
    tails = torch.cat([tails, tails.new_zeros(1)])
    bound = (tau ** 2) * float(sq.sum())
    # tolerate rounding so a tail exactly at the bound counts as within it
    ok = torch.nonzero(tails <= bound * (1 + 1e-12) + 1e-300)
    return int(ok[0])


def clamp_rank(rank: int, r_min: int, r_max: int, size: int) -> int:
    """Clamp to [r_min, r_max]; both bounds are capped at the mode size first, so one setting
    works for modes of every size (a 20-channel mode with r_max 100 goes up to 20)."""
    hi = max(1, min(r_max, size))
    lo = max(1, min(r_min, hi))
    return max(lo, min(rank, hi))


def augmented_rank(rank: int, size: int, r_max: int) -> int:
    """How many basis columns an augmentation step may hold: 2r, capped by r_max and the mode
    size. A layer already at its r_max cap still augments (up to 2r, within the mode size) so
    that its basis can turn; the truncation right after brings it back to r_max."""
    cap = min(2 * rank, size, r_max)
    if cap <= rank:
        cap = min(2 * rank, size)
    return cap


def augment_basis(u: Tensor, direction: Tensor, columns: int) -> Tensor:
    """Orthonormal basis of span([u, direction]) with `columns` columns whose first r columns
    are u itself (QR of the concatenation, signs fixed), so that for orthonormal u the
    projection Q^T u is [I; 0] and the core is only padded with zeros.

    With `direction` a gradient step u - lr * g, span([u, u - lr g]) = span([u, g]); passing g
    itself avoids the cancellation that forming u - lr g and re-projecting would cost. When the
    direction adds fewer new directions than asked for, QR completes the basis with further
    orthonormal columns (they get zero core entries and are truncated away if never used).
    Never more columns than u and the direction have together."""
    n, r = u.shape
    columns = min(columns, n, r + direction.shape[1])
    if columns <= r:
        return u
    stacked = torch.cat([u, direction.to(u.dtype)], dim=1)
    q, rr = torch.linalg.qr(stacked, mode="reduced")
    signs = torch.sign(torch.diagonal(rr))
    signs[signs == 0] = 1.0
    q = q * signs
    return q[:, :columns].to(u.dtype).contiguous()


def truncation_ranks(spectra: Mapping[int, Tensor], tau: float, r_min: int, r_max: int | Mapping[int, int],
                     sizes: Mapping[int, int], tie: bool = False,
                     held: Mapping[int, int] | None = None) -> dict[int, int]:
    """The truncation rule's rank per axis, from each unfolding's spectrum: smallest j with
    ||s[j:]|| <= tau ||s|| (`rank_for_tolerance`), clamped to [r_min, r_max] (`r_max` one cap for
    every axis or one per axis; a cap below r_min wins, as in `clamp_rank`) and the mode size
    `sizes[a]`, and to `held[a]` (the columns there are to keep, where fewer than the mode size);
    with `tie` every axis keeps the smallest of them. The integrator's truncation
    (`truncation_bases`) and a budget's sizing of the pretrained weights both use it."""
    caps = r_max if isinstance(r_max, Mapping) else {a: r_max for a in spectra}
    ranks = {a: clamp_rank(rank_for_tolerance(s, tau), r_min, caps[a], sizes[a]) for a, s in spectra.items()}
    if held is not None:
        ranks = {a: min(r, held[a]) for a, r in ranks.items()}
    if tie and ranks:
        common = min(ranks.values())
        ranks = {a: common for a in ranks}
    return ranks


def truncation_bases(core: Tensor, axes: list[int], tau: float, r_min: int, r_max: int | Mapping[int, int],
                     sizes: Mapping[int, int], tie: bool = False) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
    """Per axis, the orthonormal P_a (r_a x new rank) that truncates the core's mode-a unfolding
    by the tau rule (`truncation_ranks`), clamped to [r_min, r_max] (one cap, or one per axis) and
    the mode size `sizes[a]`;
    and the spectra. With `tie` every axis keeps the same rank (the matrix case W = U S V^T, whose
    two unfoldings share one spectrum). The truncated core is C x_a P_a^T, the factors U_a P_a."""
    c = core.detach().double()
    bases, spectra = {}, {}
    for axis in axes:
        bases[axis], spectra[axis] = left_singular_pairs(unfold(c, axis))
    ranks = truncation_ranks(spectra, tau, r_min, r_max, sizes, tie, held={a: u.shape[0] for a, u in bases.items()})
    out = {a: bases[a][:, :ranks[a]].to(core.dtype).contiguous() for a in axes}
    return out, {a: s.to(core.dtype) for a, s in spectra.items()}
