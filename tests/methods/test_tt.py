"""`method=tt`: tensor-train layers, fresh initializations, factor overrides."""
from __future__ import annotations

import pytest

from tests.conftest import compose, method_cfg, raises_one_line
from tnbench.functional.factorize import balanced_factors
from tnbench.methods import build_method

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fresh_init_reaches_the_target_norm_and_gaussian_does_not(check_fresh_init):
    check_fresh_init("tt")


@pytest.mark.parametrize("name,kw,match", [
    ("tt", {"rank": 0}, "method.rank must be >= 1 or null, got 0"),
])
def test_bad_settings_are_one_line_config_errors(name, kw, match, lenet):
    with raises_one_line(match):
        build_method(method_cfg(name, **kw)).compress(lenet())


def test_factor_override_composes_from_the_command_line(lenet):
    cfg = compose(["method=tt", "method.factors={classifier.0:{out:[4,5,6],in:[4,10,10]}}", "method.init=log_norm"])
    model = lenet()
    build_method(cfg.method).compress(model)
    assert (model.classifier[0].out_factors, model.classifier[0].in_factors) == ([4, 5, 6], [4, 10, 10])
    assert model.classifier[2].out_factors == balanced_factors(84, 3)
