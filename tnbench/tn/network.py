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
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Sequence

import opt_einsum as oe
import torch
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

    def cut(self, n: int) -> tuple[str, ...]:
        """Bonds between the first n nodes and the rest, in first-appearance order."""
        inside = {l for node in self.legs[:n] for l in node}
        return tuple(l for node in self.legs[n:] for l in node if l in inside)


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


def _materializes_weight(eq: str, shapes: tuple[tuple[int, ...], ...], batch: str, limit: int) -> bool:
    """True if opt_einsum's best path builds, without the batch, a node product as large as the
    dense weight: the thing a tensorized layer exists to avoid."""
    _, info = oe.contract_path(eq, *shapes, shapes=True, optimize="auto")
    sizes = info.size_dict
    for step in info.contraction_list:
        out = step[2].split("->")[1]
        if not (set(out) & set(batch)) and math.prod(sizes[c] for c in out) >= limit:
            return True
    return False


@lru_cache(maxsize=2048)
def apply_expression(eq: str, shapes: tuple[tuple[int, ...], ...], batch: str, limit: int):
    """Expression applying a network to an input (operand 0) that never forms a node-only
    intermediate of `limit` entries or more; if the optimal path would, the chain path (the
    input absorbs node after node, in network order) is used instead."""
    if _materializes_weight(eq, shapes, batch, limit):
        return oe.contract_expression(eq, *shapes, optimize=_chain_path(len(shapes)))
    return expression(eq, shapes)


def contract(inputs: Sequence[Sequence[str]], output: Sequence[str], tensors: Sequence[Tensor]) -> Tensor:
    eq = equation(inputs, output)
    return expression(eq, tuple(tuple(t.shape) for t in tensors))(*tensors, backend="torch")


def dense(net: Network, nodes: Sequence[Tensor], output: Sequence[str]) -> Tensor:
    """The full tensor the network represents, axes in `output` order (every open leg)."""
    missing = set(net.open_legs) - set(output)
    if missing:
        raise ValueError(f"output must list every open leg; missing {sorted(missing)}")
    return contract(net.legs, output, nodes)


def apply(net: Network, nodes: Sequence[Tensor], x: Tensor, x_legs: Sequence[str], output: Sequence[str],
          batch: Sequence[str]) -> Tensor:
    """Contract input `x` (axes `x_legs`) with the network; `batch` labels are x's batch axes.
    Open legs of size 1 not named anywhere else are summed, which is harmless."""
    eq = equation([tuple(x_legs), *net.legs], tuple(output))
    shapes = (tuple(x.shape), *(tuple(t.shape) for t in nodes))
    sym = symbols([tuple(x_legs), *net.legs, tuple(output)])
    sizes = dict(zip(x_legs, x.shape))
    for legs, t in zip(net.legs, nodes):
        sizes.update(zip(legs, t.shape))
    weight_size = math.prod(sizes[l] for l in output if l not in batch) * math.prod(
        sizes[l] for l in x_legs if l not in batch)
    expr = apply_expression(eq, shapes, "".join(sym[b] for b in batch), weight_size)
    return expr(x, *nodes, backend="torch")


def num_params(nodes: Sequence[Tensor]) -> int:
    return sum(t.numel() for t in nodes)


def cast(nodes: Sequence[Tensor], dtype: torch.dtype) -> list[Tensor]:
    return [t.to(dtype) for t in nodes]
