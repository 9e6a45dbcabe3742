"""Never wedged (tnbench.pipeline.integrity): every file a run reads back that does not verify is
set aside as `<name>.corrupt-<n>` with one warning naming it, its stage is redone and the run
completes; temp files of killed writes are removed. Real runs on small synthetic data."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import read_record, run_in_process
from tnbench.pipeline.integrity import read_json, record_problem, set_aside, state_problem

ARGS = ("logger=none", "pipeline.keep_checkpoints=true", "pipeline.retrain_epochs=2")
METRICS = ["acc_pretrain", "acc_compressed", "acc_retrained", "retrain_history", "pretrain_history",
           "params_compressed", "ranks"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A results dir holding one finished run (`run`) that kept its epoch checkpoints."""
    root = tmp_path_factory.mktemp("finished")
    run_in_process(root, *ARGS)
    return root


@pytest.fixture
def results(finished, tmp_path) -> Path:
    out = tmp_path / "results"
    shutil.copytree(finished, out)
    return out


def rerun(results: Path, *extra: str, name: str = "run") -> dict:
    return run_in_process(results, *ARGS, *extra, name=name)


def set_aside_warnings(caplog, name: str) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == "tnbench.pipeline.integrity"]
    assert len(lines) == 1 and name in lines[0] and "set aside" in lines[0] and "\n" not in lines[0], lines
    return lines


def same_numbers(got: dict, want: dict) -> None:
    assert got["status"] == "ok"
    assert {k: got[k] for k in METRICS} == {k: want[k] for k in METRICS}


def test_truncated_epoch_checkpoint_is_set_aside_and_retraining_redone(results, finished, caplog):
    ckpt = results / "run" / "checkpoints" / "retrain-last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        got = rerun(results)
    same_numbers(got, read_record(finished / "run"))
    assert "retrain" not in got.get("resumed_stages", [])  # trained from its first epoch again
    assert (ckpt.parent / "retrain-last.ckpt.corrupt-1").is_file() and ckpt.is_file()
    assert "cannot be loaded" in set_aside_warnings(caplog, "retrain-last.ckpt")[0]


def test_checkpoint_lightning_refuses_is_set_aside_and_the_run_redone(results, finished, caplog):
    """The checkpoint passes the checks but Lightning fails restoring its optimizer state."""
    ckpt = results / "run" / "checkpoints" / "retrain-last.ckpt"
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    blob["optimizer_states"] = [{"state": {}, "param_groups": []}]
    torch.save(blob, ckpt)
    with caplog.at_level(logging.WARNING):
        got = rerun(results)
    same_numbers(got, read_record(finished / "run"))
    assert (ckpt.parent / "retrain-last.ckpt.corrupt-1").is_file()
    assert "Lightning cannot resume" in set_aside_warnings(caplog, "retrain-last.ckpt")[0]


def test_checkpoint_of_another_model_is_set_aside(results, finished, caplog):
    ckpt = results / "run" / "checkpoints" / "retrain-last.ckpt"
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    blob["state_dict"] = {"model.other.weight": torch.zeros(2)}
    torch.save(blob, ckpt)
    with caplog.at_level(logging.WARNING):
        got = rerun(results)
    same_numbers(got, read_record(finished / "run"))
    assert "does not fit this model" in set_aside_warnings(caplog, "retrain-last.ckpt")[0]


@pytest.mark.parametrize("content,why", [
    ("[1, 2]", "a list, not an object"),
    ('{"attempts": 1, "pretrain": {"weights": "x.pt"}}', "pretrain.record is missing"),
    ('{"attempts": "many"}', "is not a count"),
    ("{garbage", "not readable JSON"),
    ("", "not readable JSON"),
])
def test_bad_state_is_set_aside_and_the_run_starts_over(results, finished, caplog, content, why):
    state = results / "run" / "state.json"
    state.write_text(content)
    with caplog.at_level(logging.WARNING):
        got = rerun(results)
    same_numbers(got, read_record(finished / "run"))
    assert got["attempt"] == 1  # a fresh state
    assert (state.parent / "state.json.corrupt-1").read_text() == content
    assert why in set_aside_warnings(caplog, "state.json")[0]


@pytest.mark.parametrize("damage", ["missing", "wrong", "entry truncated"])
def test_cache_entry_without_a_valid_sidecar_is_not_trusted(results, finished, caplog, damage):
    entry = Path(read_record(finished / "run")["pretrain_checkpoint"].replace(str(finished), str(results)))
    sidecar = entry.with_name(entry.name + ".sha256")
    if damage == "missing":
        sidecar.unlink()
    elif damage == "wrong":
        sidecar.write_text("0" * 64 + "\n")
    else:
        entry.write_bytes(entry.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        got = rerun(results, "method.rank=2", name="other")  # same dense model, a new run
    assert got["status"] == "ok" and got["pretrain_cache_hit"] is False
    assert got["acc_pretrain"] == read_record(finished / "run")["acc_pretrain"]  # retrained: the same model
    assert entry.is_file() and sidecar.is_file() and entry.with_name(entry.name + ".corrupt-1").is_file()
    set_aside_warnings(caplog, entry.name)
    again = rerun(results, "method.rank=3", name="third")
    assert again["pretrain_cache_hit"] is True


def test_run_dir_weights_without_sidecar_are_pretrained_again(tmp_path, caplog):
    first = run_in_process(tmp_path, *ARGS, "pipeline.pretrain_cache=false")
    weights = tmp_path / "run" / "checkpoints" / "pretrained.pt"
    weights.with_name("pretrained.pt.sha256").unlink()
    (tmp_path / "run" / "record.json").unlink()
    with caplog.at_level(logging.WARNING):
        got = run_in_process(tmp_path, *ARGS, "pipeline.pretrain_cache=false")
    same_numbers(got, first)
    assert "no SHA-256 sidecar" in set_aside_warnings(caplog, "pretrained.pt")[0]


def test_temp_files_of_killed_writes_are_removed_on_the_next_start(results):
    run = results / "run"
    entry = Path(read_record(run)["pretrain_checkpoint"].replace(str(results.parent / "finished"), str(results)))
    stray = [run / ".record.json.k1l2.tmp", run / ".state.json.x9.tmp", run / "checkpoints" / "retrain-last.tmp"]
    cache_dir = results / "cache" / "pretrain"
    cache_stray = [cache_dir / f".{p.name}.abc.tmp" for p in cache_dir.glob("*.pt")]
    cache_stray += [p.with_name(p.name + ".sha256") for p in cache_stray]
    for p in [*stray, *cache_stray]:
        p.write_bytes(b"half")
    assert entry  # (the cache entry itself is untouched)
    rerun(results, "method.rank=2", name="other")  # uses the cache entry
    rerun(results)
    assert not [p for p in [*stray, *cache_stray] if p.exists()]


def test_unreadable_record_is_set_aside_and_the_run_redone(results, caplog):
    from tnbench.pipeline.jobs import previous_ok_record

    record = results / "run" / "record.json"
    assert previous_ok_record(results / "run")["status"] == "ok"
    record.write_text("")
    with caplog.at_level(logging.WARNING):
        assert previous_ok_record(results / "run") is None
    assert (record.parent / "record.json.corrupt-1").exists() and not record.exists()
    set_aside_warnings(caplog, "record.json")


def test_checks_and_set_aside_numbering(tmp_path):
    assert state_problem({"attempts": 2, "wandb_run_id": None, "pretrain": {"weights": "w", "record": {}}}) is None
    assert state_problem({"wandb_run_id": 3}) == "wandb_run_id is not a string"
    assert record_problem({"status": "ok"}) is None and record_problem([]) == "a list, not an object"
    p = tmp_path / "state.json"
    for n in (1, 2):
        p.write_text("[]")
        assert read_json(p, state_problem) is None
        assert (tmp_path / f"state.json.corrupt-{n}").exists()
    p.write_text("x")
    assert set_aside(p, "why").name == "state.json.corrupt-3"
