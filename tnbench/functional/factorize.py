"""Split a layer dimension into N factors (the physical legs of a tensorized layer)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache


def prime_factors(n: int) -> list[int]:
    out, d = [], 2
    while d * d <= n:
        while n % d == 0:
            out.append(d)
            n //= d
        d += 1
    if n > 1:
        out.append(n)
    return out


@lru_cache(maxsize=4096)
def _best_split(n: int, k: int, smallest: int) -> tuple[float, tuple[int, ...]]:
    """Non-decreasing k factors >= `smallest` of n minimizing the sum of squared logs
    (the most even split); (inf, ()) when none exists."""
    if k == 1:
        return (math.log(n) ** 2, (n,)) if n >= smallest else (math.inf, ())
    best: tuple[float, tuple[int, ...]] = (math.inf, ())
    d = smallest
    while d ** k <= n:
        if n % d == 0:
            cost, rest = _best_split(n // d, k - 1, d)
            cost += math.log(d) ** 2
            if cost < best[0]:
                best = (cost, (d, *rest))
        d += 1
    return best


def balanced_factors(n: int, k: int) -> list[int]:
    """`n` as a product of `k` factors, as even as its prime factorization allows, largest
    first; padded with 1s when n has fewer than k prime factors (a prime stays whole).

    >>> balanced_factors(400, 3), balanced_factors(120, 3), balanced_factors(7, 2)
    ([10, 8, 5], [6, 5, 4], [7, 1])
    """
    if n < 1 or k < 1:
        raise ValueError(f"need n >= 1 and k >= 1, got n={n}, k={k}")
    primes = prime_factors(n)
    if len(primes) <= k:
        return sorted(primes, reverse=True) + [1] * (k - len(primes))
    if n <= 10**7:
        return sorted(_best_split(n, k, 2)[1], reverse=True)
    bins = [1] * k  # large n: greedy, each prime (largest first) onto the smallest product
    for p in sorted(primes, reverse=True):
        bins[bins.index(min(bins))] *= p
    return sorted(bins, reverse=True)


def check_factors(factors: Sequence[int], size: int, what: str) -> list[int]:
    """The given factorization as ints, or ValueError (one line) if it does not multiply to `size`."""
    factors = [int(f) for f in factors]
    if not factors or any(f < 1 for f in factors):
        raise ValueError(f"{what} factors must be a non-empty list of integers >= 1, got {factors}")
    if math.prod(factors) != size:
        raise ValueError(f"{what} factors {factors} multiply to {math.prod(factors)}, not the layer size {size}")
    return factors
