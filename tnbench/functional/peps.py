"""PEPS operators: a rows x cols grid of nodes (left, right, up, down, out, in), each bonded
to its grid neighbours, with physical legs out_k and in_k.

Nodes are numbered column by column (k = c * rows + r): that is the network order, so the
partial network of the first n nodes cuts at most rows + 1 bonds and its environment stays
small for the usual 2 x (N/2) grid. Physical factor k belongs to node k, so the dense matrix
is W[(o_0..o_{N-1}), (i_0..i_{N-1})] as for a TT-matrix. Grid-edge legs have size 1.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from tnbench.functional.network import Network, dense
from tnbench.functional.tt import in_legs, out_legs


def node_index(r: int, c: int, rows: int) -> int:
    return c * rows + r


def peps_network(rows: int, cols: int) -> Network:
    legs = []
    for c in range(cols):
        for r in range(rows):
            k = node_index(r, c, rows)
            legs.append((f"h{r}_{c}", f"h{r}_{c + 1}", f"v{r}_{c}", f"v{r + 1}_{c}", f"o{k}", f"i{k}"))
    return Network(tuple(legs))


def peps_shapes(rows: int, cols: int, out_factors: Sequence[int], in_factors: Sequence[int],
                bond: int) -> list[tuple[int, ...]]:
    shapes = []
    for c in range(cols):
        for r in range(rows):
            k = node_index(r, c, rows)
            shapes.append((1 if c == 0 else bond, 1 if c == cols - 1 else bond,
                           1 if r == 0 else bond, 1 if r == rows - 1 else bond,
                           out_factors[k], in_factors[k]))
    return shapes


def peps_to_dense(nodes: Sequence[Tensor], rows: int, cols: int) -> Tensor:
    net = peps_network(rows, cols)
    n = rows * cols
    edges = [l for l in net.open_legs if l[0] in "hv"]
    t = dense(net, nodes, [*out_legs(n), *in_legs(n), *edges])
    return t.reshape(math.prod(x.shape[4] for x in nodes), -1)
