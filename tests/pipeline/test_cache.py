"""Checkpoints (tnbench.pipeline.cache): the pretrain cache, corrupt entries, untrusted init checkpoints."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tests.conftest import read_record, run_in_process
from tnbench.errors import CheckpointError


def test_pretrain_cache_is_reused_and_corrupt_entries_rebuilt(tmp_path):
    first = run_in_process(tmp_path, "method.rank=4", "logger=none", name="a")
    assert first["pretrain_cache_hit"] is False
    second = run_in_process(tmp_path, "method.rank=2", "logger=none", name="b")
    assert second["pretrain_cache_hit"] is True
    assert second["acc_pretrain"] == pytest.approx(first["acc_pretrain"])
    assert second["time_pretrain_s"] < first["time_pretrain_s"]
    ckpt = Path(first["pretrain_checkpoint"])
    assert ckpt == Path(second["pretrain_checkpoint"]) and ckpt.exists()
    # a changed pretrain setting is a different entry
    other = run_in_process(tmp_path, "method.rank=4", "logger=none", "seed=1", name="c")
    assert other["pretrain_cache_hit"] is False and other["pretrain_checkpoint"] != str(ckpt)
    # corrupt the entry: it is detected by checksum, rebuilt, never used
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    third = run_in_process(tmp_path, "method.rank=4", "logger=none", name="d")
    assert third["pretrain_cache_hit"] is False
    assert third["acc_pretrain"] == pytest.approx(first["acc_pretrain"])  # same seed, same model
    fourth = run_in_process(tmp_path, "method.rank=4", "logger=none", name="e")
    assert fourth["pretrain_cache_hit"] is True


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_init_checkpoint_never_unpickles_and_must_fit(tmp_path):
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(CheckpointError, match="cannot be loaded as weights"):
        run_in_process(tmp_path, "logger=none", f"pipeline.init_checkpoint={bad}")
    rec = read_record(tmp_path / "run")
    assert rec["status"] == "failed" and "CheckpointError" in rec["error"]
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        run_in_process(tmp_path, "logger=none", f"pipeline.init_checkpoint={garbage}")
    other = tmp_path / "fc2.pt"
    from tnbench.models import build_model
    from tnbench.pipeline.cache import save_checkpoint

    save_checkpoint(other, build_model("fc2", in_channels=1, image_size=28, num_classes=10).state_dict(), {})
    with pytest.raises(CheckpointError, match="does not fit this model"):
        run_in_process(tmp_path, "logger=none", f"pipeline.init_checkpoint={other}")


def test_a_randomised_compression_is_the_same_on_a_cache_hit_and_without_speed_timing(tmp_path):
    """ADTN draws its initial gates from torch's global generator: the compress stage seeds it
    (from the run's seed), so the compressed model does not depend on whether the dense model was
    just trained in this process or came from the cache, nor on the speed measurement before it."""
    import torch
    from safetensors.torch import load_file

    adtn = ["method=adtn", "method.fit_steps=5", "logger=none"]
    first = run_in_process(tmp_path, *adtn, name="trained")
    cached = run_in_process(tmp_path, *adtn, "pipeline.rerun=true", "trainer.measure_speed=false", name="cached")
    assert first["pretrain_cache_hit"] is False and cached["pretrain_cache_hit"] is True
    assert [f["initial_distance"] for f in cached["adtn_fit"]] == [f["initial_distance"] for f in first["adtn_fit"]]
    assert cached["acc_compressed"] == first["acc_compressed"] and cached["acc_retrained"] == first["acc_retrained"]
    a, b = load_file(tmp_path / "trained" / "model.safetensors"), load_file(tmp_path / "cached" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
