"""`method=mpo`: Linear -> TTLinear only; convolutions stay dense. The same layer as `tt` (an MPO
*is* a TT-matrix), kept as a name for papers that say MPO and compress the FC part
(tnbench.methods.families.tensorized)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tnbench.methods import METHODS
from tnbench.methods.families.tensorized import TensorizedMethod, TTConfig


@dataclass
class MPOConfig(TTConfig):
    name: str = "mpo"


@METHODS.register("mpo")
class MPOMethod(TensorizedMethod):
    config_class = MPOConfig
    handles = (nn.Linear,)
