"""Tucker-format layers: a core and one factor matrix per factored mode, run as small layers.

Modes are named `out`, `in` (and for convolutions `kh`, `kw`); each factored mode has a
factor `u_<mode>` (mode size x rank) and the core keeps that mode at the rank, the other
modes whole. The math (HOSVD, reconstruction) is in tnbench.functional.tucker; these modules only
own parameters and run the forward pass without ever forming the dense kernel:

- `TuckerConv2d`: 1x1 (IN -> r_in), the core conv (r_in -> r_out, KHxKW, with spatial factors
  folded into its kernel, the original stride/padding/dilation), 1x1 (r_out -> OUT) + bias.
- `TuckerLinear`: the two-mode case, y = U_out C U_in^T x + b as three small matmuls.
- `USVConv2d`: the matrix view used by DLRT, W_(OUT x IN*KH*KW) = U S V^T: a KHxKW conv to
  r_in channels with kernel V^T, then a 1x1 conv with U S.

All three expose the same small interface (`modes`, `factor(mode)`, `axis(mode)`,
`mode_size(mode)`, `core`) that the rank-adaptive integrator works on.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tnbench.functional import cost
from tnbench.functional.conv import padded_conv2d, pointwise
from tnbench.functional.tucker import hosvd, tucker_to_tensor
from tnbench.layers.implementation import CostSwitch

CONV_MODES = ("out", "in", "kh", "kw")
LINEAR_MODES = ("out", "in")


def set_param(param: nn.Parameter, value: Tensor) -> None:
    """Give `param` new values of any shape, keeping the Parameter object (and with it an
    optimizer's param_groups and state keys). PyTorch caches a leaf's gradient accumulator
    with the shape it had, and `.data = ...` only drops that cache when the dtype or device
    changes: a graph still alive from an earlier step (a kept loss tensor) would otherwise
    make the next backward fail on the old shape. A dtype round trip drops the cache."""
    value = value.detach().contiguous()
    if value.shape != param.shape:
        other = torch.float64 if value.dtype != torch.float64 else torch.float32
        param.data = value.to(other)
    param.data = value
    param.grad = None


class TuckerLayer(CostSwitch):
    """What the Tucker layers share: a core, factors `u_<mode>`, and bookkeeping."""

    mode_names: tuple[str, ...] = ()
    core: nn.Parameter
    bias: nn.Parameter | None

    def _init_factors(self, shape: tuple[int, ...], ranks: Mapping[str, int]) -> None:
        unknown = [m for m in ranks if m not in self.mode_names]
        if unknown:
            raise ValueError(f"unknown mode(s) {', '.join(unknown)}; allowed: {', '.join(self.mode_names)}")
        self.shape = tuple(shape)
        self.modes = tuple(m for m in self.mode_names if m in ranks)
        core_shape = [ranks.get(m, n) for m, n in zip(self.mode_names, shape)]
        self.core = nn.Parameter(torch.zeros(core_shape))
        for m in self.modes:
            self.register_parameter(f"u_{m}", nn.Parameter(torch.zeros(self.mode_size(m), ranks[m])))

    def axis(self, mode: str) -> int:
        return self.mode_names.index(mode)

    def mode_size(self, mode: str) -> int:
        return self.shape[self.axis(mode)]

    def factor(self, mode: str) -> nn.Parameter:
        return getattr(self, f"u_{mode}")

    def factors(self) -> dict[int, Tensor]:
        return {self.axis(m): self.factor(m) for m in self.modes}

    def ranks(self) -> list[int]:
        """Current rank of each factored mode, in mode order."""
        return [self.factor(m).shape[1] for m in self.modes]

    def weight_params(self) -> int:
        return self.core.numel() + sum(self.factor(m).numel() for m in self.modes)

    def dense_params(self) -> int:
        return int(torch.Size(self.shape).numel())

    def _load_decomposition(self, core: Tensor, factors: Mapping[int, Tensor], bias: Tensor | None) -> None:
        with torch.no_grad():
            self.core.data = core.contiguous()
            for m in self.modes:
                self.factor(m).data = factors[self.axis(m)].contiguous()
            if self.bias is not None and bias is not None:
                self.bias.copy_(bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        """Ranks may differ from the saved ones (adapted in training): take the saved shapes
        first, so loading a checkpoint of an adapted layer into a freshly factored one works."""
        for name in ("core", *(f"u_{m}" for m in self.modes)):
            saved = state_dict.get(prefix + name)
            param = getattr(self, name)
            if saved is not None and saved.shape != param.shape:
                set_param(param, param.new_zeros(saved.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _tucker_weight(self) -> Tensor:
        """The dense tensor in the layer's own mode order (for checks and reports only)."""
        return tucker_to_tensor(self.core, self.factors())

    def extra_repr(self) -> str:
        ranks = ", ".join(f"{m}={r}" for m, r in zip(self.modes, self.ranks()))
        return f"shape={list(self.shape)}, ranks=({ranks})"


def _mode_ranks(ranks: Mapping[str, int] | Iterable[int] | int, modes: tuple[str, ...]) -> dict[str, int]:
    if isinstance(ranks, Mapping):
        return dict(ranks)
    if isinstance(ranks, int):
        return {m: ranks for m in modes}
    ranks = list(ranks)
    if len(ranks) != len(modes):
        raise ValueError(f"{len(ranks)} ranks given for {len(modes)} modes ({', '.join(modes)})")
    return dict(zip(modes, ranks))


class TuckerConv2d(TuckerLayer):
    """A Conv2d whose kernel (OUT x IN x KH x KW) is held in partial Tucker format."""

    mode_names = CONV_MODES

    def __init__(self, conv: nn.Conv2d, ranks: Mapping[str, int] | Iterable[int] | int,
                 modes: tuple[str, ...] = ("out", "in")) -> None:
        super().__init__()
        if conv.groups != 1:
            raise ValueError("TuckerConv2d supports groups=1 convolutions only")
        self._init_factors(tuple(conv.weight.shape), _mode_ranks(ranks, modes))
        self.stride, self.dilation = conv.stride, conv.dilation
        self.padding, self.padding_mode = conv.padding, conv.padding_mode
        # F.pad takes (left, right, top, bottom); only used for non-zero padding modes
        self._pad = [p for p in reversed(conv.padding) for _ in range(2)] if not isinstance(conv.padding, str) else None
        self.bias = nn.Parameter(torch.zeros(conv.out_channels)) if conv.bias is not None else None

    @classmethod
    def from_dense(cls, conv: nn.Conv2d, ranks: Mapping[str, int] | Iterable[int] | int,
                   modes: tuple[str, ...] = ("out", "in"), pairs: Mapping[int, tuple[Tensor, Tensor]] | None = None
                   ) -> tuple[TuckerConv2d, dict[str, Tensor]]:
        """Truncated HOSVD of `conv`'s kernel on the given modes (`pairs`: hosvd's); returns the
        layer and each mode's unfolding spectrum."""
        w = conv.weight.detach()
        by_mode = _mode_ranks(ranks, modes)
        by_mode = {m: min(r, w.shape[CONV_MODES.index(m)]) for m, r in by_mode.items()}
        new = cls(conv, by_mode).to(device=w.device, dtype=w.dtype)
        core, factors, spectra = hosvd(w, {new.axis(m): r for m, r in by_mode.items()}, pairs)
        new._load_decomposition(core, factors, conv.bias.detach() if conv.bias is not None else None)
        return new, {m: spectra[new.axis(m)] for m in new.modes}

    def core_kernel(self) -> Tensor:
        """The core conv's kernel (r_out x r_in x KH x KW): spatial factors folded in."""
        spatial = {self.axis(m): self.factor(m) for m in ("kh", "kw") if m in self.modes}
        return tucker_to_tensor(self.core, spatial) if spatial else self.core

    def dense_weight(self) -> Tensor:
        return self._tucker_weight()

    def dense_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        return padded_conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.padding_mode)

    def implementation_costs(self, x_shape: tuple[int, ...]) -> cost.Costs:
        ranks = {m: self.factor(m).shape[1] for m in self.modes}
        return cost.tucker_conv(x_shape[0], x_shape[2:], self.shape, ranks, self.stride, self.padding, self.dilation)

    def factorized_forward(self, x: Tensor) -> Tensor:
        if "in" in self.modes:
            x = pointwise(x, self.u_in.t())
        bias_last = "out" in self.modes
        kernel = self.core_kernel()
        if self.padding_mode != "zeros":
            x = F.pad(x, self._pad, mode=self.padding_mode)
            padding = 0
        else:
            padding = self.padding
        x = F.conv2d(x, kernel, None if bias_last else self.bias, self.stride, padding, self.dilation)
        if bias_last:
            x = pointwise(x, self.u_out, self.bias)
        return x


class TuckerLinear(TuckerLayer):
    """A Linear whose weight (OUT x IN) is U_out C U_in^T: three small matmuls."""

    mode_names = LINEAR_MODES

    def __init__(self, linear: nn.Linear, ranks: Mapping[str, int] | Iterable[int] | int,
                 modes: tuple[str, ...] = LINEAR_MODES) -> None:
        super().__init__()
        self._init_factors(tuple(linear.weight.shape), _mode_ranks(ranks, modes))
        self.bias = nn.Parameter(torch.zeros(linear.out_features)) if linear.bias is not None else None

    @classmethod
    def from_dense(cls, linear: nn.Linear, ranks: Mapping[str, int] | Iterable[int] | int,
                   modes: tuple[str, ...] = LINEAR_MODES, pairs: Mapping[int, tuple[Tensor, Tensor]] | None = None
                   ) -> tuple[TuckerLinear, dict[str, Tensor]]:
        w = linear.weight.detach()
        by_mode = _mode_ranks(ranks, modes)
        by_mode = {m: min(r, w.shape[LINEAR_MODES.index(m)]) for m, r in by_mode.items()}
        new = cls(linear, by_mode).to(device=w.device, dtype=w.dtype)
        core, factors, spectra = hosvd(w, {new.axis(m): r for m, r in by_mode.items()}, pairs)
        new._load_decomposition(core, factors, linear.bias.detach() if linear.bias is not None else None)
        return new, {m: spectra[new.axis(m)] for m in new.modes}

    def dense_weight(self) -> Tensor:
        return self._tucker_weight()

    def dense_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight, self.bias)

    def implementation_costs(self, x_shape: tuple[int, ...]) -> cost.Costs:
        ranks = {m: self.factor(m).shape[1] for m in self.modes}
        return cost.tucker_linear(math.prod(x_shape[:-1]), self.shape[1], self.shape[0], ranks)

    def factorized_forward(self, x: Tensor) -> Tensor:
        if "in" in self.modes:
            x = x @ self.u_in
        if "out" in self.modes:
            return F.linear(x @ self.core.t(), self.u_out, self.bias)
        return F.linear(x, self.core, self.bias)


class USVConv2d(TuckerLayer):
    """A Conv2d whose matricized kernel OUT x (IN*KH*KW) is U S V^T (DLRT's convolution).

    Modes: `out` (U, OUT x r_out) and `in`, the whole IN*KH*KW side (V); the core S is
    r_out x r_in. Forward: a KHxKW conv with kernel V^T to r_in channels, then a 1x1 conv
    with U S (+ bias)."""

    mode_names = LINEAR_MODES

    def __init__(self, conv: nn.Conv2d, ranks: Mapping[str, int] | Iterable[int] | int) -> None:
        super().__init__()
        if conv.groups != 1:
            raise ValueError("USVConv2d supports groups=1 convolutions only")
        w = conv.weight
        self.kernel_shape = tuple(w.shape[1:])
        self._init_factors((w.shape[0], w[0].numel()), _mode_ranks(ranks, LINEAR_MODES))
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.padding_mode = conv.padding_mode
        self._pad = [p for p in reversed(conv.padding) for _ in range(2)] if not isinstance(conv.padding, str) else None
        self.bias = nn.Parameter(torch.zeros(conv.out_channels)) if conv.bias is not None else None

    @classmethod
    def from_dense(cls, conv: nn.Conv2d, rank: int, pairs: Mapping[int, tuple[Tensor, Tensor]] | None = None
                   ) -> tuple[USVConv2d, Tensor]:
        """Truncated SVD of the matricized kernel (`pairs`: hosvd's); returns the layer and its
        spectrum."""
        w = conv.weight.detach()
        matrix = w.reshape(w.shape[0], -1)
        r = min(rank, *matrix.shape)
        new = cls(conv, r).to(device=w.device, dtype=w.dtype)
        core, factors, spectra = hosvd(matrix, {0: r, 1: r}, pairs)
        new._load_decomposition(core, factors, conv.bias.detach() if conv.bias is not None else None)
        return new, spectra[0]

    def dense_weight(self) -> Tensor:
        return self._tucker_weight().reshape(self.shape[0], *self.kernel_shape)

    def dense_forward(self, x: Tensor, weight: Tensor) -> Tensor:
        return padded_conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.padding_mode)

    def implementation_costs(self, x_shape: tuple[int, ...]) -> cost.Costs:
        return cost.usv_conv(x_shape[0], x_shape[2:], (self.shape[0], *self.kernel_shape), self.u_out.shape[1],
                             self.u_in.shape[1], self.stride, self.padding, self.dilation)

    def factorized_forward(self, x: Tensor) -> Tensor:
        kernel = self.u_in.t().reshape(-1, *self.kernel_shape)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._pad, mode=self.padding_mode)
            padding = 0
        else:
            padding = self.padding
        x = F.conv2d(x, kernel, None, self.stride, padding, self.dilation)
        return pointwise(x, self.u_out @ self.core, self.bias)

