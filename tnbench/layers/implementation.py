"""How a factorized layer runs its forward pass: factorized, or through its rebuilt dense weight.

`CostSwitch` is the base of every factorized layer. Its `forward` asks the layer's cost model
(`implementation_costs`, built from tnbench.functional.cost) which form is cheaper for this
input shape and runs `factorized_forward(x)` or `dense_forward(x, weight)`. The choice is
cached per (input shape, device, parameter shapes, whether the dense weight is cached, whether
autograd is on: then the backward is priced too), so it
is made once per shape and is static for a given shape: torch.export / ONNX tracing sees one
branch.

At inference (eval mode, no autograd, not tracing) the rebuilt dense weight is cached and
reused until a parameter changes (in place, as an optimizer step or load_state_dict does, or
replaced); with it cached the reconstructed form costs only the dense op.

`layer.implementation` ("auto", "factorized", "reconstructed") pins a layer's choice;
`forced(name)` pins every layer's within a block (tests, and FLOP counting, which counts the
factorized form: `forced("factorized")` also bypasses the inference cache).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from tnbench.functional.cost import Costs, choose, machine_for

CHOICES = ("auto", "factorized", "reconstructed")
_forced: list[str] = []


@contextmanager
def forced(implementation: str) -> Iterator[None]:
    """Every CostSwitch layer runs `implementation` inside the block (no inference cache)."""
    if implementation not in CHOICES[1:]:
        raise ValueError(f"implementation must be one of {', '.join(CHOICES[1:])}; got {implementation!r}")
    _forced.append(implementation)
    try:
        yield
    finally:
        _forced.pop()


def tracing() -> bool:
    """Inside torch.compile / torch.export / jit tracing: nothing may be cached on the module."""
    return bool(torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing())


def parameters_of(module: nn.Module) -> list[nn.Parameter]:
    """`module`'s parameters, listed once: walking the module tree costs microseconds a pass,
    more than a small layer's whole forward at batch 1. Parameter objects outlive in-place
    updates, `.data` swaps and `.to()`; `forget` drops the list where they may be replaced."""
    plist = module.__dict__.get("_param_list")
    if plist is None:
        plist = list(module.parameters())
        if not tracing():  # export may stand fake tensors in for the parameters
            module.__dict__["_param_list"] = plist
    return plist


def parameter_state(module: nn.Module) -> tuple:
    """Changes whenever a parameter of `module` does: in-place updates bump `_version`,
    replacing `.data` changes the storage or the shape."""
    return tuple((p.data_ptr(), p._version, p.shape) for p in parameters_of(module))


def forget(module: nn.Module) -> None:
    """Drop what is cached on `module`: the parameter list, the dense weight, the choices."""
    for key in ("_param_list", "_weight_cache", "_choices"):
        module.__dict__.pop(key, None)


def may_cache(module: nn.Module) -> bool:
    """Whether this pass may cache a rebuilt weight: inference, not tracing, not forced."""
    return not (module.training or torch.is_grad_enabled() or _forced or tracing())


def cached(module: nn.Module, build) -> Tensor:  # noqa: ANN001
    """`build()`, reused between inference passes of `module` until one of its parameters changes."""
    if not may_cache(module):
        return build()
    state = parameter_state(module)
    cache = module.__dict__.get("_weight_cache")
    if cache is None or cache[0] != state:
        cache = (state, build())
        module.__dict__["_weight_cache"] = cache
    return cache[1]


def drop_cache(module: nn.Module) -> None:
    module.__dict__.pop("_weight_cache", None)


class Cached(nn.Module):
    """A module that caches things derived from its parameters (CostSwitch, the ADTN
    generator): what may swap its parameters or submodules forgets them."""

    def __setattr__(self, name: str, value) -> None:  # noqa: ANN001
        if isinstance(value, (nn.Parameter, nn.Module)):
            forget(self)
        super().__setattr__(name, value)

    def register_parameter(self, name: str, param) -> None:  # noqa: ANN001
        forget(self)
        super().register_parameter(name, param)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202
        forget(self)
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True):  # noqa: ANN201
        drop_cache(self)  # no stale dense copy held through training
        return super().train(mode)


class CostSwitch(Cached):
    """Base of the factorized layers; subclasses define `factorized_forward`, `dense_forward`,
    `dense_weight` and `implementation_costs`."""

    implementation: str = "auto"

    def factorized_forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def dense_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        """The dense layer's op on `weight` (bias and layer options included)."""
        raise NotImplementedError

    def dense_weight(self) -> Tensor:
        raise NotImplementedError

    def implementation_costs(self, x_shape: tuple[int, ...]) -> Costs:
        raise NotImplementedError

    def chosen_implementation(self, x: Tensor) -> str:
        if _forced:
            return _forced[-1]
        if self.implementation != "auto":
            if self.implementation not in CHOICES:
                raise ValueError(f"implementation must be one of {', '.join(CHOICES)}; got {self.implementation!r}")
            return self.implementation
        cached, training = may_cache(self), torch.is_grad_enabled()
        key = (x.shape, x.device.type, cached, training, tuple(p.shape for p in parameters_of(self)))
        table = self.__dict__.setdefault("_choices", {})
        if key not in table:
            table[key] = choose(self.implementation_costs(tuple(x.shape)), machine_for(x.device.type), cached,
                                training)
        return table[key]

    def inference_weight(self) -> Tensor:
        """The dense weight; cached between inference passes until a parameter changes."""
        return cached(self, self.dense_weight)

    def forward(self, x: Tensor) -> Tensor:
        if self.chosen_implementation(x) == "factorized":
            return self.factorized_forward(x)
        return self.dense_forward(x, self.inference_weight())
