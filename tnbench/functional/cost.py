"""What a factorized layer's forward pass costs, run factorized or through its rebuilt dense
weight: pure functions of shapes, so a layer can pick the cheaper form per input shape.

A pass is a list of `Op`s (one kernel each): FLOPs, tensor entries read and written, and
whether it is a grouped / depthwise convolution. `seconds` prices them on a `Machine`: FLOPs
at the dense-kernel rate (grouped convs at a much lower one: they are memory bound and poorly
vectorized on CPU), inflated by the lanes a narrow op leaves idle (`waste`: channels and
features are processed in blocks of 16 floats, so a rank-8 factor costs what a rank-16 one
does), entries at the memory rate, and a fixed launch cost per op, which is what decides at
batch 1, where every op is tiny. Backward costs about twice the forward in both forms, so the
forward model decides for training as well, except that narrow ops lose more there (`seconds`
with `training`). The rates are rough, measured once on this project's 2-core
CPU (torch 2.14, oneDNN): conv / matmul 100-250 GFLOP/s, depthwise convs 1-50 GFLOP/s,
1-10 G entries/s moved, 2-7 us per op (~30 us per opt_einsum step) (tests/bench/test_layer_speed.py).

`Costs` holds a layer's three candidates: the factorized pass, the rebuild of its dense
weight, and the dense op on that weight. `choose` returns "factorized" or "reconstructed";
with the dense weight already cached (inference) the rebuild costs nothing.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tnbench.functional.conv import pair

IMPLEMENTATIONS = ("factorized", "reconstructed")
CONV_MODES = ("out", "in", "kh", "kw")


@dataclass(frozen=True)
class Op:
    flops: float = 0.0
    elements: float = 0.0  # entries read + written
    grouped: bool = False  # a grouped / depthwise conv
    waste: float = 1.0  # lanes left idle: a kernel vectorizes over blocks of VECTOR
    launches: float = 1.0  # fixed costs paid: an opt_einsum step is a permute, a reshape, a
    # matmul and Python around them


EINSUM_LAUNCHES = 5.0  # measured: ~30 us per step of a TT contraction at batch 1, a matmul ~6 us
VECTOR = 16  # float32 lanes the CPU kernels (oneDNN, MKL) block channels and features by


def waste(*dims: int) -> float:
    """Share of the work spent on padding when each of `dims` is rounded up to whole vectors:
    a conv to 8 channels runs about as fast as one to 16, so narrow factors gain less than
    their FLOPs say (measured: LeNet-5's 5x5 conv at 250 GFLOP/s, its rank-8 factors at ~120)."""
    return math.prod(math.ceil(d / VECTOR) * VECTOR / d for d in dims if d > 0)


@dataclass(frozen=True)
class Machine:
    flops_per_s: float
    grouped_flops_per_s: float
    elements_per_s: float
    op_s: float  # fixed cost of launching one op


CPU = Machine(flops_per_s=150e9, grouped_flops_per_s=10e9, elements_per_s=6e9, op_s=6e-6)
GPU = Machine(flops_per_s=50e12, grouped_flops_per_s=5e12, elements_per_s=1e12, op_s=10e-6)


def machine_for(device_type: str) -> Machine:
    return CPU if device_type == "cpu" else GPU


def seconds(ops: Iterable[Op], machine: Machine = CPU, training: bool = False) -> float:
    """Time of the ops' forward pass; with `training` the lane waste counts squared: the
    backward's two gradient kernels of a narrow op are narrow too, and measured, a chain
    through 3-8 channels trains 2-2.4x slower than the dense conv it is cheaper than forward
    (tests/bench/test_layer_speed.py; squaring made the fewest wrong choices there)."""
    total = 0.0
    for op in ops:
        rate = machine.grouped_flops_per_s if op.grouped else machine.flops_per_s
        work = op.waste * op.waste if training else op.waste
        total += op.flops * work / rate + op.elements / machine.elements_per_s + op.launches * machine.op_s
    return total


def flops(ops: Iterable[Op]) -> float:
    return sum(op.flops for op in ops)


@dataclass(frozen=True)
class Costs:
    factorized: tuple[Op, ...]
    rebuild: tuple[Op, ...]
    dense: tuple[Op, ...]

    def reconstructed(self, weight_cached: bool = False) -> tuple[Op, ...]:
        return self.dense if weight_cached else self.rebuild + self.dense


def choose(costs: Costs, machine: Machine = CPU, weight_cached: bool = False, training: bool = False) -> str:
    """The cheaper implementation (`training`: forward + backward); ties go to the factorized form."""
    rebuilt = seconds(costs.reconstructed(weight_cached), machine, training)
    return "reconstructed" if rebuilt < seconds(costs.factorized, machine, training) else "factorized"


# --- single ops ---------------------------------------------------------------------------

def matmul(m: int, k: int, n: int, batch: int = 1) -> Op:
    """(batch x) (m x k) @ (k x n)."""
    return Op(2.0 * batch * m * k * n, batch * (m * k + k * n + m * n), waste=waste(k, n))


def copy(n: int) -> Op:
    """A permute / expand made contiguous: n entries read and written."""
    return Op(0.0, 2.0 * n)


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_geometry(hw: Sequence[int], kernel: Sequence[int], stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """Output map of a conv; padding may be an int, a pair or "same" / "valid"."""
    if padding == "same":
        return int(hw[0]), int(hw[1])
    pads = (0, 0) if padding == "valid" else pair(padding)
    s, d = pair(stride), pair(dilation)
    return tuple(conv_out(int(hw[a]), int(kernel[a]), s[a], pads[a], d[a]) for a in range(2))  # type: ignore[return-value]


def conv(batch: int, cin: int, cout: int, hw: Sequence[int], kernel: Sequence[int], stride=1, padding=0,
         dilation=1, groups: int = 1) -> tuple[Op, tuple[int, int]]:
    """One F.conv2d: its Op and output map."""
    oh, ow = conv_geometry(hw, kernel, stride, padding, dilation)
    kh, kw = kernel
    f = 2.0 * batch * cout * (cin // groups) * kh * kw * oh * ow
    entries = batch * cin * hw[0] * hw[1] + batch * cout * oh * ow + cout * (cin // groups) * kh * kw
    grouped = groups > 1  # priced at the grouped rate, which already counts their poor use of lanes
    if grouped:
        return Op(f, entries, grouped), (oh, ow)
    return Op(f, entries, grouped, waste(cout, cin * kh * kw)), (oh, ow)


def conv_chain(batch: int, cin: int, hw: Sequence[int], steps: Sequence[dict]) -> list[Op]:
    """Ops of convs applied one after another; each step gives cout, kernel, and optionally
    stride, padding, dilation, groups."""
    ops, c, size = [], cin, tuple(hw)
    for s in steps:
        op, size = conv(batch, c, s["cout"], size, s["kernel"], s.get("stride", 1), s.get("padding", 0),
                        s.get("dilation", 1), s.get("groups", 1))
        ops.append(op)
        c = s["cout"]
    return ops


def einsum_ops(steps: Iterable[str], sizes: dict[str, int]) -> list[Op]:
    """Ops of pairwise einsum steps ("ab,bc->ac"): a batched matmul over every label, plus the
    permute copies of its operands that torch's tensordot / bmm make."""
    ops = []
    for step in steps:
        inputs, out = step.split("->")
        labels = set(inputs.replace(",", ""))
        entries = sum(math.prod(sizes[c] for c in op) for op in inputs.split(",")) + math.prod(
            sizes[c] for c in out)
        contracted = math.prod(sizes[c] for c in labels - set(out))
        ops.append(Op(2.0 * math.prod(sizes[c] for c in labels), 2.0 * entries, waste=waste(contracted),
                      launches=EINSUM_LAUNCHES))
    return ops


# --- layer types --------------------------------------------------------------------------

def dense_linear(batch: int, fin: int, fout: int) -> tuple[Op, ...]:
    return (matmul(batch, fin, fout),)


def dense_conv(batch: int, cin: int, hw: Sequence[int], kernel_shape: Sequence[int], stride=1, padding=0,
               dilation=1) -> tuple[Op, ...]:
    cout, _, kh, kw = kernel_shape
    return (conv(batch, cin, cout, hw, (kh, kw), stride, padding, dilation)[0],)


def lowrank_linear(batch: int, fin: int, fout: int, rank: int) -> Costs:
    return Costs((matmul(batch, fin, rank), matmul(batch, rank, fout)), (matmul(fout, rank, fin),),
                 dense_linear(batch, fin, fout))


def lowrank_conv(batch: int, hw: Sequence[int], kernel_shape: Sequence[int], rank: int, stride=1, padding=0,
                 dilation=1) -> Costs:
    cout, cin, kh, kw = kernel_shape
    first, size = conv(batch, cin, rank, hw, (kh, kw), stride, padding, dilation)
    second, _ = conv(batch, rank, cout, size, (1, 1))
    return Costs((first, second), (matmul(cout, rank, cin * kh * kw),),
                 dense_conv(batch, cin, hw, kernel_shape, stride, padding, dilation))


def bipartition_conv(batch: int, hw: Sequence[int], kernel_shape: Sequence[int], cut: str, rank: int,
                     stride=1, padding=0, dilation=1) -> Costs:
    """The cut's conv chain (tnbench.functional.bipartition.bipartition_conv2d) vs fold(L @ R)."""
    cout, cin, kh, kw = kernel_shape
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    rows = dict(stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1))
    cols = dict(stride=(1, sw), padding=(0, pw), dilation=(1, dw))
    full = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw))
    r = rank
    if cut == "in":
        steps, weights = [dict(cout=r, kernel=(1, 1)), dict(cout=cout, kernel=(kh, kw), **full)], [r * cout * kh * kw]
    elif cut == "kh":
        steps = [dict(cout=cin * r, kernel=(kh, 1), groups=cin, **rows), dict(cout=cout, kernel=(1, kw), **cols)]
        weights = [cin * r * kh, cout * cin * r * kw]
    elif cut == "kw":
        steps = [dict(cout=cin * r, kernel=(1, kw), groups=cin, **cols), dict(cout=cout, kernel=(kh, 1), **rows)]
        weights = [cin * r * kw, cout * cin * r * kh]
    elif cut == "out_in":
        steps = [dict(cout=cin * r, kernel=(kh, kw), groups=cin, **full), dict(cout=cout, kernel=(1, 1))]
        weights = [cin * r * kh * kw]
    elif cut == "out_kh":
        steps, weights = [dict(cout=r, kernel=(1, kw), **cols), dict(cout=cout, kernel=(kh, 1), **rows)], [cout * kh * r]
    elif cut == "out_kw":
        steps, weights = [dict(cout=r, kernel=(kh, 1), **rows), dict(cout=cout, kernel=(1, kw), **cols)], [cout * kw * r]
    else:
        raise ValueError(f"cut {cut!r} has no conv chain; the OUT cut is low-rank")
    fact = tuple(copy(n) for n in weights) + tuple(conv_chain(batch, cin, hw, steps))
    m = {"in": cin, "kh": kh, "kw": kw, "out_in": cout * cin, "out_kh": cout * kh, "out_kw": cout * kw}[cut]
    n = cout * cin * kh * kw // m
    rebuild = (matmul(m, r, n), copy(m * n))
    return Costs(fact, rebuild, dense_conv(batch, cin, hw, kernel_shape, stride, padding, dilation))


def cp_conv(batch: int, hw: Sequence[int], kernel_shape: Sequence[int], rank: int, stride=1, padding=0,
            dilation=1) -> Costs:
    """Four convs (1x1, KHx1 and 1xKW depthwise, 1x1) vs the einsum of the four factors."""
    cout, cin, kh, kw = kernel_shape
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    steps = [dict(cout=rank, kernel=(1, 1)),
             dict(cout=rank, kernel=(kh, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), groups=rank),
             dict(cout=rank, kernel=(1, kw), stride=(1, sw), padding=(0, pw), dilation=(1, dw), groups=rank),
             dict(cout=cout, kernel=(1, 1))]
    # einsum or,ir,hr,wr->oihw: (o,r)x(i,r) then (h,r)x(w,r), then the two joined over r
    rebuild = (matmul(cout * cin, 1, rank), matmul(kh * kw, 1, rank), matmul(cout * cin, rank, kh * kw))
    return Costs(tuple(conv_chain(batch, cin, hw, steps)), rebuild,
                 dense_conv(batch, cin, hw, kernel_shape, stride, padding, dilation))


def tucker_conv(batch: int, hw: Sequence[int], kernel_shape: Sequence[int], ranks: dict[str, int], stride=1,
                padding=0, dilation=1) -> Costs:
    """1x1 (IN -> r_in), the core conv, 1x1 (r_out -> OUT) for the factored modes present;
    rebuild: one mode product per factor."""
    cout, cin, kh, kw = kernel_shape
    core = [ranks.get("out", cout), ranks.get("in", cin), ranks.get("kh", kh), ranks.get("kw", kw)]
    steps = [dict(cout=core[1], kernel=(1, 1))] if "in" in ranks else []
    steps.append(dict(cout=core[0], kernel=(kh, kw), stride=stride, padding=padding, dilation=dilation))
    if "out" in ranks:
        steps.append(dict(cout=cout, kernel=(1, 1)))
    full = [cout, cin, kh, kw]
    spatial = [m for m in ("kh", "kw") if m in ranks]  # folded into the core conv's kernel first
    fold = mode_products(core, full, spatial)
    return Costs(tuple(fold + conv_chain(batch, cin, hw, steps)),
                 tuple(mode_products(core, full, [m for m in CONV_MODES if m in ranks])),
                 dense_conv(batch, cin, hw, kernel_shape, stride, padding, dilation))


def mode_products(shape: Sequence[int], full: Sequence[int], modes: Sequence[str]) -> list[Op]:
    """Ops of tnbench.functional.tucker.tucker_to_tensor: per mode a (size x rank) @ (rank x rest)
    tensordot and the movedim copy, on a tensor of `shape` whose modes grow to `full`."""
    ops, shape = [], list(shape)
    for mode in modes:
        axis = CONV_MODES.index(mode)
        rest = math.prod(shape) // shape[axis]
        ops += [matmul(full[axis], shape[axis], rest), copy(full[axis] * rest)]
        shape[axis] = full[axis]
    return ops


def tucker_linear(batch: int, fin: int, fout: int, ranks: dict[str, int]) -> Costs:
    r_out, r_in = ranks.get("out", fout), ranks.get("in", fin)
    fact = ([matmul(batch, fin, r_in)] if "in" in ranks else []) + [matmul(batch, r_in, r_out)] + (
        [matmul(batch, r_out, fout)] if "out" in ranks else [])
    rebuild = ([matmul(fout, r_out, r_in)] if "out" in ranks else []) + (
        [matmul(fout, r_in, fin)] if "in" in ranks else [])
    return Costs(tuple(fact), tuple(rebuild), dense_linear(batch, fin, fout))


def usv_conv(batch: int, hw: Sequence[int], kernel_shape: Sequence[int], r_out: int, r_in: int, stride=1,
             padding=0, dilation=1) -> Costs:
    """KHxKW conv to r_in channels (V^T), then a 1x1 conv with U S; rebuild: U S V^T."""
    cout, cin, kh, kw = kernel_shape
    first, size = conv(batch, cin, r_in, hw, (kh, kw), stride, padding, dilation)
    second, _ = conv(batch, r_in, cout, size, (1, 1))
    us = matmul(cout, r_out, r_in)
    rebuild = (us, matmul(cout, r_in, cin * kh * kw))
    return Costs((us, first, second), rebuild, dense_conv(batch, cin, hw, kernel_shape, stride, padding, dilation))


def network_linear(batch: int, fin: int, fout: int, apply_steps: Sequence[str], apply_sizes: dict[str, int],
                   dense_steps: Sequence[str], dense_sizes: dict[str, int]) -> Costs:
    """A tensor-network Linear (TT-matrix, PEPS): the input contracted with the nodes along the
    path opt_einsum picked for this batch, vs the nodes contracted to the weight + a matmul."""
    return Costs(tuple(einsum_ops(apply_steps, apply_sizes)), tuple(einsum_ops(dense_steps, dense_sizes)),
                 dense_linear(batch, fin, fout))


def tt_conv(batch: int, hw: Sequence[int], kernel_shape: Sequence[int], spatial_rank: int,
            channel_steps: Sequence[str], channel_sizes: dict[str, int], dense_steps: Sequence[str],
            dense_sizes: dict[str, int], stride=1, padding=0, dilation=1) -> Costs:
    """TTConv2d: a grouped conv (IN -> IN * b_N, the spatial node) then the channel nodes at
    every output pixel (their steps carry the pixels as batch), vs the TT-matrix contracted to
    the kernel + the dense conv."""
    cout, cin, kh, kw = kernel_shape
    grouped, _ = conv(batch, cin, cin * spatial_rank, hw, (kh, kw), stride, padding, dilation, groups=cin)
    fact = (copy(cin * spatial_rank * kh * kw), grouped, *einsum_ops(channel_steps, channel_sizes))
    return Costs(fact, tuple(einsum_ops(dense_steps, dense_sizes)),
                 dense_conv(batch, cin, hw, kernel_shape, stride, padding, dilation))
