"""Counting rules: how many weights a compressed network keeps, and the compression rate.

Compression figures are only comparable when they count the same things, and the papers do not
all count alike, so every figure here names its rule:

- `stored` (ours, and TDLRT's): every weight the factorized layers keep, as stored. A matrix
  layer W = U S V^T (OUT x IN, rank r) keeps r (OUT + IN) + r^2; a Tucker layer its core and
  factors. The rate is over the compressed layers only: 100 (1 - kept / dense weights of those
  layers). Biases are never counted (they are never factorized).
- `dlrt` (the published DLRT LeNet-5 table, arXiv 2205.13571): per factorized layer r (OUT + 1),
  i.e. the IN-side factor V is not counted, plus the weights of every layer left dense (the last
  layer's 500 x 10 = 5,000 for its LeNet-5); the rate is over all the network's conv/linear
  weights (430,500). This reproduces every row of the published table exactly (results/reference/
  dlrt_2205.13571.csv, checked by tests/functional/test_counting.py).

Pure functions of shapes and ranks: the records (tnbench.pipeline.metrics), the reference tables
and the studies all count through here.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

STORED = "stored"
DLRT = "dlrt"
RULES = {
    STORED: "stored: r(OUT+IN)+r^2 per matrix layer (core + factors for Tucker), over the compressed layers",
    DLRT: "dlrt: r(OUT+1) per factorized layer + the weights of the dense layers, over all conv/linear weights "
          "(arXiv 2205.13571's table)",
}


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"count rule must be one of {', '.join(RULES)}; got {rule!r}")
    return rule


def matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    """A Linear (OUT, IN) or Conv2d (OUT, IN, KH, KW) weight as the OUT x IN*KH*KW matrix."""
    out, rest = int(shape[0]), 1
    for n in shape[1:]:
        rest *= int(n)
    return out, rest


def stored_matrix_params(shape: Sequence[int], rank: int) -> int:
    """Weights kept by W = U S V^T at rank r: r (OUT + IN) + r^2."""
    out, inn = matrix_shape(shape)
    return rank * (out + inn) + rank * rank


def dlrt_layer_params(shape: Sequence[int], rank: int) -> int:
    """The DLRT table's count of one factorized layer: r (OUT + 1)."""
    return rank * (int(shape[0]) + 1)


def rate(kept: float, dense: float) -> float:
    """100 (1 - kept / dense), in percent."""
    return 100.0 * (1.0 - kept / dense) if dense else 0.0


def dlrt_params(layers: Iterable[tuple[Sequence[int], int]], dense_weights: int) -> int:
    """The DLRT table's parameter count: sum of r (OUT + 1) over the factorized layers (shape,
    rank) plus `dense_weights`, the weights of the layers left dense."""
    return sum(dlrt_layer_params(s, r) for s, r in layers) + int(dense_weights)


def stored_rate(layers: Iterable[tuple[Sequence[int], int]]) -> float:
    """Our rate of matrix layers (shape, rank): 100 (1 - stored / dense) over those layers."""
    layers = list(layers)
    dense = sum(matrix_shape(s)[0] * matrix_shape(s)[1] for s, _ in layers)
    return rate(sum(stored_matrix_params(s, r) for s, r in layers), dense)


def paper_count(rule: str, layers: list[dict], total_weights: int) -> dict[str, float | int | str]:
    """A record's size under `rule`, from its per-layer reports (`shape`, `ranks`,
    `weight_params_dense`, `weight_params_compressed`, `compressed`) and `total_weights`, the
    weights of every conv/linear layer of the dense network: `params_paper` (kept weights as the
    rule counts them) and `compression_rate_paper` (percent), with the rule's name."""
    check_rule(rule)
    done = [l for l in layers if l.get("compressed")]
    dense_layers = sum(int(l["weight_params_dense"]) for l in done)
    if rule == STORED:
        kept = sum(int(l["weight_params_compressed"]) for l in done)
        return {"count_rule": rule, "params_paper": kept, "compression_rate_paper": rate(kept, dense_layers)}
    # dlrt: one rank per layer (W = U S V^T); what was not factorized counts dense
    kept = dlrt_params(((l["shape"], int(l["ranks"][0])) for l in done), total_weights - dense_layers)
    return {"count_rule": rule, "params_paper": kept, "compression_rate_paper": rate(kept, total_weights)}
