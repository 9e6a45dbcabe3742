"""Budgets (tnbench.pipeline.budget): every method with a size knob lands on the asked ratio on
LeNet-5 and VGG-16 without training; bad budgets are one-line errors before any work."""
from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import compose, method_cfg, raises_one_line, run_in_process
from tnbench.methods import METHODS
from tnbench.methods.base import Knob
from tnbench.models import build_model
from tnbench.pipeline.budget import Target, search, sizer
from tnbench.pipeline.checks import check
from tnbench.pipeline.metrics import count_params

KNOBBED = sorted(n for n in METHODS.names() if METHODS.get(n).knob is not None)
GEOMETRY = {"lenet5": (1, 28, 10), "vgg16": (3, 32, 10)}
# A method that compresses only convs (cp, svd_truncation by default) cannot shrink LeNet-5 (96% of
# its parameters are Linear) below 1.04x, nor one that compresses only Linear layers (mpo, peps) VGG-16.
OUT_OF_REACH = {("cp", "lenet5"), ("svd_truncation", "lenet5"), ("mpo", "vgg16"), ("peps", "vgg16")}
# Methods whose size follows the weights' singular values (norm loss): sized on real (randomly
# initialised) weights. The rank-adaptive methods' default knob, their rank cap, sizes from shapes.
BY_VALUES = {"svd_truncation"}
# tucker_adaptive's r_max 100 caps VGG-16's 256/512-channel modes: even a cap of every full mode
# compresses it 7.55x, so 4x is missed, on the knob's granularity note.
CAPPED = {("tucker_adaptive", "vgg16", 4): "rank_cap=1 gives 7.55x"}


def model_of(name: str, meta: bool) -> torch.nn.Module:
    c, size, classes = GEOMETRY[name]
    torch.manual_seed(0)
    with torch.device("meta" if meta else "cpu"):
        return build_model(name, in_channels=c, image_size=size, num_classes=classes)


def test_every_size_knob_is_declared() -> None:
    assert {"svd", "tucker", "cp", "mpo", "tt", "peps", "adtn", "adqc", "svd_truncation", "dlrt",
            "tucker_adaptive"} <= set(KNOBBED)
    for name in KNOBBED:
        knob = METHODS.get(name).knob
        assert knob.option in {f for f in METHODS.get(name).config_class.__dataclass_fields__}
        assert knob.kind in (int, float) and knob.granularity


@pytest.mark.parametrize("model", ["lenet5", "vgg16"])
@pytest.mark.parametrize("method", KNOBBED)
def test_budget_4x_and_8x_land_within_5_percent(method: str, model: str) -> None:
    net = model_of(model, meta=method not in BY_VALUES)
    cfg = OmegaConf.create({"method": method_cfg(method, fit_steps=1) if "fit_steps" in
                            METHODS.get(method).config_class.__dataclass_fields__ else method_cfg(method)})
    knob = METHODS.get(method).knob
    for ratio in (4, 8):
        target = Target("ratio", ratio, 0.05, count_params(net))
        if (method, model) in OUT_OF_REACH:
            with raises_one_line(rf"budget.ratio={ratio} is out of reach for method={method}: .*allowed: "
                                 r"budget.ratio <= 1.0\d"):
                search(knob, sizer(cfg, knob, net, "ratio", None), target, method)
            continue
        found = search(knob, sizer(cfg, knob, net, "ratio", None), target, method)
        if (method, model, ratio) in CAPPED:
            assert not found.within and CAPPED[method, model, ratio] in found.note, found.note
            continue
        assert found.within and found.reached == pytest.approx(ratio, rel=0.05), (found, found.note)


@pytest.mark.parametrize("method", ["dlrt", "tucker_adaptive"])
def test_rank_adaptive_budget_by_tau_lands_on_lenet5(method: str) -> None:
    """`method.budget_knob=tau` searches the tolerance instead of the cap: sized from the real
    weights' spectra (no size on the meta device), landing 4x and 8x within 5%."""
    net = model_of("lenet5", meta=False)
    section = method_cfg(method, budget_knob="tau")
    knob = METHODS.get(method).knob_for(section)
    assert (knob.option, knob.sets) == ("tau", (("rank_init", "tau"),))
    assert sizer(OmegaConf.create({"method": section}), knob, model_of("lenet5", meta=True), "ratio", None,
                 hint_only=True)(0.5) is None
    for ratio in (4, 8):
        found = search(knob, sizer(OmegaConf.create({"method": section}), knob, net, "ratio", None),
                       Target("ratio", ratio, 0.05, count_params(net)), method)
        assert found.within and found.reached == pytest.approx(ratio, rel=0.05), found


def test_norm_loss_budget_reads_the_real_weights_and_leaves_them() -> None:
    """svd_truncation's size depends on the weights' singular values."""
    net = model_of("lenet5", meta=False)
    cfg = OmegaConf.create({"method": method_cfg("svd_truncation", include_linear=True)})
    knob = METHODS.get("svd_truncation").knob
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for ratio in (4, 8):
        found = search(knob, sizer(cfg, knob, net, "ratio", None), Target("ratio", ratio, 0.05, count_params(net)))
        assert found.within and 0 < found.value < 1, found
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the model itself is untouched


def test_flops_budget() -> None:
    net = model_of("lenet5", meta=False)
    from tnbench.pipeline.metrics import count_flops

    dense = count_flops(net, (1, 28, 28))["total"]
    cfg = OmegaConf.create({"method": method_cfg("svd", layers="all")})
    knob = METHODS.get("svd").knob
    found = search(knob, sizer(cfg, knob, net, "flops", (1, 28, 28)), Target("flops", dense / 2, 0.05, count_params(net)))
    assert found.reached == pytest.approx(dense / 2, rel=0.05)


def test_a_flops_budget_compresses_copies_that_share_each_layers_svd(decompositions) -> None:
    """A FLOP budget compresses a copy at every rank it tries; the copies take the layers'
    decompositions from the model's (methods.base.copy_model), so each layer's SVD is computed once."""
    net = model_of("lenet5", meta=False)
    cfg = OmegaConf.create({"method": method_cfg("svd", layers="all")})
    knob = METHODS.get("svd").knob
    size = sizer(cfg, knob, net, "flops", (1, 28, 28))
    sizes = [size(rank) for rank in (1, 2, 4, 8)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert decompositions == {"svd": 5}  # LeNet-5's 5 layers, once each


def test_search_states_the_granularity_when_a_step_jumps_over_the_budget() -> None:
    knob = Knob("rank", int, 1, granularity="one rank step")
    sizes = {r: 1000 * r for r in range(1, 100)}
    found = search(knob, lambda r: sizes[min(r, 99)], Target("params", 2500, 0.05, 100_000))
    assert found.value in (2, 3) and not found.within
    assert "one rank step" in found.note and "rank=2 gives 2,000 params" in found.note
    exact = search(knob, lambda r: sizes[min(r, 99)], Target("params", 3000, 0.05, 100_000))
    assert exact.value == 3 and exact.within and exact.note == ""


def test_search_walks_a_knob_that_shrinks_the_model() -> None:
    knob = Knob("norm_loss", float, 0.0, 0.999, more_params=False, granularity="continuous")
    found = search(knob, lambda x: int(10_000 * (1 - x)) + 1, Target("ratio", 4, 0.05, 10_000))
    assert found.reached == pytest.approx(4, rel=0.05) and 0.7 < found.value < 0.8


def test_bad_budgets_are_one_line_errors_before_any_work() -> None:
    base = ["dataset=synthetic", "method=svd"]
    for extra, match in [
        (["budget.ratio=1"], r"budget.ratio must be > 1 or null, got 1"),
        (["budget.ratio=0.5"], r"budget.ratio must be > 1"),
        (["budget.ratio=4", "budget.params=1000"], r"set one of budget.ratio, budget.params or budget.flops"),
        (["budget.tolerance=0"], r"budget.tolerance must be in \(0, 1\)"),
        (["model=lenet5", "method=cp", "budget.ratio=4"], r"budget.ratio=4 is out of reach for method=cp"),
        (["method=none", "budget.ratio=4"], r"method=none has no size knob, so budget.ratio cannot apply.*allowed: "),
        (["budget.params=10"], r"budget.params=10 is out of reach for method=svd: .*allowed: budget.params >= "),
        # the rank cap sizes from shapes: rank 1 in every layer LeNet-5's dlrt compresses is 29x at most
        (["model=lenet5", "method=dlrt", "budget.ratio=50"], r"budget.ratio=50 is out of reach for method=dlrt: its "
         r"most compressing setting \(rank_cap=1e-06\) gives 29.\dx; allowed: budget.ratio <= 29.\d"),
    ]:
        with raises_one_line(match):
            check(compose([*base, *extra]))


def test_the_budget_is_part_of_the_run_key_not_of_the_pretrain_key() -> None:
    from tnbench.pipeline.identity import pretrain_key

    cfgs = [compose(["method=svd", *extra]) for extra in ([], ["budget.ratio=4"], ["budget.ratio=8"])]
    assert len({c.run_id for c in cfgs}) == 3
    assert len({pretrain_key(c) for c in cfgs}) == 1


def test_a_run_with_a_budget_records_asked_reached_and_the_knob(tmp_path) -> None:
    rec = run_in_process(tmp_path, "model=lenet5", "method=svd", "budget.ratio=4", "logger=none")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["budget_kind"] == "ratio" and rec["budget_asked"] == 4
    assert rec["budget_reached"] == pytest.approx(rec["compression_ratio"])
    assert rec["compression_ratio"] == pytest.approx(4, rel=0.05)
    assert set(rec["budget_knob"]) == {"rank"} and all(r["ranks"] in ([rec["budget_knob"]["rank"]], [])
                                                        or not r["compressed"] for r in rec["layers"])
    assert rec["budget_search"]["within"] and rec["budget_search"]["evaluations"]
