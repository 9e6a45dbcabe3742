"""The report's figures from a runs table: measured speedup against FLOP reduction."""
from __future__ import annotations

import matplotlib.image
import pandas as pd

from tnbench.reporting.plots import speedup_vs_flops


def test_speedup_is_plotted_against_flop_reduction_per_model(tmp_path):
    runs = pd.DataFrame({
        "dataset": ["synthetic"] * 3 + ["cifar10"], "model": ["lenet5"] * 3 + ["vgg16"],
        "method": ["svd", "tucker", "mpo", "svd"], "flops_ratio": [1.6, 3.0, 2.0, 4.0],
        "speedup_measured": [0.97, 2.1, 0.6, 3.2], "speed_device": ["cpu"] * 4, "speed_threads": [1, 1, 1, 2]})
    figures = speedup_vs_flops(runs, tmp_path)
    assert [f.title for f in figures] == ["vgg16 / cifar10", "lenet5 / synthetic"]
    for f in figures:
        assert matplotlib.image.imread(tmp_path / f.path).shape[0] > 300
    untimed = runs.assign(speedup_measured=None)
    (note,) = speedup_vs_flops(untimed, tmp_path)
    assert note.path is None and "trainer.measure_speed" in note.note
