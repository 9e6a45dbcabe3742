"""Brick-wall circuits of two-index gates that generate a 2^Q-entry weight vector (ADTN/ADQC).

The generated tensor has Q indices of dimension 2. Index 0 is the most significant bit of the
flat position: entry k of the vector is the element whose indices are the binary digits of k,
first index first (row-major, the order `Tensor.reshape` uses). The layers of a group take
consecutive blocks of the vector (`weight_layout`): "flat" puts each weight there flattened
row-major (`weight.reshape(-1)`); "dims" first pads every dimension of the weight to a power
of two, so that each index belongs to exactly one weight dimension (an OUT x IN matrix is
rows on the first indices, columns on the last), at the cost of more padding.

The network has `depth` (M) layers of 4x4 gates. Layer l (from 0) puts a gate on each pair
(i, i+1) with i even if l is even (pairs (0,1), (2,3), ...) and i odd if l is odd ((1,2),
(3,4), ...); index Q-1 has no partner in an even layer when Q is odd. Gates are applied layer
by layer, left to right; a gate's row index is 2*b_i + b_(i+1), so on the flat vector it is
kron(I_(2^i), G, I_(2^(Q-i-2))). The number of gates is

    n_gates(Q, M) = ceil(M/2) * floor(Q/2) + floor(M/2) * floor((Q-1)/2)   (~ M*Q/2)

`gates` (optional) keeps only the first that many gates of the M layers: the last layer is
then partial, filled from its first pair. It lets a parameter budget that is not a whole
number of layers be met (ADTN trains 16 numbers a gate, so 16 * gates + 1 a group).

The circuit acts on a product state (`product_state`): "plus" is every index in (1, 1)/sqrt(2),
the normalized all-equal vector 2^(-Q/2) * ones; "zero" is the first basis vector. Since the
first two gate layers touch every index, a learned product state would add nothing a gate
cannot absorb, so the state is fixed and not counted.

Cost: one gate multiplies 2^(Q-2) four-vectors by a 4x4 matrix, 16 multiply-adds each, i.e.
8 * 2^Q flops (`gate_flops`); a gate layer has ~Q/2 gates, so a forward pass costs about
4*M*Q*2^Q flops. Memory: a forward pass holds two 2^Q vectors at a time. Backward through
`brick_wall` recomputes states from checkpoints instead of keeping all n_gates of them; see
`checkpoint_plan`.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

LAYOUTS = ("flat", "dims")
CHECKPOINT_MODES = ("auto", "none", "sqrt", "log")
# "auto" keeps every intermediate state while they fit in this many bytes, else uses "sqrt"
AUTO_KEEP_ALL_BYTES = 256 * 2**20


def qubits_for(n: int) -> int:
    """Fewest indices of dimension 2 whose 2^Q entries hold n weights (at least 2, one gate)."""
    return max(2, math.ceil(math.log2(max(n, 1))))


def pow2_shape(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(1 << max(0, (int(d) - 1).bit_length()) for d in shape)


def weight_layout(shapes: Sequence[Sequence[int]], layout: str = "flat") -> list[tuple[int, tuple[int, ...]]]:
    """(offset, block shape) of each weight in the group's vector: blocks follow each other in
    the given order; a block is the weight's shape ("flat") or its power-of-two padding ("dims",
    aligned to its size). The weight is the block's leading corner."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    out, offset = [], 0
    for shape in shapes:
        block = tuple(int(d) for d in shape) if layout == "flat" else pow2_shape(shape)
        size = math.prod(block)
        if layout == "dims":  # start at a multiple of the block's size, so no carry mixes indices
            offset = -(-offset // size) * size
        out.append((offset, block))
        offset += size
    return out


def layout_size(shapes: Sequence[Sequence[int]], layout: str = "flat") -> int:
    """Entries the group's layout spans (what 2^Q must hold)."""
    blocks = weight_layout(shapes, layout)
    return blocks[-1][0] + math.prod(blocks[-1][1]) if blocks else 0


def weight_positions(shapes: Sequence[Sequence[int]], layout: str = "flat") -> Tensor:
    """Vector positions of the weights' entries, in the order of cat(w.reshape(-1) for w)."""
    parts = []
    for shape, (offset, block) in zip(shapes, weight_layout(shapes, layout)):
        grid = torch.arange(math.prod(block)).view(block)
        parts.append(grid[tuple(slice(0, int(d)) for d in shape)].reshape(-1) + offset)
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def gate_positions(qubits: int, depth: int, gates: int | None = None) -> list[int]:
    """Left index i of each gate (acting on i, i+1), in the order the gates are applied; the
    first `gates` of them when given."""
    positions = [i for layer in range(depth) for i in range(layer % 2, qubits - 1, 2)]
    if gates is not None and not 1 <= gates <= len(positions):
        raise ValueError(f"gates must be in [1, {len(positions)}] for {qubits} qubits and depth {depth}, got {gates}")
    return positions if gates is None else positions[:gates]


def num_gates(qubits: int, depth: int, gates: int | None = None) -> int:
    full = (depth + 1) // 2 * (qubits // 2) + depth // 2 * ((qubits - 1) // 2)
    return full if gates is None else min(gates, full)


def adtn_params(qubits: int, depth: int, gates: int | None = None) -> int:
    """Trained numbers of one ADTN group: 16 per free 4x4 gate, plus the group's scale."""
    return 16 * num_gates(qubits, depth, gates) + 1


def adqc_params(qubits: int, depth: int, gates: int | None = None) -> int:
    """Trained numbers of one ADQC group: 6 per orthogonal gate (the entries of a 4x4
    skew-symmetric generator above the diagonal), plus the group's scale."""
    return 6 * num_gates(qubits, depth, gates) + 1


def gate_flops(qubits: int) -> int:
    """Flops of applying one gate: 2^(Q-2) four-vectors times 16 multiply-adds (2 flops each)."""
    return 8 * 2**qubits


def forward_flops(qubits: int, depth: int, gates: int | None = None) -> int:
    return num_gates(qubits, depth, gates) * gate_flops(qubits)


def product_state(qubits: int, kind: str = "plus", dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> Tensor:
    """The circuit's input: "plus" = 2^(-Q/2) * ones, "zero" = the first basis vector."""
    if kind == "plus":
        return torch.full((2**qubits,), 2.0 ** (-qubits / 2), dtype=dtype, device=device)
    if kind == "zero":
        state = torch.zeros(2**qubits, dtype=dtype, device=device)
        state[0] = 1.0
        return state
    raise ValueError(f"initial state must be plus or zero, got {kind!r}")


def _split(state: Tensor, position: int, qubits: int) -> Tensor:
    return state.view(2**position, 4, 2 ** (qubits - position - 2))


def _widened(gate: Tensor, right: int) -> Tensor:
    """kron(gate, I_right): the gate acting on its pair and the `right` entries after it."""
    if right == 1:
        return gate
    eye = torch.eye(right, dtype=gate.dtype, device=gate.device)
    return (gate[:, None, :, None] * eye[None, :, None, :]).reshape(4 * right, 4 * right)


def apply_gate(state: Tensor, gate: Tensor, position: int, qubits: int) -> Tensor:
    """Gate (4x4) on indices (position, position+1) of a flat 2^Q state; returns a new vector.

    The state is viewed as (2^i, 4, R = 2^(Q-i-2)). A long right block R is a batched matmul
    gate @ (4, R); with a short one that would be 2^i tiny matmuls, so the R entries are folded
    into one (rows, 4R) @ kron(gate, I_R)^T matmul instead: R times the flops, far less time
    (the step is memory bound). The switch point was measured on CPU."""
    right = 2 ** (qubits - position - 2)
    if right >= 32:
        return torch.matmul(gate, _split(state, position, qubits)).reshape(-1)
    return (state.view(-1, 4 * right) @ _widened(gate, right).T).reshape(-1)


def gate_gradient(grad_out: Tensor, state_in: Tensor, position: int, qubits: int) -> Tensor:
    """d<grad_out, G state_in>/dG: sum over the other indices of grad_out[a] * state_in[b].
    Same two regimes as `apply_gate`; the short one takes the block diagonal of a (4R, 4R)
    product and sums it."""
    right = 2 ** (qubits - position - 2)
    if right >= 16:
        g, s = _split(grad_out, position, qubits), _split(state_in, position, qubits)
        return torch.matmul(g, s.transpose(1, 2)).sum(0)
    m = grad_out.view(-1, 4 * right).T @ state_in.view(-1, 4 * right)
    return m.reshape(4, right, 4, right).diagonal(dim1=1, dim2=3).sum(-1)


def contract(state: Tensor, gates: Tensor, positions: Sequence[int], qubits: int,
             start: int = 0, stop: int | None = None) -> Tensor:
    """Apply gates[start:stop] one at a time (plain autograd if gradients are on)."""
    stop = len(positions) if stop is None else stop
    for k in range(start, stop):
        state = apply_gate(state, gates[k], positions[k], qubits)
    return state


def checkpoint_plan(mode: str, n_gates: int, qubits: int, itemsize: int) -> tuple[int, int]:
    """(split, leaf) for `brick_wall`'s backward pass.

    A span of gates longer than `leaf` is cut into `split` pieces; the states at the cuts are
    kept and each piece is handled the same way, last piece first. A span of at most `leaf`
    gates is recomputed keeping all its states, then back-propagated.

    none: keep every state (split=n, leaf=1): n states, no recomputation.
    sqrt: keep ~sqrt(n) states and recompute one span at a time: ~2*sqrt(n) states, one extra
          forward pass.
    log:  bisect (split=2, leaf=1): ~log2(n) states, ~log2(n)/2 extra forward passes.
    auto: none while n states fit in AUTO_KEEP_ALL_BYTES, else sqrt."""
    n = max(n_gates, 1)
    if mode == "auto":
        mode = "none" if n * 2**qubits * itemsize <= AUTO_KEEP_ALL_BYTES else "sqrt"
    if mode == "none":
        return n, 1
    if mode == "sqrt":
        leaf = max(1, math.ceil(math.sqrt(n)))
        return max(1, math.ceil(n / leaf)), leaf
    if mode == "log":
        return 2, 1
    raise ValueError(f"checkpoint mode must be one of {', '.join(CHECKPOINT_MODES)}; got {mode!r}")


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run torch ops with `threads` intra-op threads (None: leave torch's setting), then restore.
    A circuit is hundreds of small memory-bound matmuls; on a busy 2-core CPU, BLAS threading
    made each of them wait on the other core (measured: a Q=14 fit step took 6.5 s with 2
    threads and 0.03 s with 1), so the generators default to one thread."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cuts(start: int, stop: int, split: int) -> list[int]:
    pieces = min(split, stop - start)
    return sorted({start + round(j * (stop - start) / pieces) for j in range(pieces + 1)})


def recomputed_gates(n_gates: int, split: int, leaf: int) -> int:
    """Gate applications backward spends recomputing states under the plan (split, leaf); the
    states at the top-level cuts come from the forward pass itself."""
    def span(start: int, stop: int) -> int:
        if stop - start <= leaf:
            return max(stop - start - 1, 0)
        cuts = _cuts(start, stop, split)
        return (cuts[-2] - start) + sum(span(a, b) for a, b in zip(cuts[:-1], cuts[1:]))

    top = _cuts(0, n_gates, split) if n_gates > leaf else [0, n_gates]
    return sum(span(a, b) for a, b in zip(top[:-1], top[1:]))


def _backward_span(gates: Tensor, positions: Sequence[int], qubits: int, start: int, stop: int,
                   state: Tensor, grad: Tensor, grads: Tensor, split: int, leaf: int) -> Tensor:
    """Fill grads[start:stop] given the state before gate `start` and the gradient after gate
    stop-1; return the gradient before gate `start`."""
    if stop - start <= leaf:
        states = [state]
        for k in range(start, stop - 1):
            states.append(apply_gate(states[-1], gates[k], positions[k], qubits))
        for k in range(stop - 1, start - 1, -1):
            grads[k] = gate_gradient(grad, states.pop(), positions[k], qubits)
            grad = apply_gate(grad, gates[k].T, positions[k], qubits)
        return grad
    cuts = _cuts(start, stop, split)
    kept = [state]
    for a, b in zip(cuts[:-2], cuts[1:-1]):
        kept.append(contract(kept[-1], gates, positions, qubits, a, b))
    for a, b in reversed(list(zip(cuts[:-1], cuts[1:]))):
        grad = _backward_span(gates, positions, qubits, a, b, kept.pop(), grad, grads, split, leaf)
    return grad


class _BrickWall(torch.autograd.Function):
    """The circuit as one autograd node, so backward can trade recomputation for memory
    (autograd alone would keep all n_gates intermediate states)."""

    @staticmethod
    def forward(ctx, state: Tensor, gates: Tensor, positions: tuple[int, ...], qubits: int,
                split: int, leaf: int, threads: int | None) -> Tensor:
        n = len(positions)
        cuts = _cuts(0, n, split) if n > leaf else [0, n]
        kept = [state.detach()]
        plain = gates.detach()  # matmul is slower with operands that require grad: see `brick_wall`
        with intra_op_threads(threads):
            for a, b in zip(cuts[:-1], cuts[1:]):
                kept.append(contract(kept[-1], plain, positions, qubits, a, b))
        out = kept.pop()
        ctx.save_for_backward(gates, *kept)
        ctx.cuts, ctx.positions, ctx.qubits, ctx.split, ctx.leaf = cuts, positions, qubits, split, leaf
        ctx.threads = threads
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        gates, *kept = ctx.saved_tensors
        gates = gates.detach()
        positions, qubits, cuts = ctx.positions, ctx.qubits, ctx.cuts
        grads = torch.zeros_like(gates)
        grad = grad_out.contiguous()
        with torch.no_grad(), intra_op_threads(ctx.threads):
            for a, b in reversed(list(zip(cuts[:-1], cuts[1:]))):
                grad = _backward_span(gates, positions, qubits, a, b, kept.pop(), grad, grads,
                                      ctx.split, ctx.leaf)
        grad_state = grad if ctx.needs_input_grad[0] else None
        return grad_state, grads, None, None, None, None, None


def brick_wall(state: Tensor, gates: Tensor, positions: Sequence[int], qubits: int,
               checkpoint: str = "auto", threads: int | None = None) -> Tensor:
    """The circuit applied to `state` (flat, 2^Q): gates[k] acts on positions[k], positions[k]+1.
    Differentiable in `gates` (and `state`) with the memory/recompute trade of `checkpoint`;
    `threads` as in `intra_op_threads`."""
    if len(positions) != gates.shape[0]:
        raise ValueError(f"{gates.shape[0]} gates for {len(positions)} positions")
    if not (torch.is_grad_enabled() and (gates.requires_grad or state.requires_grad)):
        # detached: torch.matmul takes a slower, copying path when an operand requires grad,
        # even under no_grad (measured 4x on the whole circuit)
        with torch.no_grad(), intra_op_threads(threads):
            return contract(state.detach(), gates.detach(), positions, qubits)
    split, leaf = checkpoint_plan(checkpoint, len(positions), qubits, state.element_size())
    return _BrickWall.apply(state.contiguous(), gates, tuple(positions), qubits, split, leaf, threads)


SKEW_ROWS, SKEW_COLS = torch.triu_indices(4, 4, offset=1)


def skew_orthogonal(generators: Tensor) -> Tensor:
    """(..., 6) -> (..., 4, 4): exp(A) for the skew-symmetric A with the given entries above the
    diagonal. Exactly orthogonal (up to rounding) with determinant +1; every rotation of R^4
    is reached, reflections are not."""
    a = generators.new_zeros(*generators.shape[:-1], 4, 4)
    a[..., SKEW_ROWS, SKEW_COLS] = generators
    return torch.linalg.matrix_exp(a - a.transpose(-1, -2))
