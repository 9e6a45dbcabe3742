"""Tucker math and layers against dense reconstructions; the fixed and rank-adaptive methods
(TDLRT, DLRT) on real Lightning training."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from tnbench.config import OptimizerConfig
from tnbench.data import load_data
from tnbench.data.module import InMemoryDataModule
from tnbench.errors import ConfigError
from tnbench.functional.tucker import (
    augment_basis,
    fold,
    hosvd,
    mode_product,
    rank_for_tolerance,
    truncation_bases,
    tucker_params,
    tucker_to_tensor,
    unfold,
)
from tnbench.layers.tucker import TuckerConv2d, TuckerLinear, USVConv2d
from tnbench.methods import METHODS, build_method
from tnbench.methods.families.integrator import RankAdaptiveIntegrator, project_state
from tnbench.models import build_model
from tnbench.pipeline.classifier import Classifier

LENET_LAYERS = ["features.0", "features.3", "classifier.0"]


def method_cfg(name: str, **kw):
    return OmegaConf.merge(OmegaConf.structured(METHODS.get(name).config_class), kw)


# -- math -----------------------------------------------------------------------------------

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


# -- layers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("modes", [("out", "in"), ("out", "in", "kh", "kw"), ("out",), ("in", "kw")])
@pytest.mark.parametrize("stride,padding,dilation,padding_mode",
                         [(1, 0, 1, "zeros"), (2, 1, 1, "zeros"), (1, 2, 2, "zeros"), (1, 1, 1, "reflect")])
def test_tucker_conv_equals_dense_conv_with_reconstructed_kernel(modes, stride, padding, dilation, padding_mode):
    torch.manual_seed(6)
    conv = nn.Conv2d(6, 10, 3, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode).double()
    ranks = {"out": 4, "in": 3, "kh": 2, "kw": 2}
    layer, _ = TuckerConv2d.from_dense(conv, {m: ranks[m] for m in modes}, modes)
    kernel = layer.dense_weight()
    assert kernel.shape == conv.weight.shape
    dense = nn.Conv2d(6, 10, 3, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode).double()
    with torch.no_grad():
        dense.weight.copy_(kernel)
        dense.bias.copy_(conv.bias)
    x = torch.randn(2, 6, 13, 13, dtype=torch.float64)
    for inp in (x, x.to(memory_format=torch.channels_last)):
        ref = dense(inp)
        assert (torch.linalg.vector_norm(layer(inp) - ref) / torch.linalg.vector_norm(ref)) < 1e-10
    assert layer.weight_params() == tucker_params(conv.weight.shape, {("out", "in", "kh", "kw").index(m): ranks[m] for m in modes})


def test_full_ranks_reproduce_the_original_layers():
    torch.manual_seed(7)
    conv = nn.Conv2d(5, 8, 3, padding=1).double()
    x = torch.randn(3, 5, 9, 9, dtype=torch.float64)
    for layer in (TuckerConv2d.from_dense(conv, [8, 5])[0],
                  TuckerConv2d.from_dense(conv, [8, 5, 3, 3], ("out", "in", "kh", "kw"))[0],
                  USVConv2d.from_dense(conv, 45)[0]):
        assert torch.allclose(layer(x), conv(x), atol=1e-10)
        assert torch.allclose(layer.dense_weight(), conv.weight, atol=1e-12)
    lin = nn.Linear(30, 12).double()
    layer, _ = TuckerLinear.from_dense(lin, [12, 30])
    z = torch.randn(4, 30, dtype=torch.float64)
    assert torch.allclose(layer(z), lin(z), atol=1e-12)
    assert layer.weight_params() == 12 * 30 + 12 * 12 + 30 * 30


def test_usv_conv_is_the_truncated_svd_of_the_matricized_kernel():
    torch.manual_seed(8)
    conv = nn.Conv2d(6, 10, 3).double()
    layer, s = USVConv2d.from_dense(conv, 4)
    u, sv, vh = torch.linalg.svd(conv.weight.detach().reshape(10, -1))
    best = ((u[:, :4] * sv[:4]) @ vh[:4]).reshape(conv.weight.shape)
    assert torch.allclose(layer.dense_weight(), best, atol=1e-10)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    assert torch.allclose(layer(x), F.conv2d(x, best, conv.bias), atol=1e-10)
    assert layer.weight_params() == 10 * 4 + 16 + 54 * 4


# -- the methods ----------------------------------------------------------------------------

def test_tucker_method_reports_errors_that_match_the_reconstruction():
    torch.manual_seed(9)
    model = build_model("lenet5_dlrt", in_channels=1, image_size=28, num_classes=10).double()
    dense = {n: m.weight.detach().clone() for n, m in model.named_modules() if hasattr(m, "weight")}
    reports = build_method(method_cfg("tucker", ranks=[0.5, 8], layers=LENET_LAYERS[1:])).compress(model)
    assert [r.name for r in reports] == ["features.3", "classifier.0"]
    conv = model.get_submodule("features.3")
    assert isinstance(conv, TuckerConv2d) and conv.ranks() == [25, 8]
    assert reports[0].ranks == [25, 8] and reports[1].ranks == [250, 8]
    for r in reports:
        w, approx = dense[r.name], model.get_submodule(r.name).dense_weight().detach()
        assert r.relative_error == pytest.approx(float((w - approx).norm() / w.norm()), rel=1e-9)
        assert r.norm_loss == pytest.approx(1 - float(approx.norm() / w.norm()), rel=1e-9)
        assert r.weight_params_compressed < r.weight_params_dense
    assert model(torch.randn(2, 1, 28, 28, dtype=torch.float64)).shape == (2, 10)


@pytest.mark.parametrize("name,kw,match", [
    ("tucker_adaptive", {"tau": 0.0}, "method.tau must be in"),
    ("tucker_adaptive", {"tau": 1.0}, "method.tau must be in"),
    ("dlrt", {"tau": 1.5}, "method.tau must be in"),
    ("dlrt", {"r_min": 10, "r_max": 5}, "method.r_min .10. must be <= method.r_max"),
    ("tucker_adaptive", {"rank_init": 500}, "method.rank_init"),
    ("tucker_adaptive", {"rank_init": 1.5}, "method.rank_init"),
    ("tucker_adaptive", {"adapt_every": 0}, "method.adapt_every"),
    ("tucker_adaptive", {"adaptive_modes": ["out", "depth"]}, "method.adaptive_modes"),
    ("tucker", {"ranks": [600, 4]}, "rank 600 for mode out of layer features.3 exceeds the mode size 50$"),
    ("tucker", {"ranks": [0.5, 0.5, 0.5]}, "method.ranks has 3 entries for 2 modes"),
    ("tucker", {"ranks": -2}, "method.ranks entries"),
    ("tucker", {"ranks": 1.5}, "method.ranks entries"),
])
def test_bad_settings_are_one_line_config_errors(name, kw, match):
    with pytest.raises(ConfigError, match=match) as e:
        method = build_method(method_cfg(name, layers=LENET_LAYERS[1:], **kw))
        method.compress(build_model("lenet5_dlrt", in_channels=1, image_size=28, num_classes=10))
    assert "\n" not in str(e.value)


def test_project_state_moves_momentum_like_the_parameter_and_keeps_second_moments_positive():
    torch.manual_seed(10)
    core = torch.randn(4, 3, 5, dtype=torch.float64)
    p = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))[0][:, :2]
    state = {"momentum_buffer": core.clone(), "exp_avg_sq": core.abs().clone(), "step": torch.tensor(3.0)}
    project_state(state, core.shape, {0: p.T})
    assert torch.allclose(state["momentum_buffer"], mode_product(core, p.T, 0))
    assert state["exp_avg_sq"].shape == (2, 3, 5) and (state["exp_avg_sq"] >= 0).all()
    assert float(state["step"]) == 3.0


class StateShapeCheck(L.Callback):
    """After every step (and every rank change) each parameter's optimizer state has its shape."""

    def __init__(self) -> None:
        self.checks, self.rank_sets = 0, set()

    def check(self, trainer) -> None:
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                for p in group["params"]:
                    for key, v in opt.state.get(p, {}).items():
                        if torch.is_tensor(v) and v.dim() > 0:
                            assert v.shape == p.shape, (key, v.shape, p.shape)
                            self.checks += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.check(trainer)  # after the integrator's augmentation (it runs first)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.check(trainer)
        cb = next(c for c in trainer.callbacks if isinstance(c, RankAdaptiveIntegrator))
        self.rank_sets.add(tuple(tuple(l.ranks()) for _, l in cb.layers))


def train_adaptive(method, optimizer: str, epochs: int = 3, tau: float = 0.2, lr: float = 0.05,
                   train_size: int = 512, **kw):
    L.seed_everything(0, verbose=False)
    data = load_data("synthetic", data_dir="unused", seed=0, channels=1, image_size=28, num_classes=10,
                     train_size=train_size, test_size=256)
    model = build_model("lenet5_dlrt", in_channels=1, image_size=28, num_classes=10)
    m = build_method(method_cfg(method, tau=tau, layers=LENET_LAYERS, **kw))
    m.compress(model)
    module = Classifier(model, 10, channels_last=True)
    optim = OmegaConf.structured(OptimizerConfig(name=optimizer, lr=lr, schedule="constant"))
    module.for_stage("retrain", optim, epochs)
    losses = []

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    shape_check = StateShapeCheck()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[*m.callbacks(), shape_check, Losses()])
    dm = InMemoryDataModule(data, batch_size=32, eval_batch_size=256, seed=0, channels_last=True)
    trainer.fit(module, datamodule=dm)
    return m, losses, shape_check, module


@pytest.mark.parametrize("method,optimizer,lr,kw", [
    ("tucker_adaptive", "sgd", 0.05, {"adapt_every": 2, "r_min": 2, "r_max": 40, "rank_init": 1.0}),
    ("dlrt", "adam", 2e-3, {"r_min": 3, "r_max": 40, "rank_init": 1.0}),
])
def test_rank_adaptive_training_lowers_the_loss_within_rank_bounds(method, optimizer, lr, kw):
    m, losses, shape_check, module = train_adaptive(method, optimizer, lr=lr, tau=0.1, **kw)
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.8 * first, (first, last)
    assert shape_check.checks > 0
    assert len(shape_check.rank_sets) > 1  # ranks did change, and state followed every time
    for entry in m.history:
        for name, ranks in entry["ranks"].items():
            layer = dict(m.layers)[name]
            for mode, r in zip(layer.modes, ranks):
                assert min(kw["r_min"], layer.mode_size(mode)) <= r <= min(kw["r_max"], layer.mode_size(mode))
    assert [e["epoch"] for e in m.history] == [0, 1, 2, 3]
    for _, layer in m.layers:  # bases stay orthonormal
        for mode in layer.modes:
            u = layer.factor(mode).detach()
            assert torch.allclose(u.T @ u, torch.eye(u.shape[1]), atol=1e-4)
    logged = module.trainer.callback_metrics
    assert any(k.startswith("retrain/rank/") for k in logged)
    reports = m.describe(module.model)
    assert [r.ranks for r in reports] == [m.ranks_of(l) for _, l in m.layers]


def test_a_resumed_fit_restores_the_adapted_shapes_and_history(tmp_path):
    m, _, _, module = train_adaptive("dlrt", "sgd", epochs=1, tau=0.2, lr=0.05, train_size=128, r_min=2, r_max=40,
                                     rank_init=1.0)
    ckpt = tmp_path / "last.ckpt"
    module.trainer.save_checkpoint(ckpt)
    ranks = [l.ranks() for _, l in m.layers]
    weights = [l.dense_weight().detach().clone() for _, l in m.layers]
    # a fresh process: the model compressed again at the starting ranks, then fit from the checkpoint
    L.seed_everything(0, verbose=False)
    model = build_model("lenet5_dlrt", in_channels=1, image_size=28, num_classes=10)
    again = build_method(method_cfg("dlrt", tau=0.2, layers=LENET_LAYERS, r_min=2, r_max=40, rank_init=1.0))
    again.compress(model)
    assert [l.ranks() for _, l in again.layers] != ranks
    resumed = Classifier(model, 10, channels_last=True)
    resumed.for_stage("retrain", OmegaConf.structured(OptimizerConfig(name="sgd", lr=0.05, schedule="constant")), 2)
    seen = {}

    class Peek(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["ranks"] = [l.ranks() for _, l in again.layers]
            seen["weights"] = [l.dense_weight().detach().clone() for _, l in again.layers]

    data = load_data("synthetic", data_dir="unused", seed=0, channels=1, image_size=28, num_classes=10,
                     train_size=128, test_size=128)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[*again.callbacks(), StateShapeCheck(), Peek()])
    trainer.fit(resumed, datamodule=InMemoryDataModule(data, batch_size=32, channels_last=True), ckpt_path=ckpt)
    assert seen["ranks"] == ranks
    assert all(torch.allclose(a, b) for a, b in zip(seen["weights"], weights))
    assert [e["epoch"] for e in again.history] == [0, 1, 2]


class FakeTrainer:
    """What the integrator reads from a Lightning trainer, for driving it by hand."""

    optimizers: list = []

    class precision_plugin:
        @staticmethod
        def train_step_context():
            import contextlib
            return contextlib.nullcontext()


@pytest.mark.parametrize("modes,augmented,start", [
    (["out", "in"], [[12, 12], [12, 12]], [[6, 6], [6, 6]]),
    (["out", "in", "kh", "kw"], [[12, 12, 5, 5], [12, 12]], [[6, 6, 5, 5], [6, 6]]),  # 5x5 kernel modes: full
])
def test_augmentation_keeps_the_function_and_truncation_at_tiny_tau_too(modes, augmented, start):
    torch.manual_seed(11)
    model = build_model("lenet5_dlrt", in_channels=1, image_size=28, num_classes=10).double()
    m = build_method(method_cfg("tucker_adaptive", tau=1e-6, r_min=1, layers=LENET_LAYERS[1:], rank_init=6,
                                adaptive_modes=modes))
    m.compress(model)
    cb = m.callbacks()[0]
    x, y = torch.randn(16, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (16,))
    before = [l.dense_weight().detach().clone() for _, l in m.layers]

    assert [l.ranks() for _, l in m.layers] == start
    cb.augment(FakeTrainer, model, (x, y))
    assert [l.ranks() for _, l in m.layers] == augmented
    for (_, l), w in zip(m.layers, before):
        assert torch.allclose(l.dense_weight(), w, atol=1e-12)
    cb.truncate(FakeTrainer)  # the padded directions carry nothing: back to the start, same weights
    assert [l.ranks() for _, l in m.layers] == start
    for (_, l), w in zip(m.layers, before):
        assert torch.allclose(l.dense_weight(), w, atol=1e-10)


def test_basis_step_on_a_batch_norm_network_leaves_running_statistics_alone():
    torch.manual_seed(12)
    model = build_model("cnn4", in_channels=3, image_size=16, num_classes=10)
    m = build_method(method_cfg("tucker_adaptive", layers="all_but_first_last", rank_init=8, r_min=2))
    m.compress(model)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    m.callbacks()[0].augment(FakeTrainer, model.train(), (x, y))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stats.items())
    assert all(l.ranks() == [16, 16] for _, l in m.layers if min(l.shape[:2]) >= 16)


def compose(overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from tnbench.pipeline.configstore import register_configs

    register_configs()
    conf = str(Path(__file__).resolve().parent.parent / "tnbench" / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def test_pipeline_with_tucker_adaptive_records_rank_history(tmp_path):
    from tnbench.pipeline.stages import run_pipeline

    cfg = compose(["dataset=synthetic", "logger=none", "trainer.progress=false", "method=tucker_adaptive",
                   f"paths.results_dir={tmp_path}", "model=lenet5_dlrt", "dataset.train_size=512",
                   "dataset.test_size=128", "pipeline.pretrain_epochs=1", "pipeline.retrain_epochs=2",
                   "method.rank_init=8", "method.r_min=2", "method.adapt_every=3", "method.tau=0.2"])
    run_pipeline(cfg, tmp_path / "run")
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    assert rec["status"] == "ok", rec.get("error")
    hist = rec["rank_history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    assert set(hist[-1]["ranks"]) == {"features.3", "classifier.0"}
    assert rec["ranks"] == hist[-1]["ranks"]  # the record describes the model as retraining left it
    assert rec["compression_at_compress"]["ranks"] == hist[0]["ranks"]
    assert rec["compression_rate"] == pytest.approx(hist[-1]["compression_rate"])
    assert rec["paper"] == "TDLRT (arXiv 2305.19059)"
