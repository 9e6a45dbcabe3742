"""The run record's schema: every field's name, type, meaning, and where it is shown.

One list, read by everything that shows records: the end-of-run console table and the W&B run
summary (view "run"), the results table and `runs.csv` (view "table"), the short results table
(view "brief"), the report's columns, and the README's field list (`markdown()`, checked by a
test). A new run-level metric is a line here plus the code that computes it.

A field whose value is computed from other fields (`derive`) is not stored in record.json; the
readers compute it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RUN, TABLE, BRIEF = "run", "table", "brief"


def method_setting(rec: dict[str, Any]) -> str:
    """The method's own settings (beyond name, layers, paper) as `k=v`, so rows are told apart;
    the knob a budget chose, and the options its search set with it, replace their configured values."""
    m = dict((rec.get("config") or {}).get("method") or {})
    m.update(rec.get("budget_knob") or {})
    m.update((rec.get("budget_search") or {}).get("sets") or {})
    skip = {"name", "layers", "paper", "_target_"}  # `_target_`: how a plugin was found, not a setting
    return " ".join(f"{k}={v}" for k, v in m.items() if k not in skip and v is not None)


def _norm_loss_mean(rec: dict[str, Any]) -> Any:
    return (rec.get("norm_loss") or {}).get("mean")


def _norm_loss_energy_mean(rec: dict[str, Any]) -> Any:
    return (rec.get("norm_loss_energy") or {}).get("mean")


def _flops_ratio(rec: dict[str, Any]) -> Any:
    dense, compressed = rec.get("flops_dense"), rec.get("flops_compressed")
    return dense / compressed if dense and compressed else None


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # str | int | float | bool | list | dict
    meaning: str
    views: frozenset[str] = frozenset()
    unit: str = ""
    header: str = ""  # short column header for printed tables (default: the name)
    digits: int | None = None  # decimals worth showing (None: as is)
    derive: Callable[[dict[str, Any]], Any] | None = field(default=None, compare=False)

    def value(self, rec: dict[str, Any]) -> Any:
        return self.derive(rec) if self.derive is not None else rec.get(self.name)

    @property
    def title(self) -> str:
        return self.header or self.name


def _f(name: str, kind: str, meaning: str, *views: str, **kw: Any) -> Field:
    return Field(name, kind, meaning, frozenset(views), **kw)


FIELDS: tuple[Field, ...] = (
    # what was run
    _f("status", "str", "ok, failed or diverged (running while in progress)", TABLE, BRIEF),
    _f("dataset", "str", "dataset name (`dataset=`)", RUN, TABLE, BRIEF),
    _f("model", "str", "model name (`model=`)", RUN, TABLE, BRIEF),
    _f("method", "str", "compression method (`method=`)", RUN, TABLE, BRIEF),
    _f("setting", "str", "the method's own options as k=v (derived from `config`)", RUN, TABLE, BRIEF,
       derive=method_setting),
    _f("seed", "int", "the run's seed", TABLE, BRIEF),
    _f("paper", "str", "the paper the method comes from, `arXiv:<id>` (baselines: `baseline: ...`)"),
    _f("experiment", "str", "`experiment_name`, when set"),
    # accuracy at every stage
    _f("acc_pretrain", "float", "test accuracy of the dense model", RUN, TABLE, BRIEF, unit="%",
       header="acc dense", digits=2),
    _f("acc_compressed", "float", "test accuracy right after compression", RUN, TABLE, BRIEF, unit="%",
       header="acc compressed", digits=2),
    _f("acc_retrained", "float", "test accuracy after the last retrain epoch", RUN, TABLE, BRIEF, unit="%",
       header="acc retrained", digits=2),
    _f("acc_retrained_best", "float", "best test accuracy over the retrain epochs", RUN, TABLE, unit="%",
       header="acc best", digits=2),
    _f("acc_selected", "float", "test accuracy of the model the run ends with: the last retrain epoch's, or with "
       "pipeline.select=best_val_loss the epoch of lowest validation-split loss (DLRT's protocol)", RUN, TABLE,
       unit="%", header="acc selected", digits=2),
    _f("selected_epoch", "int", "the retrain epoch of that model (0: no retraining)", RUN, TABLE, header="sel ep"),
    _f("val_history", "list", "with dataset.val_split: loss and accuracy on the validation split after each "
       "retrain epoch"),
    _f("recovery_epochs", "int", "first retrain epoch whose test accuracy is at least the reference (acc_pretrain, "
       "or for a run from scratch acc_dense_twin) - recovery_tolerance; 0 if compression stayed within it; null if "
       "never reached or without a reference (`recovery_note`)", RUN, TABLE, BRIEF, header="recovery ep"),
    _f("recovery_reference", "str", "what recovery_epochs is measured against: `acc_pretrain` or `dense twin`"),
    _f("acc_dense_twin", "float", "runs from scratch: final test accuracy of the dense model trained with the same "
       "data, model, seed and budget (the pretrain cache's entry for it; pipeline.dense_twin)", RUN, TABLE, unit="%",
       header="acc dense twin", digits=2),
    _f("dense_twin_checkpoint", "str", "where that dense twin is (a pretrain cache entry)"),
    _f("recovery_note", "str", "why recovery_epochs is null without being unreached (a run from scratch without "
       "its dense twin)"),
    # size and cost
    _f("compression_ratio", "float", "all parameters of the dense model / all parameters after compression",
       RUN, TABLE, BRIEF, unit="x", header="ratio", digits=2),
    _f("compression_ratio_layers", "float", "dense / compressed weights of the compressed layers only", RUN,
       unit="x", digits=2),
    _f("compression_rate", "float", "100 * (1 - compressed / dense weights) over the compressed layers, biases "
       "excluded, weights counted as stored (rule `stored`)", RUN, TABLE, BRIEF, unit="%", header="rate %", digits=1),
    _f("count_rule", "str", "dlrt / tucker_adaptive: how the method's paper counts its compression "
       "(tnbench.functional.counting: `dlrt` or `stored`), the rule of the two fields below"),
    _f("params_paper", "int", "weights kept, counted by `count_rule` (dlrt: r(OUT+1) per factorized layer + "
       "the weights of the dense layers)"),
    _f("compression_rate_paper", "float", "the compression rate counted by `count_rule` (dlrt: over all conv/linear "
       "weights, as the DLRT table)", RUN, TABLE, unit="%", header="rate % (paper)", digits=1),
    _f("budget_kind", "str", "what `budget.*` asked for: ratio, params or flops (null: no budget)", TABLE),
    _f("budget_asked", "float", "the budget asked (a ratio, a parameter or a FLOP count)", RUN, TABLE, BRIEF,
       header="budget", digits=3),
    _f("budget_reached", "float", "the same measure of the compressed model (after retraining where the method's "
       "size changes in it: dlrt, tucker_adaptive; the value right after compression is in "
       "compression_at_compress)", RUN, TABLE, header="reached", digits=3),
    _f("budget_knob", "dict", "the knob value the budget's search chose, e.g. {rank: 5}, {rank_cap: 0.07}, {tau: 0.3}", RUN),
    _f("budget_search", "dict", "the search: tolerance, within it or not (for the model as compressed), the "
       "relative miss, a note on the method's granularity when no setting lands within it, options set with the "
       "knob (sets), the settings tried and their sizes, seconds"),
    _f("norm_loss", "dict", "per layer 1 - ||W_trunc||_F / ||W||_F (`layers`) and their `mean`"),
    _f("norm_loss_mean", "float", "mean norm loss over the compressed layers (derived from `norm_loss`)", RUN,
       TABLE, header="norm loss", digits=3, derive=_norm_loss_mean),
    _f("norm_loss_energy", "dict", "per layer the energy form 1 - ||W_trunc||_F^2 / ||W||_F^2 = 1 - (1 - "
       "norm loss)^2 (`layers`) and their `mean`"),
    _f("norm_loss_energy_mean", "float", "mean energy-form norm loss over the compressed layers (derived from "
       "`norm_loss_energy`)", RUN, TABLE, header="energy loss", digits=3, derive=_norm_loss_energy_mean),
    _f("correlation_loss", "dict", "svd_truncation: per layer the share of the cut's singular values discarded, "
       "1 - rank / their number (`layers`), and their `mean`"),
    _f("relative_error", "dict", "per layer ||W - W_trunc||_F / ||W||_F"),
    _f("ranks", "dict", "per layer, the ranks (bond dimensions) of its factorized form", RUN),
    _f("layers", "list", "per selected layer: kind, shape, ranks, dense and compressed weights, norm loss, "
       "relative error, whether compressed and why not"),
    _f("params_dense", "int", "parameters of the dense model", RUN, TABLE),
    _f("params_compressed", "int", "parameters after compression", RUN, TABLE),
    _f("layer_params_dense", "int", "weights of the compressed layers, dense"),
    _f("layer_params_compressed", "int", "weights of the compressed layers, compressed"),
    _f("weights_dense", "int", "weights (no biases) of every conv/linear layer of the dense model"),
    _f("flops_dense", "int", "FLOPs per example of one forward pass at the evaluation batch size "
       "(`flops_batch_size`), dense (torch.utils.flop_counter)", RUN, TABLE),
    _f("flops_compressed", "int", "the same after compression, factorized layers counted as executed", RUN,
       TABLE),
    _f("flops_dense_b1", "int", "FLOPs of one forward pass at batch size 1, dense"),
    _f("flops_compressed_b1", "int", "the same after compression (weight contraction or generation is not "
       "shared by a batch, so tensor-network layers cost more per example here)"),
    _f("flops_batch_size", "int", "the batch the per-example FLOPs are counted at: the evaluation batch "
       "(`dataset.eval_batch_size`, at most the test set)"),
    _f("flops_layers", "dict", "per compressible layer of the dense model (children included): FLOPs per "
       "example `dense`, `compressed` (at `flops_batch_size`) and `dense_b1`, `compressed_b1`"),
    _f("flops_ratio", "float", "flops_dense / flops_compressed: the FLOP reduction (derived)", RUN, TABLE,
       unit="x", header="flops x", digits=2, derive=_flops_ratio),
    _f("speedup_measured", "float", "throughput_compressed / throughput_dense: the measured speedup at the "
       "evaluation batch size (`flops_batch_size`)", RUN, TABLE, BRIEF, unit="x", header="speedup", digits=2),
    _f("speedup_latency", "float", "latency_dense_ms / latency_compressed_ms: the measured speedup at batch 1",
       RUN, TABLE, unit="x", header="speedup b1", digits=2),
    _f("latency_dense_ms", "float", "median time of a batch-1 forward pass of the dense model, after warm-up, "
       "on the training device", RUN, TABLE, unit="ms", digits=3),
    _f("latency_compressed_ms", "float", "the same for the compressed model (after retraining)", RUN, TABLE,
       unit="ms", digits=3),
    _f("throughput_dense", "float", "examples per second of the dense model at the evaluation batch size "
       "(median pass)", TABLE, unit="1/s", digits=0),
    _f("throughput_compressed", "float", "the same for the compressed model", TABLE, unit="1/s", digits=0),
    _f("speed", "dict", "how speed was measured: device, threads, batch sizes, precision, timed passes"),
    # how it went
    _f("pretrain_cache_hit", "bool", "the dense model came from the pretrain cache", RUN, TABLE, BRIEF,
       header="cached"),
    _f("pretrain_history", "list", "test accuracy after each pretrain epoch"),
    _f("retrain_history", "list", "test accuracy after each retrain epoch"),
    _f("compression_at_compress", "dict", "size right after compression, for methods whose ranks change in "
       "retraining (with the budget reached then)"),
    _f("time_pretrain_s", "float", "seconds spent pretraining (or loading the dense model)", RUN, TABLE, unit="s",
       digits=1),
    _f("time_compress_s", "float", "seconds spent compressing", RUN, TABLE, unit="s", digits=1),
    _f("time_retrain_s", "float", "seconds spent retraining", RUN, TABLE, unit="s", digits=1),
    _f("time_total_s", "float", "seconds for the whole run", unit="s", digits=1),
    _f("pretrain_source", "str", "the checkpoint given as pipeline.init_checkpoint, when used"),
    _f("pretrain_checkpoint", "str", "where the dense weights are (cache entry or run dir)"),
    _f("num_train", "int", "training examples used"),
    _f("num_test", "int", "test examples used"),
    _f("torch_threads", "int", "torch intra-op threads of the job"),
    # method-specific results
    _f("rank_history", "list", "dlrt / tucker_adaptive: ranks and compression rate after each retrain epoch"),
    _f("truncation", "dict", "svd_truncation: cut, target kind and value, factorized or not"),
    _f("adtn_fit", "list", "adtn / adqc: per group, the stage-1 fit (distances, steps, curve, time; kept: false when dropped for fit_max_distance)"),
    # bookkeeping
    _f("error", "str", "the error of a failed or diverged run, one line", TABLE),
    _f("traceback", "str", "the traceback of an internal error"),
    _f("diverged_stage", "str", "stage in which a diverged run's loss became non-finite"),
    _f("diverged_step", "int", "optimizer step at which it did"),
    _f("stage", "str", "the stage a run that did not finish was in"),
    _f("attempt", "int", "how many times this run was started (resumed after a kill: > 1)"),
    _f("resumed_stages", "list", "stages resumed from an epoch checkpoint"),
    _f("wandb_run_id", "str", "the W&B run (kept across resumes)"),
    _f("wandb_dir", "str", "where the offline W&B files are"),
    _f("config", "dict", "the resolved config of the run"),
    _f("model_file", "str", "the weights of the model the run ended with (`model.safetensors`, its "
       "architecture in `model.json` beside it; `tnbench.load(run_dir)`)"),
    _f("export", "dict", "per format exported by `python -m tnbench.export`: the file, and the max abs "
       "difference of its outputs from the reloaded model on test images"),
    _f("run_dir", "str", "the run's directory (added by the readers)", RUN, TABLE),
)

BY_NAME = {f.name: f for f in FIELDS}


def view(name: str) -> list[Field]:
    return [f for f in FIELDS if name in f.views]


def columns(name: str) -> list[str]:
    return [f.name for f in view(name)]


def row(rec: dict[str, Any], fields: list[Field] | None = None) -> dict[str, Any]:
    """A record as a flat row of the given fields (default: the table view)."""
    return {f.name: f.value(rec) for f in (fields if fields is not None else view(TABLE))}


def markdown() -> str:
    """The README's field list."""
    lines = ["| field | type | meaning |", "|---|---|---|"]
    for f in FIELDS:
        unit = f" ({f.unit})" if f.unit else ""
        lines.append(f"| `{f.name}` | {f.kind} | {f.meaning}{unit} |")
    return "\n".join(lines)
