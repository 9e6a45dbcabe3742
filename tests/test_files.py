"""What tnbench writes gets the mode the umask gives a new file (tnbench.files), not the 0600
that mkstemp and safetensors use: records, pretrain-cache entries and saved models are shared
on a sweep's filesystem."""
from __future__ import annotations

import os
import stat

import pytest

from tnbench.artifacts.store import WEIGHTS_FILE, model_preset, save
from tnbench.models import build_model
from tnbench.pipeline.cache import save_checkpoint
from tnbench.reporting.records import write_json_atomic


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_follow_the_umask(umask, tmp_path):
    model = build_model("fc2", in_channels=1, image_size=28, num_classes=10)
    write_json_atomic(tmp_path / "record.json", {"status": "ok"})
    save_checkpoint(tmp_path / "cache" / "entry.pt", model.state_dict(), {})
    save(model, tmp_path / "run", model_preset({"name": "fc2", "options": {}}, 1, 28, 10))
    expected = 0o666 & ~umask
    written = [tmp_path / "record.json", tmp_path / "cache" / "entry.pt", tmp_path / "cache" / "entry.pt.sha256",
               tmp_path / "run" / WEIGHTS_FILE]
    assert {p.name: mode(p) for p in written} == {p.name: expected for p in written}
    assert os.umask(umask) == umask  # the umask itself is left as it was
