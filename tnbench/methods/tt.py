"""`method=tt`: Linear -> TTLinear (TT-matrix), Conv2d -> TTConv2d (TT-matrix over the channels
with the spatial kernel as one more node), from the TT-SVD of the pretrained weights or a fresh
partial-norm initialization (arXiv 2309.06577); see tnbench.methods.families.tensorized."""
from __future__ import annotations

from tnbench.methods import METHODS
from tnbench.methods.families.tensorized import TensorizedMethod, TTConfig


@METHODS.register("tt")
class TTMethod(TensorizedMethod):
    config_class = TTConfig
