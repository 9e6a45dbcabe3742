"""What every compression method shares: layer selection, replacement and per-layer reports."""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from weakref import WeakKeyDictionary

import torch
from omegaconf import DictConfig
from torch import nn

from tnbench.config import MethodConfig, check_ranges, typed
from tnbench.errors import ConfigError
from tnbench.functional.tucker import left_singular_pairs, unfold

COMPRESSIBLE = (nn.Linear, nn.Conv2d)
DEPTH_PRESETS = ("shallow", "deep")


class LayerObserver(Protocol):
    """Told which layers a method selected and when each is done (the pipeline's progress)."""

    def selected(self, names: list[str]) -> None: ...

    def done(self, name: str) -> None: ...


_observer: ContextVar[LayerObserver | None] = ContextVar("tnbench_layer_observer", default=None)


@contextmanager
def observe_layers(observer: LayerObserver) -> Iterator[None]:
    """While active, `select_layers` / `select_conv_layers` report the selection and
    `replace_module` / `left_dense` each finished layer to `observer`: every method shows its
    progress per layer without knowing about it."""
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


def _selected(layers: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    if (observer := _observer.get()) is not None:
        observer.selected([n for n, _ in layers])
    return layers


def _done(name: str) -> None:
    if (observer := _observer.get()) is not None:
        observer.done(name)


@dataclass
class LayerReport:
    """One compressed (or deliberately skipped) layer. Parameter counts are weights only:
    biases are never factorized, and the DLRT/TDLRT papers count weights without them."""

    name: str
    kind: str
    shape: list[int]
    ranks: list[int]
    weight_params_dense: int
    weight_params_compressed: int
    norm_loss: float = 0.0
    relative_error: float = 0.0
    compressed: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kind_of(layer: nn.Module) -> str:
    return "conv" if isinstance(layer, nn.Conv2d) else "linear"


def left_dense(name: str, layer: nn.Module, note: str, ranks: list[int] | None = None) -> LayerReport:
    """The report of a selected layer the method leaves as it is, and why."""
    _done(name)
    forget_weight_memo(layer)  # what a budget's search computed for it is not needed
    w = layer.weight
    return LayerReport(name, kind_of(layer), list(w.shape), list(ranks or []), w.numel(), w.numel(),
                       compressed=False, note=note)


def compressible_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, COMPRESSIBLE)]


def select_layers(model: nn.Module, spec: Any) -> list[tuple[str, nn.Module]]:
    """`all`, `all_but_first_last` (the papers' default: input and classifier stay dense),
    or an explicit list of module names."""
    return _selected(_select(model, spec))


def ungrouped_layers(model: nn.Module, spec: Any, reports: list[LayerReport]) -> Iterator[tuple[str, nn.Module, str]]:
    """The selected layers a matrix/Tucker factorization applies to, as (name, layer, kind);
    grouped convs are left dense, their report appended to `reports`."""
    for name, layer in select_layers(model, spec):
        kind = kind_of(layer)
        if kind == "conv" and layer.groups != 1:
            reports.append(left_dense(name, layer, "grouped conv left dense"))
            continue
        yield name, layer, kind


def _select(model: nn.Module, spec: Any) -> list[tuple[str, nn.Module]]:
    layers = compressible_layers(model)
    if spec == "all":
        return layers
    if spec == "all_but_first_last":
        return layers[1:-1]
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, Iterable):
        names = dict(layers)
        wanted = list(spec)
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ConfigError(
                f"method.layers names unknown layer(s) {', '.join(unknown)}; "
                f"allowed: all, all_but_first_last, or names among {', '.join(names)}"
            )
        return [(n, names[n]) for n in wanted]
    raise ConfigError(f"method.layers must be all, all_but_first_last or a list of names; got {spec!r}")


def select_conv_layers(model: nn.Module, spec: Any, include_linear: bool) -> list[tuple[str, nn.Module]]:
    """`select_layers` for methods that work on conv kernels, plus the depth presets `shallow` /
    `deep`: the first / second half of the model's convs (the shallow half takes the middle conv
    when their number is odd). `all` / `all_but_first_last` and the presets take Linear layers
    only with `include_linear`; layers named explicitly are taken as named."""
    if isinstance(spec, str) and spec in DEPTH_PRESETS:
        convs = [(n, m) for n, m in compressible_layers(model) if isinstance(m, nn.Conv2d)]
        half = (len(convs) + 1) // 2
        chosen = convs[:half] if spec == "shallow" else convs[half:]
        if not chosen:
            raise ConfigError(f"method.layers={spec} selects no conv layer in this model ({len(convs)} convs)")
        return _selected(chosen)
    chosen = _select(model, spec)
    if spec in ("all", "all_but_first_last") and not include_linear:
        chosen = [(n, m) for n, m in chosen if isinstance(m, nn.Conv2d)]
    return _selected(chosen)


def check_modes(modes: Any, allowed: tuple[str, ...], key: str) -> list[str]:
    """Distinct mode names among `allowed`, in `allowed`'s order; ConfigError otherwise."""
    modes = list(modes)
    bad = [m for m in modes if m not in allowed]
    if bad or not modes or len(set(modes)) != len(modes):
        raise ConfigError(f"{key} must be distinct names among {', '.join(allowed)}; got {modes}")
    return [m for m in allowed if m in modes]


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-d weights are in channels-last order (judged on those where the two
    orders differ: a 1-channel or 1x1 kernel is contiguous in both)."""
    return any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters())


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` in place of the submodule `name`, in the model's memory format: a contiguous
    layer among channels-last ones takes a slow mixed-layout path (~4x on CPU)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if is_channels_last(model):
        new = new.to(memory_format=torch.channels_last)
    setattr(parent, child, new)
    _done(name)


@dataclass
class _Memo:
    # the weight when `values` were computed: its tensor, storage and version counter. Each
    # in-place write moves the version; `p.data = t` (Module.to, a memory-format change) and a
    # new Parameter swapped in replace the tensor or storage, which the counter does not show
    stamp: tuple[int, int, int]
    values: dict[Any, Any] = field(default_factory=dict)


def _stamp(weight: torch.Tensor) -> tuple[int, int, int]:
    return id(weight), weight.data_ptr(), weight._version


# per layer, values computed from its weight (the decompositions a budget's search sizes the layer
# from at many knob values and compress then cuts), kept while the layer lives, its weight is
# unchanged and compress has not yet used them (`forget_weight_memo`)
_WEIGHT_MEMO: WeakKeyDictionary[nn.Module, _Memo] = WeakKeyDictionary()


def _memo(layer: nn.Module) -> _Memo:
    stamp = _stamp(layer.weight)
    memo = _WEIGHT_MEMO.get(layer)
    if memo is None or memo.stamp != stamp:
        memo = _WEIGHT_MEMO[layer] = _Memo(stamp)
    return memo


def weight_memo(layer: nn.Module, key: Any, compute: Callable[[torch.Tensor], Any]) -> Any:
    """`compute(layer.weight.detach())`, computed once per `key` until the weight changes (an
    in-place write, new data or a new Parameter: `_Memo.stamp`)."""
    values = _memo(layer).values
    if key not in values:
        values[key] = compute(layer.weight.detach())
    return values[key]


def forget_weight_memo(layer: nn.Module) -> None:
    """Drop what was kept for the layer (compress is done with it: its decompositions go)."""
    _WEIGHT_MEMO.pop(layer, None)


def copy_model(model: nn.Module) -> nn.Module:
    """`copy.deepcopy(model)` whose compressible layers share their originals' weight memo: the
    weights are equal, so a decomposition computed on either (a budget's search compresses
    copies) is computed once. A later write to either weight parts them."""
    dup = copy.deepcopy(model)
    for a, b in zip(model.modules(), dup.modules()):
        if isinstance(a, COMPRESSIBLE) and isinstance(b, COMPRESSIBLE):
            _WEIGHT_MEMO[b] = _Memo(_stamp(b.weight), _memo(a).values)
    return dup


def weight_pairs(layer: nn.Module, shape: tuple[int, ...], axis: int,
                 count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`left_singular_pairs` of the mode-`axis` unfolding of the layer's weight viewed as `shape`
    (float64), with every vector that call gives for up to `count` (default: the unfolding's rank)
    of them, so any fewer are a leading slice of it; computed once while the weight is unchanged:
    a budget's search reads the singular values at many tolerances or compresses copies at many
    ranks, and compress starts the layer from the vectors (hosvd's `pairs`)."""
    rows = shape[axis]
    cols = math.prod(shape) // rows
    full = count is not None and count > cols and rows > cols  # a tall unfolding's SVD with its full basis
    return weight_memo(layer, ("tucker", shape, axis, full),
                       lambda w: left_singular_pairs(unfold(w.double().reshape(shape), axis),
                                                     rows if full else min(rows, cols)))


def weight_pairs_at(layer: nn.Module, shape: tuple[int, ...], ranks: dict[int, int]
                    ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per axis in `ranks`, the `weight_pairs` a factorization at that rank starts from (hosvd's
    `pairs`): those a budget's search read, not computed again."""
    return {a: weight_pairs(layer, shape, a, min(r, shape[a])) for a, r in ranks.items()}


@dataclass(frozen=True)
class Knob:
    """The option that sets a method's size, for `budget.*` (tnbench.pipeline.budget): the search
    sets `option` (an int or float in [low, high]; high None: up to where the size stops
    growing), clears `clears` (options that would override it) and sets the options in `sets`
    (name, value) that make the knob decide the size (e.g. a rank-adaptive method's starting
    ranks from its tolerance). `more_params`: a larger value keeps more parameters. `granularity`: why the size moves in steps, stated in records
    when the budget falls between two of them."""

    option: str
    kind: type = int
    low: float = 1
    high: float | None = None
    more_params: bool = True
    clears: tuple[str, ...] = ()
    sets: tuple[tuple[str, Any], ...] = ()
    granularity: str = ""

    def cast(self, value: float) -> int | float:
        return int(round(value)) if self.kind is int else float(value)


class Method:
    """A compression method. `compress` changes a pretrained model in place and reports each
    layer; `callbacks` lets a method take part in retraining without the pipeline knowing.
    `config_class` is the structured config its YAML is validated against."""

    config_class: type = MethodConfig
    # how the method's paper counts the size of a compressed network, where it publishes one:
    # a rule of tnbench.functional.counting (records then carry `params_paper` and
    # `compression_rate_paper` beside our stored count); None: no paper figure to compare with
    count_rule: str | None = None
    knob: Knob | None = None  # the size knob a budget searches (None: budgets do not apply)

    @classmethod
    def knob_for(cls, section: Any) -> Knob | None:
        """The knob a budget searches for this method section (`knob`, unless an option of the
        section picks another: the rank-adaptive methods' `budget_knob`)."""
        return cls.knob

    # options of its section that cannot change its numbers: shared options it does not read
    # (`rank` for a method without one) and speed or memory settings. They are left out of the
    # run key (tnbench.pipeline.identity), so `-m method=none,svd method.rank=4,8` is 3 runs.
    ignores: tuple[str, ...] = ()

    # options read only under a budget (budget.*), e.g. which knob it drives: without one they
    # cannot change a number, so the run keys leave them out (tnbench.pipeline.identity)
    budget_options: tuple[str, ...] = ()

    @classmethod
    def ignored(cls, cfg: Any) -> set[str]:
        """`ignores`, plus options that this particular setting makes unread (override: e.g.
        SVD with `energy` set does not read `rank`). `cfg` is the typed method section."""
        return set(cls.ignores)

    def __init__(self, cfg: Any) -> None:
        # the composed config's `method` section is open; the method's own schema types it
        self.cfg = typed(cfg, self.config_class, "method") if isinstance(cfg, DictConfig) else cfg
        check_ranges(self.cfg, self.config_class, "method")  # what each field declares (tnbench.config)
        self.validate()  # what ties fields together

    def validate(self) -> None:
        """Raise ConfigError for out-of-range settings, before any work starts."""

    def selected_layers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """The layers `compress` works on (`method.layers`)."""
        return select_layers(model, self.cfg.layers)

    def check_model(self, model: nn.Module) -> None:
        """Check the settings against the model's real layers before any work: the up-front
        check builds the model on the `meta` device (shapes, no values) and calls this. Raise
        ConfigError where `compress` would refuse a layer or would compress nothing. Methods
        with shape limits (ranks, factors, qubits) extend it."""
        if not self.selected_layers(model):
            names = ", ".join(n for n, _ in compressible_layers(model))
            raise ConfigError(f"method.layers={self.cfg.layers} selects no layer of this model for "
                              f"method={self.cfg.name}, which would compress nothing; allowed: all, "
                              f"all_but_first_last or names among {names}")

    def check_saves(self, model: nn.Module) -> None:
        """Settings at which `compress` would leave every selected layer dense (each layer's
        size, known from shapes, is its dense size) make a run that compresses nothing."""
        layers = self.selected_layers(model)
        sizes = [self.layer_size(name, layer) for name, layer in layers]
        if not layers or any(s is None or s != layer.weight.numel() for s, (_, layer) in zip(sizes, layers)):
            return
        own = self.knob_for(self.cfg)
        knob = f"a smaller method.{own.option}" if own and own.more_params else \
            f"a larger method.{own.option}" if own else "other settings"
        raise ConfigError(f"method={self.cfg.name} with these settings leaves every selected layer dense "
                          f"({', '.join(n for n, _ in layers)}), so the run would compress nothing; allowed: "
                          f"{knob}, one that saves parameters in at least one layer")

    def compress(self, model: nn.Module) -> list[LayerReport]:
        raise NotImplementedError

    def layer_size(self, name: str, layer: nn.Module) -> int | None:
        """Weights of selected `layer` after `compress` (its own count if left dense), known from
        shapes alone; None where it depends on the values (then a budget compresses a copy)."""
        return None

    def size_hint(self, model: nn.Module) -> int | None:
        """Parameters of the whole model after `compress`, from shapes alone (works on the
        `meta` device), or None where they depend on the weights' values. Kept equal to what
        `compress` gives by tests/methods/test_base.py."""
        total = sum(p.numel() for p in model.parameters())
        for name, layer in self.selected_layers(model):
            size = self.layer_size(name, layer)
            if size is None:
                return None
            total += size - layer.weight.numel()
        return total

    def callbacks(self) -> list[Any]:
        """Lightning callbacks active during retraining (e.g. rank adaptation)."""
        return []

    def describe(self, model: nn.Module) -> list[LayerReport] | None:
        """Layer reports of the model *after* retraining, for methods whose structure changes
        while training (adaptive ranks); None means the post-compression reports still hold."""
        return None

    def extra_record(self) -> dict[str, Any]:
        """Method-specific results merged into the run record (e.g. rank histories)."""
        return {}
