"""The dataset registry (tnbench.data): names."""
from __future__ import annotations

import pytest

from tnbench.data import DATASETS, load_data
from tnbench.errors import UnknownEntry


def test_unknown_dataset_lists_allowed_names():
    with pytest.raises(UnknownEntry) as info:
        load_data("imagenet", "/nonexistent")
    msg = str(info.value)
    assert "\n" not in msg and "imagenet" in msg
    for name in ("mnist", "fashion_mnist", "cifar10", "cifar100", "synthetic"):
        assert name in msg and name in DATASETS
