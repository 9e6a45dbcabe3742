"""Partial-norm initialization (arXiv 2309.06577, tnbench.functional.partial_norm) against brute-force norms:
reuse of environments, FTNR / LTNR, the log-domain normalizer, failures reported."""
from __future__ import annotations

import math

import pytest
import torch

from tnbench.functional.network import Network, dense
from tnbench.functional.partial_norm import (
    Environments,
    NormalizationFailed,
    log_norm,
    normalize_log,
    normalize_partial,
)
from tnbench.functional.peps import peps_network, peps_shapes
from tnbench.functional.tt import tt_matrix_network, tt_matrix_shapes, tt_network, tt_shapes

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian(shapes, mean=1.0, std=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(tuple(s), generator=g, dtype=torch.float64) * std + mean for s in shapes]


def brute_partial(net: Network, nodes, n: int, norm: str) -> float:
    """The first n nodes as a dense tensor (cut bonds open), then its squared norm or entry sum."""
    sub = Network(net.legs[:n])
    t = dense(sub, nodes[:n], list(sub.open_legs))
    return float(t.pow(2).sum() if norm == "frobenius" else t.sum())


NETWORKS = {
    "tt": (tt_network(6), tt_shapes([3, 2, 4, 3, 2, 3], 4)),
    "tt-matrix": (tt_matrix_network(4), tt_matrix_shapes([2, 3, 2, 2], [3, 2, 2, 3], 3)),
    "peps": (peps_network(2, 3), peps_shapes(2, 3, [2] * 6, [2, 1, 2, 2, 1, 2], 2)),
}


@pytest.mark.parametrize("norm", ["frobenius", "lineal"])
@pytest.mark.parametrize("kind", list(NETWORKS))
def test_partial_norms_with_reuse_equal_from_scratch_and_brute_force(kind, norm):
    net, shapes = NETWORKS[kind]
    nodes = gaussian(shapes, mean=0.0 if norm == "frobenius" else 1.0, std=1.0, seed=1)
    if norm == "lineal":
        nodes = [t.abs() for t in nodes]
    kept = Environments(net, [t.clone() for t in nodes], norm, reuse=True)
    n_all = len(net)
    for n in range(1, n_all + 1):
        assert kept.partial(n) == pytest.approx(brute_partial(net, nodes, n, norm), rel=1e-10)
    assert kept.contractions == n_all  # each environment built once
    for factor in (0.37, 2.9):
        kept.rescale(factor)
        nodes = [t * factor for t in nodes]
        scratch = Environments(net, nodes, norm, reuse=False)
        for n in range(1, n_all + 1):
            assert kept.partial(n) == pytest.approx(scratch.partial(n), rel=1e-10)
            assert kept.partial(n) == pytest.approx(brute_partial(net, nodes, n, norm), rel=1e-10)
    assert kept.contractions == n_all  # rescaled, never recomputed
    assert scratch.contractions == n_all * (n_all + 1) // 2


def test_rescale_recomputes_only_environments_it_would_overflow():
    net, original = tt_network(50), gaussian(tt_shapes([4] * 50, 4))
    envs = Environments(net, [t.clone() for t in original])
    before = [envs.partial(n) for n in range(51)]
    envs.rescale(1e12)  # E_k grows by 1e24k: representable up to k ~ 12, not beyond
    scratch = Environments(net, [t * 1e12 for t in original], reuse=False)
    assert envs.partial(10) == pytest.approx(scratch.partial(10), rel=1e-10)
    assert envs.contractions == 50  # rescaled, not recomputed
    assert not math.isfinite(envs.partial(20)) and not math.isfinite(scratch.partial(20))
    assert 50 < envs.contractions <= 60  # recomputed from the last environment that survives
    envs.rescale(1e-12)
    for n in (20, 35, 50):
        assert envs.partial(n) == pytest.approx(before[n], rel=1e-10)
    assert envs.contractions < 60 + 50
    envs.flush()
    assert all(torch.allclose(a, b, rtol=1e-13) for a, b in zip(envs.nodes, original))


def test_ftnr_makes_an_overflowing_tensor_train_finite():
    # Gaussian(1, 0.5) nodes, p = 10, b = 12: ||A||^2 grows ~1.5e3 per node. At N = 60 it is
    # ~1e187, still finite in float64; at N = 120 the naive contraction overflows.
    n, p, b = 120, 10, 12
    net, nodes = tt_network(n), gaussian(tt_shapes([p] * n, b))
    assert not math.isfinite(Environments(net, nodes).partial(n))
    assert log_norm(net, nodes) == pytest.approx(188.37 * math.log(10), rel=1e-3)
    res = normalize_partial(net, nodes, target=1.0, max_iter=1000, generator=torch.Generator().manual_seed(0))
    assert res.converged, res.reason
    assert res.steps > 0 and res.contractions < 3 * n
    after = math.sqrt(Environments(net, nodes).partial(n))
    assert 1e-3 <= after <= 1e3
    assert after == pytest.approx(1.0, rel=1e-9)
    assert log_norm(net, nodes) == pytest.approx(0.0, abs=1e-9)


def test_ftnr_on_tt_matrix_and_peps():
    for net, shapes in [(tt_matrix_network(160), tt_matrix_shapes([3] * 160, [2] * 160, 6)),
                        (peps_network(2, 80), peps_shapes(2, 80, [2] * 160, [2] * 160, 3))]:
        nodes = gaussian(shapes)
        assert not math.isfinite(Environments(net, nodes).partial(len(net)))
        res = normalize_partial(net, nodes, target=10.0, max_iter=1000, generator=torch.Generator().manual_seed(0))
        assert res.converged, res.reason
        assert math.sqrt(Environments(net, nodes).partial(len(net))) == pytest.approx(10.0, rel=1e-9)


def test_ltnr_on_non_negative_nodes():
    n, p, b = 200, 10, 12  # the entry sum grows ~p b = 120 per node: 1e415 at N = 200
    net = tt_network(n)
    nodes = [t.abs() for t in gaussian(tt_shapes([p] * n, b))]
    assert not math.isfinite(Environments(net, nodes, "lineal").partial(n))
    res = normalize_partial(net, nodes, "lineal", target=5.0, max_iter=1000, generator=torch.Generator().manual_seed(0))
    assert res.converged, res.reason
    assert Environments(net, nodes, "lineal").partial(n) == pytest.approx(5.0, rel=1e-9)
    with pytest.raises(ValueError, match="non-negative"):
        normalize_partial(net, [-t for t in nodes], "lineal")


def test_failure_is_reported_not_a_hang():
    n = 120
    net, nodes = tt_network(n), gaussian(tt_shapes([10] * n, 12))
    res = normalize_partial(net, [t.clone() for t in nodes], target=1.0, max_iter=1)
    assert not res.converged and res.steps == 1 and "after 1 steps" in res.reason
    # the paper's own budget (100) and target (p^N) are not enough here
    res = normalize_partial(net, [t.clone() for t in nodes], target=10.0 ** n, max_iter=100)
    assert not res.converged and res.steps == 100
    with pytest.raises(NormalizationFailed, match="did not converge"):
        normalize_partial(net, [t.clone() for t in nodes], target=1.0, max_iter=3, raise_on_failure=True)
    nodes[7].zero_()  # an all-zero node: every norm is 0 whatever the rescaling
    res = normalize_partial(net, nodes, max_iter=10**6)
    assert not res.converged and "node 7 is all zeros" in res.reason
    assert not normalize_log(net, nodes).converged
    with pytest.raises(ValueError, match="0 < a <= 1 <= b"):
        normalize_partial(net, nodes, tolerance=(2.0, 10.0))


def test_log_domain_normalizer_one_pass_never_overflows():
    n = 1000
    for net, shapes in [(tt_network(n), tt_shapes([8] * n, 8)), (tt_matrix_network(n), tt_matrix_shapes([2] * n, [4] * n, 8))]:
        nodes = gaussian(shapes)
        before = log_norm(net, nodes)
        assert math.isfinite(before) and before > 1000  # ||A|| ~ e^(thousands): far beyond float64
        res = normalize_log(net, nodes, target=3.0)
        assert res.converged and res.steps == 0 and res.contractions == 2 * n  # pass + verification
        assert res.log_norm_initial == pytest.approx(before, rel=1e-12)
        assert math.sqrt(Environments(net, nodes).partial(n)) == pytest.approx(3.0, rel=1e-8)
    # the paper's target p^N, far beyond float range, in log space
    nodes = gaussian(tt_shapes([16] * n, 4))
    res = normalize_log(tt_network(n), nodes, log_target=n * math.log(16))
    assert res.converged and res.log_norm == pytest.approx(n * math.log(16), rel=1e-12)
    assert all(torch.isfinite(t).all() for t in nodes)


def test_float32_needs_steps_where_float64_needs_none():
    """The paper's step profile shows in float32 (its public code's dtype): a TT of N = 12 nodes
    (p = b = 16, Gaussian(1, 0.5), F = p^N) has a plain norm ~1e29 whose square overflows float32,
    so the protocol rescales (one pass back to step 2, many node rescalings); in float64 the same
    network is normalized by one division, with no step."""
    n, p, b = 12, 16, 16
    net, shapes = tt_network(n), tt_shapes([p] * n, b)
    results = {}
    for dtype in (torch.float64, torch.float32):
        nodes = [t.to(dtype) for t in gaussian(shapes)]
        res = normalize_partial(net, nodes, target=float(p) ** n, max_iter=5000,
                                generator=torch.Generator().manual_seed(0))
        assert res.converged, res.reason
        assert math.log(1e-3) <= log_norm(net, [t.double() for t in nodes]) - n * math.log(p) <= math.log(1e3)
        results[dtype] = res
    assert results[torch.float64].steps == results[torch.float64].passes == 0
    assert results[torch.float32].steps > 0 and results[torch.float32].passes == 1
