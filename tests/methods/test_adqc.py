"""`method=adqc`: ADTN with orthogonal gates."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pipeline_record_counts_the_gates(check_gate_record):
    check_gate_record("adqc")
