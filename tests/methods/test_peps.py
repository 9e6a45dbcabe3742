"""`method=peps`: PEPS Linear layers fitted to the weight or freshly initialized."""
from __future__ import annotations

import pytest

from tests.conftest import method_cfg, raises_one_line
from tnbench.methods import build_method

pytestmark = pytest.mark.usefixtures("one_thread")


def test_peps_decompose_fits_the_pretrained_weight(lenet):
    model = lenet()
    w = model.classifier[2].weight.detach().clone()
    reports = build_method(method_cfg("peps", bond_dim=6, fit_steps=150, layers=["classifier.2"])).compress(model)
    assert reports[0].relative_error == pytest.approx(reports[0].extra["fit_relative_error"], rel=1e-2)
    # a random 84 x 120 weight is far from any small PEPS; the fit still beats the zero weight
    assert reports[0].relative_error < 0.95
    assert reports[0].extra["norm"] < float(w.norm())  # a least-squares fit only shrinks


def test_fresh_init_reaches_the_target_norm_and_gaussian_does_not(check_fresh_init):
    check_fresh_init("peps")


@pytest.mark.parametrize("name,kw,match", [
    ("peps", {"num_cores": 3}, r"method.num_cores \(3\) must be a multiple of method.grid_rows"),
])
def test_bad_settings_are_one_line_config_errors(name, kw, match, lenet):
    with raises_one_line(match):
        build_method(method_cfg(name, **kw)).compress(lenet())
