"""Every method's compressed model saved and loaded back: the same outputs bit for bit (ranks
adapted in retraining included) and the same test accuracy, with no pickle anywhere, and a
run directory from before models were saved refused in one line."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import tnbench
from tests.conftest import QUICK, REPO, method_cfg, raises_one_line
from tnbench.artifacts.store import SPEC_FILE, WEIGHTS_FILE, load, model_preset, save
from tnbench.errors import CheckpointError
from tnbench.methods import METHODS, build_method
from tnbench.models import build_model

METHOD_NAMES = METHODS.names()
FAST_FIT = {"adtn": {"fit_steps": 5}, "adqc": {"fit_steps": 5}}


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_save_then_load_gives_the_same_outputs(name, channels_last, tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    build_method(method_cfg(name, **FAST_FIT.get(name, {}))).compress(model)
    save(model, tmp_path, model_preset({"name": "lenet5", "options": {}}, 1, 28, 10), method=name)
    assert {p.name for p in tmp_path.iterdir()} == {WEIGHTS_FILE, SPEC_FILE}
    loaded = load(tmp_path)
    assert type(loaded) is type(model) and not loaded.training
    assert [type(m).__name__ for m in loaded.modules()] == [type(m).__name__ for m in model.modules()]
    x = torch.randn(5, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def accuracy(model: torch.nn.Module, record: dict) -> float:
    """Test accuracy (%) of `model` on the whole test split of the run's dataset."""
    from omegaconf import OmegaConf

    from tnbench.data import load_section
    from tnbench.data.batching import normalize

    cfg = OmegaConf.create(record["config"])
    data = load_section(cfg.dataset, cfg.seed)
    with torch.no_grad():
        predicted = model(normalize(data.test_x, data.mean, data.std)).argmax(1)
    return 100.0 * float((predicted == data.test_y).float().mean())


def run_and_load(tmp_path, method: str, *extra: str):
    overrides = [*QUICK, "logger=none", f"method={method}", f"paths.results_dir={tmp_path}", *extra]
    result = tnbench.run(overrides=overrides)
    assert result.status == "ok", result.record.get("error")
    assert result.record["model_file"] == str(result.run_dir / WEIGHTS_FILE)
    loaded = tnbench.load(result.run_dir)
    x = torch.randn(16, 1, 28, 28).to(memory_format=torch.channels_last)
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))
    # the model the run ended with: the last retrain epoch's, or the selected one's (pipeline.select)
    assert accuracy(loaded, result.record) == pytest.approx(result.record["acc_selected"], abs=1e-4)
    return result, loaded


@pytest.mark.parametrize("method", ["tucker_adaptive", "dlrt"])
def test_ranks_adapted_in_retraining_are_saved_and_loaded(method, tmp_path):
    result, loaded = run_and_load(tmp_path, method, "model=lenet5_dlrt", "method.adapt_every=2")
    rec = result.record
    assert rec["ranks"] != rec["compression_at_compress"]["ranks"], "the ranks did not move: nothing tested"
    spec = json.loads((result.run_dir / SPEC_FILE).read_text())
    for name, ranks in rec["ranks"].items():
        if name in spec["layers"]:
            assert list(spec["layers"][name]["args"]["ranks"].values())[:len(ranks)] == ranks
    assert sum(p.numel() for p in loaded.parameters()) == rec["params_compressed"]


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in METHOD_NAMES if m not in ("tucker_adaptive", "dlrt")])
def test_every_method_run_is_saved_with_its_test_accuracy(method, tmp_path):
    extra = ["method.fit_steps=20"] if method in FAST_FIT else []
    run_and_load(tmp_path, method, *extra)


LOADER = """
import json, sys
run_dir = sys.argv[1]
opened = []
def guard(event, args):
    if event == "pickle.find_class":
        raise RuntimeError(f"unpickled {args}")
    if event == "open" and isinstance(args[0], str) and args[0].startswith(run_dir):
        opened.append(args[0][len(run_dir):].lstrip("/"))
sys.addaudithook(guard)
import torch, tnbench
model = tnbench.load(run_dir)
model(torch.zeros(1, 1, 28, 28))
torch.save({"w": torch.zeros(1)}, run_dir + "/pickled.pt")
try:  # the guard does catch unpickling
    torch.load(run_dir + "/pickled.pt", weights_only=False)
    caught = False
except RuntimeError as e:
    caught = "unpickled" in str(e)
print(json.dumps({"opened": sorted(set(opened) - {"pickled.pt"}), "caught": caught,
                  "training_code": sorted(m for m in sys.modules if m.startswith(("lightning", "tnbench.pipeline",
                                                                                  "tnbench.methods.families")))}))
"""


def test_loading_never_unpickles_and_needs_no_training_code(tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10)
    build_method(method_cfg("tucker", rank=4)).compress(model)
    save(model, tmp_path, model_preset({"name": "lenet5", "options": {}}, 1, 28, 10))
    r = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["caught"], "the audit hook did not see torch.load unpickle: the check proves nothing"
    assert set(out["opened"]) <= {SPEC_FILE, WEIGHTS_FILE} and SPEC_FILE in out["opened"]
    assert out["training_code"] == []


def test_a_run_recorded_before_models_were_saved_is_one_line(tmp_path):
    (tmp_path / "record.json").write_text(json.dumps({"status": "ok"}))
    with raises_one_line("has no model.safetensors or model.json.*pipeline.rerun=true", CheckpointError):
        tnbench.load(tmp_path)
    with raises_one_line("does not exist", CheckpointError):
        tnbench.load(tmp_path / "nope")
