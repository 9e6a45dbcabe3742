"""Splitting a dimension into factors (tnbench.functional.factorize)."""
from __future__ import annotations

import math

import pytest

from tnbench.functional.factorize import balanced_factors, check_factors


def test_balanced_factors_are_even_and_multiply_to_the_size():
    assert balanced_factors(400, 3) == [10, 8, 5]
    assert balanced_factors(120, 3) == [6, 5, 4]
    assert balanced_factors(64, 3) == [4, 4, 4]
    assert balanced_factors(7, 3) == [7, 1, 1]  # a prime stays whole
    for n in (1, 84, 500, 1024, 4096, 3 * 5 * 7 * 11 * 13):
        for k in (1, 2, 3, 4, 6):
            assert math.prod(balanced_factors(n, k)) == n
    assert check_factors([4, 10, 10], 400, "x") == [4, 10, 10]
    with pytest.raises(ValueError, match=r"multiply to 300, not the layer size 400"):
        check_factors([3, 10, 10], 400, "x")
