"""Factorized layers: parameters live here, math lives in tnbench.linalg."""
from tnbench.layers.lowrank import LowRankConv2d, LowRankLinear

__all__ = ["LowRankConv2d", "LowRankLinear"]
