"""Model zoo: every network the benchmark compresses, looked up by name.

Builders take the dataset geometry (``in_channels``, ``image_size``,
``num_classes``) as keyword arguments so one model name works for MNIST-like
(1x28x28) and CIFAR-like (3x32x32) data alike; model-specific knobs come as
extra keyword options and are validated up front so a bad config fails with a
one-line ``ConfigError`` instead of a shape error deep inside training. Every module of this
package is imported by the registry on first use; a model registers itself with
``@MODELS.register(name)``. Models from outside the package: ``model._target_`` (a dotted
path to the builder) or an entry point in the ``tnbench.models`` group (tnbench.registry).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from tnbench.errors import ConfigError
from tnbench.registry import Registry

ModelBuilder = Callable[..., nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model", "tnbench.models", entry_points="tnbench.models",
                                          kind="a model builder (a callable returning an nn.Module)")

_GEOMETRY = ("in_channels", "image_size", "num_classes")


def require(condition: bool, message: str) -> None:
    """Raise a one-line ``ConfigError`` when a builder option is out of range."""
    if not condition:
        raise ConfigError(message)


def _check_options(name: str, builder: ModelBuilder, options: dict[str, Any]) -> None:
    """Reject unknown options as ``ConfigError`` (not ``TypeError``) naming the allowed ones."""
    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p in params if p not in _GEOMETRY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) or '(none)'}"
        )


def build_model(
    name: str, in_channels: int, image_size: int, num_classes: int, **options: Any
) -> nn.Module:
    """Build the model registered as ``name`` for the given input geometry and classes."""
    builder = MODELS.get(name)
    require(in_channels >= 1, f"in_channels must be >= 1, got {in_channels}")
    require(image_size >= 1, f"image_size must be >= 1, got {image_size}")
    require(num_classes >= 1, f"num_classes must be >= 1, got {num_classes}")
    _check_options(name, builder, options)
    return builder(
        in_channels=in_channels, image_size=image_size, num_classes=num_classes, **options
    )


__all__ = ["MODELS", "build_model"]
