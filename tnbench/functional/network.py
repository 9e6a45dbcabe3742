"""Ordered tensor networks described by leg labels, and their contraction with opt_einsum.

A `Network` names the legs of each node, in the node tensor's axis order. A label on two
nodes is a bond (contracted); a label on one node is an open (physical) leg. Boundary legs of
size 1 (the ends of a tensor train) are simply open legs of size 1. The node order is the
order partial norms grow in (`partial_norm`), so it is part of the structure.

Contraction expressions are built once per (equation, shapes) and cached: a layer's forward
pass pays opt_einsum's path search only the first time it sees a batch shape.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import opt_einsum as oe
from torch import Tensor


@dataclass(frozen=True)
class Network:
    legs: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        for k, node in enumerate(self.legs):
            if len(set(node)) != len(node):
                raise ValueError(f"node {k} repeats a leg label: {node}")
        counts = self.label_counts
        over = [l for l, c in counts.items() if c > 2]
        if over:
            raise ValueError(f"labels on more than two nodes: {over}")

    def __len__(self) -> int:
        return len(self.legs)

    @cached_property
    def label_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.legs:
            for label in node:
                counts[label] = counts.get(label, 0) + 1
        return counts

    def is_bond(self, label: str) -> bool:
        return self.label_counts[label] == 2

    @cached_property
    def open_legs(self) -> tuple[str, ...]:
        return tuple(l for node in self.legs for l in node if not self.is_bond(l))

    @cached_property
    def cuts(self) -> tuple[tuple[str, ...], ...]:
        """cuts[n]: the bonds between the first n nodes and the rest, in the order they open."""
        out, open_bonds = [()], []
        for node in self.legs:
            seen = {l for l in open_bonds if l in node}
            open_bonds = [l for l in open_bonds if l not in seen]
            open_bonds += [l for l in node if self.is_bond(l) and l not in seen]
            out.append(tuple(open_bonds))
        return tuple(out)

    def cut(self, n: int) -> tuple[str, ...]:
        return self.cuts[n]


def symbols(labels: Sequence[Sequence[str]]) -> dict[str, str]:
    """Einsum letters for labels in order of first appearance (canonical, so that equal
    structures give equal equations and share cached expressions)."""
    out: dict[str, str] = {}
    for group in labels:
        for label in group:
            if label not in out:
                out[label] = oe.get_symbol(len(out))
    return out


def equation(inputs: Sequence[Sequence[str]], output: Sequence[str]) -> str:
    sym = symbols([*inputs, output])
    return ",".join("".join(sym[l] for l in op) for op in inputs) + "->" + "".join(sym[l] for l in output)


@lru_cache(maxsize=2048)
def expression(eq: str, shapes: tuple[tuple[int, ...], ...]):
    """opt_einsum's contraction expression for `eq`, path found once and cached."""
    return oe.contract_expression(eq, *shapes, optimize="auto")


def _chain_path(n_operands: int) -> list[tuple[int, int]]:
    """Operand 0 (the input) absorbs the others one by one, in their order."""
    path = [(0, 1)]
    for remaining in range(n_operands - 1, 1, -1):
        path.append((0, remaining - 1))
    return path


def _materializes_weight(path_info, batch: str, limit: int) -> bool:
    """True if a path builds, without the batch, a node product as large as the dense weight:
    the thing a tensorized layer exists to avoid."""
    sizes = path_info.size_dict
    for step in path_info.contraction_list:
        out = step[2].split("->")[1]
        if not (set(out) & set(batch)) and math.prod(sizes[c] for c in out) >= limit:
            return True
    return False


def constrained_path(eq: str, shapes: tuple[tuple[int, ...], ...], limit: int) -> list[tuple[int, int]]:
    """Fewest-flops pairwise order (dynamic programming over subsets of operands) among those
    where no intermediate without operand 0 (the input) has `limit` entries or more."""
    inputs, output = eq.split("->")
    ops = inputs.split(",")
    n = len(ops)
    sizes = {c: d for op, shape in zip(ops, shapes) for c, d in zip(op, shape)}
    full = (1 << n) - 1
    union = [set() for _ in range(1 << n)]
    for mask in range(1, 1 << n):
        low = mask & -mask
        union[mask] = union[mask ^ low] | set(ops[low.bit_length() - 1])
    legs = [union[m] & (union[full ^ m] | set(output)) for m in range(1 << n)]
    best: dict[int, tuple[float, Any]] = {1 << i: (0.0, i) for i in range(n)}
    for mask in sorted(range(1, 1 << n), key=lambda m: bin(m).count("1")):
        if mask in best:
            continue
        if not mask & 1 and math.prod(sizes[c] for c in legs[mask]) >= limit:
            continue  # a node-only intermediate as large as the weight
        top = (math.inf, None)
        sub = (mask - 1) & mask
        while sub:
            other = mask ^ sub
            if sub < other and sub in best and other in best:
                cost = best[sub][0] + best[other][0] + math.prod(sizes[c] for c in legs[sub] | legs[other])
                if cost < top[0]:
                    top = (cost, (best[sub][1], best[other][1]))
            sub = (sub - 1) & mask
        if top[1] is not None:
            best[mask] = top
    if full not in best:
        return _chain_path(n)
    ssa: list[tuple[int, int]] = []

    def emit(tree: Any) -> int:
        if isinstance(tree, int):
            return tree
        a, b = emit(tree[0]), emit(tree[1])
        ssa.append((a, b))
        return n + len(ssa) - 1

    emit(best[full][1])
    return oe.paths.ssa_to_linear(ssa)


@lru_cache(maxsize=2048)
def apply_expression(eq: str, shapes: tuple[tuple[int, ...], ...], batch: str, limit: int):
    """Expression applying a network to an input (operand 0) that never forms a node-only
    intermediate of `limit` entries (the dense weight's size) or more: opt_einsum's path if it
    does not, else the cheapest path that does not (exhaustive up to 10 operands), else the
    input absorbing the nodes one by one in network order."""
    _, info = oe.contract_path(eq, *shapes, shapes=True, optimize="auto")
    if not _materializes_weight(info, batch, limit):
        return expression(eq, shapes)
    path = constrained_path(eq, shapes, limit) if len(shapes) <= 10 else _chain_path(len(shapes))
    return oe.contract_expression(eq, *shapes, optimize=path)


def contract(inputs: Sequence[Sequence[str]], output: Sequence[str], tensors: Sequence[Tensor]) -> Tensor:
    eq = equation(inputs, output)
    return expression(eq, tuple(tuple(t.shape) for t in tensors))(*tensors, backend="torch")


def dense(net: Network, nodes: Sequence[Tensor], output: Sequence[str]) -> Tensor:
    """The full tensor the network represents, axes in `output` order (every open leg)."""
    missing = set(net.open_legs) - set(output)
    if missing:
        raise ValueError(f"output must list every open leg; missing {sorted(missing)}")
    return contract(net.legs, output, nodes)


@dataclass(frozen=True)
class Plan:
    """A contraction expression with its operands' label sizes: what tnbench.functional.cost
    prices (`steps` are the pairwise einsum steps in the order they run)."""
    expr: Any
    sizes: dict[str, int]

    @property
    def steps(self) -> list[str]:
        return [step[2] for step in self.expr.contraction_list]


def label_sizes(eq: str, shapes: Sequence[Sequence[int]]) -> dict[str, int]:
    return {c: int(d) for op, shape in zip(eq.split("->")[0].split(","), shapes) for c, d in zip(op, shape)}


def dense_plan(net: Network, node_shapes: Sequence[Sequence[int]], output: Sequence[str]) -> Plan:
    """The plan `dense` runs for nodes of these shapes."""
    eq = equation(net.legs, output)
    shapes = tuple(tuple(s) for s in node_shapes)
    return Plan(expression(eq, shapes), label_sizes(eq, shapes))


def apply_plan(net: Network, node_shapes: Sequence[Sequence[int]], x_shape: Sequence[int], x_legs: Sequence[str],
               output: Sequence[str], batch: Sequence[str]) -> Plan:
    """The plan `apply` runs for an input of `x_shape`: opt_einsum's order for this batch size,
    never forming a node-only intermediate as large as the dense weight (`apply_expression`)."""
    eq = equation([tuple(x_legs), *net.legs], tuple(output))
    shapes = (tuple(x_shape), *(tuple(s) for s in node_shapes))
    sym = symbols([tuple(x_legs), *net.legs, tuple(output)])
    sizes = dict(zip(x_legs, x_shape))
    for legs, shape in zip(net.legs, node_shapes):
        sizes.update(zip(legs, shape))
    weight_size = math.prod(sizes[l] for l in output if l not in batch) * math.prod(
        sizes[l] for l in x_legs if l not in batch)
    expr = apply_expression(eq, shapes, "".join(sym[b] for b in batch), weight_size)
    return Plan(expr, label_sizes(eq, shapes))


def apply(net: Network, nodes: Sequence[Tensor], x: Tensor, x_legs: Sequence[str], output: Sequence[str],
          batch: Sequence[str]) -> Tensor:
    """Contract input `x` (axes `x_legs`) with the network; `batch` labels are x's batch axes.
    Open legs of size 1 not named anywhere else are summed, which is harmless."""
    plan = apply_plan(net, [tuple(t.shape) for t in nodes], tuple(x.shape), x_legs, output, batch)
    return plan.expr(x, *nodes, backend="torch")
