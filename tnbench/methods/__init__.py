"""Compression methods: one module per `method=` option (file name = conf/method/ name), each
registering its `Method` subclass with `@METHODS.register(name)`. The registry imports every
module of this package on first use; shared code is in `base` and `families/`. Methods from
outside the package: a `_target_` in the method's config, or an entry point in the
`tnbench.methods` group of an installed distribution (tnbench.registry)."""
from __future__ import annotations

from typing import Any

from tnbench.methods.base import LayerReport, Method
from tnbench.registry import Registry

METHODS: Registry[type[Method]] = Registry(
    "method", "tnbench.methods", entry_points="tnbench.methods",
    accepts=lambda obj: isinstance(obj, type) and issubclass(obj, Method), kind="a tnbench Method subclass")


def build_method(cfg: Any) -> Method:
    return METHODS.resolve(cfg)(cfg)


__all__ = ["METHODS", "LayerReport", "Method", "build_method"]
