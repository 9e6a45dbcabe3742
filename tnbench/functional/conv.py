"""Convolution helpers shared by the factorized forwards (bipartition, CP, Tucker)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d(x: Tensor, w: Tensor, *args, **kwargs) -> Tensor:
    """F.conv2d with the weight in the input's memory format: a contiguous weight on a
    channels-last input takes a slow mixed-layout path (several times slower on CPU)."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        w = w.contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, w, *args, **kwargs)


def padded_conv2d(x: Tensor, w: Tensor, bias: Tensor | None, stride, padding, dilation,
                  padding_mode: str = "zeros") -> Tensor:
    """`conv2d` with nn.Conv2d's padding modes: reflect/replicate/circular pad the input
    explicitly (F.conv2d itself only pads with zeros)."""
    if padding_mode != "zeros":
        x = F.pad(x, [p for p in reversed(pair(padding)) for _ in range(2)], mode=padding_mode)
        padding = 0
    return conv2d(x, w, bias, stride, padding, dilation)


def pointwise(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """A 1x1 convolution with an (out, in) matrix. Measured on CPU (oneDNN), a 1x1 conv on
    channels-last input beats a matmul on the permuted (N*H*W, C) view once the backward pass
    is counted, so this stays a conv; it never forms anything larger than the factor."""
    return F.conv2d(x, weight[:, :, None, None], bias)
