"""The truncation experiment of arXiv 2403.14379 as one command: accuracy of one pretrained
model, without retraining, after bipartition truncation of its conv kernels at every cut x a
grid of norm losses x (each conv alone, and all convs together); optionally CP truncation at
a grid of CP ranks. Plus the singular-value spectra of every conv along every cut.

    python -m tnbench.studies.truncation dataset=fashion_mnist model=cnn4 [tnbench overrides]
        [--norm-losses 0.05,0.1,...] [--cuts out,in,...] [--cp-ranks 4,8,16] [--out DIR]
        [--eval-subset N] [--factorized] [--include-linear] [--threshold 1.0] [--plots-only]

Positional `key=value` arguments are tnbench config overrides (composed from conf/ like
`python -m tnbench`, with method=svd_truncation and logger=none), so the dense model is the
one the pipeline trains and caches for the same dataset/model/pipeline settings: it comes from
the pretrain cache, or is pretrained (and cached) first. The data is loaded once; the test
batches are built once and kept; every grid point restores the model from the in-memory
state dict, truncates with the real `svd_truncation` / `cp` methods and evaluates. Points
whose chosen ranks equal an earlier point's (coarse spectra, e.g. the KH cut) reuse its
accuracy; points that truncate nothing take the dense accuracy.

Outputs (default <paths.results_dir>/studies/truncation_<model>_<dataset>/):
  truncation.csv          one row per (method, cut, target, layers): ranks, achieved norm loss
                          (both forms), correlation loss and relative error, parameters,
                          accuracy, accuracy drop (tnbench.studies.truncation_tables)
  spectra.csv             singular values of every conv along every cut, with the norm loss and
                          parameter share of keeping the top k
  tolerated_norm_loss.csv per cut and layer setting, the largest grid norm loss whose accuracy
                          (and that of every smaller one) stays within --threshold points
  accuracy_by_cut.png      accuracy vs achieved norm loss, a panel per cut, a line per layer
  accuracy_vs_energy_norm_loss.png  the same against the energy form 1 - ||W_t||^2 / ||W||^2
  accuracy_vs_relative_error.png  the same against the achieved relative error
  accuracy_by_layer.png    the same, a panel per layer setting, a line per cut
  accuracy_vs_compression.png  accuracy vs the weights the factorized form removes, per setting
  spectra.png, norm_loss_vs_params.png  normalized spectra / norm loss vs factorized size, per conv
  depth_summary.png        accuracy drop at norm loss 0.3 and 0.5, and the tolerated norm loss,
                           against the depth of the layer truncated alone, per cut
  study.json               settings, dense accuracy, evaluation counts, timings
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from tnbench.functional.bipartition import CUTS
from tnbench.methods import METHODS, build_method
from tnbench.methods.base import compressible_layers
from tnbench.studies.truncation_tables import ALL, backfill, row, spectra_frame, tolerated

DEFAULT_NORM_LOSSES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tnbench.studies.truncation",
        description="Accuracy after post-training truncation (arXiv 2403.14379): every cut x norm loss x "
                    "layer, no retraining. Positional key=value arguments are tnbench config overrides.")
    p.add_argument("overrides", nargs="*", help="tnbench overrides, e.g. dataset=fashion_mnist model=cnn4")
    p.add_argument("--norm-losses", default=",".join(map(str, DEFAULT_NORM_LOSSES)),
                   help="comma-separated norm-loss targets in [0, 1) (default: %(default)s)")
    p.add_argument("--cuts", default=",".join(CUTS), help="comma-separated cuts (default: all seven)")
    p.add_argument("--cp-ranks", default="", help="comma-separated CP ranks for CP truncation rows (default: none)")
    p.add_argument("--cp-iters", type=int, default=50, help="ALS sweeps at most per CP (default: %(default)s)")
    p.add_argument("--out", default=None, help="output directory (default: <paths.results_dir>/studies/"
                                               "truncation_<model>_<dataset>)")
    p.add_argument("--eval-subset", type=int, default=0,
                   help="evaluate on a fixed random subset of N test images (0: the whole test set)")
    p.add_argument("--factorized", action="store_true",
                   help="evaluate factorized layers instead of dense-reconstructed kernels (same numbers up to "
                        "rounding, different speed)")
    p.add_argument("--include-linear", action="store_true", help="also truncate Linear layers (OUT | IN)")
    p.add_argument("--no-single-layers", action="store_true", help="only truncate all layers together")
    p.add_argument("--plots-only", action="store_true",
                   help="redraw the plots and tolerated_norm_loss.csv from the CSVs already in the output directory")
    p.add_argument("--threshold", type=float, default=1.0,
                   help="accuracy drop (points) still counted as 'little' in tolerated_norm_loss (default: %(default)s)")
    return p.parse_args(argv)


def _floats(text: str, name: str) -> list[float]:
    from tnbench.errors import ConfigError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers, got {text!r}") from None


def compose_config(overrides: list[str]) -> DictConfig:
    """The study's job config: the command line's composition (tnbench.api.compose) with the
    truncation method and no logger, checked like any job."""
    from tnbench.api import compose
    from tnbench.pipeline.checks import check

    cfg = compose(["method=svd_truncation", "logger=none", *overrides])
    check(cfg)
    return cfg


def pretrained_model(cfg: DictConfig, work_dir: Path) -> tuple[nn.Module, Any, dict[str, Any], dict[str, int]]:
    """The pipeline's dense model (pretrain cache, or pretrain and cache), its data module,
    the pretrain record and the model's geometry."""
    from tnbench.data.module import InMemoryDataModule
    from tnbench.models import build_model
    from tnbench.pipeline.classifier import Classifier
    from tnbench.pipeline.stages import Run, load_dataset, pretrain

    data = load_dataset(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # as run_pipeline: same initial weights
    geometry = {"in_channels": data.in_channels, "image_size": data.image_size, "num_classes": data.num_classes}
    model = build_model(cfg.model.name, **geometry, **cfg.model.options)
    module = Classifier(model, data.num_classes, channels_last=cfg.trainer.channels_last,
                        gradient_clip_val=cfg.trainer.gradient_clip_val)
    dm = InMemoryDataModule(data, batch_size=cfg.dataset.batch_size, eval_batch_size=cfg.dataset.eval_batch_size,
                            seed=cfg.seed, channels_last=cfg.trainer.channels_last)
    run = Run(cfg, work_dir, {})
    pretrain(run, module, dm)
    if cfg.pipeline.pretrain_cache:  # the weights are in the cache: drop the run's scratch (epoch checkpoints)
        shutil.rmtree(work_dir, ignore_errors=True)
    return module.model, dm, run.record, geometry


def eval_batches(dm: Any, subset: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The test split as normalized batches, built once (optionally a fixed random subset)."""
    from tnbench.data import subset_indices

    d = dm.data
    idx = subset_indices(len(d.test_y), subset or None, seed)
    if idx is not None:
        import dataclasses

        dm = type(dm)(dataclasses.replace(d, test_x=d.test_x[idx], test_y=d.test_y[idx]), batch_size=dm.batch_size,
                      eval_batch_size=dm.eval_batch_size, seed=dm.seed, channels_last=dm.channels_last)
    return list(dm.test_dataloader())


@torch.inference_mode()
def accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    correct = total = 0
    for x, y in batches:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return 100.0 * correct / total


def layer_table(model: nn.Module, include_linear: bool) -> list[tuple[str, nn.Module]]:
    kinds = (nn.Conv2d, nn.Linear) if include_linear else (nn.Conv2d,)
    return [(n, m) for n, m in compressible_layers(model) if isinstance(m, kinds)]


class Sweep:
    """Restore -> truncate with a real method -> evaluate, with the memo described above."""

    def __init__(self, cfg: DictConfig, model: nn.Module, geometry: dict[str, int], batches: list, factorized: bool):
        self.cfg, self.model, self.geometry, self.batches = cfg, model, geometry, batches
        self.factorized = factorized
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.memo: dict[Any, float] = {}
        self.evaluations = 0
        self.dense_acc = self.evaluate(model)

    def evaluate(self, model: nn.Module) -> float:
        self.evaluations += 1
        return accuracy(model, self.batches)

    def restored(self) -> nn.Module:
        """The dense model as pretrained. Dense-reconstructed truncation keeps the module
        structure, so the state dict is copied back in place; factorized truncation swaps
        modules, so the model is rebuilt (same builder) and loaded."""
        if self.factorized:
            from tnbench.models import build_model

            model = build_model(self.cfg.model.name, **self.geometry, **self.cfg.model.options)
            model.load_state_dict(self.state)
            if self.cfg.trainer.channels_last:
                model = model.to(memory_format=torch.channels_last)
            return model
        self.model.load_state_dict(self.state)
        return self.model

    def truncated(self, method_cfg: dict[str, Any]) -> tuple[nn.Module, list[Any]]:
        """The dense model truncated by one method setting, and the layer reports."""
        model = self.restored()
        cfg = OmegaConf.merge(OmegaConf.structured(METHODS.get(method_cfg["name"]).config_class), method_cfg)
        reports = build_method(cfg).compress(model)
        return model, reports

    def point(self, method_cfg: dict[str, Any], memo_key: Any) -> tuple[float, list[Any], bool]:
        """(accuracy, layer reports, whether it was evaluated) for one grid point."""
        model, reports = self.truncated(method_cfg)
        untouched = all(r.extra.get("max_rank") == r.ranks[0] for r in reports) and method_cfg["name"] != "cp"
        key = (memo_key, tuple((r.name, r.ranks[0]) for r in reports))
        if untouched:
            return self.dense_acc, reports, False
        if key in self.memo:
            return self.memo[key], reports, False
        acc = self.evaluate(model)
        self.memo[key] = acc
        return acc, reports, True


def summarize(table: pd.DataFrame, spectra: pd.DataFrame, out: Path, threshold: float) -> list[Path]:
    """tolerated_norm_loss.csv and every plot, from the two tables."""
    tol = tolerated(table, threshold)
    tol.to_csv(out / "tolerated_norm_loss.csv", index=False)
    title = (f"{table.model.iloc[0]} on {table.dataset.iloc[0]}: truncation without retraining "
             f"(dense {table.accuracy_dense.iloc[0]:.2f}%)")
    from tnbench.studies.truncation_plots import plot_all

    return plot_all(table, spectra, tol, out, title, threshold)


def replot(out: Path, threshold: float) -> Path:
    from tnbench.errors import ConfigError

    try:
        table, spectra = pd.read_csv(out / "truncation.csv"), pd.read_csv(out / "spectra.csv")
    except OSError:
        raise ConfigError(f"--plots-only needs truncation.csv and spectra.csv in {out}; run the study first") from None
    table, spectra = backfill(table, spectra)
    spectra.to_csv(out / "spectra.csv", index=False)
    table.to_csv(out / "truncation.csv", index=False)
    plots = summarize(table, spectra, out, threshold)
    meta_path = out / "study.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta.update(threshold=threshold, files=["truncation.csv", "spectra.csv", "tolerated_norm_loss.csv",
                                                *[p.name for p in plots]])
        meta_path.write_text(json.dumps(meta, indent=2, default=str))
    print("\n".join(map(str, plots)))
    return out


def run_study(args: argparse.Namespace) -> Path:
    from tnbench.errors import ConfigError
    from tnbench.functional.bipartition import CUTS as KNOWN_CUTS

    t_start = time.perf_counter()
    targets = _floats(args.norm_losses, "--norm-losses")
    bad = [t for t in targets if not 0.0 <= t < 1.0]
    if not targets or bad:
        raise ConfigError(f"--norm-losses must be values in [0, 1), got {args.norm_losses!r}")
    cuts = [c.strip() for c in args.cuts.split(",") if c.strip()]
    unknown = [c for c in cuts if c not in KNOWN_CUTS]
    if not cuts or unknown:
        raise ConfigError(f"--cuts must name cuts among {', '.join(KNOWN_CUTS)}; got {args.cuts!r}")
    cp_ranks = [int(r) for r in _floats(args.cp_ranks, "--cp-ranks")]
    if any(r < 1 for r in cp_ranks):
        raise ConfigError(f"--cp-ranks must be >= 1, got {args.cp_ranks!r}")
    if args.cp_iters < 1:
        raise ConfigError(f"--cp-iters must be >= 1, got {args.cp_iters}")
    if args.eval_subset < 0:
        raise ConfigError(f"--eval-subset must be >= 0, got {args.eval_subset}")

    cfg = compose_config(args.overrides)
    if cfg.method.name != "svd_truncation":
        raise ConfigError(f"the study chooses the methods itself (svd_truncation, and cp with --cp-ranks); "
                          f"drop method={cfg.method.name}")
    out = Path(args.out or Path(cfg.paths.results_dir) / "studies" / f"truncation_{cfg.model.name}_{cfg.dataset.name}")
    if args.plots_only:
        return replot(out, args.threshold)
    out.mkdir(parents=True, exist_ok=True)
    model, dm, pre, geometry = pretrained_model(cfg, out / "pretrain")
    t_pre = time.perf_counter() - t_start
    batches = eval_batches(dm, args.eval_subset, cfg.seed)
    sweep = Sweep(cfg, model, geometry, batches, args.factorized)
    layers = layer_table(model, args.include_linear)
    names = [n for n, _ in layers]
    settings = ([] if args.no_single_layers else [(n, [n], d) for d, n in enumerate(names)]) + [(ALL, names, None)]
    spectra = spectra_frame(layers, cuts)
    spectra.to_csv(out / "spectra.csv", index=False)

    base = OmegaConf.to_container(cfg.method, resolve=True)
    rows = []
    t0 = time.perf_counter()
    for cut in cuts:
        for target in targets:
            for setting, chosen, depth in settings:
                mcfg = {**base, "cut": cut, "norm_loss": target, "rank": None, "rel_error": None, "layers": chosen,
                        "factorized": args.factorized, "include_linear": args.include_linear}
                acc, reports, evaluated = sweep.point(mcfg, ("svd", cut))
                rows.append(row("svd", cut, "norm_loss", target, setting, depth, reports, acc, sweep.dense_acc, evaluated))
        print(f"cut {cut}: done ({sweep.evaluations} evaluations so far, {time.perf_counter() - t0:.0f}s)", flush=True)
    for rank in cp_ranks:
        for setting, chosen, depth in settings:
            mcfg = {"name": "cp", "rank": rank, "layers": [n for n in chosen if isinstance(dict(layers)[n], nn.Conv2d)],
                    "n_iter_max": args.cp_iters, "factorized": args.factorized, "skip_if_larger": False,
                    "seed": cfg.seed}
            if not mcfg["layers"]:
                continue
            acc, reports, evaluated = sweep.point(mcfg, ("cp", rank))
            rows.append(row("cp", "cp", "cp_rank", rank, setting, depth, reports, acc, sweep.dense_acc, evaluated))
        print(f"CP rank {rank}: done ({time.perf_counter() - t0:.0f}s)", flush=True)
    sweep.restored()  # leave the model as pretrained

    table = pd.DataFrame(rows)
    table.insert(0, "model", cfg.model.name)
    table.insert(1, "dataset", cfg.dataset.name)
    table.to_csv(out / "truncation.csv", index=False)
    plots = summarize(table, spectra, out, args.threshold)
    meta = {
        "command": " ".join(["python -m tnbench.studies.truncation", *args.argv]),
        "paper": "arXiv:2403.14379",
        "model": cfg.model.name, "dataset": cfg.dataset.name,
        "norm_loss_definition": "1 - ||W_trunc||_F / ||W||_F (the grid's target)",
        "norm_loss_energy_definition": "1 - ||W_trunc||_F^2 / ||W||_F^2",
        "correlation_loss_definition": "1 - rank / (number of singular values of the cut); ours, the paper's formula "
                                       "is not in our material",
        "relative_error_definition": "||W - W_trunc||_F / ||W||_F",
        "norm_losses": targets, "cuts": cuts, "cp_ranks": cp_ranks, "layers": names, "factorized": args.factorized,
        "eval_images": sum(len(y) for _, y in batches), "accuracy_dense_eval": sweep.dense_acc,
        "acc_pretrain_full_test": pre.get("acc_pretrain"), "pretrain_checkpoint": pre.get("pretrain_checkpoint"),
        "pretrain_cache_hit": pre.get("pretrain_cache_hit"), "evaluations": sweep.evaluations, "points": len(table),
        "threshold": args.threshold, "time_pretrain_s": t_pre, "time_sweep_s": time.perf_counter() - t0,
        "time_total_s": time.perf_counter() - t_start,
        "config": OmegaConf.to_container(cfg, resolve=False),
        "files": ["truncation.csv", "spectra.csv", "tolerated_norm_loss.csv", *[p.name for p in plots]],
    }
    (out / "study.json").write_text(json.dumps(meta, indent=2, default=str))
    print(f"{len(table)} points ({sweep.evaluations} evaluations) in {meta['time_sweep_s']:.0f}s -> {out}")
    return out


def main(argv: list[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    return run_study(args)


def cli() -> None:
    """Bad input (overrides, grid options) costs one line on stderr and exit code 2."""
    from tnbench.api import CONFIG_DIR
    from tnbench.errors import BAD_INPUT
    from tnbench.pipeline.configstore import register_configs
    from tnbench.pipeline.jobs import preflight

    argv = sys.argv[1:]
    register_configs()
    problem = preflight(["method=svd_truncation", "logger=none", *parse_args(argv).overrides], CONFIG_DIR)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        main(argv)
    except BAD_INPUT as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
