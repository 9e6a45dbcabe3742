"""Compression methods: one module each, registered by name (the `method=` config group)."""
from __future__ import annotations

from typing import Any

from tnbench.methods.base import LayerReport, Method
from tnbench.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")

from tnbench.methods import dense, dlrt, svd, tucker, tucker_adaptive, truncation, cp, adtn, tensorized  # noqa: E402,F401  (register themselves)


def build_method(cfg: Any) -> Method:
    return METHODS.get(cfg.name)(cfg)


__all__ = ["METHODS", "LayerReport", "Method", "build_method"]
