"""The truncation study command (tnbench.studies.truncation): tables, plots, bad grids, memory format."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from tests.conftest import raises_one_line
from tnbench.errors import ConfigError
from tnbench.layers.implementation import forced
from tnbench.models import build_model


def test_study_command_writes_table_and_plots(tmp_path):
    from tnbench.studies.truncation import main

    out = main(["dataset=synthetic", "logger=none", "trainer.progress=false", f"paths.results_dir={tmp_path}",
                "pipeline.pretrain_epochs=0", "dataset.train_size=64", "dataset.test_size=128",
                "--norm-losses", "0.1,0.5", "--cuts", "out,kh", "--cp-ranks", "2", "--cp-iters", "5"])
    assert out == tmp_path / "studies" / "truncation_lenet5_synthetic"
    table = pd.read_csv(out / "truncation.csv")
    settings = ["features.0", "features.3", "all"]
    svd = table[table.method == "svd"]
    assert len(svd) == 2 * 2 * 3  # cuts x norm losses x (each conv alone, all convs)
    assert set(zip(svd.cut, svd.target, svd.layers)) == {(c, t, s) for c in ("out", "kh") for t in (0.1, 0.5)
                                                          for s in settings}
    assert (svd.norm_loss <= svd.target + 1e-9).all() and svd.accuracy.between(0, 100).all()
    # both norm-loss forms and the correlation loss; single layers: energy = 1 - (1 - norm loss)^2
    single = svd[svd.layers != "all"]
    assert ((1 - (1 - single.norm_loss) ** 2 - single.norm_loss_energy).abs() < 1e-9).all()
    assert (svd.norm_loss_energy >= svd.norm_loss - 1e-12).all() and svd.correlation_loss.between(0, 1).all()
    ranks = single.ranks.astype(int)
    assert ((1 - ranks / single.max_ranks.astype(int) - single.correlation_loss).abs() < 1e-9).all()
    assert list(table[table.method == "cp"].layers) == settings
    spectra = pd.read_csv(out / "spectra.csv")
    assert set(spectra.cut) == {"out", "kh"} and set(spectra.layer) == set(settings[:2])
    # the out cut of features.3 (16 x 6*5*5) has 16 singular values
    assert len(spectra[(spectra.layer == "features.3") & (spectra.cut == "out")]) == 16
    for name in ("accuracy_by_cut.png", "accuracy_vs_energy_norm_loss.png", "accuracy_vs_relative_error.png", "accuracy_by_layer.png",
                 "accuracy_vs_compression.png", "spectra.png", "norm_loss_vs_params.png", "depth_summary.png",
                 "tolerated_norm_loss.csv", "study.json"):
        assert (out / name).stat().st_size > 0, name
    # a table written before the energy form and correlation loss were recorded gets them back from
    # its own ranks and spectra.csv, without re-evaluating
    table.drop(columns=["norm_loss_energy", "correlation_loss"]).to_csv(out / "truncation.csv", index=False)
    spectra.drop(columns=["norm_loss_energy_keeping_k", "correlation_loss_keeping_k"]).to_csv(out / "spectra.csv",
                                                                                              index=False)
    main(["dataset=synthetic", f"paths.results_dir={tmp_path}", "--plots-only"])
    expected = table.copy()  # except for CP over several layers (its per-layer norm losses are not in the table)
    expected.loc[(expected.method == "cp") & (expected.layers == "all"), "norm_loss_energy"] = float("nan")
    pd.testing.assert_frame_equal(pd.read_csv(out / "truncation.csv"), expected, check_exact=False)
    pd.testing.assert_frame_equal(pd.read_csv(out / "spectra.csv"), spectra, check_exact=False)


def test_study_rejects_bad_grid_in_one_line(tmp_path):
    from tnbench.studies.truncation import main

    with raises_one_line("--cuts must name cuts among out, in, kh"):
        main(["dataset=synthetic", f"paths.results_dir={tmp_path}", "--cuts", "out,diag"])
    with pytest.raises(ConfigError, match=r"--norm-losses must be values in \[0, 1\)"):
        main(["dataset=synthetic", f"paths.results_dir={tmp_path}", "--norm-losses", "0.2,1.0"])


@pytest.mark.parametrize("factorized", [True, False])
def test_study_evaluates_truncated_models_in_the_input_memory_format(tmp_path, factorized):
    """Layers a method swaps in take the replaced layer's memory format (replace_module): a
    contiguous layer on channels-last input is ~4x slower."""
    from tnbench.studies.truncation import Sweep, compose_config

    cfg = compose_config(["dataset=synthetic", "trainer.channels_last=true"])
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10).to(memory_format=torch.channels_last)
    batch = [(torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last), torch.zeros(8, dtype=torch.long))]
    sweep = Sweep(cfg, model, {"in_channels": 1, "image_size": 28, "num_classes": 10}, batch, factorized)
    base = OmegaConf.to_container(cfg.method, resolve=True)
    truncated, reports = sweep.truncated({**base, "cut": "out", "norm_loss": 0.3, "rank": None, "rel_error": None,
                                          "layers": "all", "factorized": factorized})
    assert reports and all(r.ranks for r in reports)
    convs = [m for m in truncated.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == (4 if factorized else 2)  # the OUT cut: two convs a layer when factorized
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    # LeNet-5's first conv has one input channel, so its weight looks contiguous in both orders:
    # what counts is that every conv of the truncated model computes channels-last on that input
    outputs = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: outputs.append(out)) for m in convs]
    with torch.no_grad(), forced("factorized"):  # the chain's own convs, not the rebuilt kernel
        truncated(batch[0][0])
    for h in hooks:
        h.remove()
    assert len(outputs) == len(convs)
    assert all(o.is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous() for o in outputs)
