"""Factorized layers: modules that own parameters and call tnbench.functional for the math.

  lowrank      LowRankLinear, LowRankConv2d (W = A B)
  bipartition  BipartitionConv2d (a conv kernel truncated along one cut)
  cp           CPConv2d
  tucker       TuckerConv2d, TuckerLinear, USVConv2d (also the rank-adaptive layers)
  tensorized   TTLinear, TTConv2d, PEPSLinear
  brickwall    BrickWallGenerator and the parametrization that makes a layer's weight its output
"""
from tnbench.layers.lowrank import LowRankConv2d, LowRankLinear

__all__ = ["LowRankConv2d", "LowRankLinear"]
