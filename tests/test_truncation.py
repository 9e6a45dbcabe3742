"""Post-training truncation (arXiv 2403.14379): bipartition math and factorized layers against
dense reconstructions, CP layers, the svd_truncation / cp methods, and the study command."""
from __future__ import annotations

import resource
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from tnbench.errors import ConfigError
from tnbench.functional.approximation import rank_for_norm_loss, rank_for_rel_error, truncation_curves
from tnbench.functional.bipartition import CUTS, fold, spectrum, truncate, truncated_kernel, unfold
from tnbench.functional.cp import cp_conv2d, cp_decompose, cp_kernel
from tnbench.layers import LowRankConv2d, LowRankLinear
from tnbench.layers.bipartition import BipartitionConv2d, factorize_conv
from tnbench.layers.cp import CPConv2d
from tnbench.methods import METHODS, build_method
from tnbench.models import build_model


def norm_losses(s):
    return truncation_curves(s)[0]


def relative_errors(s):
    return truncation_curves(s)[1]


CONF = str(Path(__file__).resolve().parent.parent / "tnbench" / "conf")
GEOMETRIES = [  # (stride, padding, dilation, kernel size)
    (1, 0, 1, (3, 3)),
    (2, 1, 1, (3, 5)),
    ((1, 2), (2, 1), (2, 1), (5, 3)),
]


def method_cfg(name: str, **kw):
    return OmegaConf.merge(OmegaConf.structured(METHODS.get(name).config_class), kw)


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from tnbench.pipeline.configstore import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def random_conv(stride, padding, dilation, kernel, cin=4, cout=6, bias=True) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias).double()


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
    kept = 1 - wt.norm() / w.norm()
    assert float(kept) == pytest.approx(float(norm_losses(s)[min(2, s.numel())]), abs=1e-12)
    assert float((w - wt).norm() / w.norm()) == pytest.approx(float(relative_errors(s)[min(2, s.numel())]), abs=1e-12)


@pytest.mark.parametrize("cut", list(CUTS))
@pytest.mark.parametrize("stride,padding,dilation,kernel", GEOMETRIES)
def test_factorized_layer_equals_dense_conv_with_truncated_kernel(cut, stride, padding, dilation, kernel):
    conv = random_conv(stride, padding, dilation, kernel)
    x = torch.randn(2, 4, 11, 12, dtype=torch.float64)
    m, n = unfold(conv.weight.detach(), cut).shape
    for rank in sorted({1, 2, min(m, n)}):
        left, right, _ = truncate(conv.weight, cut, rank)
        layer = factorize_conv(conv, cut, left, right)
        assert isinstance(layer, LowRankConv2d if cut == "out" else BipartitionConv2d)
        kernel_t = truncated_kernel(conv.weight.detach(), cut, rank)
        ref = F.conv2d(x, kernel_t, conv.bias, conv.stride, conv.padding, conv.dilation)
        out = layer(x)
        assert out.shape == ref.shape
        assert torch.allclose(out, ref, atol=1e-10), (cut, rank)
        assert torch.allclose(layer.dense_weight(), kernel_t, atol=1e-12)
        if rank == min(m, n):  # zero truncation reproduces the original layer
            assert torch.allclose(out, conv(x), atol=1e-10)
    # gradients reach both factors (the shared filters are tied, not copied)
    layer = factorize_conv(conv, cut, *truncate(conv.weight, cut, 2)[:2])
    layer(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_bipartition_layer_parameter_count_is_rank_times_rows_plus_cols():
    conv = random_conv(1, 1, 1, (3, 3), cin=8, cout=16)
    for cut in CUTS:
        m, n = unfold(conv.weight.detach(), cut).shape
        layer = factorize_conv(conv, cut, *truncate(conv.weight, cut, 2)[:2])
        assert layer.weight_params() == 2 * (m + n)


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.95])
def test_rank_for_norm_loss_is_within_one_singular_value(target):
    torch.manual_seed(3)
    w = torch.randn(16, 8, 3, 3, dtype=torch.float64) * torch.logspace(0, -2, 16, dtype=torch.float64)[:, None, None, None]
    for cut in CUTS:
        s = spectrum(w, cut)
        r = rank_for_norm_loss(s, target)
        losses = norm_losses(s)
        assert losses[r] <= target + 1e-12  # achieved <= target
        assert r == 1 or losses[r - 1] > target  # one singular value fewer would exceed it
        # the achieved loss is that of the actual truncated kernel
        wt = truncated_kernel(w, cut, r)
        assert float(1 - wt.norm() / w.norm()) == pytest.approx(float(losses[r]), abs=1e-10)
        e = rank_for_rel_error(s, target)
        assert relative_errors(s)[e] <= target + 1e-12 and (e == 1 or relative_errors(s)[e - 1] > target)


@pytest.mark.parametrize("cut", list(CUTS))
def test_svd_truncation_method_hits_the_norm_loss_and_keeps_outputs(cut):
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10).double()
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    before = model(x)
    dense = build_model("lenet5", in_channels=1, image_size=28, num_classes=10).double()
    dense.load_state_dict(model.state_dict())
    reports = build_method(method_cfg("svd_truncation", cut=cut, norm_loss=0.2)).compress(model)
    assert [r.name for r in reports] == ["features.0", "features.3"]  # convs only by default
    for r in reports:
        s = spectrum(dense.get_submodule(r.name).weight, cut)
        assert r.norm_loss <= 0.2 + 1e-9
        assert r.ranks[0] == 1 or float(norm_losses(s)[r.ranks[0] - 1]) > 0.2
        assert r.extra["cut"] == cut and r.extra["max_rank"] == s.numel()
    # the truncated model equals the dense model with truncated kernels
    for r in reports:
        with torch.no_grad():
            dense.get_submodule(r.name).weight.copy_(truncated_kernel(dense.get_submodule(r.name).weight, cut, r.ranks[0]))
    assert torch.allclose(model(x), dense(x), atol=1e-9)
    # zero truncation reproduces the original outputs, factorized or not
    for factorized in (True, False):
        torch.manual_seed(0)
        fresh = build_model("lenet5", in_channels=1, image_size=28, num_classes=10).double()
        build_method(method_cfg("svd_truncation", cut=cut, norm_loss=0.0, factorized=factorized)).compress(fresh)
        assert torch.allclose(fresh(x), before, atol=1e-9)


def test_factorized_flag_and_parameter_savings():
    torch.manual_seed(0)
    model = build_model("cnn4", in_channels=1, image_size=28, num_classes=10)
    reports = build_method(method_cfg("svd_truncation", cut="out_kh", rank=2, layers="deep")).compress(model)
    assert [r.name for r in reports] == ["features.7", "features.11"]  # the second half of the convs
    assert all(isinstance(model.get_submodule(r.name), BipartitionConv2d) for r in reports)
    assert all(r.weight_params_compressed < r.weight_params_dense for r in reports)
    model = build_model("cnn4", in_channels=1, image_size=28, num_classes=10)
    reports = build_method(method_cfg("svd_truncation", cut="out_kh", rank=2, layers="shallow",
                                      factorized=False)).compress(model)
    assert [r.name for r in reports] == ["features.0", "features.3"]
    assert all(type(model.get_submodule(r.name)) is nn.Conv2d for r in reports)
    assert all(r.weight_params_compressed == r.weight_params_dense and "dense" in r.note for r in reports)
    # KH cut keeping all 3 rows: the factors would be larger, so the kernel stays dense
    model = build_model("cnn4", in_channels=1, image_size=28, num_classes=10)
    (r,) = build_method(method_cfg("svd_truncation", cut="kh", rank=3, layers=["features.7"])).compress(model)
    assert type(model.get_submodule("features.7")) is nn.Conv2d and "not smaller" in r.note


def test_linear_layers_only_when_asked():
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10)
    reports = build_method(method_cfg("svd_truncation", cut="out_kw", rank=4, include_linear=True,
                                      layers="all")).compress(model)
    kinds = [r.kind for r in reports]
    assert kinds == ["conv", "conv", "linear", "linear", "linear"]
    assert isinstance(model.classifier[0], LowRankLinear)
    assert "OUT | IN" in reports[2].note


@pytest.mark.parametrize("kw,match", [
    ({"cut": "diag"}, "method.cut must be one of out, in, kh, kw, out_in, out_kh, out_kw; got 'diag'"),
    ({"norm_loss": 1.0}, r"method.norm_loss must be in \[0, 1\), got 1.0"),
    ({"norm_loss": -0.1}, r"method.norm_loss must be in \[0, 1\)"),
    ({"rank": 0}, "method.rank must be >= 1, got 0"),
    ({"rel_error": 1.5}, r"method.rel_error must be in \[0, 1\)"),
    ({"rank": 2, "rel_error": 0.1}, "method.rank and method.rel_error are both set"),
    ({"norm_loss": None}, "set one of method.norm_loss"),
    ({"layers": "middle"}, "method.layers names unknown layer"),
])
def test_bad_truncation_settings_are_one_line_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match) as e:
        build_method(method_cfg("svd_truncation", **kw)).compress(
            build_model("lenet5", in_channels=1, image_size=28, num_classes=10))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw,match", [
    ({"rank": 0}, "method.rank must be >= 1, got 0"),
    ({"init": "tucker"}, "method.init must be one of svd, random"),
    ({"n_iter_max": 0}, "method.n_iter_max must be >= 1"),
])
def test_bad_cp_settings_are_one_line_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match) as e:
        build_method(method_cfg("cp", **kw))
    assert "\n" not in str(e.value)


def test_truncation_configs_compose():
    cfg = compose(["method=svd_truncation", "method.cut=out_kw", "method.norm_loss=0.5"])
    assert cfg.method.name == "svd_truncation" and cfg.method.paper == "arXiv 2403.14379"
    build_method(cfg.method)
    cfg = compose(["method=cp_truncation", "method.rank=4"])
    assert cfg.method.name == "cp" and cfg.method.rank == 4
    build_method(cfg.method)


def test_cp_truncation_is_cp_without_retraining():
    cfg = compose(["method=cp_truncation"])
    assert cfg.method.name == "cp" and cfg.pipeline.retrain_epochs == 0
    assert compose(["method=cp"]).pipeline.retrain_epochs > 0


@pytest.mark.parametrize("stride,padding,dilation,kernel", GEOMETRIES)
def test_cp_layer_equals_dense_reconstruction_of_its_factors(stride, padding, dilation, kernel):
    conv = random_conv(stride, padding, dilation, kernel)
    layer, info = CPConv2d.from_conv(conv, 5, n_iter_max=30)
    x = torch.randn(2, 4, 11, 12, dtype=torch.float64)
    kernel_cp = cp_kernel(layer.factors).detach()
    ref = F.conv2d(x, kernel_cp, conv.bias, conv.stride, conv.padding, conv.dilation)
    assert torch.allclose(layer(x), ref, atol=1e-10)
    assert torch.allclose(cp_conv2d(x, layer.factors, None, stride, padding, dilation),
                          F.conv2d(x, kernel_cp, None, conv.stride, conv.padding, conv.dilation), atol=1e-10)
    assert layer.weight_params() == 5 * (6 + 4 + sum(conv.kernel_size))
    w = conv.weight.detach()
    err = float((w - kernel_cp).norm() / w.norm())
    assert err == pytest.approx(info["relative_error"], abs=1e-10) and 0 <= err < 1


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


def test_cp_method_replaces_convs_and_dense_option():
    torch.manual_seed(0)
    model = build_model("cnn4", in_channels=1, image_size=28, num_classes=10)
    x = torch.randn(2, 1, 28, 28)
    reports = build_method(method_cfg("cp", rank=4, n_iter_max=10, layers="deep")).compress(model)
    assert [r.name for r in reports] == ["features.7", "features.11"]
    assert all(isinstance(model.get_submodule(r.name), CPConv2d) for r in reports)
    assert all(0 < r.relative_error < 1 and r.ranks == [4] for r in reports)
    assert model(x).shape == (2, 10)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10)
    reports = build_method(method_cfg("cp", rank=2, n_iter_max=10, factorized=False)).compress(model)
    assert all(type(model.get_submodule(r.name)) is nn.Conv2d for r in reports)


def test_study_command_writes_table_and_plots(tmp_path):
    from tnbench.studies.truncation import main

    out = main(["dataset=synthetic", "logger=none", "trainer.progress=false", f"paths.results_dir={tmp_path}",
                "pipeline.pretrain_epochs=0", "dataset.train_size=64", "dataset.test_size=128",
                "--norm-losses", "0.1,0.5", "--cuts", "out,kh", "--cp-ranks", "2", "--cp-iters", "5"])
    assert out == tmp_path / "studies" / "truncation_lenet5_synthetic"
    table = pd.read_csv(out / "truncation.csv")
    settings = ["features.0", "features.3", "all"]
    svd = table[table.method == "svd"]
    assert len(svd) == 2 * 2 * 3  # cuts x norm losses x (each conv alone, all convs)
    assert set(zip(svd.cut, svd.target, svd.layers)) == {(c, t, s) for c in ("out", "kh") for t in (0.1, 0.5)
                                                          for s in settings}
    assert (svd.norm_loss <= svd.target + 1e-9).all() and svd.accuracy.between(0, 100).all()
    assert list(table[table.method == "cp"].layers) == settings
    spectra = pd.read_csv(out / "spectra.csv")
    assert set(spectra.cut) == {"out", "kh"} and set(spectra.layer) == set(settings[:2])
    # the out cut of features.3 (16 x 6*5*5) has 16 singular values
    assert len(spectra[(spectra.layer == "features.3") & (spectra.cut == "out")]) == 16
    for name in ("accuracy_by_cut.png", "accuracy_vs_relative_error.png", "accuracy_by_layer.png",
                 "accuracy_vs_compression.png", "spectra.png", "norm_loss_vs_params.png", "depth_summary.png",
                 "tolerated_norm_loss.csv", "study.json"):
        assert (out / name).stat().st_size > 0, name


def test_study_rejects_bad_grid_in_one_line(tmp_path):
    from tnbench.studies.truncation import main

    with pytest.raises(ConfigError, match="--cuts must name cuts among out, in, kh") as e:
        main(["dataset=synthetic", f"paths.results_dir={tmp_path}", "--cuts", "out,diag"])
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"--norm-losses must be values in \[0, 1\)"):
        main(["dataset=synthetic", f"paths.results_dir={tmp_path}", "--norm-losses", "0.2,1.0"])


@pytest.mark.parametrize("overrides,message", [
    (["method=svd_truncation", "method.cut=diag"], "method.cut must be one of out, in, kh, kw, out_in, out_kh, out_kw"),
    (["method=svd_truncation", "method.norm_loss=1.2"], "method.norm_loss must be in [0, 1), got 1.2"),
    (["method=svd_truncation", "method.rank=0"], "method.rank must be >= 1, got 0"),
    (["method=cp", "method.rank=0"], "method.rank must be >= 1, got 0"),
])
def test_cli_preflight_rejects_bad_truncation_input(overrides, message):
    from tnbench.pipeline.configstore import register_configs
    from tnbench.pipeline.jobs import preflight

    register_configs()
    problem = preflight(overrides, CONF)
    assert problem is not None and message in problem and "\n" not in problem


@pytest.mark.parametrize("factorized", [True, False])
def test_study_evaluates_truncated_models_in_the_input_memory_format(tmp_path, factorized):
    """Layers a method swaps in take the replaced layer's memory format (replace_module): a
    contiguous layer on channels-last input is ~4x slower."""
    from tnbench.studies.truncation import Sweep, compose_config

    cfg = compose_config(["dataset=synthetic", "trainer.channels_last=true"])
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10).to(memory_format=torch.channels_last)
    batch = [(torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last), torch.zeros(8, dtype=torch.long))]
    sweep = Sweep(cfg, model, {"in_channels": 1, "image_size": 28, "num_classes": 10}, batch, factorized)
    base = OmegaConf.to_container(cfg.method, resolve=True)
    truncated, reports = sweep.truncated({**base, "cut": "out", "norm_loss": 0.3, "rank": None, "rel_error": None,
                                          "layers": "all", "factorized": factorized})
    assert reports and all(r.ranks for r in reports)
    convs = [m for m in truncated.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == (4 if factorized else 2)  # the OUT cut: two convs a layer when factorized
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    # LeNet-5's first conv has one input channel, so its weight looks contiguous in both orders:
    # what counts is that every conv of the truncated model computes channels-last on that input
    outputs = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: outputs.append(out)) for m in convs]
    with torch.no_grad():
        truncated(batch[0][0])
    for h in hooks:
        h.remove()
    assert len(outputs) == len(convs)
    assert all(o.is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous() for o in outputs)
