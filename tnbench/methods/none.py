"""`method=none`: the dense baseline. Nothing changes, so recovery is trivially 0 epochs."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tnbench.config import MethodConfig
from tnbench.methods import METHODS
from tnbench.methods.base import LayerReport, Method


@dataclass
class NoneConfig(MethodConfig):
    name: str = "none"


@METHODS.register("none")
class NoCompression(Method):
    config_class = NoneConfig
    ignores = ("rank", "layers")  # nothing is compressed

    def compress(self, model: nn.Module) -> list[LayerReport]:
        return []

    def check_model(self, model: nn.Module) -> None:
        """The dense baseline compresses nothing by design."""
