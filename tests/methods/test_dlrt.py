"""`method=dlrt`: rank-adaptive matrix low-rank training."""
from __future__ import annotations

import pytest

from tests.conftest import LENET_LAYERS, method_cfg, raises_one_line
from tnbench.methods import build_method
from tnbench.models import build_model


@pytest.mark.parametrize("name,kw,match", [
    ("dlrt", {"tau": 1.5}, "method.tau must be in"),
    ("dlrt", {"r_min": 10, "r_max": 5}, "method.r_min .10. must be <= method.r_max"),
])
def test_bad_settings_are_one_line_config_errors(name, kw, match):
    with raises_one_line(match):
        method = build_method(method_cfg(name, layers=LENET_LAYERS[1:], **kw))
        method.compress(build_model("lenet5_dlrt", in_channels=1, image_size=28, num_classes=10))
