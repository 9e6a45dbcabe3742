"""One budget for every method: `budget.ratio`, `budget.params` or `budget.flops`.

A method with a size knob (`Method.knob`: rank, bond dimension, Tucker rank fraction, CP rank,
circuit depth, norm loss, the rank-adaptive methods' rank cap or tolerance tau) gets the knob value
whose compressed model is closest to the budget,
found without training: bisection on the parameter count (or FLOPs) of the compressed model,
which the method computes from shapes (`Method.size_hint`, also on the `meta` device) or which
is counted on a compressed copy of the pretrained model where the size depends on the weights'
values (norm loss, tau: the method sizes those from the weights' singular values) or the budget is in FLOPs (per example of a forward pass at batch 1,
`flops_compressed_b1`). The size is monotone in the knob, so the search
lands within `budget.tolerance` of the budget or, where one knob step jumps over it, on the
closer of the two settings around it (the method's granularity, stated in the record).

For `dlrt` / `tucker_adaptive`, whose ranks move while retraining, the search lands the model as
compressed (`Method.knob_for`: by default at its rank caps, which the ranks then never exceed; with
`method.budget_knob=tau` at the ranks the truncation rule gives at tau); the record's
`budget_reached` is then measured again on the retrained model, and the value right after
compressing is kept in `compression_at_compress` (tnbench.pipeline.stages).

`search` is pure (a size function in, the chosen value out); `apply_budget` runs it in the
compress stage and `check_budget` in the up-front check of every job.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tnbench.config import budget_kind
from tnbench.errors import ConfigError

MAX_INT_KNOB = 1 << 20
FLOAT_STEPS = 40


@dataclass
class Target:
    """What was asked, in the measure it was asked in, and how a size compares to it."""

    kind: str  # ratio | params | flops
    asked: float
    tolerance: float
    dense_params: int

    @property
    def goal(self) -> float:
        """The size (parameters, or FLOPs) the compressed model should have."""
        return self.dense_params / self.asked if self.kind == "ratio" else float(self.asked)

    def reached(self, size: float) -> float:
        return self.dense_params / size if self.kind == "ratio" else float(size)

    def miss(self, size: float) -> float:
        """reached / asked - 1: 0.03 is 3% more compression (ratio) or size (params, flops)."""
        return self.reached(size) / self.asked - 1.0

    def text(self, size: float) -> str:
        value = self.reached(size)
        return f"{value:.3g}x" if self.kind == "ratio" else f"{value:,.0f} {self.kind}"


@dataclass
class Found:
    value: int | float
    size: int
    reached: float
    miss: float
    within: bool
    evaluations: list[tuple[float, int]] = field(default_factory=list)
    note: str = ""


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def search(knob: Any, size: Callable[[Any], int], target: Target, method: str = "") -> Found:
    """The knob value whose size is closest to `target` (see the module notes). Raises a one-line
    ConfigError when even the knob's most compressing value stays above the budget."""
    seen: dict[Any, int] = {}

    def f(v: Any) -> int:
        v = knob.cast(v)
        if v not in seen:
            seen[v] = int(size(v))
        return seen[v]

    goal = target.goal
    small = knob.cast(knob.low if knob.more_params else knob.high)  # the most compressing value
    short = target.miss(f(small))
    if (short < -target.tolerance) if target.kind == "ratio" else (short > target.tolerance):
        best = target.text(f(small))
        limit = f"budget.ratio <= {target.reached(f(small)):.3g}" if target.kind == "ratio" else \
            f"budget.{target.kind} >= {f(small)}"
        raise ConfigError(f"budget.{target.kind}={_fmt(target.asked)} is out of reach for method={method}: its most "
                          f"compressing setting ({knob.option}={_fmt(small)}) gives {best}; allowed: {limit}")
    if knob.kind is int:
        lo, hi = _int_bracket(knob, f, goal)
        while hi - lo > 1:  # invariant: f(lo) <= goal < f(hi) in the direction of more parameters
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if f(mid) <= goal else (lo, mid)
        candidates = [lo, hi]
    else:
        lo, hi = float(knob.low), float(knob.high)
        if not knob.more_params:
            lo, hi = hi, lo  # walk from the most compressing end either way
        candidates = [lo, hi]
        for _ in range(FLOAT_STEPS):
            mid = (lo + hi) / 2
            candidates.append(mid)
            if abs(target.miss(f(mid))) <= target.tolerance / 4 or abs(hi - lo) < 1e-5:
                break
            lo, hi = (mid, hi) if f(mid) <= goal else (lo, mid)
    value = min((knob.cast(c) for c in candidates), key=lambda c: (abs(target.miss(f(c))), c))
    if knob.kind is float:  # the shortest number from 3 significant digits on that gives the same size
        for digits in range(3, 7):
            short = float(f"{value:.{digits}g}")
            if knob.low <= short <= knob.high and f(short) == f(value):
                value = short
                break
    s = f(value)
    found = Found(value, s, target.reached(s), target.miss(s), abs(target.miss(s)) <= target.tolerance,
                  sorted(seen.items()))
    if not found.within:
        steps = sorted({(knob.cast(c), target.text(f(c))) for c in candidates})
        found.note = (f"granularity ({knob.granularity or 'knob steps'}): no setting lands within "
                      f"{target.tolerance:.0%}; " + ", ".join(f"{knob.option}={_fmt(v)} gives {t}" for v, t in steps))
    return found


def _int_bracket(knob: Any, f: Callable[[Any], int], goal: float) -> tuple[int, int]:
    """lo, hi with f(lo) <= goal < f(hi), or hi the knob's last useful value (size saturated)."""
    lo = int(knob.low)
    if f(lo) > goal:
        return lo, lo
    top = int(knob.high) if knob.high is not None else MAX_INT_KNOB
    hi = lo
    while hi < top:
        nxt = min(top, max(hi * 2, hi + 1))
        if f(nxt) > goal:
            return hi, nxt
        if f(nxt) == f(hi):  # the size stopped growing (ranks capped, layers left dense): saturated
            return hi, hi
        hi = nxt
    return hi, hi


def with_knob(section: Any, knob: Any, value: Any) -> DictConfig:
    """The method section with the knob set, the options that would override it cleared and
    those it needs set (`Knob.sets`)."""
    plain = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section)
    plain[knob.option] = value
    for key in knob.clears:
        if key in plain:
            plain[key] = None
    plain.update(dict(knob.sets))
    return OmegaConf.create(plain)


def knob_of(cfg: DictConfig) -> Any:
    """The method's knob; a one-line ConfigError if it has none."""
    from tnbench.methods import METHODS

    knob = METHODS.resolve(cfg.method).knob_for(cfg.method)
    if knob is None:
        with_knobs = [n for n in METHODS.names() if getattr(METHODS.get(n), "knob", None) is not None]
        raise ConfigError(f"method={cfg.method.name} has no size knob, so budget.{budget_kind(cfg.budget)} cannot apply "
                          f"to it; allowed: methods with one ({', '.join(with_knobs)}) or no budget")
    return knob


def make_target(cfg: DictConfig, dense_params: int) -> Target:
    kind = budget_kind(cfg.budget)
    assert kind is not None
    return Target(kind, float(cfg.budget[kind]), float(cfg.budget.tolerance), dense_params)


def sizer(cfg: DictConfig, knob: Any, model: Any, kind: str, input_shape: tuple[int, ...] | None,
          hint_only: bool = False) -> Callable[[Any], int | None]:
    """value -> size of the compressed model: the method's size hint, else a compressed copy."""
    from tnbench.methods import build_method
    from tnbench.methods.base import copy_model
    from tnbench.pipeline.metrics import count_flops, count_params

    def size(value: Any) -> int | None:
        method = build_method(with_knob(cfg.method, knob, value))
        if kind != "flops":
            hint = method.size_hint(model)
            if hint is not None or hint_only:
                return hint
        elif hint_only:
            return None
        dup = copy_model(model)  # sharing the layers' decompositions: each computed once
        method.compress(dup)
        return count_flops(dup, input_shape)["total"] if kind == "flops" else count_params(dup)

    return size


def check_budget(cfg: DictConfig, model: Any) -> None:
    """Up front, on the meta-device model: the method has a knob and, where its size follows from
    shapes, the budget is within reach (where it depends on the weights, the compress stage
    says so)."""
    kind = budget_kind(cfg.get("budget"))
    if kind is None:
        return
    knob = knob_of(cfg)
    size = sizer(cfg, knob, model, kind, None, hint_only=True)
    small = knob.cast(knob.low if knob.more_params else knob.high)
    if size(small) is None:
        return
    dense = sum(p.numel() for p in model.parameters())
    search(knob, size, make_target(cfg, dense), cfg.method.name)


def tried_text(n: int) -> str:
    return f"{n} setting{'' if n == 1 else 's'} tried"


def apply_budget(cfg: DictConfig, method: Any, model: Any, input_shape: tuple[int, ...],
                 dense_params: int, dense_flops: int, show: bool = False) -> tuple[Any, dict[str, Any]]:
    """The method with its knob set to meet the budget, and the record's budget fields; with
    `show`, a progress line (settings tried, the closest so far)."""
    kind = budget_kind(cfg.get("budget"))
    if kind is None:
        return method, {}
    from tnbench.methods import build_method
    from tnbench.pipeline.progress import status_line

    knob = knob_of(cfg)
    target = make_target(cfg, dense_params)
    size = sizer(cfg, knob, model, kind, input_shape)
    tried: dict[Any, int] = {}
    asked = f"asked {target.text(target.goal)}"

    def sized(value: Any) -> int:
        tried[value] = int(size(value))
        best = min(tried, key=lambda v: abs(target.miss(tried[v])))
        line.show(f"best so far {knob.option}={_fmt(best)} gives {target.text(tried[best])} ({asked})",
                  tried_text(len(tried)), len(tried))
        return tried[value]

    with status_line("budget", enabled=show) as line:
        line.show(f"searching {knob.option} ({asked})", tried_text(0))
        found = search(knob, sized, target, cfg.method.name)
        line.finish(f"{knob.option}={_fmt(found.value)} gives {target.text(found.size)} ({asked})",
                    tried_text(len(tried)))
    record = {
        "budget_kind": kind,
        "budget_asked": target.asked,
        "budget_reached": found.reached,
        "budget_knob": {knob.option: found.value},
        "budget_search": {"tolerance": target.tolerance, "within": found.within, "miss": found.miss,
                          "note": found.note, "dense_flops": dense_flops, **({"sets": dict(knob.sets)} if knob.sets else {}),
                          "evaluations": [[v, s] for v, s in found.evaluations]},
    }
    return build_method(with_knob(cfg.method, knob, found.value)), record
