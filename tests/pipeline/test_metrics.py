"""Run metrics (tnbench.pipeline.metrics)."""
from __future__ import annotations

from tnbench.pipeline.metrics import recovery_epochs


def test_recovery_epochs_definition():
    assert recovery_epochs(90.0, 89.6, [], 0.5) == 0
    assert recovery_epochs(90.0, 50.0, [80.0, 89.5, 91.0], 0.5) == 2
    assert recovery_epochs(90.0, 50.0, [80.0, 89.4], 0.5) is None
