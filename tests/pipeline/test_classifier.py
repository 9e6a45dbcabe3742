"""The Lightning module (tnbench.pipeline.classifier) under the real trainer: gradient clipping, LR schedule."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from tests.conftest import QUICK, compose


def test_gradient_clip_val_bounds_every_update(tmp_path):
    """trainer.gradient_clip_val clips the global gradient norm before each (manual) optimizer step."""
    from torch.nn.utils import parameters_to_vector

    from tnbench.data.module import InMemoryDataModule
    from tnbench.models import build_model
    from tnbench.pipeline.classifier import Classifier
    from tnbench.pipeline.stages import load_dataset
    from tnbench.pipeline.trainer import make_trainer

    opt = "pipeline.pretrain_optimizer"
    cfg = compose([*QUICK, "dataset.batch_size=1024", "trainer.limit_val_batches=0", f"{opt}.name=sgd",
                   f"{opt}.lr=1.0", f"{opt}.momentum=0", f"{opt}.weight_decay=0", f"{opt}.schedule=constant"])
    data = load_dataset(cfg)
    change = {}
    for clip in (None, 1e-3):
        torch.manual_seed(0)
        model = build_model("lenet5", in_channels=data.in_channels, image_size=data.image_size,
                            num_classes=data.num_classes)
        before = parameters_to_vector(model.parameters()).detach().clone()
        module = Classifier(model, data.num_classes, gradient_clip_val=clip).for_stage("pretrain", cfg.pipeline.pretrain_optimizer, 1)
        dm = InMemoryDataModule(data, batch_size=cfg.dataset.batch_size, eval_batch_size=cfg.dataset.eval_batch_size)
        make_trainer(cfg, epochs=1, logger=None, run_dir=tmp_path / str(clip)).fit(module, datamodule=dm)
        assert module.global_step == 1
        change[clip] = float((parameters_to_vector(model.parameters()).detach() - before).norm())
    assert change[None] > 0.01  # one SGD step at lr 1 with the raw gradient
    assert change[1e-3] == pytest.approx(1e-3, rel=1e-3)  # lr * clipped gradient norm


def test_learning_rate_follows_the_epoch_schedule(tmp_path):
    """Cosine over 3 epochs: each epoch trains at lr0 * (1 + cos(pi * e / 3)) / 2."""

    from tnbench.data.module import InMemoryDataModule
    from tnbench.models import build_model
    from tnbench.pipeline.classifier import Classifier
    from tnbench.pipeline.stages import load_dataset
    from tnbench.pipeline.trainer import make_trainer

    class Rates(L.Callback):
        def __init__(self):
            self.seen = {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.seen.setdefault(trainer.current_epoch, set()).add(trainer.optimizers[0].param_groups[0]["lr"])

    cfg = compose([*QUICK, "trainer.limit_val_batches=0", "pipeline.pretrain_optimizer.lr=0.1",
                   "pipeline.pretrain_optimizer.schedule=cosine"])
    data = load_dataset(cfg)
    model = build_model("lenet5", in_channels=data.in_channels, image_size=data.image_size, num_classes=data.num_classes)
    module = Classifier(model, data.num_classes).for_stage("pretrain", cfg.pipeline.pretrain_optimizer, 3)
    rates = Rates()
    make_trainer(cfg, epochs=3, logger=None, run_dir=tmp_path, callbacks=[rates]).fit(
        module, datamodule=InMemoryDataModule(data, batch_size=cfg.dataset.batch_size))
    assert sorted(rates.seen) == [0, 1, 2]
    for epoch, lrs in rates.seen.items():
        assert len(lrs) == 1 and lrs.pop() == pytest.approx(0.05 * (1 + math.cos(math.pi * epoch / 3)))


def test_bn_recalibration_recomputes_statistics_before_every_evaluation(tmp_path):
    """pipeline.bn_recalibration: each evaluation first sets every BatchNorm layer's running
    statistics to the average over the unaugmented training split (what the layer sees there);
    without it the layer keeps its lagging running averages. The model's weights are unchanged."""
    from tnbench.data.module import InMemoryDataModule
    from tnbench.models import build_model
    from tnbench.pipeline.classifier import Classifier
    from tnbench.pipeline.stages import load_dataset
    from tnbench.pipeline.trainer import make_trainer

    cfg = compose([*QUICK, "model=cnn4"])
    data = load_dataset(cfg)
    dm = InMemoryDataModule(data, batch_size=cfg.dataset.batch_size, eval_batch_size=64)
    torch.manual_seed(0)
    model = build_model("cnn4", in_channels=data.in_channels, image_size=data.image_size, num_classes=data.num_classes)
    bn = model.features[1]
    seen = []  # what the first BN layer sees on each statistics batch
    hook = model.features[0].register_forward_hook(lambda m, i, out: seen.append(out.detach().mean((0, 2, 3))))
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    for on in (False, True):
        bn.reset_running_stats()
        seen.clear()
        module = Classifier(model, data.num_classes, bn_recalibration=on).for_stage("pretrain")
        make_trainer(cfg, epochs=1, logger=None, run_dir=tmp_path / str(on)).validate(module, datamodule=dm, verbose=False)
        if on:
            assert len(seen) == -(-len(data.train_y) // 64) + -(-len(data.test_y) // 64)
            expected = torch.stack(seen[: -(-len(data.train_y) // 64)]).mean(0)
            torch.testing.assert_close(bn.running_mean, expected, rtol=1e-4, atol=1e-5)
        else:
            assert len(seen) == -(-len(data.test_y) // 64)  # the test batches only
            assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    hook.remove()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


def test_bn_recalibration_leaves_a_model_without_batchnorm_alone():
    from tnbench.models import build_model
    from tnbench.pipeline.classifier import recalibrate_bn

    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not recalibrate_bn(model, [torch.randn(4, 1, 28, 28)])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_channels_last_keeps_1x1_kernels_on_the_strides_their_gradients_have():
    """A 1x1 kernel has the same memory in both formats; its gradient comes back with contiguous
    strides through the factor reshape (dense path) and follows the weight through the conv, so
    the weight keeps contiguous strides (DDP warns on grads whose strides differ from the weight's)."""
    from torch import nn

    from tnbench.layers.lowrank import LowRankConv2d
    from tnbench.pipeline.classifier import to_channels_last

    torch.manual_seed(0)
    plain = LowRankConv2d(nn.Conv2d(8, 16, 3, padding=1), rank=4)
    layer = LowRankConv2d(nn.Conv2d(8, 16, 3, padding=1), rank=4)
    layer.load_state_dict(plain.state_dict())
    layer = to_channels_last(to_channels_last(layer))  # again, as every stage does: one hook
    first, second = layer.first.weight, layer.second.weight
    assert first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous()
    assert second.stride() == (4, 1, 1, 1)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):  # the conv backward's gradient strides depend on the thread count
            torch.set_num_threads(n)
            for path in ("factorized_forward", "dense_forward"):
                grads = []
                for m in (layer, plain):
                    m.zero_grad(set_to_none=True)
                    out = m.factorized_forward(x) if path == "factorized_forward" else m.dense_forward(x, m.dense_weight())
                    out.square().sum().backward()
                    grads.append(m.second.weight.grad)
                assert grads[0].stride() == second.stride(), (n, path)
                assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)  # the same gradient
    finally:
        torch.set_num_threads(threads)
