"""`method=adqc`: ADQC (arXiv 2305.06058), ADTN with orthogonal gates.

Each gate is exp of a skew-symmetric 4x4 matrix (6 free numbers), so gates are rotations in
SO(4): reflections (determinant -1) are out of reach, which a learned sign cannot fix since
the scale is one number per group. A unitary circuit preserves the norm, so the learned
scale carries the output's norm. Everything else as `method=adtn`
(tnbench.methods.families.brickwall).
"""
from __future__ import annotations

from dataclasses import dataclass

from tnbench.methods import METHODS
from tnbench.methods.families.brickwall import ADTNConfig, BrickWallMethod


@dataclass
class ADQCConfig(ADTNConfig):
    name: str = "adqc"


@METHODS.register("adqc")
class ADQC(BrickWallMethod):
    config_class = ADQCConfig
    orthogonal = True
