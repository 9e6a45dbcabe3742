"""Bipartition truncation of conv kernels (arXiv 2403.14379): pure functions, tested against
dense reconstructions.

A kernel W (OUT x IN x KH x KW) has four modes. A *cut* splits them in two groups; `unfold`
permutes W so the row group comes first and reshapes it into a (rows x cols) matrix, whose
truncated SVD is the best approximation of W with that bipartition rank; `fold` undoes it.

Cuts (row group | column group):
  out     OUT | IN,KH,KW        in      IN | OUT,KH,KW
  kh      KH | OUT,IN,KW        kw      KW | OUT,IN,KH
  out_in  OUT,IN | KH,KW        out_kh  OUT,KH | IN,KW        out_kw  OUT,KW | IN,KH

Truncation targets: tnbench.functional.approximation (norm loss, relative error and the
ranks that meet them).

Every cut has an exact factorized forward, a chain of ordinary convolutions whose composed
kernel is the truncated W (`bipartition_conv2d`; the OUT cut is `LowRankConv2d`). With factors
L (rows x r) and R (r x cols):
  in      1x1 conv IN -> r (L^T), then the KHxKW conv r -> OUT (R) with the layer's stride,
          padding and dilation. A pointwise map commutes with zero padding, so this is exact.
  kh      depthwise KHx1 conv: each input channel -> r channels with the shared column L[:, k]
          (groups=IN, rows' stride/padding/dilation), then a 1xKW conv IN*r -> OUT (R, the
          columns' stride/padding/dilation).
  kw      the same with the roles of KH and KW swapped.
  out_in  depthwise KHxKW conv: each input channel -> r channels with the shared spatial
          filters R (all of stride/padding/dilation), then a 1x1 conv IN*r -> OUT (L).
  out_kh  1xKW conv IN -> r (R), then a KHx1 conv r -> OUT (L).
  out_kw  KHx1 conv IN -> r (R), then a 1xKW conv r -> OUT (L).
Splitting stride/padding/dilation per axis is exact because the first conv of each chain acts
on every row (or column) alone and has no bias: zero rows stay zero rows. The shared filters in
kh/kw/out_in are stored once (r*KH, r*KW, r*KH*KW numbers) and expanded per forward, so the
factorized parameter count is r * (rows + cols) for every cut.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from tnbench.functional.conv import conv2d, pair
from tnbench.functional.lowrank import truncated_svd

MODES = ("out", "in", "kh", "kw")

# cut -> (row modes, column modes), modes as axes of the OUT x IN x KH x KW kernel
CUTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "out": ((0,), (1, 2, 3)),
    "in": ((1,), (0, 2, 3)),
    "kh": ((2,), (0, 1, 3)),
    "kw": ((3,), (0, 1, 2)),
    "out_in": ((0, 1), (2, 3)),
    "out_kh": ((0, 2), (1, 3)),
    "out_kw": ((0, 3), (1, 2)),
}

def check_cut(cut: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    try:
        return CUTS[cut]
    except KeyError:
        raise ValueError(f"unknown cut {cut!r}; allowed: {', '.join(CUTS)}") from None


def matrix_shape(shape: tuple[int, ...], cut: str) -> tuple[int, int]:
    rows, cols = check_cut(cut)
    return math.prod(shape[i] for i in rows), math.prod(shape[i] for i in cols)


def unfold(weight: Tensor, cut: str) -> Tensor:
    """The kernel as a (row modes) x (column modes) matrix."""
    rows, cols = check_cut(cut)
    m, _ = matrix_shape(tuple(weight.shape), cut)
    return weight.permute(*rows, *cols).reshape(m, -1)


def fold(matrix: Tensor, cut: str, shape: tuple[int, ...]) -> Tensor:
    """Inverse of `unfold`: back to a kernel of `shape`."""
    rows, cols = check_cut(cut)
    order = rows + cols
    permuted = matrix.reshape([shape[i] for i in order])
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return permuted.permute(*inverse)


def spectrum(weight: Tensor, cut: str) -> Tensor:
    """Singular values (float64, descending) of the kernel's unfolding along `cut`."""
    return torch.linalg.svdvals(unfold(weight.detach().double(), cut))


def truncate(weight: Tensor, cut: str, rank: int) -> tuple[Tensor, Tensor, Tensor]:
    """Factors L (rows x r), R (r x cols) of the best bipartition-rank-`rank` approximation
    along `cut` (weight's dtype; singular values split evenly, tnbench.functional.lowrank), and the
    full spectrum in float64. r = min(rank, max rank)."""
    return truncated_svd(unfold(weight.detach(), cut), rank)


def truncated_kernel(weight: Tensor, cut: str, rank: int) -> Tensor:
    """The dense truncated kernel: fold(L @ R)."""
    left, right, _ = truncate(weight, cut, rank)
    return fold(left.double() @ right.double(), cut, tuple(weight.shape)).to(weight.dtype)


def factorized_params(shape: tuple[int, ...], cut: str, rank: int) -> int:
    """Weights of the factorized form (shared filters stored once): r * (rows + cols)."""
    m, n = matrix_shape(shape, cut)
    return min(rank, m, n) * (m + n)


def bipartition_conv2d(x: Tensor, left: Tensor, right: Tensor, cut: str, shape: tuple[int, ...],
                       bias: Tensor | None = None, stride=1, padding=0, dilation=1) -> Tensor:
    """conv2d(x, fold(left @ right, cut, shape), bias, ...) computed as the cut's conv chain
    (module docstring). Zero padding only; groups=1. The OUT cut is LowRankConv2d's business."""
    out_ch, in_ch, kh, kw = shape
    r = left.shape[1]
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    rows_only = dict(stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1))
    cols_only = dict(stride=(1, sw), padding=(0, pw), dilation=(1, dw))
    if cut == "in":
        t = conv2d(x, left.t().reshape(r, in_ch, 1, 1))
        w2 = right.reshape(r, out_ch, kh, kw).transpose(0, 1)
        return conv2d(t, w2, bias, (sh, sw), (ph, pw), (dh, dw))
    if cut in ("kh", "kw"):
        k_first, k_second = (kh, kw) if cut == "kh" else (kw, kh)
        first_shape = (in_ch * r, 1, k_first, 1) if cut == "kh" else (in_ch * r, 1, 1, k_first)
        second_shape = (out_ch, in_ch * r, 1, k_second) if cut == "kh" else (out_ch, in_ch * r, k_second, 1)
        first, second = (rows_only, cols_only) if cut == "kh" else (cols_only, rows_only)
        # channel i*r + k of the intermediate is input channel i filtered by L[:, k]
        w1 = left.t().unsqueeze(0).expand(in_ch, r, k_first).reshape(first_shape)
        t = conv2d(x, w1, groups=in_ch, **first)
        w2 = right.reshape(r, out_ch, in_ch, k_second).permute(1, 2, 0, 3).reshape(second_shape)
        return conv2d(t, w2, bias, **second)
    if cut == "out_in":
        w1 = right.reshape(1, r, kh, kw).expand(in_ch, r, kh, kw).reshape(in_ch * r, 1, kh, kw)
        t = conv2d(x, w1, None, (sh, sw), (ph, pw), (dh, dw), groups=in_ch)
        return conv2d(t, left.reshape(out_ch, in_ch * r, 1, 1), bias)
    if cut == "out_kh":
        t = conv2d(x, right.reshape(r, in_ch, 1, kw), **cols_only)
        w2 = left.reshape(out_ch, kh, r).transpose(1, 2).unsqueeze(-1).contiguous()  # a strided view breaks
        # slow_conv2d's backward at batch 1 on channels-last input
        return conv2d(t, w2, bias, **rows_only)
    if cut == "out_kw":
        t = conv2d(x, right.reshape(r, in_ch, kh, 1), **rows_only)
        w2 = left.reshape(out_ch, kw, r).transpose(1, 2).unsqueeze(2).contiguous()
        return conv2d(t, w2, bias, **cols_only)
    check_cut(cut)
    raise ValueError(f"cut {cut!r} has no conv chain here; the OUT cut is LowRankConv2d")
