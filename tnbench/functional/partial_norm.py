"""Finite initialization of tensor networks by partial norms (arXiv 2309.06577), and a
log-domain normalizer that reaches the same goal in one pass.

Works on any ordered `Network` (TT, TT-matrix, PEPS in column order). The partial norm of the
first n nodes, pF(n), is the network of those nodes contracted with its copy, every open leg
*and* every bond to a later node joined to the copy's (Frobenius, FTNR), or all its entries
summed (lineal, LTNR, for non-negative networks). pF(N) is ||A||_F^2, or the lineal norm.

Both are grown node by node from a left environment E_n (the first n nodes, with their cut
bonds open). `Environments` keeps E_1..E_n; when every node is multiplied by c, E_k is
multiplied by c^(2k) (Frobenius) or c^k (lineal) instead of being recomputed, and only an
environment that this would push to inf or 0 is recomputed, from the nearest earlier one.
Rescalings are applied lazily (a running log scale), so a normalization step costs O(1) plus
the contractions it really needs, not O(N). The public code of the paper recomputes every
partial norm from scratch (`reuse=False`).

`normalize_partial` is the paper's protocol, step for step (papers.md section 4):
  2. ||A|| finite and non-zero: divide every node by (||A|| / F)^(1/N); done.
  3. pF(1) inf: divide every node by (10 (1 + xi))^(1/(qN)), xi ~ U(0, 1); 0: multiply; go to 2.
  4. n = 2..N-1: pF(n) inf or 0: divide by pF(n-1)^(1/(qN)); finite but outside (aF, bF):
     divide by (pF(n) / F)^(1/(qN)); repeat at this n.
  5. divide by (pF(N-1) / F)^(1/(qN)); go to 2 (and 5 again if the norm is still not finite).
q = 2 for Frobenius (partials are squared norms), 1 for lineal. As in the paper the partial
square norms are compared with the range (aF, bF) itself. Every rescaling of the nodes in
steps 3-5 is a normalization *step*; `max_iter` bounds them, and running out is reported as
a failed `NormalizationResult` (or `NormalizationFailed`), never a hang.

`normalize_log` computes log ||A|| with per-node rescaled environments (each node divided by
its largest entry, each environment by its largest entry, the logs summed), so nothing can
overflow or underflow whatever N, p and b; then it rescales every node once. By default
(`balance=True`) node k is divided by its own share of the norm, so that afterwards the
partial norms of the normalized network grow evenly, pF(n) ~ F^(qn/N), and cannot overflow
either.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from tnbench.functional.network import Network, contract

FROBENIUS, LINEAL = "frobenius", "lineal"
NORMS = (FROBENIUS, LINEAL)


@dataclass
class NormalizationResult:
    converged: bool
    protocol: str  # paper | log
    norm: str  # frobenius | lineal
    nodes: int
    steps: int = 0  # rescalings of the nodes in steps 3-5 (the final division of step 2 not counted)
    passes: int = 0  # times the full norm was evaluated after the first
    contractions: int = 0  # node-by-environment contractions performed (the work)
    log_target: float = 0.0
    log_norm_initial: float | None = None  # natural log of ||A|| before, where it was known
    log_norm: float | None = None  # natural log of ||A|| after
    reason: str = ""
    history: list[str] = field(default_factory=list)  # why each step rescaled (not in as_dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("history")
        return d


class NormalizationFailed(ArithmeticError):
    def __init__(self, result: NormalizationResult) -> None:
        super().__init__(f"{result.norm} normalization ({result.protocol}) did not converge after "
                         f"{result.steps} steps: {result.reason}")
        self.result = result


def _power(norm: str) -> int:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
    return 2 if norm == FROBENIUS else 1


def _check_nodes(net: Network, nodes: Sequence[Tensor], norm: str) -> None:
    if len(nodes) != len(net):
        raise ValueError(f"the network has {len(net)} nodes, got {len(nodes)} tensors")
    for k, (legs, t) in enumerate(zip(net.legs, nodes)):
        if t.dim() != len(legs):
            raise ValueError(f"node {k} has {t.dim()} axes, the network gives it legs {legs}")
    if norm == LINEAL and any(bool((t < 0).any()) for t in nodes):
        raise ValueError("the lineal norm (LTNR) needs non-negative nodes")


class Environments:
    """Left environments E_0..E_n of an ordered network, grown on demand and kept valid under
    `rescale`. E_n has the cut bonds after node n open: ket copies first, then bra copies in
    the same order (Frobenius), or the cut bonds once (lineal).

    Rescaling is lazy and O(1): it adds to a running log scale. A node takes its pending factor
    when it is next contracted (or at `flush`); a kept E_k takes its factor c^(qk) when it is
    next read, and only if that would overflow or vanish is it recomputed, from the nearest
    earlier environment that survives its own factor."""

    def __init__(self, net: Network, nodes: Sequence[Tensor], norm: str = FROBENIUS, reuse: bool = True) -> None:
        self.net, self.nodes, self.norm, self.reuse = net, list(nodes), norm, reuse
        self.power = _power(norm)
        self.contractions = 0
        self.log_scale = 0.0  # log of the factor all nodes have been multiplied by so far
        self._node_scale = [0.0] * len(net)  # ... of which this much is applied to each tensor
        self.envs: list[Tensor] = [torch.ones((), dtype=nodes[0].dtype, device=nodes[0].device)]
        self._env_scale = [0.0]  # log_scale each kept environment belongs to
        self._plans = [self._plan(k) for k in range(len(net))]

    def _plan(self, k: int) -> tuple[list[tuple[str, ...]], tuple[str, ...]]:
        """Leg labels of (E_k, node ket, node bra) -> E_{k+1}; bra copies of bonds are primed."""
        net = self.net
        bra = lambda l: l + "'" if net.is_bond(l) else l  # noqa: E731
        before, after = net.cut(k), net.cut(k + 1)
        ket_node = net.legs[k]
        if self.norm == FROBENIUS:
            env = (*before, *map(bra, before))
            return [env, ket_node, tuple(map(bra, ket_node))], (*after, *map(bra, after))
        return [tuple(before), ket_node], tuple(after)

    def step(self, k: int, env: Tensor, node: Tensor) -> Tensor:
        """E_{k+1} from E_k and node k (which may be a rescaled copy of self.nodes[k])."""
        self.contractions += 1
        inputs, output = self._plans[k]
        if k == 0:  # E_0 is the scalar 1
            inputs, tensors = inputs[1:], [node] * (len(inputs) - 1)
        else:
            tensors = [env] + [node] * (len(inputs) - 1)
        return contract(inputs, output, tensors)

    def cap(self, env: Tensor) -> Tensor:
        """The partial norm from an environment: join each open cut bond with its copy
        (Frobenius: a trace over ket = bra) or sum over it (lineal)."""
        if self.norm == LINEAL or env.dim() == 0:
            return env.sum()
        side = math.prod(env.shape[: env.dim() // 2])
        return env.reshape(side, side).diagonal().sum()

    @torch.no_grad()
    def node(self, k: int) -> Tensor:
        """Node k with every rescaling so far applied."""
        pending = self.log_scale - self._node_scale[k]
        if pending:
            self.nodes[k].mul_(math.exp(pending))
            self._node_scale[k] = self.log_scale
        return self.nodes[k]

    def flush(self) -> None:
        for k in range(len(self.nodes)):
            self.node(k)

    def _current(self, k: int) -> bool:
        """Bring kept E_k to the current scale; False if it cannot be (over/underflow)."""
        pending = self.log_scale - self._env_scale[k]
        if not pending:
            return True
        exponent = self.power * k * pending
        if abs(exponent) > 700:
            return False
        scaled = self.envs[k] * math.exp(exponent)
        if not bool(torch.isfinite(scaled).all()) or not bool((scaled != 0).any()):
            return False
        self.envs[k], self._env_scale[k] = scaled, self.log_scale
        return True

    def env(self, n: int) -> Tensor:
        if not self.reuse:
            e = self.envs[0]
            for k in range(n):
                e = self.step(k, e, self.node(k))
            return e
        start = min(n, len(self.envs) - 1)
        while start > 0 and not self._current(start):
            start -= 1
        for k in range(start, n):
            e = self.step(k, self.envs[k], self.node(k))
            if k + 1 < len(self.envs):
                self.envs[k + 1], self._env_scale[k + 1] = e, self.log_scale
            else:
                self.envs.append(e)
                self._env_scale.append(self.log_scale)
        return self.envs[n]

    def partial(self, n: int) -> float:
        """pF(n) (squared Frobenius) or the lineal partial norm of the first n nodes."""
        return float(self.cap(self.env(n)))

    def rescale(self, factor: float) -> None:
        """Multiply every node by `factor` (applied lazily, see the class notes)."""
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"rescaling factor must be finite and > 0, got {factor}")
        self.log_scale += math.log(factor)


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _in_range(value: float, lo: float, hi: float) -> bool:
    return math.isfinite(value) and lo <= value <= hi


def _check_tolerance(tolerance: Sequence[float]) -> tuple[float, float]:
    a, b = (float(t) for t in tolerance)
    if not (0 < a <= 1 <= b):
        raise ValueError(f"tolerance (a, b) needs 0 < a <= 1 <= b, got ({a}, {b})")
    return a, b


@torch.no_grad()
def normalize_partial(net: Network, nodes: Sequence[Tensor], norm: str = FROBENIUS, target: float = 1.0,
                      tolerance: Sequence[float] = (1e-3, 1e3), max_iter: int = 100,
                      generator: torch.Generator | None = None, reuse: bool = True,
                      raise_on_failure: bool = False) -> NormalizationResult:
    """The paper's FTNR (norm="frobenius") or LTNR (norm="lineal") protocol; rescales `nodes`
    in place. Success: ||A|| (or the lineal norm) within (a F, b F)."""
    _check_nodes(net, nodes, norm)
    a, b = _check_tolerance(tolerance)
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target norm must be finite and > 0, got {target}; use normalize_log for larger ones")
    envs = Environments(net, nodes, norm, reuse)
    q, n_nodes = envs.power, len(net)
    lo, hi = a * target, b * target
    res = NormalizationResult(False, "paper", norm, n_nodes, log_target=math.log(target))

    def finish(converged: bool, reason: str) -> NormalizationResult:
        envs.flush()
        res.converged, res.reason, res.contractions = converged, reason, envs.contractions
        if not converged and raise_on_failure:
            raise NormalizationFailed(res)
        return res

    zero = [k for k, t in enumerate(nodes) if not bool((t != 0).any())]
    if zero:
        res.log_norm = -math.inf
        return finish(False, f"node {zero[0]} is all zeros, so every norm is 0")

    def rescale(divisor: float, why: str) -> bool:
        """Divide every node by `divisor`; False when the step budget is spent."""
        if res.steps >= max_iter:
            return False
        res.steps += 1
        res.history.append(why)
        envs.rescale(1.0 / divisor)
        return True

    def root(x: float) -> float:
        return x ** (1.0 / (q * n_nodes))

    stage, resume = 2, 3  # resume: where a non-finite full norm sends us (3, or 5 after a full scan)
    while True:
        if stage == 2:
            full = envs.partial(n_nodes)
            value = full ** (1.0 / q) if math.isfinite(full) else math.inf
            if res.log_norm_initial is None and not res.history:
                res.log_norm_initial = _log(value) if math.isfinite(value) else None
            if res.history:
                res.passes += 1
            if math.isfinite(value) and value > 0:
                envs.rescale((target / value) ** (1.0 / n_nodes))
                final = envs.partial(n_nodes) ** (1.0 / q)
                res.log_norm = _log(final)
                if _in_range(final, lo, hi):
                    return finish(True, "")
                if not math.isfinite(final):
                    return finish(False, f"the norm after the final rescaling is {final}: its square (about "
                                         f"F^2 = {target:.3g}^2) is beyond float range")
                return finish(False, f"norm {final:.3g} after the final rescaling is outside ({lo:.3g}, {hi:.3g})")
            stage = resume
        elif stage == 3:
            p1 = envs.partial(1)
            if math.isinf(p1) or p1 == 0:
                xi = float(torch.rand((), generator=generator, dtype=torch.float64))
                factor = root(10.0 * (1.0 + xi))
                if not rescale(factor if p1 > 0 else 1.0 / factor, f"pF(1)={p1:.3g}: random rescale"):
                    return finish(False, f"pF(1) = {p1} after {max_iter} steps")
                stage = 2
                continue
            n = 2
            while n <= n_nodes - 1:
                pn = envs.partial(n)
                if math.isinf(pn) or pn == 0 or math.isnan(pn):
                    ok = rescale(root(envs.partial(n - 1)), f"pF({n})={pn:.3g}: divide by pF({n - 1})")
                elif not _in_range(pn, lo, hi):
                    ok = rescale(root(pn / target), f"pF({n})={pn:.3g} outside the range")
                else:
                    n += 1
                    continue
                if not ok:
                    return finish(False, f"pF({n}) = {pn:.3g} still outside ({lo:.3g}, {hi:.3g}) after {max_iter} steps")
            stage = resume = 5
        else:  # stage 5
            prev = envs.partial(n_nodes - 1)
            if not (math.isfinite(prev) and prev > 0):
                stage = resume = 3
                continue
            if not rescale(root(prev / target), f"pF(N-1)={prev:.3g}"):
                return finish(False, f"||A|| still not finite after {max_iter} steps (pF(N-1) = {prev:.3g})")
            stage = 2


def _log_pass(envs: Environments) -> tuple[list[float], float]:
    """One left-to-right pass with every node divided by its largest entry and every
    environment by its largest entry: the log scale taken out at each node (of pF, so already
    times q) and the capped value of the last, rescaled environment."""
    e = envs.envs[0]
    logs = []
    for k, node in enumerate(envs.nodes):
        m = float(node.abs().max())
        if m == 0:
            return logs + [-math.inf], 0.0
        e = envs.step(k, e, node / m)
        s = float(e.abs().max())
        if s == 0 or not math.isfinite(s):
            return logs + [-math.inf], 0.0
        e = e / s
        logs.append(envs.power * math.log(m) + math.log(s))
    return logs, float(envs.cap(e))


def log_norm(net: Network, nodes: Sequence[Tensor], norm: str = FROBENIUS) -> float:
    """Natural log of ||A||_F (or of the lineal norm), computed without any over/underflow."""
    _check_nodes(net, nodes, norm)
    envs = Environments(net, nodes, norm)
    logs, last = _log_pass(envs)
    if last <= 0 or not math.isfinite(sum(logs)):
        return -math.inf
    return (sum(logs) + math.log(last)) / envs.power


@torch.no_grad()
def normalize_log(net: Network, nodes: Sequence[Tensor], norm: str = FROBENIUS, target: float | None = 1.0,
                  log_target: float | None = None, tolerance: Sequence[float] = (1e-3, 1e3),
                  balance: bool = True, verify: bool = True, raise_on_failure: bool = False) -> NormalizationResult:
    """Rescale `nodes` in place so that ||A|| (or the lineal norm) is the target, in one pass.
    `log_target` (natural log) allows targets beyond float range, e.g. the paper's p^N."""
    _check_nodes(net, nodes, norm)
    a, b = _check_tolerance(tolerance)
    if log_target is None:
        if target is None or not (math.isfinite(target) and target > 0):
            raise ValueError(f"target norm must be finite and > 0, got {target}")
        log_target = math.log(target)
    envs = Environments(net, nodes, norm)
    q, n_nodes = envs.power, len(net)
    res = NormalizationResult(False, "log", norm, n_nodes, log_target=log_target)
    logs, last = _log_pass(envs)
    if last <= 0 or not math.isfinite(sum(logs)):
        res.contractions, res.log_norm = envs.contractions, -math.inf
        res.reason = "the norm is 0 (a zero node, or entries that cancel)"
        if raise_on_failure:
            raise NormalizationFailed(res)
        return res
    res.log_norm_initial = (sum(logs) + math.log(last)) / q
    if balance:  # node k / its share: afterwards the norm is last^(1/q)
        shares = [l / q for l in logs]
        current = math.log(last) / q
    else:
        shares = [0.0] * n_nodes
        current = res.log_norm_initial
    common = (log_target - current) / n_nodes
    for node, share in zip(nodes, shares):
        node.mul_(math.exp(common - share))
    if verify:
        logs, last = _log_pass(envs)
        res.log_norm = (sum(logs) + math.log(last)) / q if last > 0 else -math.inf
    else:
        res.log_norm = log_target
    res.contractions = envs.contractions
    res.converged = math.log(a) + log_target <= res.log_norm <= math.log(b) + log_target
    if not res.converged:
        res.reason = f"log norm {res.log_norm:.4g} outside the tolerance around {log_target:.4g}"
        if raise_on_failure:
            raise NormalizationFailed(res)
    return res
