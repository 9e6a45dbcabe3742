"""The architecture spec: what it says about each swapped layer (the ranks it has now, not the
ones it started with) and the model rebuilt from it."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from tnbench.artifacts.spec import LAYERS, UnsupportedModel, describe, rebuild
from tnbench.artifacts.store import build, model_preset, model_spec, save
from tnbench.layers.tucker import TuckerConv2d, set_param
from tnbench.models import build_model


def lenet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("lenet5", in_channels=1, image_size=28, num_classes=10)


def test_the_spec_keeps_the_ranks_a_layer_reached_not_its_starting_ones():
    model = lenet()
    layer, _ = TuckerConv2d.from_dense(model.features[3], {"out": 8, "in": 4})
    model.features[3] = layer
    with torch.no_grad():  # what the rank-adaptive integrator does: new shapes, same Parameter objects
        set_param(layer.u_out, layer.u_out[:, :5])
        set_param(layer.core, layer.core[:5])
    spec = describe(model)
    entry = spec["layers"]["features.3"]
    assert entry["class"] == "TuckerConv2d" and entry["args"] == {"ranks": {"out": 5, "in": 4}}
    assert entry["shapes"]["core"] == [5, 4, 5, 5] and entry["shapes"]["u_out"] == [16, 5]
    json.dumps(spec)  # plain JSON
    rebuilt = rebuild(lenet(), json.loads(json.dumps(spec)))
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(rebuilt(x), model(x))


def test_every_factorized_layer_class_of_tnbench_layers_can_be_described():
    import tnbench.layers.bipartition
    import tnbench.layers.cp
    import tnbench.layers.lowrank
    import tnbench.layers.tensorized
    import tnbench.layers.tucker  # noqa: F401  (every factorized layer class is defined)
    from tnbench.layers.implementation import CostSwitch

    def leaves(cls: type) -> set[type]:
        subs = cls.__subclasses__()
        return {cls} if not subs else {leaf for s in subs for leaf in leaves(s)}

    found = {c for c in leaves(CostSwitch) if c.__module__.startswith("tnbench.layers")}
    assert len(found) >= 10 and found <= set(LAYERS), f"no spec for {sorted(c.__name__ for c in found - set(LAYERS))}"


def test_a_layer_the_spec_cannot_rebuild_is_refused_before_anything_is_written(tmp_path):
    model = lenet()
    prune.l1_unstructured(model.classifier[0], "weight", amount=0.5)  # weight_orig + weight_mask
    preset = model_preset({"name": "lenet5", "options": {}}, 1, 28, 10)
    with pytest.raises(UnsupportedModel, match="does not rebuild"):
        save(model, tmp_path, preset)
    assert list(tmp_path.iterdir()) == []


def test_the_spec_rebuilds_the_preset_on_any_device_without_values():
    spec = model_spec(lenet(), model_preset({"name": "lenet5", "options": {}}, 1, 28, 10))
    assert spec["preset"] == {"name": "lenet5", "options": {}, "in_channels": 1, "image_size": 28, "num_classes": 10}
    assert spec["layers"] == {} and spec["generators"] == [] and spec["dtype"] == "float32"
    assert next(build(spec, "meta").parameters()).is_meta
