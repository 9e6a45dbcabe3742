"""The rank-adaptive integrator (tnbench.methods.families.integrator) shared by tucker_adaptive and dlrt:
optimizer state, real Lightning training, resume, augmentation and truncation."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import LENET_LAYERS, method_cfg
from tnbench.config import OptimizerConfig
from tnbench.data import load_data
from tnbench.data.module import InMemoryDataModule
from tnbench.functional.tucker import mode_product
from tnbench.methods import build_method
from tnbench.methods.families.integrator import RankAdaptiveIntegrator, project_state
from tnbench.models import build_model
from tnbench.pipeline.classifier import Classifier


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
