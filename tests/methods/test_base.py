"""What every method shares (tnbench.methods.base): which layers a `method.layers` value selects,
and replace_module, which swaps a layer in the model's memory format."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import raises_one_line
from tnbench.layers.tucker import CONV_MODES
from tnbench.methods.base import check_modes, replace_module, select_conv_layers, select_layers
from tnbench.models import build_model

LENET5 = ["features.0", "features.3", "classifier.0", "classifier.2", "classifier.4"]


def lenet5() -> nn.Module:
    return build_model("lenet5", in_channels=1, image_size=28, num_classes=10)


def three_convs() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3), nn.Flatten(),
                         nn.LazyLinear(10))


def names(selected) -> list[str]:
    return [n for n, _ in selected]


def test_select_layers_presets_and_names():
    model = lenet5()
    assert names(select_layers(model, "all")) == LENET5
    assert names(select_layers(model, "all_but_first_last")) == LENET5[1:-1]  # input and classifier stay dense
    assert names(select_layers(model, ["classifier.2", "features.0"])) == ["classifier.2", "features.0"]  # as named
    assert names(select_layers(model, "features.3")) == ["features.3"]
    (name, layer), = select_layers(model, ["classifier.0"])
    assert layer is model.get_submodule(name)


@pytest.mark.parametrize("spec,match", [
    (["features.0", "conv9", "flatten"], "method.layers names unknown layer.s. conv9, flatten; allowed: all, "
                                         "all_but_first_last, or names among features.0, features.3, classifier.0"),
    ("middle", "method.layers names unknown layer.s. middle"),
    (3, "method.layers must be all, all_but_first_last or a list of names; got 3"),
])
def test_select_layers_rejects_what_is_not_a_layer_in_one_line(spec, match):
    with raises_one_line(match):
        select_layers(lenet5(), spec)


def test_conv_selection_depth_presets_and_linear_layers():
    model = three_convs()
    assert names(select_conv_layers(model, "shallow", include_linear=False)) == ["0", "2"]  # the middle conv too
    assert names(select_conv_layers(model, "deep", include_linear=False)) == ["3"]
    assert names(select_conv_layers(model, "all", include_linear=False)) == ["0", "2", "3"]
    assert names(select_conv_layers(model, "all", include_linear=True)) == ["0", "2", "3", "5"]
    assert names(select_conv_layers(model, "all_but_first_last", include_linear=False)) == ["2", "3"]
    assert names(select_conv_layers(model, ["5"], include_linear=False)) == ["5"]  # named: taken as named
    fc2 = build_model("fc2", in_channels=1, image_size=28, num_classes=10)
    with raises_one_line("method.layers=deep selects no conv layer in this model .0 convs."):
        select_conv_layers(fc2, "deep", include_linear=True)


def test_check_modes_orders_and_rejects():
    assert check_modes(["in", "out"], CONV_MODES, "method.modes") == ["out", "in"]
    for bad in (["out", "depth"], ["out", "out"], []):
        with raises_one_line("method.modes must be distinct names among out, in, kh, kw"):
            check_modes(bad, CONV_MODES, "method.modes")


@pytest.mark.parametrize("channels_last", [True, False])
def test_replace_module_puts_the_layer_in_place_in_the_models_memory_format(channels_last):
    torch.manual_seed(0)
    model = lenet5()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    new = nn.Conv2d(6, 16, 5)
    replace_module(model, "features.3", new)
    assert model.features[3] is new
    assert new.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert new.weight.is_contiguous() != channels_last
    replace_module(model, "classifier.0", lin := nn.Linear(400, 120))
    assert model.classifier[0] is lin
    x = torch.randn(2, 1, 28, 28)
    assert model(x.to(memory_format=torch.channels_last) if channels_last else x).shape == (2, 10)


SIZE_CASES = [("svd", {"rank": 3}), ("svd", {"rank": 40}), ("tucker", {"ranks": 0.2}), ("tucker", {"ranks": 0.9}),
              ("cp", {"rank": 2}), ("cp", {"rank": 40}), ("mpo", {"bond_dim": 2}), ("tt", {"bond_dim": 5}),
              ("peps", {"bond_dim": 3, "fit_steps": 1}), ("adtn", {"depth": 3, "fit_steps": 1}),
              ("adqc", {"depth": 5, "fit_steps": 1}), ("svd_truncation", {"norm_loss": 0.2, "include_linear": True}),
              ("svd_truncation", {"norm_loss": 0.05, "cut": "out_kh"}), ("dlrt", {"rank_init": "tau", "tau": 0.4}),
              ("dlrt", {"rank_init": "tau", "tau": 0.02, "rank_cap": "half"}),
              ("tucker_adaptive", {"rank_init": "tau", "tau": 0.3, "adaptive_modes": ["out", "in", "kh"]}),
              ("dlrt", {"rank_init": "cap", "rank_cap": 0.07}), ("dlrt", {"rank_init": 0.5, "rank_cap": 0.3}),
              ("tucker_adaptive", {"rank_init": "cap", "rank_cap": 0.05}),
              ("tucker_adaptive", {"rank_init": 12, "rank_cap": "half", "adaptive_modes": ["out", "in", "kh"]})]


@pytest.mark.parametrize("name,options", SIZE_CASES)
def test_size_hint_is_what_compress_gives(name: str, options: dict) -> None:
    """A budget's search trusts `size_hint` (sizes from shapes or singular values): it must be the
    parameter count the real compression ends with."""
    from tests.conftest import method_cfg
    from tnbench.methods import build_method

    torch.manual_seed(0)
    model = lenet5()
    method = build_method(method_cfg(name, layers="all", **options))
    hint = method.size_hint(model)
    method.compress(model)
    assert hint == sum(p.numel() for p in model.parameters())


def test_weight_memo_computes_once_until_the_weight_changes():
    """The per-layer memo the budget searches size layers from (singular values at many knob
    values): one computation per key while the weight is unchanged, a new one after any in-place
    write to it."""
    import torch
    from torch import nn

    from tnbench.methods.base import weight_memo

    layer, calls = nn.Linear(4, 3), []

    def norm(w):
        calls.append(1)
        return float(w.norm())

    first = weight_memo(layer, "norm", norm)
    assert weight_memo(layer, "norm", norm) == first and len(calls) == 1
    weight_memo(layer, "other", norm)
    assert len(calls) == 2  # keys are apart
    with torch.no_grad():
        layer.weight.mul_(2)
    assert weight_memo(layer, "norm", norm) == pytest.approx(2 * first) and len(calls) == 3
    # new data under the same Parameter (what Module.to does) and a new Parameter: the version
    # counter alone does not show either
    version = layer.weight._version
    layer.weight.data = 3 * layer.weight.data
    assert layer.weight._version == version
    assert weight_memo(layer, "norm", norm) == pytest.approx(6 * first) and len(calls) == 4
    layer.weight = nn.Parameter(torch.ones(3, 4))
    assert weight_memo(layer, "norm", norm) == pytest.approx(12 ** 0.5) and len(calls) == 5


def test_a_model_copy_shares_its_layers_weight_memo_until_either_weight_changes():
    """copy_model (a budget's search compresses copies): what a copy computes from a layer's
    weight is not computed again for the original or another copy; a write to either weight parts
    them, and forget_weight_memo drops a layer's values."""
    import torch
    from torch import nn

    from tnbench.methods.base import copy_model, forget_weight_memo, weight_memo

    model, calls = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), []

    def norm(w):
        calls.append(1)
        return float(w.norm())

    first, second = copy_model(model), copy_model(model)
    value = weight_memo(first[0], "norm", norm)
    assert weight_memo(model[0], "norm", norm) == weight_memo(second[0], "norm", norm) == value and len(calls) == 1
    weight_memo(second[2], "norm", norm)
    assert len(calls) == 2  # layers are apart
    with torch.no_grad():
        first[0].weight.mul_(2)
    assert weight_memo(first[0], "norm", norm) == pytest.approx(2 * value) and len(calls) == 3
    assert weight_memo(model[0], "norm", norm) == value and len(calls) == 3  # the original keeps its own
    forget_weight_memo(model[0])
    weight_memo(model[0], "norm", norm)
    assert len(calls) == 4
