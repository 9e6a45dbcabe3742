"""The pretrain cache: dense checkpoints keyed by what determines them, verified on load.

Key = `tnbench.pipeline.identity.pretrain_key`: the whole config minus what cannot change the
dense model (not the method: every method that shares the rest starts from the same model). Entries are written atomically with a
SHA-256 sidecar; loading uses `weights_only=True`, so a cache file can never run code. An
entry whose checksum or contents do not verify is reported and rebuilt, never used.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from tnbench.errors import CheckpointError
from tnbench.files import share
from tnbench.pipeline.integrity import remove_temps, set_aside

log = logging.getLogger(__name__)

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "meta": meta}, tmp)
        share(tmp)  # mkstemp makes 0600; a cache on a shared filesystem serves everyone's jobs
        digest = _sha256(Path(tmp))
        sidecar = path.with_suffix(path.suffix + ".sha256")
        sidecar_tmp = Path(tmp + ".sha256")
        sidecar_tmp.write_text(digest + "\n")
        os.replace(sidecar_tmp, sidecar)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_checkpoint(path: Path, verify: bool = True, require_sidecar: bool = False) -> dict[str, Any]:
    """Load a tnbench checkpoint safely; raise CheckpointError saying what is wrong. With
    `require_sidecar` (files tnbench wrote itself: cache entries, run-dir weights) a missing
    SHA-256 sidecar is an error too: such a file is not trusted."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    sidecar = path.with_suffix(path.suffix + ".sha256")
    if verify and require_sidecar and not sidecar.is_file():
        raise CheckpointError(f"checkpoint {path} has no SHA-256 sidecar ({sidecar.name}), so it cannot be trusted")
    if verify and sidecar.is_file() and sidecar.read_text().strip() != _sha256(path):
        raise CheckpointError(f"checkpoint {path} fails its SHA-256 check (corrupt or partly written)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types; all mean "unusable"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} cannot be loaded as weights: {first[:200]}") from None
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise CheckpointError(f"checkpoint {path} is not a tnbench checkpoint (no state_dict)")
    return blob


def load_into(model: torch.nn.Module, blob: dict[str, Any], path: Path) -> None:
    """Load weights that must match the model exactly: names and shapes."""
    own = model.state_dict()
    theirs = blob["state_dict"]
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    wrong = [k for k in own if k in theirs and tuple(own[k].shape) != tuple(theirs[k].shape)]
    if missing or unexpected or wrong:
        example = (wrong + missing + unexpected)[0]
        raise CheckpointError(
            f"checkpoint {path} does not fit this model: {len(missing)} missing, {len(unexpected)} "
            f"unexpected and {len(wrong)} mis-shaped tensors (e.g. {example})"
        )
    model.load_state_dict(theirs)


class PretrainCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "pretrain"

    def path(self, key: str, label: str) -> Path:
        return self.root / f"{label}_{key}.pt"

    @contextmanager
    def lock(self, path: Path, enabled: bool = True):
        """An exclusive file lock on one entry: concurrent jobs that need the same dense model
        train it once; the others wait, then find it in the cache."""
        if not enabled:
            yield
            return
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(path.suffix + ".lock"), "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def tidy(self, path: Path, enabled: bool = True) -> None:
        """Remove temp files of interrupted writes of the entry `path` (under its lock)."""
        with self.lock(path, enabled):
            remove_temps(path.parent, prefix=path.name)

    def lookup(self, path: Path) -> dict[str, Any] | None:
        """The entry if it exists and verifies against its sidecar (call under `lock`); one
        that does not is set aside so it gets rebuilt. Temp files of interrupted writes of
        this entry are removed first."""
        remove_temps(path.parent, prefix=path.name)
        if not path.exists():
            sidecar = path.with_suffix(path.suffix + ".sha256")
            if sidecar.exists():  # a sidecar without its entry: the entry's write was interrupted
                sidecar.unlink()
            return None
        try:
            return load_checkpoint(path, require_sidecar=True)
        except CheckpointError as e:
            set_aside(path, str(e).replace(f"checkpoint {path} ", ""), "the dense model is trained again")
            return None
