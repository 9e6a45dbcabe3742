"""TT / TT-matrix / PEPS layers and partial-norm initialization (arXiv 2309.06577) against
dense reconstructions and brute-force norms; the tt/mpo/peps methods and one pipeline run."""
from __future__ import annotations

import json
import math

import opt_einsum as oe
import pytest
import torch
from conftest import QUICK, compose
from omegaconf import OmegaConf
from torch import nn

from tnbench.errors import ConfigError
from tnbench.functional import network as tn_network
from tnbench.functional.factorize import balanced_factors, check_factors
from tnbench.functional.network import Network, dense
from tnbench.functional.partial_norm import (
    Environments,
    NormalizationFailed,
    log_norm,
    normalize_log,
    normalize_partial,
)
from tnbench.functional.peps import peps_network, peps_shapes
from tnbench.functional.tt import (
    tt_matrix_from_dense,
    tt_matrix_network,
    tt_matrix_shapes,
    tt_matrix_to_dense,
    tt_network,
    tt_shapes,
    tt_svd,
    tt_to_dense,
)
from tnbench.layers.tensorized import PEPSLinear, TTConv2d, TTLinear
from tnbench.methods import METHODS, build_method
from tnbench.models import build_model
from tnbench.pipeline.stages import run_pipeline


@pytest.fixture(autouse=True)
def one_thread():
    """Thousands of tiny contractions: extra intra-op threads only add overhead (and on a busy
    machine spin against other jobs, 100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gaussian(shapes, mean=1.0, std=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(tuple(s), generator=g, dtype=torch.float64) * std + mean for s in shapes]


def method_cfg(name, **kw):
    return OmegaConf.merge(OmegaConf.structured(METHODS.get(name).config_class), kw)


# --- factorization ----------------------------------------------------------------------------


def test_balanced_factors_are_even_and_multiply_to_the_size():
    assert balanced_factors(400, 3) == [10, 8, 5]
    assert balanced_factors(120, 3) == [6, 5, 4]
    assert balanced_factors(64, 3) == [4, 4, 4]
    assert balanced_factors(7, 3) == [7, 1, 1]  # a prime stays whole
    for n in (1, 84, 500, 1024, 4096, 3 * 5 * 7 * 11 * 13):
        for k in (1, 2, 3, 4, 6):
            assert math.prod(balanced_factors(n, k)) == n
    assert check_factors([4, 10, 10], 400, "x") == [4, 10, 10]
    with pytest.raises(ValueError, match=r"multiply to 300, not the layer size 400"):
        check_factors([3, 10, 10], 400, "x")


# --- partial norms ----------------------------------------------------------------------------


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


# --- layers -----------------------------------------------------------------------------------


def test_tt_svd_is_exact_at_full_bond_and_truncates_otherwise():
    torch.manual_seed(0)
    t = torch.randn(3, 4, 5, 2, dtype=torch.float64)
    assert torch.allclose(tt_to_dense(tt_svd(t, 100)), t, atol=1e-12)
    w = torch.randn(24, 30, dtype=torch.float64)
    errs = [float(torch.linalg.norm(tt_matrix_to_dense(tt_matrix_from_dense(w, [2, 3, 4], [3, 2, 5], r)) - w))
            for r in (1, 4, 16, 100)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-10


def test_tt_linear_equals_dense_layer_with_its_weight():
    torch.manual_seed(3)
    lin = nn.Linear(60, 24).double()
    x = torch.randn(7, 60, dtype=torch.float64)
    for bond in (2, 100):
        layer = TTLinear.from_dense(lin, [2, 3, 4], [3, 4, 5], bond)
        assert torch.allclose(layer(x), x @ layer.dense_weight().T + lin.bias, atol=1e-12)
    assert torch.allclose(layer.dense_weight(), lin.weight, atol=1e-12)  # full bond: exact
    assert layer(torch.randn(2, 3, 60, dtype=torch.float64)).shape == (2, 3, 24)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2)])
def test_tt_conv_equals_dense_conv_with_its_kernel(stride, padding, dilation):
    torch.manual_seed(4)
    conv = nn.Conv2d(6, 10, 3, stride=stride, padding=padding, dilation=dilation).double()
    x = torch.randn(2, 6, 11, 11, dtype=torch.float64)
    layer = TTConv2d.from_dense(conv, [2, 5], [3, 2], 3)
    ref = nn.functional.conv2d(x, layer.dense_weight(), conv.bias, stride, padding, dilation)
    assert torch.allclose(layer(x), ref, atol=1e-12)
    assert torch.allclose(layer(x.to(memory_format=torch.channels_last)), ref, atol=1e-12)
    full = TTConv2d.from_dense(conv, [2, 5], [3, 2], 1000)
    assert torch.allclose(full(x), conv(x), atol=1e-10)


@pytest.mark.parametrize("rows,out_f,in_f", [(2, [2, 3, 2, 2], [3, 2, 5, 2]), (2, [2, 1, 3, 2, 1, 2], [2, 2, 3, 1, 5, 1]),
                                             (1, [4, 6], [6, 10])])
def test_peps_linear_equals_dense_layer_with_its_weight(rows, out_f, in_f):
    torch.manual_seed(5)
    layer = PEPSLinear(60, 24, out_f, in_f, 3, rows=rows).double()
    with torch.no_grad():
        for p in layer.cores:
            p.normal_()
        layer.bias.normal_()
    x = torch.randn(9, 60, dtype=torch.float64)
    assert torch.allclose(layer(x), x @ layer.dense_weight().T + layer.bias, atol=1e-10)


def test_layer_forward_never_forms_the_dense_weight():
    layer = PEPSLinear(400, 120, [5, 4, 3, 2], [5, 5, 4, 4], 8)
    x = torch.randn(128, 5, 5, 4, 4)
    tn_network.apply_expression.cache_clear()
    eq = tn_network.equation([("batch", "i0", "i1", "i2", "i3"), *layer.net.legs],
                             ["batch", "o0", "o1", "o2", "o3"])
    shapes = (tuple(x.shape), *(tuple(p.shape) for p in layer.cores))
    _, best = oe.contract_path(eq, *shapes, shapes=True)
    assert tn_network._materializes_weight(best, "a", 400 * 120)  # opt_einsum alone would
    expr = tn_network.apply_expression(eq, shapes, "a", 400 * 120)
    _, used = oe.contract_path(eq, *shapes, shapes=True, optimize=[c[0] for c in expr.contraction_list])
    assert not tn_network._materializes_weight(used, "a", 400 * 120)
    assert torch.allclose(layer(x.reshape(128, 400)), x.reshape(128, 400) @ layer.dense_weight().T, rtol=1e-4, atol=1e-4)


# --- methods ----------------------------------------------------------------------------------


def lenet():
    torch.manual_seed(0)
    return build_model("lenet5", in_channels=1, image_size=28, num_classes=10)


def test_mpo_tensorizes_linear_layers_and_tt_convs_too():
    x = torch.randn(3, 1, 28, 28)
    model = lenet()
    reports = build_method(method_cfg("mpo", bond_dim=4)).compress(model)
    assert [(r.name, r.compressed) for r in reports] == [("features.3", False), ("classifier.0", True), ("classifier.2", True)]
    assert isinstance(model.classifier[0], TTLinear) and model.classifier[0].out_factors == [6, 5, 4]
    assert model(x).shape == (3, 10)
    model = lenet()
    reports = build_method(method_cfg("tt", bond_dim=4, factors={"classifier.0": {"out": [4, 5, 6], "in": [4, 10, 10]}})).compress(model)
    assert all(r.compressed for r in reports) and isinstance(model.features[3], TTConv2d)
    assert model.classifier[0].in_factors == [4, 10, 10]
    assert all(0 < r.weight_params_compressed < r.weight_params_dense and r.ranks for r in reports)
    assert model(x).shape == (3, 10)


@pytest.mark.parametrize("name", ["tt", "peps"])
def test_fresh_init_reaches_the_target_norm_and_gaussian_does_not(name):
    normed, plain = lenet(), lenet()
    for r in build_method(method_cfg(name, init="partial_norm")).compress(normed):
        if r.compressed:
            assert r.extra["norm"] == pytest.approx(r.extra["target_norm"], rel=1e-5)
            assert r.extra["target_norm"] == pytest.approx(math.sqrt(r.shape[0] / 3))  # match_dense
    for r in build_method(method_cfg(name, init="gaussian")).compress(plain):
        if r.compressed:  # Gaussian(0, 0.5) nodes: tens of times too large already at N = 3
            assert r.extra["norm"] > 10 * math.sqrt(r.shape[0] / 3)
    for r in build_method(method_cfg(name, init="gaussian", init_mean=1.0)).compress(lenet()):
        if r.compressed:  # the paper's Gaussian(1, 0.5): thousands of times
            assert r.extra["norm"] > 1000 * math.sqrt(r.shape[0] / 3)
    x = torch.randn(4, 1, 28, 28)
    assert normed(x).abs().max() < plain(x).abs().max()


def test_peps_decompose_fits_the_pretrained_weight():
    model = lenet()
    w = model.classifier[2].weight.detach().clone()
    reports = build_method(method_cfg("peps", bond_dim=6, fit_steps=150, layers=["classifier.2"])).compress(model)
    assert reports[0].relative_error == pytest.approx(reports[0].extra["fit_relative_error"], rel=1e-2)
    # a random 84 x 120 weight is far from any small PEPS; the fit still beats the zero weight
    assert reports[0].relative_error < 0.95
    assert reports[0].extra["norm"] < float(w.norm())  # a least-squares fit only shrinks


@pytest.mark.parametrize("name,kw,match", [
    ("mpo", {"bond_dim": 0}, "method.bond_dim must be >= 1"),
    ("tt", {"rank": 0}, "method.bond_dim must be >= 1"),
    ("mpo", {"tolerance": [2.0, 10.0]}, r"method.tolerance a must be in \(0, 1\]"),
    ("mpo", {"tolerance": [1e-3, 0.5]}, "method.tolerance b must be >= 1"),
    ("mpo", {"init": "xavier"}, "method.init must be one of"),
    ("mpo", {"target_norm": "huge"}, "method.target_norm must be"),
    ("peps", {"num_cores": 3}, r"method.num_cores \(3\) must be a multiple of method.grid_rows"),
    ("mpo", {"factors": {"classifier.0": {"out": [4, 5, 6], "in": [3, 10, 10]}}},
     r"method.factors.classifier.0.in factors \[3, 10, 10\] multiply to 300, not the layer size 400"),
    ("mpo", {"factors": {"classifier.0": {"out": [4, 5, 6]}}}, "must be {out:"),
    ("mpo", {"factors": 3}, "method.factors must be null or"),
])
def test_bad_settings_are_one_line_config_errors(name, kw, match):
    with pytest.raises(ConfigError, match=match) as e:
        build_method(method_cfg(name, **kw)).compress(lenet())
    assert "\n" not in str(e.value)


def test_factor_override_composes_from_the_command_line():
    cfg = compose(["method=tt", "method.factors={classifier.0:{out:[4,5,6],in:[4,10,10]}}", "method.init=log_norm"])
    model = lenet()
    build_method(cfg.method).compress(model)
    assert (model.classifier[0].out_factors, model.classifier[0].in_factors) == ([4, 5, 6], [4, 10, 10])
    assert model.classifier[2].out_factors == balanced_factors(84, 3)


def test_mpo_pipeline_run_writes_an_ok_record(tmp_path):
    cfg = compose([*QUICK, "method=mpo", "logger=none", f"paths.results_dir={tmp_path}"])
    run_pipeline(cfg, tmp_path / "run")
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    assert rec["status"] == "ok", rec.get("error")
    assert rec["method"] == "mpo" and rec["params_compressed"] < rec["params_dense"]
    assert rec["ranks"]["classifier.0"] == [8, 8]
    assert rec["layers"][1]["extra"]["layout"] == "tt-matrix"
